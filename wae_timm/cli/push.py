"""Publish a trained checkpoint as a pretrained tag on the Hugging Face Hub.

    # write the folder only (model.safetensors, config.json, README.md)
    wae-timm push output/train/.../model_best.pth.tar wae_resnet18.fmnist --out hub/wae_resnet18.fmnist --dry-run
    # upload it (needs `huggingface-cli login` or --token)
    wae-timm push output/train/.../model_best.pth.tar wae_resnet18.fmnist --out hub/wae_resnet18.fmnist
    # offline machine: put the folder into the local HF cache instead
    wae-timm push CKPT wae_resnet18.fmnist --out hub/wae_resnet18.fmnist --dry-run --to-cache
    # the folder shipped in the repository: fp16 weights, measured, the card bound to them
    wae-timm push CKPT wae_resnet18.fmnist --out hub/wae_resnet18.fmnist --dtype float16 --measure --dry-run

The checkpoint may come from timm's train.py (EMA weights are taken when
present, --no-ema for the raw ones), from the project's trainer, or be a
.safetensors state dict; it is read with weights_only=True. --measure scores
the written model.safetensors on the tag's test split and records the rows,
with the file's sha256, in results/pretrained_weights.csv; the card quotes
accuracy only from such a row. The optimizer is
never published; the WAE decoder only for tags that keep it (see
wae_timm.models.pretrained.PretrainedTag.keeps_decoder). From a checkout,
`python tools/push_to_hub.py` is the same command.
"""
import argparse
import ast
import sys
from pathlib import Path
from typing import Any, Dict, Sequence

from ..publish.hub import EXPORT_DTYPES, EXPORTED_FILES, export_checkpoint, find_tag, install_folder, upload_folder
from . import UsageError

__all__ = ['add_arguments', 'parse_kwargs', 'run']


def parse_kwargs(items: Sequence[str]) -> Dict[str, Any]:
    """train.py-style ``k=v`` pairs; values are Python literals where they parse as one, text otherwise."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep:
            raise UsageError(f'--model-kwargs expects key=value, got {item!r}')
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm push``."""
    parser.add_argument('checkpoint', type=Path)
    parser.add_argument('tag', help='registered <model>.<tag>, e.g. wae_resnet18.fmnist')
    parser.add_argument('--out', type=Path, required=True, help='folder to write (must be empty or new)')
    parser.add_argument('--model-kwargs', nargs='*', default=[], help='k=v arguments the checkpoint was trained with (training-only ones, e.g. wae_weights, '
                             'freeze_wae, aux_loss_weight, are not published)')
    parser.add_argument('--no-ema', action='store_true', help='publish state_dict, not state_dict_ema')
    parser.add_argument('--results-dir', type=Path, default=None,
                        help="numbers for the model card (default: ./results, else the checkout's results/)")
    parser.add_argument('--dtype', choices=sorted(EXPORT_DTYPES), default='float32',
                        help='floating-point type of model.safetensors (float16 halves its size)')
    parser.add_argument('--measure', action='store_true',
                        help="score the written weights on the tag's test split; record them in results/")
    parser.add_argument('--overwrite', action='store_true', help='replace the files of a non-empty --out')
    parser.add_argument('--dry-run', action='store_true', help='write the folder, upload nothing')
    parser.add_argument('--to-cache', action='store_true', help='also install the folder into the local HF cache')
    parser.add_argument('--repo-id', default=None, help="Hub repo (default: the tag's hf_hub_id)")
    parser.add_argument('--token', default=None)
    parser.add_argument('--private', action='store_true')


def run(args: argparse.Namespace) -> int:
    """Write the tag's folder, then optionally install it into the HF cache and upload it; returns 0."""
    model_kwargs = parse_kwargs(args.model_kwargs)
    tag = find_tag(args.tag)
    folder = export_checkpoint(
        args.checkpoint, tag.name, args.out, model_kwargs=model_kwargs,
        use_ema=not args.no_ema, overwrite=args.overwrite, results_dir=args.results_dir,
        dtype=EXPORT_DTYPES[args.dtype], measure=args.measure)
    print(f'wrote {list(EXPORTED_FILES)} to {folder}')
    others = sorted(p.name for p in folder.iterdir() if p.name not in EXPORTED_FILES)
    if others:
        print(f'note: {folder} also holds {others}, which are not published', file=sys.stderr)
    repo_id = args.repo_id or tag.hf_hub_id
    if args.to_cache:
        snapshot, _ = install_folder(folder, repo_id=repo_id)
        print(f'installed into the HF cache as {repo_id}: {snapshot}')
    if not args.dry_run:
        print(f'uploaded: {upload_folder(folder, repo_id, token=args.token, private=args.private)}')
    if not tag.has_weights:
        print(f'note: {tag.name} is registered without weights; set has_weights=True for it in '
              'wae_timm/models/pretrained.py once the upload is live', file=sys.stderr)
    return 0
