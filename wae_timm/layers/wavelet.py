"""The CDF 9/7 wavelet (JPEG 2000's biorthogonal 9/7, PyWavelets' ``'bior4.4'``) as torch modules.

:class:`WaveletDecomposition` is one level of the separable 2-D DWT,
``[B, C, H, W] -> (cA [B, C, h, w], cat(cH, cV, cD) [B, 3C, h, w])`` with
``h = ceil(H/2)``, ``w = ceil(W/2)``; :class:`WaveletReconstruction` is its
exact inverse. Both compute what ``pywt.dwt2`` / ``pywt.idwt2`` compute with
``mode='periodization'``, the boundary mode that yields exactly
``ceil(N/2)`` coefficients per axis (an odd axis is first extended by
repeating its last sample, as PyWavelets does).

The filter bank comes from PyWavelets (maintained, coefficients verified
against the JPEG 2000 definition), never from hand-typed numbers. ptwt's
differentiable transforms are not used because none of their boundary modes
gives ``ceil(N/2)`` coefficients (they return ``(N + 9) // 2``: 116 for 224);
one stride-2 convolution with the 4 separable 2-D filters (channels folded
into the batch) is a cheap way to run a fixed filter bank, on CPU and GPU.
"""
from typing import Tuple

import pywt
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function

__all__ = ['WAVELET', 'WaveletDecomposition', 'WaveletReconstruction', 'filter_bank_2d']

WAVELET = 'bior4.4'  # PyWavelets' name of CDF 9/7


def filter_bank_2d(wavelet: str = WAVELET, reconstruction: bool = False) -> torch.Tensor:
    """``[4, 1, F, F]`` separable 2-D filters in PyWavelets' band order (aa, da, ad, dd = cA, cH, cV, cD).

    The first letter is the filter along rows (axis -2), the second along
    columns (axis -1). Analysis filters are flipped so that ``F.conv2d`` (a
    cross-correlation) applies them as the convolution PyWavelets applies.
    """
    bank = pywt.Wavelet(wavelet).filter_bank  # dec_lo, dec_hi, rec_lo, rec_hi
    low, high = (bank[2], bank[3]) if reconstruction else (bank[0][::-1], bank[1][::-1])
    low, high = torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)
    bands = [torch.outer(rows, cols) for rows, cols in ((low, low), (high, low), (low, high), (high, high))]
    return torch.stack(bands).unsqueeze(1)


@register_notrace_function  # the odd-size branch depends on the input shape: one leaf call under fx
def dwt2_periodization(x: torch.Tensor, filters: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[B, C, H, W] -> (cA [B, C, h, w], cat(cH, cV, cD) [B, 3C, h, w])`` with the
    ``[4, 1, F, F]`` analysis filters of :func:`filter_bank_2d`."""
    batch, chans, height, width = x.shape
    # channels folded into the batch: one 1-in, 4-out convolution, measured faster
    # on CPU than the equivalent grouped convolution over C channels
    x = x.reshape(batch * chans, 1, height, width)
    if height % 2 == 1 or width % 2 == 1:
        x = F.pad(x, [0, width % 2, 0, height % 2], mode='replicate')
    # PyWavelets centres the (length F) filter at sample 2k + F/2 of the periodic signal
    size = filters.shape[-1]
    x = F.pad(x, [size // 2 - 1] * 4, mode='circular')
    bands = F.conv2d(x, filters, stride=2)
    h, w = bands.shape[-2], bands.shape[-1]
    bands = bands.view(batch, chans, 4, h, w)
    return bands[:, :, 0], bands[:, :, 1:].transpose(1, 2).reshape(batch, 3 * chans, h, w)


@register_notrace_function
def idwt2_periodization(
        low: torch.Tensor, high: torch.Tensor, filters: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`dwt2_periodization` for an image of ``height x width``
    (``filters``: the ``[4, 1, F, F]`` synthesis filters of :func:`filter_bank_2d`)."""
    batch, chans, h, w = low.shape
    bands = torch.cat([low.unsqueeze(2), high.view(batch, 3, chans, h, w).transpose(1, 2)], dim=2)
    x = F.conv_transpose2d(bands.reshape(batch * chans, 4, h, w), filters, stride=2)
    # the transposed convolution spreads each coefficient over F samples of a
    # non-periodic line: fold the overhang back onto the period of 2h x 2w
    size = filters.shape[-1]
    lead = size // 2 - 1  # PyWavelets' synthesis offset for an even-length filter
    tail = size - 2 - lead
    x = _fold(x, lead, tail, dim=2)
    x = _fold(x, lead, tail, dim=3)
    return x[:, :, :height, :width].reshape(batch, chans, height, width)


def _fold(x: torch.Tensor, lead: int, tail: int, dim: int) -> torch.Tensor:
    period = x.shape[dim] - lead - tail
    body = x.narrow(dim, lead, period).clone()
    body.narrow(dim, period - lead, lead).add_(x.narrow(dim, 0, lead))
    body.narrow(dim, 0, tail).add_(x.narrow(dim, lead + period, tail))
    return body


# plain torch.fx.symbolic_trace needs the same leaves as timm's tracer
torch.fx.wrap('dwt2_periodization')
torch.fx.wrap('idwt2_periodization')


class WaveletDecomposition(nn.Module):
    """One level of the 2-D CDF 9/7 DWT (periodization), a fixed filter bank with no parameters.

    ``[B, C, H, W] -> (cA [B, C, ceil(H/2), ceil(W/2)], cat(cH, cV, cD) [B, 3C, ceil(H/2), ceil(W/2)])``,
    equal to ``pywt.dwt2(x, 'bior4.4', mode='periodization')`` per channel. Any ``C``.
    """

    def __init__(self, wavelet: str = WAVELET) -> None:
        super().__init__()
        self.wavelet = wavelet
        # a buffer, not a parameter: never trained, not in the state_dict; kept in
        # float64 so that double-precision use is exact, cast to the input's dtype per call
        self.register_buffer('filters', filter_bank_2d(wavelet), persistent=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return dwt2_periodization(x, self.filters.to(x.dtype))


class WaveletReconstruction(nn.Module):
    """Inverse of :class:`WaveletDecomposition`:
    ``(cA [B, C, h, w], cat(cH, cV, cD) [B, 3C, h, w], H, W) -> [B, C, H, W]`` for ``h = ceil(H/2)``."""

    def __init__(self, wavelet: str = WAVELET) -> None:
        super().__init__()
        self.wavelet = wavelet
        self.register_buffer('filters', filter_bank_2d(wavelet, reconstruction=True), persistent=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if high.shape[1] != 3 * low.shape[1] or high.shape[-2:] != low.shape[-2:]:
            raise ValueError(
                f'expected the detail bands as [B, 3C, h, w] for cA of shape {list(low.shape)}, '
                f'got {list(high.shape)}')
        if (height + 1) // 2 != low.shape[-2] or (width + 1) // 2 != low.shape[-1]:
            raise ValueError(
                f'bands of {low.shape[-2]}x{low.shape[-1]} come from a {2 * low.shape[-2] - 1} or '
                f'{2 * low.shape[-2]} by {2 * low.shape[-1] - 1} or {2 * low.shape[-1]} image, got {height}x{width}')
        return idwt2_periodization(low, high, self.filters.to(low.dtype), height, width)
