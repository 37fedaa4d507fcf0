"""Speed benchmark: backbone at 224 and 112, WAE model and baselines, interleaved in one process.

    wae-timm benchmark --overwrite
    PYTHONPATH=. python tools/benchmark.py --overwrite     # the same, from a checkout
    wae-timm benchmark --backends jit compile onnxruntime --overwrite     # every backend, fair ratios
    wae-timm benchmark --device cuda --precision fp32 bf16 --backends compile --overwrite   # GPU: batch 1 and 256
    wae-timm benchmark --profile --overwrite     # per-component profile of the WAE models

writes results/benchmark_cpu.{csv,md,png} and benchmark_cpu_timm.csv (timm benchmark.py's columns);
on CUDA results/benchmark_gpu.*; with --profile results/profile_<device>.{csv,md}. See
wae_timm/experiments/speed.py for what is measured, speed_report.py for what is written, and
profile.py for the profile.
"""
import argparse
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..experiments.speed import PRECISIONS, check_precision, optimised_step, run_benchmark
from ..experiments.speed_report import check_writable, environment, write_results
from ..layers.autoencoder import PADDING_MODES
from . import UsageError

__all__ = ['add_arguments', 'run', 'resolve_device', 'check_arguments', 'default_batch_sizes', 'default_name']

