"""Top-1/top-5 accuracy and loss of one model on an image folder or Fashion-MNIST, as timm's validate.py reports them.

    wae-timm validate --model wae_resnet18 --checkpoint runs/fmnist/model.safetensors --dataset fashion_mnist
    wae-timm validate --model wae_resnet18.fmnist --pretrained --dataset fashion_mnist
    wae-timm validate /data/imagenet --model wae_resnet50 --checkpoint runs/stage3/model.safetensors -b 64

The model comes from timm.create_model (random weights unless --pretrained or
--checkpoint). An image folder is read by timm's create_dataset (class folders
under --split, default validation) and transformed by the model's own eval
transform (resize, center crop, normalise; --img-size overrides the size).
Fashion-MNIST is its real 10k test split (or train), 28 px padded to 32,
normalised as wae_timm.train.FashionMNIST does for training. Scores are the
model's plain forward in eval mode (for the WAE models (s_L + s_c) / 2).
Prints timm's ` * Acc@1 ... Acc@5 ...` line, then `--result` and the results as JSON.
"""
import argparse
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import timm
import torch
from timm.data import create_transform, resolve_data_config
from timm.utils import ParseKwargs
from torch.utils.data import Dataset, Subset

from ..data import FashionMNIST, create_eval_loader, create_image_dataset
from ..models.checkpoint_files import load_weights_file
from ..train import evaluate
from ..train.classifier import FASHION_MNIST
from . import UsageError

__all__ = ['add_arguments', 'run', 'validate']

_logger = logging.getLogger('validate')

FASHION_MNIST_SPLITS = ('train', 'test')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm validate`` (timm validate.py's names)."""
    data = parser.add_argument_group('data')
    data.add_argument('data', nargs='?', default=None, metavar='DIR', help='dataset root (same as --data-dir)')
    data.add_argument('--data-dir', default=None, metavar='DIR', help='image folder with class folders under --split')
    data.add_argument('--dataset', default='', metavar='NAME',
                      help=f"'' (image folder or tar, the default), '{FASHION_MNIST}', or a timm dataset type")
    data.add_argument('--split', default=None,
                      help=f"split to evaluate (default: validation; {FASHION_MNIST}: test, or train)")
    data.add_argument('--num-samples', type=int, default=None, metavar='N', help='evaluate the first N samples only')
    data.add_argument('--img-size', type=int, default=None, metavar='N',
                      help="input size of an image folder (default: the model's)")
    data.add_argument('-b', '--batch-size', type=int, default=256, metavar='N')
    data.add_argument('-j', '--workers', type=int, default=2, metavar='N')
    model = parser.add_argument_group('model')
    model.add_argument('--model', '-m', required=True, metavar='NAME',
                       help='timm model name, optionally with a pretrained tag (wae_resnet18.fmnist)')
    weights = model.add_mutually_exclusive_group()
    weights.add_argument('--pretrained', action='store_true', help="the model's pretrained weights")
    weights.add_argument('--checkpoint', default='', metavar='FILE',
                         help="weights from a file: .safetensors, or a .pth.tar of timm's or this project's trainer "
                              '(EMA weights when present)')
    model.add_argument('--num-classes', type=int, default=None,
                       help="classifier outputs (default: the pretrained weights' with --pretrained, else the "
                            "dataset's number of classes)")
    model.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs,
                       help='k=v arguments of the model, Python literals (e.g. low_hidden=(1024,))')
    job = parser.add_argument_group('run')
    job.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    job.add_argument('--no-progress', action='store_true')


def _check_arguments(args: argparse.Namespace) -> Tuple[Optional[str], str]:
    """``(data_dir, split)`` after the checks that need no files; raises :class:`UsageError` naming the argument."""
    if args.data and args.data_dir and args.data != args.data_dir:
        raise UsageError(f'give the dataset root once: DIR {args.data} and --data-dir {args.data_dir} differ')
    data_dir = args.data_dir or args.data
    for name in ('batch_size', 'num_samples', 'img_size', 'num_classes'):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f'--{name.replace("_", "-")} must be positive, got {value}')
    if args.workers < 0:
        raise UsageError(f'--workers must be >= 0, got {args.workers}')
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise UsageError(f'--checkpoint {args.checkpoint} is not a file')
    if args.dataset == FASHION_MNIST:
        if data_dir:
            raise UsageError(f'--dataset {FASHION_MNIST} reads the installed dataset: drop --data-dir/DIR {data_dir}')
        if args.img_size is not None:
            raise UsageError(f'--img-size applies to image folders; --dataset {FASHION_MNIST} is 32x32 '
                             '(28 px padded), as the models were trained on it')
        split = args.split or 'test'
        if split not in FASHION_MNIST_SPLITS:
            raise UsageError(f'--split for --dataset {FASHION_MNIST} must be one of {FASHION_MNIST_SPLITS}, '
                             f'got {split!r}')
        return None, split
    if not data_dir:
        raise UsageError(f'give --data-dir DIR (an image folder) or --dataset {FASHION_MNIST}')
    if not args.dataset and not Path(data_dir).is_dir():
        raise UsageError(f'--data-dir {data_dir} is not a folder')
    return data_dir, args.split or 'validation'


