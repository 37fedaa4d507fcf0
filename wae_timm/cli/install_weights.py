"""Install exported model folders into the local Hugging Face cache, for offline loading.

    wae-timm install-weights hub/wae_resnet18.fmnist     # tools/setup.sh runs this for each folder in hub/

Afterwards, with HF_HUB_OFFLINE=1, `timm.create_model('wae_resnet18.fmnist',
pretrained=True)`, `hf-hub:wae-timm/wae_resnet18.fmnist` and `torch.hub.load(...,
pretrained=True)` load the folder's weights through timm's own loader. Each
folder is validated first (config.json of a registered tag, readable finite
weights of that model) and only read; installing it again writes nothing. With
network access and the Hub repo published, the same calls download from the
Hub as usual. The code path is `wae-timm push --to-cache`'s.
"""
import argparse
from pathlib import Path

from ..publish.hub import install_folder, read_exported_folder

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm install-weights``."""
    parser.add_argument('folders', type=Path, nargs='+', help='exported folders (model.safetensors, config.json, README.md)')
    parser.add_argument('--cache-dir', type=Path, default=None, help='HF cache (default: HF_HUB_CACHE / HF_HOME)')


def run(args: argparse.Namespace) -> int:
    """Validate every folder, then install each; returns 0."""
    for folder in args.folders:  # all checked before the first write
        read_exported_folder(folder)
    for folder in args.folders:
        snapshot, changed = install_folder(folder, args.cache_dir)
        print(f"{'installed' if changed else 'already installed'}: {folder} -> {snapshot}")
    return 0
