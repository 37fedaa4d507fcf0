"""Stages 2 and 3 with the paper's exact loss CE(s_L) + CE(s_c) (+ gamma * L_t), on one process or many.

Flag names follow timm's train.py. Paper recipe for WAE-ResNet-50 on ImageNet (see README "Training"):

    # stage 2: classifier on the frozen stage-1 WAE
    torchrun --nproc_per_node 8 -m wae_timm train --data-dir /data/imagenet --model wae_resnet50 --stage 2 \\
        --model-kwargs wae_weights=wae_imagenet.safetensors -b 32 --lr 0.1 --output runs/stage2
    # stage 3: joint fine-tuning, gamma = 0.001, lr 1e-4
    torchrun --nproc_per_node 8 -m wae_timm train --data-dir /data/imagenet --model wae_resnet50 --stage 3 \\
        --model-kwargs wae_weights=wae_imagenet.safetensors \\
        --initial-checkpoint runs/stage2/model.safetensors -b 32 --lr 1e-4 --output runs/stage3

    # Fashion-MNIST at native resolution (28 px padded to 32), CPU
    wae-timm train --dataset fashion_mnist --model wae_resnet18 --stage 3 --lr 0.05 -b 128 \\
        --epochs 10 --sched cosine --output runs/fmnist
    # after a kill: the same command with --resume

-b is per process (global batch = b x processes). Checkpoints (atomic) every --checkpoint-interval
steps and every epoch in --output/last.pth.tar; final weights in --output/model.safetensors.
(From a checkout, `python tools/train.py` and `torchrun ... tools/train.py` are the same command.)
"""
import argparse
import dataclasses
import logging

from timm.utils import ParseKwargs

from ..train import cleanup_distributed
from ..train.classifier import FASHION_MNIST, ClassifierTrainConfig, train_classifier