def _num_classes(dataset: Dataset) -> Optional[int]:
    """Classes of a timm image-folder dataset (None when its reader does not say)."""
    class_to_idx = getattr(getattr(dataset, 'reader', None), 'class_to_idx', None)
    return len(class_to_idx) if class_to_idx else None


def validate(args: argparse.Namespace) -> Dict[str, Any]:
    """Build the model and dataset the flags describe, evaluate, and return timm validate.py's results dict.

    Keys: model, top1, top1_err, top5, top5_err, loss, count, param_count (millions), img_size,
    crop_pct and interpolation (None for Fashion-MNIST, which is padded, never resized).
    Raises :class:`UsageError` for bad flags, and when the model has fewer outputs than the dataset has classes.
    """
    data_dir, split = _check_arguments(args)
    if args.dataset == FASHION_MNIST:
        dataset, dataset_classes = FashionMNIST(split), 10
    else:
        dataset = create_image_dataset(data_dir, None, args.dataset, split, is_training=False)
        dataset_classes = _num_classes(dataset)

    num_classes = args.num_classes or (None if args.pretrained else dataset_classes)
    kwargs = dict(args.model_kwargs)
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    model = timm.create_model(args.model, pretrained=args.pretrained, **kwargs)
    if args.checkpoint:  # loaded here, not by create_model(checkpoint_path=), so the errors of any model name the file
        load_weights_file(model, args.checkpoint, '--checkpoint')
    model_classes = getattr(model, 'num_classes', None)
    if dataset_classes and model_classes is not None and model_classes < dataset_classes:
        raise UsageError(f'{args.model} has {model_classes} outputs but the dataset {dataset_classes} classes; '
                         'give --num-classes (or weights trained on this dataset)')

    if args.dataset == FASHION_MNIST:
        img_size, crop_pct, interpolation = dataset.images.shape[-1], None, None
    else:
        data_config = resolve_data_config({'img_size': args.img_size} if args.img_size else {}, model=model)
        dataset.transform = create_transform(**data_config, is_training=False)
        img_size, crop_pct, interpolation = (data_config['input_size'][-1], data_config['crop_pct'],
                                             data_config['interpolation'])
    if args.num_samples is not None and args.num_samples < len(dataset):
        dataset = Subset(dataset, range(args.num_samples))

    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    param_count = sum(p.numel() for p in model.parameters())
    _logger.info('%s: %.2fM parameters; %d samples of %s split %s on %s', args.model, param_count / 1e6,
                 len(dataset), data_dir or FASHION_MNIST, split, device)
    loader = create_eval_loader(dataset, args.batch_size, workers=args.workers, pin_memory=device.type == 'cuda')
    metrics = evaluate(model.to(device), loader, device=device, progress=not args.no_progress)
    return OrderedDict(
        model=args.model,
        top1=round(metrics['top1'], 4), top1_err=round(100 - metrics['top1'], 4),
        top5=round(metrics['top5'], 4), top5_err=round(100 - metrics['top5'], 4),
        loss=round(metrics['loss'], 6), count=metrics['count'],
        param_count=round(param_count / 1e6, 2), img_size=img_size, crop_pct=crop_pct, interpolation=interpolation)


def run(args: argparse.Namespace) -> int:
    """Validate, print the summary line and the results as JSON; returns 0."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    results = validate(args)
    print(' * Acc@1 {:.3f} ({:.3f}) Acc@5 {:.3f} ({:.3f}) Loss {:.4f}'.format(
        results['top1'], results['top1_err'], results['top5'], results['top5_err'], results['loss']))
    print(f'--result\n{json.dumps(results, indent=4)}')
    return 0
