#!/usr/bin/env python3
"""Reproduce the paper's ablations (Tables 2, 3, 4, 7) on the real Fashion-MNIST 60k/10k split.

    # the default run: fits ~60 min on 2 CPU cores (the budget picks how many training images)
    PYTHONPATH=. nice -n 10 python tools/reproduce_fashion_mnist.py

    # a fixed size instead of a budget, or fewer rows
    python tools/reproduce_fashion_mnist.py --train-images 60000 --epochs 2
    python tools/reproduce_fashion_mnist.py --rows backbone resize wae_stage2 wae_stage3

Writes results/fashion_mnist_{results,noise}.csv, results/fashion_mnist.md and
results/fashion_mnist_decomposition.png; trained classifiers and the stage-1
WAE go to output/fashion_mnist/*.safetensors. See wae_timm/experiments/reproduction.py
and reproduction_setup.py
for every choice made.
"""
import argparse
import json
import logging
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from wae_timm.experiments.reproduction import run_reproduction
from wae_timm.experiments.reproduction_setup import ROWS, ReproductionConfig


def parse_args(argv=None) -> argparse.Namespace:
    defaults = ReproductionConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--budget-minutes', type=float, default=defaults.budget_minutes,
                        help='wall-clock budget of the whole run; sets the number of training images '
                             '(ignored with --train-images)')
    parser.add_argument('--train-images', type=int, default=None, help='training images per epoch (<= 60000)')
    parser.add_argument('--test-images', type=int, default=None, help='first N test images (default all 10000)')
    parser.add_argument('--epochs', type=int, default=defaults.epochs, help='epochs of every classifier row')
    parser.add_argument('--wae-epochs', type=int, default=defaults.wae_epochs, help='epochs of stage 1')
    parser.add_argument('--backbone', default=defaults.backbone, help='timm CNN of every row')
    parser.add_argument('--batch-size', type=int, default=defaults.batch_size)
    parser.add_argument('--lr', type=float, default=defaults.lr)
    parser.add_argument('--finetune-lr', type=float, default=defaults.finetune_lr)
    parser.add_argument('--gamma', type=float, default=defaults.gamma, help='weight of L_t in stage 3')
    parser.add_argument('--noise-clip', action='store_true', help='clip noisy test images to [0, 1]')
    parser.add_argument('--rows', nargs='+', default=None, choices=[r.key for r in ROWS],
                        help='rows to run (default all)')
    parser.add_argument('--seed', type=int, default=defaults.seed)
    parser.add_argument('--results-dir', type=Path, default=Path('results'))
    parser.add_argument('--checkpoint-dir', type=Path, default=Path('output/fashion_mnist'))
    parser.add_argument('--overwrite', action='store_true', help='replace earlier results and checkpoints')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    names = {f.name for f in fields(ReproductionConfig)}
    config = ReproductionConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None})
    if args.rows:
        config.rows = tuple(args.rows)
    command = ' '.join(['python', 'tools/reproduce_fashion_mnist.py'] + [shlex.quote(a) for a in (argv or sys.argv[1:])])
    summary = run_reproduction(config, args.results_dir, args.checkpoint_dir, command=command,
                               overwrite=args.overwrite, progress=not args.no_progress)
    print(Path(summary['files']['markdown']).read_text())
    print(json.dumps(dict(files=summary['files'], checkpoints=summary['checkpoints'], wae=summary['wae']), indent=1))


if __name__ == '__main__':
    main()