GRAPH_BACKENDS = ('jit', 'compile', 'onnxruntime')
# per device: batch sizes when --batch-sizes is not given (CUDA: the 1 and 256)
DEFAULT_BATCH_SIZES = {'cpu': [1, 32], 'cuda': [1, 256]}
PROFILE_MODELS = ['wae_resnet50', 'wae_vgg16']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm benchmark``."""
    parser.add_argument('--backbones', nargs='+', default=['resnet50', 'vgg16'],
                        help='backbones whose WAE model and baselines are compared (default: resnet50 vgg16)')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=None,
                        help='default: 1 32 on CPU, 1 256 on CUDA')
    parser.add_argument('--rounds', nargs='+', type=int, default=None,
                        help='timed calls per model, one per batch size (default: 10 at batch 1, 2 otherwise; '
                             'profile: 10 and 3)')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed calls per model before timing (TorchScript optimises after its 2nd call)')
    parser.add_argument('--backends', nargs='+', choices=GRAPH_BACKENDS, default=['jit'],
                        help="graph backends of every model's fast path, each next to eager (default: jit; the "
                             'backbone at 224 and the WAE model run every step in the batch-1 ablation)')
    parser.add_argument('--backend', choices=GRAPH_BACKENDS, default=None,
                        help='one graph backend (the same as --backends with one value)')
    parser.add_argument('--precision', nargs='+', choices=list(PRECISIONS), default=['fp32'],
                        help='weights and inputs in this dtype; several: one phase each, in one file '
                             '(bf16: not with onnxruntime)')
    parser.add_argument('--wae-padding', choices=PADDING_MODES, default='zeros',
                        help='how the models with a learned WAE pad (reflect: as the shipped photos WAE)')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto' (CUDA when present)")
    parser.add_argument('--threads', type=int, default=0, help='torch threads (default: torch default)')
    parser.add_argument('--clock', choices=['wall', 'thread'], default='wall',
                        help="CPU timer: wall time, or the calling thread's CPU time (robust on a shared "
                             "machine; use with --threads 1)")
    parser.add_argument('--profile', action='store_true',
                        help='instead of the benchmark, profile the WAE models component by component '
                             '(encoder, low branch, high branch, heads; eager, fused, fused + jit)')
    parser.add_argument('--profile-models', nargs='+', default=PROFILE_MODELS,
                        help=f"models profiled with --profile (default: {' '.join(PROFILE_MODELS)})")
    parser.add_argument('--out-dir', type=Path, default=Path('results'))
    parser.add_argument('--name', default='',
                        help='file name stem (default: benchmark_cpu / benchmark_gpu; profile_cpu / profile_gpu)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing result files')
    parser.add_argument('--no-progress', action='store_true')


def resolve_device(requested: str, cuda_available: Optional[bool] = None) -> str:
    """``'cpu'`` or ``'cuda[:N]'`` for ``--device``; 'auto' is CUDA when present. Raises :class:`UsageError`
    for CUDA without a GPU (no silent fallback: the results would be CPU numbers named as GPU ones)."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if requested == 'auto':
        return 'cuda' if available else 'cpu'
    if requested == 'cpu':
        return 'cpu'
    if requested.startswith('cuda'):
        if not available:
            raise UsageError(f'--device {requested}: no CUDA device is available here '
                             "(torch.cuda.is_available() is False); use --device cpu or auto")
        return requested
    raise UsageError(f"--device {requested!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


def default_batch_sizes(device: str) -> List[int]:
    return list(DEFAULT_BATCH_SIZES['cuda' if device.startswith('cuda') else 'cpu'])


def default_name(device: str, profile: bool) -> str:
    """``benchmark_cpu`` / ``benchmark_gpu`` (``profile_*`` with ``--profile``)."""
    return f"{'profile' if profile else 'benchmark'}_{'gpu' if device.startswith('cuda') else 'cpu'}"


def check_arguments(args: argparse.Namespace, device: str) -> None:
    """Raise :class:`UsageError` for a bad combination: rounds per batch size, positive counts, backends
    the device or precision cannot run."""
    if args.backend is not None:
        args.backends = [args.backend]
    if args.batch_sizes is None:
        args.batch_sizes = default_batch_sizes(device)
    if args.rounds is not None and len(args.rounds) != len(args.batch_sizes):
        raise UsageError(f'--rounds needs one count per batch size ({len(args.batch_sizes)}), got {len(args.rounds)}')
    if any(b < 1 for b in args.batch_sizes) or any(r < 1 for r in args.rounds or []):
        raise UsageError('batch sizes and rounds must be positive')
    if args.threads < 0 or args.warmup < 0:
        raise UsageError('--threads and --warmup must be >= 0')
    if args.clock == 'thread' and device.startswith('cuda'):
        raise UsageError('--clock thread times CPU threads; on CUDA the timer is CUDA events (drop --clock)')
    if args.profile and args.precision != ['fp32']:
        raise UsageError('--profile runs fp32 only (drop --precision)')
    try:
        for precision in args.precision:
            check_precision(precision, torch.device(device), args.backends)
    except ValueError as err:
        raise UsageError(str(err)) from err


def run(args: argparse.Namespace) -> int:
    """Time every model (or, with ``--profile``, every component), write the results, print the markdown.

    Returns 0; exits with an error message when a result file exists and ``--overwrite`` is not given.
    """
    device = resolve_device(args.device)
    check_arguments(args, device)
    # torch.jit's deprecation notices, once per scripted model, would bury the progress bars
    warnings.filterwarnings('ignore', category=FutureWarning, module=r'torch\.jit')
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.name or default_name(device, args.profile)
    rounds: Optional[Dict[int, int]] = dict(zip(args.batch_sizes, args.rounds)) if args.rounds else None
    # the command that regenerates these files from a checkout, as the results record it
    command = ('PYTHONPATH=. python tools/benchmark.py ' + ' '.join(args.argv[1:])).strip()
    env = environment(device)
    env['timer'] = 'CUDA events' if device.startswith('cuda') else f'{args.clock} clock'
    if args.profile:
        return _run_profile(args, device, name, rounds, env, command)
    check_writable(args.out_dir, name, args.overwrite)  # before a long run
    rows = []
    for precision in args.precision:
        rows += run_benchmark(args.backbones, args.batch_sizes, rounds, args.backends, device=device,
                              warmup=args.warmup, progress=not args.no_progress, clock=args.clock,
                              precision=precision, wae_padding=args.wae_padding)
    env['precision'] = ', '.join(args.precision)
    env['WAE padding'] = args.wae_padding
    paths = write_results(rows, args.out_dir, name, env,
                          [optimised_step(b) for b in args.backends], command, overwrite=args.overwrite)
    print(paths['md'].read_text())
    print('wrote', ', '.join(str(p) for p in paths.values()))
    return 0


def _run_profile(args: argparse.Namespace, device: str, name: str, rounds: Optional[Dict[int, int]],
                 env: Dict[str, str], command: str) -> int:
    from ..experiments.profile import profile_components, profile_paths, write_profile
    from ..files import refuse_to_overwrite
    refuse_to_overwrite(profile_paths(args.out_dir, name).values(), args.overwrite)  # before a long run
    rows = profile_components(args.profile_models, args.batch_sizes, rounds, device=device, warmup=args.warmup,
                              clock=args.clock, progress=not args.no_progress)
    paths = write_profile(rows, args.out_dir, name, env, command, overwrite=args.overwrite)
    print(paths['md'].read_text())
    print('wrote', ', '.join(str(p) for p in paths.values()))
    return 0
