"""Speed benchmark: backbone at 224 and 112, WAE model and baselines, interleaved in one process.

    wae-timm benchmark --overwrite
    PYTHONPATH=. python tools/benchmark.py --overwrite     # the same, from a checkout

writes results/benchmark_cpu.{csv,md,png}. See wae_timm/experiments/speed.py for what is measured and
speed_report.py for what is written.
"""
import argparse
import sys
import warnings
from pathlib import Path

import torch

from ..experiments.speed import optimised_step, run_benchmark
from ..experiments.speed_report import check_writable, environment, write_results
from . import UsageError

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm benchmark``."""
    parser.add_argument('--backbones', nargs='+', default=['resnet50', 'vgg16'],
                        help='backbones whose WAE model and baselines are compared (default: resnet50 vgg16)')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 32])
    parser.add_argument('--rounds', nargs='+', type=int, default=None,
                        help='timed calls per model, one per batch size (default: 10 at batch 1, 2 otherwise)')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed calls per model before timing (TorchScript optimises after its 2nd call)')
    parser.add_argument('--backend', choices=['jit', 'compile'], default='jit',
                        help='graph backend of every model\'s fast path (default: jit; the backbone at 224 and '
                             'the WAE model run both backends in the batch-1 ablation)')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto' (CUDA when present)")
    parser.add_argument('--threads', type=int, default=0, help='torch threads (default: torch default)')
    parser.add_argument('--clock', choices=['wall', 'thread'], default='wall',
                        help="CPU timer: wall time, or the calling thread's CPU time (robust on a shared "
                             "machine; use with --threads 1)")
    parser.add_argument('--out-dir', type=Path, default=Path('results'))
    parser.add_argument('--name', default='', help='file name stem (default: benchmark_<device>)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing result files')
    parser.add_argument('--no-progress', action='store_true')


def check_arguments(args: argparse.Namespace) -> None:
    """Raise :class:`UsageError` unless every batch size has one positive round count."""
    if args.rounds is not None and len(args.rounds) != len(args.batch_sizes):
        raise UsageError(f'--rounds needs one count per batch size ({len(args.batch_sizes)}), got {len(args.rounds)}')
    if any(b < 1 for b in args.batch_sizes) or any(r < 1 for r in args.rounds or []):
        raise UsageError('batch sizes and rounds must be positive')


def run(args: argparse.Namespace) -> int:
    """Time every model, write the CSV, markdown and plot, print the markdown; returns 0.

    Exits with an error message when a result file exists and ``--overwrite`` is not given.
    """
    check_arguments(args)
    # torch.jit's deprecation notices, once per scripted model, would bury the progress bars
    warnings.filterwarnings('ignore', category=FutureWarning, module=r'torch\.jit')
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if args.device == 'auto' else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.name or f'benchmark_{device}'
    try:
        check_writable(args.out_dir, name, args.overwrite)
    except FileExistsError as err:
        sys.exit(f'error: {err}')
    rounds = dict(zip(args.batch_sizes, args.rounds)) if args.rounds else None
    rows = run_benchmark(args.backbones, args.batch_sizes, rounds, args.backend, device=device,
                         warmup=args.warmup, progress=not args.no_progress, clock=args.clock)
    # the command that regenerates these files from a checkout, as the results record it
    command = 'PYTHONPATH=. python tools/benchmark.py ' + ' '.join(args.argv[1:])
    env = environment(device)
    env['timer'] = 'CUDA events' if device.startswith('cuda') else f'{args.clock} clock'
    paths = write_results(rows, args.out_dir, name, env, optimised_step(args.backend),
                          command.strip(), overwrite=args.overwrite)
    print(paths['md'].read_text())
    print('wrote', ', '.join(str(p) for p in paths.values()))
    return 0