__all__ = ['add_arguments', 'config_from_args', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm train``: timm train.py's names for the fields of :class:`ClassifierTrainConfig`."""
    defaults = ClassifierTrainConfig(output='')
    data = parser.add_argument_group('data')
    data.add_argument('data', nargs='?', default=None, help='dataset root (same as --data-dir)')
    data.add_argument('--data-dir', default=None, help='image folder with train/ and validation/ class folders')
    data.add_argument('--dataset', default='', help=f"'' (image folder), '{FASHION_MNIST}', or a timm dataset type")
    data.add_argument('--train-split', default=defaults.train_split)
    data.add_argument('--val-split', default=defaults.val_split)
    data.add_argument('--train-samples', type=int, default=None, help='use only the first N training samples')
    data.add_argument('--val-samples', type=int, default=None, help='evaluate on the first N samples only')
    data.add_argument('--num-classes', type=int, default=None, help='default: the dataset\'s')
    data.add_argument('--img-size', type=int, default=None, help="default: the model's (224)")
    data.add_argument('--aug', choices=('paper', 'timm'), default=defaults.aug,
                      help="paper: resize + random crop + flip; timm: timm's create_transform (RandomResizedCrop, ...)")
    data.add_argument('--hflip', type=float, default=defaults.hflip)
    data.add_argument('-j', '--workers', type=int, default=defaults.workers)
    model = parser.add_argument_group('model')
    model.add_argument('--model', default=defaults.model)
    model.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs,
                       help='k=v arguments of the model, Python literals (e.g. wae_weights=w.safetensors freeze_wae=True)')
    model.add_argument('--stage', type=int, choices=(2, 3), default=None,
                       help='2: freeze_wae=True (needs wae_weights); 3: aux_loss_weight=0.001 (explicit kwargs win)')
    model.add_argument('--pretrained', action='store_true', help="the model's own pretrained weights")
    model.add_argument('--pretrained-path', default=None, help='pretrained weights from this file')
    model.add_argument('--initial-checkpoint', default='', help='start from these weights (e.g. stage 2 -> stage 3)')
    model.add_argument('--drop', type=float, default=defaults.drop)
    model.add_argument('--drop-path', type=float, default=None)
    opt = parser.add_argument_group('optimisation (paper defaults for ResNet-50; VGG16: --lr 0.01)')
    opt.add_argument('--epochs', type=int, default=defaults.epochs)
    opt.add_argument('-b', '--batch-size', type=int, default=defaults.batch_size, help='per process')
    opt.add_argument('-vb', '--validation-batch-size', type=int, default=None)
    opt.add_argument('--opt', default=defaults.opt)
    opt.add_argument('--lr', type=float, default=defaults.lr)
    opt.add_argument('--momentum', type=float, default=defaults.momentum)
    opt.add_argument('--weight-decay', type=float, default=defaults.weight_decay)
    opt.add_argument('--clip-grad', type=float, default=None)
    opt.add_argument('--sched', default=defaults.sched, help='plateau (paper), step, multistep, cosine, ...')
    opt.add_argument('--decay-rate', '--dr', type=float, default=defaults.decay_rate)
    opt.add_argument('--decay-epochs', type=float, default=defaults.decay_epochs)
    opt.add_argument('--decay-milestones', type=int, nargs='+', default=list(defaults.decay_milestones))
    opt.add_argument('--patience-epochs', type=int, default=defaults.patience_epochs)
    opt.add_argument('--warmup-epochs', type=int, default=defaults.warmup_epochs)
    opt.add_argument('--warmup-lr', type=float, default=defaults.warmup_lr)
    opt.add_argument('--min-lr', type=float, default=defaults.min_lr)
    opt.add_argument('--smoothing', type=float, default=defaults.smoothing, help='label smoothing (paper: 0)')
    opt.add_argument('--aux-loss-weight', type=float, default=None, help="gamma (default: the model's own)")
    opt.add_argument('--eval-metric', default=defaults.eval_metric, help='top1, top5 or loss (plateau schedule)')
    kd = parser.add_argument_group('knowledge distillation (beyond the paper; timm train.py names)')
    kd.add_argument('--kd-model-name', default=None, help='teacher, e.g. resnet50 (pretrained weights)')
    kd.add_argument('--kd-pretrained-path', default=None, help="teacher weights from a file instead of the hub")
    kd.add_argument('--kd-temperature', type=float, default=defaults.kd_temperature)
    kd.add_argument('--task-loss-weight', type=float, default=None)
    kd.add_argument('--distill-loss-weight', type=float, default=None)
    job = parser.add_argument_group('run')
    job.add_argument('--output', required=True, help='run folder (checkpoints, summary.csv, model.safetensors)')
    job.add_argument('--resume', action='store_true', help='continue the run in --output from its last checkpoint')
    job.add_argument('--overwrite', action='store_true', help='start again over an existing run in --output')
    job.add_argument('--checkpoint-interval', type=int, default=defaults.checkpoint_interval,
                     help='also checkpoint every N steps (a kill loses at most N steps)')
    job.add_argument('--max-updates', type=int, default=None, help='stop after N optimizer steps in total')
    job.add_argument('--seed', type=int, default=defaults.seed)
    job.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    job.add_argument('--amp', action='store_true')
    job.add_argument('--amp-dtype', choices=('bfloat16', 'float16'), default=defaults.amp_dtype)
    job.add_argument('--no-progress', action='store_true')


def config_from_args(args: argparse.Namespace) -> ClassifierTrainConfig:
    """The run's config from parsed flags; the positional ``data`` fills in for a missing ``--data-dir``."""
    fields = {f.name for f in dataclasses.fields(ClassifierTrainConfig)}
    settings = {k: v for k, v in vars(args).items() if k in fields}
    settings['data_dir'] = args.data_dir or args.data
    settings['progress'] = not args.no_progress
    return ClassifierTrainConfig(**settings)


def run(args: argparse.Namespace) -> int:
    """Train (or resume) one run; returns 0."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    try:
        train_classifier(config_from_args(args))
    finally:
        cleanup_distributed()
    return 0
