"""Run a Python script, e.g. one of timm's own scripts, with the wae_* models registered.

    wae-timm run /path/to/timm/validate.py /data/imagenet --model wae_resnet50 --checkpoint CKPT
    wae-timm run /path/to/timm/benchmark.py --model wae_resnet50 --bench inference
    wae-timm run /path/to/timm/train.py /data/imagenet --model wae_resnet50 -b 32 --lr 0.1
    torchrun --nproc_per_node 8 -m wae_timm run /path/to/timm/train.py /data/imagenet --model wae_resnet50

timm's scripts (train.py, validate.py, benchmark.py, inference.py, onnx_export.py)
live in its git repository, not in its wheel. The script runs as __main__ after
`import wae_timm`, with sys.argv = [SCRIPT, ARGS...] (every argument after
SCRIPT goes to the script untouched) and the script's folder first on sys.path
(timm's scripts import their siblings). The script's exit status is this
command's.
"""
import argparse
import runpy
import sys
from pathlib import Path
from typing import Sequence

__all__ = ['add_arguments', 'run', 'run_script']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``SCRIPT`` and the arguments passed on to it (shown for --help; the caller hands them over verbatim)."""
    parser.add_argument('script', metavar='SCRIPT', help='a Python file, e.g. /path/to/timm/validate.py')
    parser.add_argument('args', metavar='ARGS', nargs=argparse.REMAINDER, help="the script's arguments")


def _exit_status(code: object) -> int:
    """The process exit status Python gives ``SystemExit(code)``: None -> 0, an int as is, else print it -> 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _script_problem(path: Path) -> str:
    if not path.exists():
        return f'script {path} not found'
    if not path.is_file():
        return f'script {path} is not a file'
    return ''


def run_script(script: str, args: Sequence[str] = ()) -> int:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *args]``; return its exit status.

    The wae_* models are registered first, and the script's folder is put first
    on ``sys.path``. ``sys.argv`` and ``sys.path`` are restored afterwards.

    Raises:
        FileNotFoundError: ``script`` is not a file.
    """
    path = Path(script)
    problem = _script_problem(path)
    if problem:
        raise FileNotFoundError(problem)
    import wae_timm  # noqa: F401  registers the wae_* models and baselines with timm
    saved_argv, saved_path = sys.argv, sys.path[:]
    sys.argv = [script, *args]
    sys.path.insert(0, str(path.resolve().parent))
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as exit_:
        return _exit_status(exit_.code)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``args.script`` with ``args.args``; a missing script is a one-line error and status 2."""
    problem = _script_problem(Path(args.script))
    if problem:
        print(f'wae-timm run: error: {problem}', file=sys.stderr)
        return 2
    return run_script(args.script, args.args)
