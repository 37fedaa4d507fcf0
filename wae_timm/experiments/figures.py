"""Pictures of a learned decomposition: input, I_L, I_H and reconstruction side by side (the paper's Fig. 3 and 4).

A figure has one row per (front end, image) and four columns::

    input | I_L | I_H | reconstruction

The input and the reconstruction are shown in image space (the model's
normalisation undone, clipped to [0, 1]). I_L and I_H are feature images of
arbitrary range (I_H of a trained WAE is close to zero everywhere), so each
panel is *contrast-stretched*: a linear map of that panel's own minimum to 0
and maximum to 1, over all its channels together, so the channels keep their
relative brightness. A 3-channel band is drawn as RGB, a 1-channel one as
grey. A front end without a decoder (the paper's unconstrained
Decomposition+CNN encoder) gets an empty reconstruction panel.
"""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open

from ..layers.autoencoder import WAE_PREFIX, WaveletLikeAutoEncoder, load_wae_weights, strip_wae_prefix, \
    weights_padding_mode
from ..files import refuse_to_overwrite

__all__ = ['contrast_stretch', 'load_front_end', 'decomposition_panels', 'render_decomposition_figure',
           'COLUMNS', 'PANEL_INCHES', 'FIGURE_DPI']

COLUMNS: Tuple[str, ...] = ('input', 'I_L', 'I_H', 'reconstruction')
PANEL_INCHES = 1.6  # width and height of one panel
FIGURE_DPI = 100


def contrast_stretch(image: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` (any range) -> ``[C, H, W]`` in [0, 1]: ``(x - min) / (max - min)`` over the whole panel.

    A constant panel (max == min) has no contrast to stretch and maps to 0.
    """
    low, high = image.min(), image.max()
    span = high - low
    if span <= 0:
        return torch.zeros_like(image)
    return (image - low) / span


def load_front_end(path: Union[str, Path]) -> WaveletLikeAutoEncoder:
    """A WAE encoder (with its decoder if the checkpoint has one) from a ``.safetensors`` file.

    The file may hold a stage-1 WAE or a whole classifier (keys under ``wae.``);
    the input channels, the presence of a decoder and the padding are read from the keys
    (the last by :func:`~wae_timm.layers.autoencoder.weights_padding_mode`).
    """
    path = Path(path)
    if path.suffix != '.safetensors' or not path.is_file():
        raise FileNotFoundError(f'expected an existing .safetensors checkpoint, got {path}')
    with safe_open(str(path), framework='pt') as f:
        wae_keys = strip_wae_prefix({k: k for k in f.keys()})  # the WAE's own key -> the file's key
        if 'stem.0.weight' not in wae_keys:
            raise ValueError(f"{path} holds no WAE encoder (no 'stem.0.weight' key, alone or under {WAE_PREFIX!r})")
        in_chans = int(f.get_slice(wae_keys['stem.0.weight']).get_shape()[1])
    has_decoder = any(k.startswith('decode_') for k in wae_keys)
    wae = WaveletLikeAutoEncoder(in_chans=in_chans, with_decoder=has_decoder, padding_mode=weights_padding_mode(path))
    load_wae_weights(wae, path)
    return wae.eval()


def _to_image_space(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x * std_t + mean_t).clamp(0, 1)


@torch.no_grad()
def decomposition_panels(
        front_end: nn.Module,
        images: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
) -> List[List[Optional[torch.Tensor]]]:
    """Per image, the four panels of :data:`COLUMNS` as ``[C, H, W]`` tensors in [0, 1] (None: no decoder).

    ``images`` is a normalised batch ``[B, C, H, W]`` as the model sees it.
    """
    low, high = front_end.encode(images)
    reconstruction = None
    if getattr(front_end, 'has_decoder', False):
        reconstruction = front_end.decode(low, high, images.shape[-2], images.shape[-1])
    rows = []
    for i in range(images.shape[0]):
        recon = _to_image_space(reconstruction[i], mean, std) if reconstruction is not None else None
        rows.append([_to_image_space(images[i], mean, std), contrast_stretch(low[i]), contrast_stretch(high[i]), recon])
    return rows


def _as_imshow(panel: torch.Tensor) -> Tuple[np.ndarray, Optional[str]]:
    array = panel.permute(1, 2, 0).cpu().numpy()
    if array.shape[2] == 1:
        return array[:, :, 0], 'gray'
    if array.shape[2] == 3:
        return array, None
    return array.mean(axis=2), 'gray'  # other channel counts (e.g. wavelet details): their mean


def render_decomposition_figure(
        front_ends: Sequence[Tuple[str, nn.Module]],
        images: torch.Tensor,
        path: Union[str, Path],
        mean: Sequence[float],
        std: Sequence[float],
        overwrite: bool = False,
        image_labels: Optional[Sequence[str]] = None,
) -> Path:
    """Write a PNG of ``len(front_ends) * B`` rows and 4 columns (see the module docstring).

    ``image_labels`` (one per image, e.g. predicted and true class) are added to the rows' labels.
    The PNG measures ``4 * PANEL_INCHES * FIGURE_DPI`` by ``rows * PANEL_INCHES * FIGURE_DPI`` pixels.
    """
    # the backend is chosen when drawing, not at import: importing must not override a user's choice
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != '.png':
        raise ValueError(f'the figure is written as PNG: give a path ending in .png, got {path}')
    refuse_to_overwrite([path], overwrite)
    if image_labels is not None and len(image_labels) != images.shape[0]:
        raise ValueError(f'image_labels: one label per image expected, got {len(image_labels)} for {images.shape[0]}')
    rows = [(label if image_labels is None else '\n'.join(filter(None, (label, image_labels[i]))), panels)
            for label, front_end in front_ends
            for i, panels in enumerate(decomposition_panels(front_end, images, mean, std))]
    fig, axes = plt.subplots(
        len(rows), len(COLUMNS), squeeze=False,
        figsize=(len(COLUMNS) * PANEL_INCHES, len(rows) * PANEL_INCHES), dpi=FIGURE_DPI)
    for r, (label, panels) in enumerate(rows):
        for c, (column, panel) in enumerate(zip(COLUMNS, panels)):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if panel is None:
                ax.text(0.5, 0.5, 'no decoder', ha='center', va='center', fontsize=7, transform=ax.transAxes)
            else:
                array, cmap = _as_imshow(panel)
                ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation='nearest')
            if r == 0:
                stretched = ' (stretched)' if column in ('I_L', 'I_H') else ''
                ax.set_title(column + stretched, fontsize=7)
            if c == 0:
                ax.set_ylabel(label, fontsize=6)
    fig.subplots_adjust(left=0.08, right=0.99, top=0.96, bottom=0.01, wspace=0.05, hspace=0.08)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)
    return path
