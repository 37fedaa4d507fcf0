"""Front ends that split an image into a low band (for the backbone) and a high band (for the fusion branch).

Every front end has ``encode(x) -> (low, high)`` with both bands at
``ceil(H/2) x ceil(W/2)``, and the attributes ``band_chans`` (channels of the
low band) and ``high_chans`` (of the high band):

- ``'wae'``: the learned Wavelet-like Auto-Encoder (3 + 3 channels).
- ``'wavelet'``: a fixed CDF 9/7 DWT, cA (C channels) and cH, cV, cD (3C channels)
  (the paper's Wavelet+CNN baseline).
- ``'resize'``: the image downsampled to half resolution, and no high band
  (the paper's I_R baseline: the backbone run at half resolution).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .autoencoder import WaveletLikeAutoEncoder
from .wavelet import WaveletDecomposition

__all__ = ['create_decomposition', 'ResizeDecomposition', 'WaveletBands', 'DECOMPOSITIONS']

DECOMPOSITIONS = ('wae', 'wavelet', 'resize')


class ResizeDecomposition(nn.Module):
    """``[B, C, H, W] -> ([B, C, ceil(H/2), ceil(W/2)], empty high band)`` by antialiased bilinear resizing."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.band_chans = in_chans
        self.high_chans = 0

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        size = ((x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2)
        low = F.interpolate(x, size=size, mode='bilinear', align_corners=False, antialias=True)
        return low, low[:, :0]  # a view with no channels: nothing is allocated for the missing band


class WaveletBands(nn.Module):
    """The CDF 9/7 DWT as a front end: ``(cA [B, C, h, w], cat(cH, cV, cD) [B, 3C, h, w])``."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.dwt = WaveletDecomposition()
        self.band_chans = in_chans
        self.high_chans = 3 * in_chans

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.dwt(x)


def create_decomposition(
        name: str,
        in_chans: int = 3,
        with_decoder: bool = False,
        with_high: bool = True,
        padding_mode: str = 'zeros',
        device: Optional[Union[str, torch.device]] = None,
        dtype: Optional[torch.dtype] = None,
) -> nn.Module:
    """The front end called ``name`` (one of :data:`DECOMPOSITIONS`).

    ``with_decoder``, ``with_high`` and ``padding_mode`` shape the learned WAE (see
    :class:`WaveletLikeAutoEncoder`); the fixed front ends have neither a
    decoder nor weights, and refuse ``with_decoder=True``.
    """
    if name not in DECOMPOSITIONS:
        raise ValueError(f'unknown decomposition {name!r}; expected one of {DECOMPOSITIONS}')
    if name == 'wae':
        return WaveletLikeAutoEncoder(in_chans=in_chans, with_decoder=with_decoder, with_high=with_high,
                                      padding_mode=padding_mode, device=device, dtype=dtype)
    if with_decoder:
        raise ValueError(f'with_decoder=True needs decomposition="wae"; the fixed {name!r} front end has no decoder '
                         '(and no transform loss)')
    front_end = WaveletBands(in_chans) if name == 'wavelet' else ResizeDecomposition(in_chans)
    return front_end.to(device=device, dtype=dtype)
