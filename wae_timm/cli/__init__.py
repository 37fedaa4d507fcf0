"""The ``wae-timm`` command line: the project's tools, installed with the package.

    wae-timm train --dataset fashion_mnist --model wae_resnet18 --stage 3 --lr 0.05 -b 128 --output runs/fmnist
    wae-timm validate --model wae_resnet18 --checkpoint runs/fmnist/model.safetensors --dataset fashion_mnist
    wae-timm flops resnet50 wae_resnet50
    wae-timm run /path/to/timm/validate.py /data/imagenet --model wae_resnet50 --checkpoint CKPT
    python -m wae_timm COMMAND ...                     # the same, without the console script

Each command is one module of this package with ``add_arguments(parser)`` and
``run(args) -> int``; only the module of the command given is imported. A
command reports bad arguments by raising :class:`UsageError`, which prints the
command's usage and the message and exits with status 2, as argparse does.
"""
import argparse
import importlib
import os
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence

from .. import __version__
from ..models.pretrained import NoPretrainedWeightsError

__all__ = ['main', 'console_main', 'parse_args', 'build_parser', 'UsageError', 'COMMANDS']


class UsageError(ValueError):
    """Bad command-line input, found after parsing; the message names the argument."""


class Command(NamedTuple):
    module: str  # module of this package holding add_arguments(parser) and run(args)
    summary: str  # one line for ``wae-timm --help``


COMMANDS: Dict[str, Command] = {
    'train': Command('train', "stages 2 and 3 with the paper's loss CE(s_L) + CE(s_c) (+ gamma * L_t)"),
    'train-wae': Command('train_wae', 'stage 1: the WAE alone with the transform loss, saved as safetensors'),
    'validate': Command('validate', 'top-1/top-5 accuracy and loss of a model on an image folder or Fashion-MNIST'),
    'benchmark': Command('benchmark', 'CPU/CUDA speed of the WAE models, their backbones and the baselines'),
    'flops': Command('flops', 'params, fvcore GFLOPs and the WAE components per model'),
    'push': Command('push', 'publish a trained checkpoint as a pretrained tag on the Hugging Face Hub'),
    'install-weights': Command('install_weights', 'install exported model folders (hub/) into the local HF cache'),
    'demo': Command('demo', 'decompose a photograph with a WAE model and compare its cost with the backbone'),
    'run': Command('run', "run one of timm's scripts (train.py, validate.py, ...) with the wae_* models registered"),
}

_DESCRIPTION = """The Wavelet-like Auto-Encoder's tools; `wae-timm COMMAND --help` for each.

    wae-timm train-wae --dataset fashion_mnist -b 64 --epochs 1 --lr 1e-5 --output runs/fmnist_wae.safetensors
    wae-timm train --dataset fashion_mnist --model wae_resnet18 --stage 3 --lr 0.05 -b 128 --output runs/fmnist
    wae-timm validate --model wae_resnet18 --checkpoint runs/fmnist/model.safetensors --dataset fashion_mnist
    wae-timm run /path/to/timm/validate.py /data/imagenet --model wae_resnet50 --checkpoint CKPT

`python -m wae_timm COMMAND ...` is the same.
"""

# `run` hands everything after SCRIPT to the script untouched, options included
_PASS_THROUGH = 'run'


def _command_of(argv: Sequence[str]) -> Optional[str]:
    return argv[0] if argv and argv[0] in COMMANDS else None


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``wae-timm`` parser; only ``command``'s module is imported and adds its arguments.

    The other commands are listed (for ``wae-timm --help``) but take no arguments,
    so parse only a command line that starts with ``command``.
    """
    parser = argparse.ArgumentParser(
        prog='wae-timm', description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--version', action='version', version=f'wae-timm {__version__}')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, spec in COMMANDS.items():
        if name != command:
            commands.add_parser(name, help=spec.summary)
            continue
        module = importlib.import_module(f'{__name__}.{spec.module}')
        sub = commands.add_parser(name, help=spec.summary, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse a full command line (``['train', '--model', ...]``); ``argv`` None reads ``sys.argv[1:]``.

    The namespace also holds ``argv`` (the command line as given). For ``run``,
    ``args`` is everything after the script, options included.
    """
    line: List[str] = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(line)
    parser = build_parser(command)
    if command == _PASS_THROUGH:
        args = parser.parse_args(line[:2])  # `run SCRIPT` (or `run -h`); the rest belongs to the script
        args.args = line[2:]
    else:
        args = parser.parse_args(line)
    args.argv = line
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``wae-timm`` command; returns its exit status (argparse exits with 2 on bad arguments).

    Errors other than bad arguments propagate, for callers in Python; :func:`console_main` is the
    command line's entry point.
    """
    args = parse_args(argv)
    try:
        return args._run(args)
    except UsageError as err:
        args._parser.error(str(err))


# what a user can cause and fix (a missing or existing file, a bad value, weights that are not there):
# one line and exit 2 at the command line, not a traceback
USER_ERRORS = (OSError, ValueError, NoPretrainedWeightsError)
DEBUG_ENV = 'WAE_TIMM_DEBUG'


def console_main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``wae-timm`` console script: :func:`main`, with user errors as one line on stderr and exit 2.

    ``WAE_TIMM_DEBUG=1`` shows the full traceback instead.
    """
    try:
        return main(argv)
    except USER_ERRORS as err:
        if os.environ.get(DEBUG_ENV, '') not in ('', '0'):
            raise
        command = (list(argv) if argv is not None else sys.argv[1:])[:1]
        print(f"wae-timm {' '.join(command)}: error: {err} ({type(err).__name__}; {DEBUG_ENV}=1 shows the traceback)",
              file=sys.stderr)
        return 2
