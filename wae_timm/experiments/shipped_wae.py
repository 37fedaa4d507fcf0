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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader

from ..layers.autoencoder import SHIPPED_WEIGHTS_DIR, WaveletLikeAutoEncoder, load_wae_weights
from ..data.photographs import EVAL_SHORT_SIDE, HELD_OUT_PHOTOGRAPHS, PhotoCrops, denormalize, load_photograph, \
    normalize
from .figures import contrast_stretch
from .reconstruction import match_high_band_rms, psnr
from ..train.stage1 import STAGE1_RECIPES, Stage1Recipe, save_wae, train_autoencoder
from ..layers.wavelet import WAVELET
from ..train.wavelet_init import init_as_colour_wavelet
from ..files import refuse_to_overwrite

__all__ = ['train_on_photographs', 'match_start_high_band', 'STARTS', 'ship_weights', 'shipped_provenance',
           'render_reconstruction_figure', 'FIGURE_COLUMNS']


STARTS = ('xavier', 'colour_wavelet')


def train_on_photographs(
        photos: Sequence[Path],
        recipe: Stage1Recipe = STAGE1_RECIPES['photos'],
        crops_per_epoch: int = 1024,
        crop: int = 128,
        seed: int = 0,
        init: Optional[str] = None,
        start: str = 'xavier',
        start_wavelet: str = WAVELET,
        grayscale_prob: float = 0.,
        progress: bool = True,
        checkpoint_dir: Optional[Path] = None,
        resume: bool = False,
        on_epoch_end: Optional[Callable[[int, Dict[str, float]], None]] = None,
) -> Tuple[WaveletLikeAutoEncoder, List[Dict[str, float]]]:
    """Stage 1 on ``crops_per_epoch`` random ``crop``-pixel crops of ``photos`` per epoch; returns ``(wae, history)``.

    ``recipe`` sets the optimizer, schedule, batch size, epochs and loss options (the
    ``photos`` recipe by default). The WAE starts from ``start``: ``'xavier'`` (the paper)
    or ``'colour_wavelet'`` (the colour 6-band transform of the PyWavelets wavelet
    ``start_wavelet``, :func:`wae_timm.train.wavelet_init.init_as_colour_wavelet`); ``init`` instead continues
    from earlier weights (a shipped name or a ``.safetensors`` path). ``checkpoint_dir``
    keeps a resumable checkpoint (every 50 steps and each epoch); ``resume`` continues from it.
    ``grayscale_prob``: the share of crops made grey (:class:`PhotoCrops`).
    """
    if start not in STARTS:
        raise ValueError(f'start must be one of {STARTS}, got {start!r}')
    torch.manual_seed(seed)
    wae = WaveletLikeAutoEncoder(padding_mode=recipe.padding_mode)
    if init:
        load_wae_weights(wae, init)
    elif start == 'colour_wavelet':
        init_as_colour_wavelet(wae, start_wavelet)
    crops = PhotoCrops(photos, crop=crop, crops_per_epoch=crops_per_epoch, grayscale_prob=grayscale_prob)
    loader = DataLoader(crops, batch_size=recipe.batch_size, shuffle=False, num_workers=0, drop_last=True)
    history = train_autoencoder(wae, loader, recipe, progress=progress, checkpoint_dir=checkpoint_dir,
                                checkpoint_every=50 if checkpoint_dir is not None else 0, resume=resume,
                                on_epoch_end=on_epoch_end)
    return wae.eval(), history


def match_start_high_band(wae: WaveletLikeAutoEncoder, photos: Sequence[Path], start_wavelet: str,
                          short_side: int = EVAL_SHORT_SIDE) -> Tuple[WaveletLikeAutoEncoder, float]:
    """``(wae', scale)``: ``wae`` with ``I_H`` scaled (``D_H`` inversely) to the RMS of the colour-wavelet start's.

    The start is :func:`init_as_colour_wavelet` of ``start_wavelet`` with ``wae``'s padding; the
    RMS is over ``photos`` at ``short_side``. Every reconstruction is kept
    (:func:`wae_timm.experiments.reconstruction.match_high_band_rms` says why the scale matters).
    """
    start = init_as_colour_wavelet(WaveletLikeAutoEncoder(padding_mode=wae.padding_mode), start_wavelet)
    return match_high_band_rms(wae, start, [load_photograph(p, short_side) for p in photos])


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
    """Per-epoch ``loss`` / ``energy`` / ``low_band`` / ``decoded_high_share`` / ``lr`` rounded for the provenance file."""
    keys = ('epoch', 'loss', 'energy', 'low_band', 'decoded_high_share', 'lr')
    return [{k: round(float(h[k]), 6) for k in keys if k in h} for h in history]


FIGURE_COLUMNS = ('input', 'I_L (stretched)', 'I_H (stretched)', "I' = D_L(I_L) + D_H(I_H)", 'D_L(I_L) alone')


@torch.no_grad()
def render_reconstruction_figure(
        wae: WaveletLikeAutoEncoder,
        images: Dict[str, torch.Tensor],
        path: Path,
        overwrite: bool = False,
        panel_inches: float = 2.0,
        dpi: int = 100,
) -> Path:
    """The paper's Fig. 4 for ``images`` (name -> ``[3, H, W]`` in [0, 1]): one row per image, the :data:`FIGURE_COLUMNS`.

    I_L and I_H are contrast-stretched over each panel (:func:`~wae_timm.experiments.figures.contrast_stretch`);
    the two reconstructions are in image space, clipped to [0, 1], with their PSNR in the title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != '.png':
        raise ValueError(f'the figure is written as PNG: give a path ending in .png, got {path}')
    refuse_to_overwrite([path], overwrite)
    wae = wae.eval()
    fig, axes = plt.subplots(len(images), len(FIGURE_COLUMNS), squeeze=False, dpi=dpi,
                             figsize=(len(FIGURE_COLUMNS) * panel_inches, len(images) * panel_inches * 0.75))
    for row, (name, x) in enumerate(images.items()):
        low, high = wae.encode(normalize(x)[None])
        decoded_low = wae.decode_low(low, *x.shape[-2:])
        both = denormalize((decoded_low + wae.decode_high(high, *x.shape[-2:]))[0]).clamp(0, 1)
        low_only = denormalize(decoded_low[0]).clamp(0, 1)
        panels = [(x, name), (contrast_stretch(low[0]), ''), (contrast_stretch(high[0]), ''),
                  (both, f'{psnr(x, both):.2f} dB'), (low_only, f'{psnr(x, low_only):.2f} dB')]
        for column, (panel, note) in enumerate(panels):
            ax = axes[row, column]
            ax.imshow(panel.permute(1, 2, 0).numpy(), interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title((FIGURE_COLUMNS[column] + '\n' if row == 0 else '') + note, fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
