"""FLOP report: params, fvcore GFLOPs (one multiply-add = one FLOP) and the WAE components per model.

    wae-timm flops                                          # the paper's VGG16 / ResNet-50 comparison, markdown
    wae-timm flops resnet50 resnet50@160 wae_resnet50 --format csv
    wae-timm flops --output results/flops.md --output results/flops.csv --overwrite

A model is a timm name (import wae_timm registers the WAE models and baselines),
optionally with @SIZE for another square input size (vgg16@112).
"""
import argparse
import sys
from pathlib import Path

from ..experiments.flops import DEFAULT_REPORT_MODELS, flop_report
from . import UsageError

__all__ = ['add_arguments', 'run', 'FORMATS']

FORMATS = {'.md': 'md', '.csv': 'csv', '.json': 'json'}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm flops``."""
    parser.add_argument('models', nargs='*', default=list(DEFAULT_REPORT_MODELS), metavar='MODEL[@SIZE]',
                        help='timm model names (default: the VGG16 and ResNet-50 comparison of the paper)')
    parser.add_argument('--input-size', type=int, default=224, help='square input size where no @SIZE is given')
    parser.add_argument('--format', choices=sorted(set(FORMATS.values())), default='md', help='stdout format')
    parser.add_argument('--output', action='append', default=[], type=Path,
                        help='write the report to this .md/.csv/.json file (repeatable)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output files')


def check_arguments(args: argparse.Namespace) -> None:
    """Raise :class:`UsageError` for an ``--output`` of unknown suffix, or one that exists without ``--overwrite``."""
    for path in args.output:
        if path.suffix not in FORMATS:
            raise UsageError(f'--output {path}: the suffix must be one of {sorted(FORMATS)}')
        if path.exists() and not args.overwrite:
            raise UsageError(f'--output {path} exists; pass --overwrite to replace it')


def run(args: argparse.Namespace) -> int:
    """Print the report (no ``--output``) or write it to every ``--output`` file; returns 0."""
    check_arguments(args)
    report = flop_report(args.models, args.input_size, progress=True)
    if not args.output:
        sys.stdout.write(report.render(args.format))
    for path in args.output:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.render(FORMATS[path.suffix]))
        print(f'wrote {path}', file=sys.stderr)
    return 0
