"""Stage 1: train the WAE alone with the transform loss, on any image folder(s); save safetensors.

The optimizer, schedule, batch size and epochs come from a named recipe (--recipe; the
paper's by default, see STAGE1_RECIPES in wae_timm/train/stage1.py); the optimisation flags
change single settings of it. Images are random 224 crops (and flips) of images resized to
256x256, as in the paper.

    wae-timm train-wae /data/imagenet --split train --output wae_imagenet.safetensors
    wae-timm train-wae --photographs --epoch-repeats 50 --output wae_photos.safetensors
    wae-timm train-wae --photographs --output wae_photos.safetensors --resume   # after a kill
    wae-timm train-wae --dataset fashion_mnist -b 64 --epochs 2 --output wae_fmnist.safetensors
    wae-timm train-wae --dataset fashion_mnist --recipe fashion_mnist --output wae_fmnist.safetensors
    torchrun --nproc_per_node 8 -m wae_timm train-wae /data/imagenet --output wae_imagenet.safetensors

A resumable checkpoint is kept in --checkpoint-dir (default: <output>.run/), saved every
--checkpoint-interval steps and after every epoch. (From a checkout, `python tools/train_wae.py`
is the same command.)
"""
import argparse
import dataclasses
import logging
from pathlib import Path

import torch
from timm.utils import update_summary

from ..layers.autoencoder import WaveletLikeAutoEncoder
from ..data.photographs import PHOTOGRAPH_DIRS, find_photographs
from ..train.classifier import FASHION_MNIST
from ..data import FashionMNIST, create_image_dataset, create_train_loader, paper_crop_transform
from ..train import STAGE1_RECIPES, SUMMARY_CSV, Stage1Recipe, check_fresh_output, cleanup_distributed, \
    init_distributed, read_train_state, save_wae, train_autoencoder, wrap_ddp
from ..train.checkpoint import LAST_CHECKPOINT, clear_run, read_checkpoint
from . import UsageError

__all__ = ['add_arguments', 'recipe_from_args', 'run']

