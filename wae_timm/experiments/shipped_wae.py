"""The stage-1 WAE weights shipped inside the package, and how they were made.

``wae_timm/weights/<name>.safetensors`` holds a :class:`WaveletLikeAutoEncoder`
(encoder and decoder) trained with the transform loss on crops of real
photographs (:mod:`wae_timm.data.photographs`); ``<name>.json`` beside it records
the exact command, data and settings. Any model starts from it with
``timm.create_model('wae_resnet50', wae_weights='<name>')`` or
``WAEWrapper(..., wae_weights='<name>')``.

:func:`train_on_photographs` runs the stage-1 trainer with the ``photos``
recipe (:data:`wae_timm.train.stage1.STAGE1_RECIPES`): Adam with a cosine
decay, since the paper's SGD recipe is far too slow for a short CPU run.
"""
import json
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader

from ..layers.autoencoder import SHIPPED_WEIGHTS_DIR, WaveletLikeAutoEncoder, load_wae_weights
from ..data.photographs import HELD_OUT_PHOTOGRAPHS, PhotoCrops
from ..train.stage1 import STAGE1_RECIPES, Stage1Recipe, save_wae, train_autoencoder
from ..files import refuse_to_overwrite

__all__ = ['train_on_photographs', 'ship_weights', 'shipped_provenance']


def train_on_photographs(
        photos: Sequence[Path],
        recipe: Stage1Recipe = STAGE1_RECIPES['photos'],
        crops_per_epoch: int = 1024,
        crop: int = 128,
        seed: int = 0,
        init: Optional[str] = None,
        progress: bool = True,
) -> Tuple[WaveletLikeAutoEncoder, List[Dict[str, float]]]:
    """Stage 1 on ``crops_per_epoch`` random ``crop``-pixel crops of ``photos`` per epoch; returns ``(wae, history)``.

    ``recipe`` sets the optimizer, schedule, batch size and epochs (the ``photos``
    recipe by default). ``init`` continues from earlier weights (a shipped name or a
    ``.safetensors`` path) instead of the Xavier initialisation.
    """
    torch.manual_seed(seed)
    wae = WaveletLikeAutoEncoder()
    if init:
        load_wae_weights(wae, init)
    loader = DataLoader(PhotoCrops(photos, crop=crop, crops_per_epoch=crops_per_epoch), batch_size=recipe.batch_size,
                        shuffle=False, num_workers=0, drop_last=True)
    history = train_autoencoder(wae, loader, recipe, progress=progress)
    return wae.eval(), history


def _git_commit() -> Optional[str]:
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def shipped_paths(name: str, weights_dir: Path = SHIPPED_WEIGHTS_DIR) -> Tuple[Path, Path]:
    """Where :func:`ship_weights` writes ``name``: the weights and their provenance record."""
    return weights_dir / f'{name}.safetensors', weights_dir / f'{name}.json'


def ship_weights(
        wae: WaveletLikeAutoEncoder,
        name: str,
        provenance: Dict[str, Any],
        weights_dir: Path = SHIPPED_WEIGHTS_DIR,
        overwrite: bool = False,
) -> Path:
    """Write ``weights_dir/<name>.safetensors`` (via the trainer's ``save_wae``) and ``<name>.json``.

    Refuses, before writing either, when one exists and ``overwrite`` is False.
    """
    weights_path, record_path = shipped_paths(name, weights_dir)
    refuse_to_overwrite([weights_path, record_path], overwrite)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = save_wae(wae, weights_path, overwrite=True)
    record = dict(provenance, name=name, held_out_photographs=list(HELD_OUT_PHOTOGRAPHS), git_commit=_git_commit(),
                  torch=torch.__version__, python=platform.python_version(),
                  parameters=sum(p.numel() for p in wae.parameters()))
    record_path.write_text(json.dumps(record, indent=2) + '\n')
    return path


def shipped_provenance(name: str, weights_dir: Path = SHIPPED_WEIGHTS_DIR) -> Dict[str, Any]:
    """The provenance record of shipped weights ``name``."""
    path = weights_dir / f'{name}.json'
    if not path.is_file():
        raise FileNotFoundError(f'no provenance for shipped WAE weights {name!r} ({path})')
    return json.loads(path.read_text())


def history_summary(history: List[Dict[str, float]]) -> List[Dict[str, float]]:
    """Per-epoch ``loss`` / ``energy`` / ``lr`` rounded for the provenance file."""
    keys = ('epoch', 'loss', 'energy', 'lr')
    return [{k: round(float(h[k]), 6) for k in keys if k in h} for h in history]