_logger = logging.getLogger('train_wae')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm train-wae`` (optimisation: the ``--recipe``'s values unless given)."""
    data = parser.add_argument_group('data')
    data.add_argument('data_dir', nargs='*', help='image folder(s): class sub-folders, or plain folders of images')
    data.add_argument('--photographs', action='store_true',
                      help=f'also use the Debian wallpaper photographs ({", ".join(map(str, PHOTOGRAPH_DIRS))})')
    data.add_argument('--dataset', default='',
                      help="timm dataset type ('' = image folder or tar), or 'fashion_mnist' (whole 32x32 images)")
    data.add_argument('--split', default='train', help='split sub-folder to use when a folder has one')
    data.add_argument('--epoch-repeats', type=int, default=1, help='list each image this many times per epoch')
    data.add_argument('--img-size', type=int, default=224, help='crop size (paper: 224)')
    data.add_argument('--resize', type=int, default=256, help='resize to this square first (paper: 256; 0: keep size)')
    data.add_argument('--no-hflip', action='store_true', help='no random horizontal flips')
    data.add_argument('--mean', type=float, nargs=3, default=(0.485, 0.456, 0.406),
                      help="normalisation; must match the classifier's (default: ImageNet)")
    data.add_argument('--std', type=float, nargs=3, default=(0.229, 0.224, 0.225))
    data.add_argument('-j', '--workers', type=int, default=2)
    opt = parser.add_argument_group('optimisation (unset flags: the recipe\'s values)')
    opt.add_argument('--recipe', default='paper', choices=sorted(STAGE1_RECIPES),
                     help='named stage-1 recipe: optimizer, schedule, batch size, epochs (default: paper)')
    opt.add_argument('--epochs', type=int, default=None)
    opt.add_argument('-b', '--batch-size', type=int, default=None, help='per process')
    opt.add_argument('--lr', type=float, default=None)
    opt.add_argument('--momentum', type=float, default=None, help='SGD recipes only')
    opt.add_argument('--weight-decay', type=float, default=None)
    opt.add_argument('--decay-milestones', type=int, nargs='+', default=None,
                     help='epochs where the lr is multiplied by --decay-rate (step schedule)')
    opt.add_argument('--decay-rate', type=float, default=None)
    opt.add_argument('--min-lr', type=float, default=None, help='where the cosine schedule ends')
    opt.add_argument('--energy-weight', type=float, default=None, help='lambda of L_t')
    opt.add_argument('--seed', type=int, default=0)
    out = parser.add_argument_group('output')
    out.add_argument('--output', required=True, help='the trained WAE, a .safetensors file')
    out.add_argument('--checkpoint-dir', default=None, help='resumable checkpoint folder (default: <output>.run)')
    out.add_argument('--checkpoint-interval', type=int, default=1000, help='also checkpoint every N steps')
    out.add_argument('--resume', action='store_true', help='continue from the last checkpoint')
    out.add_argument('--overwrite', action='store_true', help='start again over an existing run / output')
    out.add_argument('--max-updates', type=int, default=None, help='stop after N optimizer steps in total')
    out.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    out.add_argument('--no-progress', action='store_true')


def check_arguments(args: argparse.Namespace) -> None:
    """Raise :class:`UsageError` for no data, an output that is not .safetensors, or flags the recipe cannot take."""
    if not args.data_dir and not args.photographs and args.dataset != FASHION_MNIST:
        raise UsageError('give at least one image folder, --photographs, or --dataset fashion_mnist')
    if not args.output.endswith('.safetensors'):
        raise UsageError(f'--output must be a .safetensors file, got {args.output}')
    try:
        recipe_from_args(args)
    except ValueError as err:
        raise UsageError(f'--recipe {args.recipe}: {err}') from err


# optimisation flag -> the Stage1Recipe field it sets
_RECIPE_FLAGS = {
    'epochs': 'epochs', 'batch_size': 'batch_size', 'lr': 'lr', 'momentum': 'momentum',
    'weight_decay': 'weight_decay', 'decay_milestones': 'decay_epochs', 'decay_rate': 'decay_rate',
    'min_lr': 'min_lr', 'energy_weight': 'energy_weight',
}


def recipe_from_args(args: argparse.Namespace) -> Stage1Recipe:
    """The ``--recipe`` recipe with the optimisation flags that were given put in."""
    overrides = {field: getattr(args, flag) for flag, field in _RECIPE_FLAGS.items() if getattr(args, flag) is not None}
    return dataclasses.replace(STAGE1_RECIPES[args.recipe], **overrides)


def check_resume_recipe(checkpoint: Path, recipe: Stage1Recipe) -> None:
    """Refuse to ``--resume`` with a recipe (epochs, batch size, optimizer, schedule) other than the run's own."""
    saved = read_checkpoint(checkpoint).get('config')
    if saved is None:
        return
    now = dict(dataclasses.asdict(recipe), decay_epochs=list(recipe.decay_epochs))
    changed = [f'{key} {saved.get(key)!r} -> {value!r}' for key, value in now.items() if saved.get(key) != value]
    if changed:
        raise UsageError(f'--resume continues the run in {checkpoint.parent} with the recipe it was started with, '
                         f'but these settings differ from its checkpoint: {", ".join(changed)}. Resume with the '
                         'same --recipe and flags, or start again with --overwrite')


def run(args: argparse.Namespace) -> int:
    """Train (or resume) the stage-1 WAE; save it to ``--output`` once every epoch is done. Returns 0."""
    check_arguments(args)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    output = Path(args.output)
    checkpoint_dir = Path(args.checkpoint_dir or f'{output}.run')
    context = init_distributed(args.device)
    # --overwrite removes the old run only once the data, the recipe and the model were all accepted (below)
    check_fresh_output(checkpoint_dir, args.resume, args.overwrite, final_output=output, primary=context.is_primary)
    recipe = recipe_from_args(args)
    if args.resume:
        check_resume_recipe(checkpoint_dir / LAST_CHECKPOINT, recipe)
    torch.manual_seed(args.seed)
    if args.dataset == FASHION_MNIST:
        # native resolution, the classifiers' own normalisation: no crops, no resizing
        roots = [FASHION_MNIST]
        dataset = FashionMNIST('train', hflip=not args.no_hflip)
    else:
        roots = list(args.data_dir)
        if args.photographs:
            roots += sorted({str(p.parent) for p in find_photographs()})
        transform = paper_crop_transform(args.img_size, args.resize, not args.no_hflip, args.mean, args.std)
        dataset = create_image_dataset(roots, transform, dataset=args.dataset, split=args.split,
                                       repeats=args.epoch_repeats)
    loader = create_train_loader(dataset, recipe.batch_size, seed=args.seed, workers=args.workers)
    if context.is_primary:
        _logger.info('%d images per epoch from %s; %d steps per epoch on %d process(es)',
                     len(dataset), roots, len(loader), context.world_size)
        _logger.info('recipe %s: %s', args.recipe, recipe)

    wae = WaveletLikeAutoEncoder(in_chans=3, padding_mode=recipe.padding_mode).to(context.device)
    summary = checkpoint_dir / SUMMARY_CSV
    if args.overwrite and not args.resume and context.is_primary:
        clear_run(checkpoint_dir)  # last: everything above was accepted; the old output is replaced only at the end

    def log_epoch(epoch: int, metrics: dict) -> None:
        if context.is_primary:
            _logger.info('epoch %d: %s', epoch, {k: round(v, 6) for k, v in metrics.items()})
            update_summary(epoch, {k: v for k, v in metrics.items() if k != 'epoch'}, {}, str(summary),
                           write_header=not summary.exists())

    train_autoencoder(
        wrap_ddp(wae, context, training_forward=False), loader, recipe,
        device=context.device, checkpoint_dir=checkpoint_dir, checkpoint_every=args.checkpoint_interval,
        resume=args.resume, max_updates=args.max_updates, progress=not args.no_progress,
        on_epoch_end=log_epoch)
    if context.is_primary:
        if read_train_state(checkpoint_dir).epoch >= recipe.epochs:
            save_wae(wae, output, overwrite=True)
            _logger.info('saved the stage-1 WAE to %s', output)
        else:
            _logger.info('stopped early; checkpoint in %s (continue with --resume)', checkpoint_dir)
    cleanup_distributed()
    return 0
