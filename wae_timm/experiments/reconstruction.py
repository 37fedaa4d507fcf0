"""How well a two-band decomposition keeps an image: the WAE next to the CDF 9/7 wavelet and bicubic resampling.

For an image ``x`` in [0, 1] (``[3, H, W]``, ``H`` and ``W`` even):

- ``psnr_both_db``: PSNR of the reconstruction from both bands (WAE: ``D_L(I_L) + D_H(I_H)``;
  wavelet: the inverse DWT of all four sub-bands).
- ``psnr_low_only_db``: PSNR of the reconstruction from the low band alone (WAE: the decoder
  with ``I_H = 0``; wavelet: the inverse DWT of ``cA`` with zero details; bicubic: the
  half-resolution image upsampled back).
- ``high_energy_share``: ``||high||^2 / (||low||^2 + ||high||^2)`` of the bands the front end
  produces from the normalised image the models see (WAE: ``I_H`` vs ``I_L``; wavelet: the
  three detail bands vs ``cA``), i.e. how little the high branch has to carry.

PSNR is ``10 log10(1 / MSE)`` in [0, 1] pixel space, reconstructions clipped to [0, 1].
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import pywt
import torch
import torch.nn.functional as F

from ..layers.autoencoder import WaveletLikeAutoEncoder
from ..layers.wavelet import WAVELET
from ..data.photographs import denormalize, normalize

__all__ = ['psnr', 'energy_share', 'evaluate_wae', 'evaluate_wavelet', 'evaluate_bicubic', 'evaluate_images',
           'WAVELET']



def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """PSNR in dB of ``estimate`` (clipped to [0, 1]) against ``reference`` in [0, 1]."""
    mse = (reference.double() - estimate.double().clamp(0., 1.)).pow(2).mean().item()
    return math.inf if mse == 0 else 10. * math.log10(1. / mse)


def energy_share(low: torch.Tensor, high: torch.Tensor) -> float:
    low_energy, high_energy = low.double().pow(2).sum().item(), high.double().pow(2).sum().item()
    return high_energy / (low_energy + high_energy)


@torch.no_grad()
def evaluate_wae(wae: WaveletLikeAutoEncoder, x: torch.Tensor) -> Dict[str, float]:
    """The three measures for the WAE on one image ``x`` ([3, H, W] in [0, 1])."""
    wae = wae.eval()
    inputs = normalize(x)[None]
    low, high = wae.encode(inputs)
    height, width = x.shape[-2:]
    both = denormalize(wae.decode(low, high, height, width)[0])
    low_only = denormalize(wae.decode(low, torch.zeros_like(high), height, width)[0])
    return dict(psnr_both_db=psnr(x, both), psnr_low_only_db=psnr(x, low_only), high_energy_share=energy_share(low, high))


def _dwt(image: np.ndarray):
    return pywt.dwt2(image, WAVELET, mode='periodization', axes=(-2, -1))


def evaluate_wavelet(x: torch.Tensor) -> Dict[str, float]:
    """The three measures for a single-level CDF 9/7 DWT (pywt ``bior4.4``, periodic borders)."""
    image = x.double().numpy()
    approx, details = _dwt(image)
    both = pywt.idwt2((approx, details), WAVELET, mode='periodization', axes=(-2, -1))
    low_only = pywt.idwt2((approx, (None, None, None)), WAVELET, mode='periodization', axes=(-2, -1))
    n_approx, n_details = _dwt(normalize(x).double().numpy())
    return dict(
        psnr_both_db=psnr(x, torch.from_numpy(both)),
        psnr_low_only_db=psnr(x, torch.from_numpy(low_only)),
        high_energy_share=energy_share(torch.from_numpy(n_approx), torch.from_numpy(np.stack(n_details))))


def evaluate_bicubic(x: torch.Tensor) -> Dict[str, float]:
    """Bicubic (antialiased) downsampling by 2 and bicubic upsampling back: the low band alone."""
    height, width = x.shape[-2:]
    half = F.interpolate(x[None], size=(height // 2, width // 2), mode='bicubic', antialias=True, align_corners=False)
    back = F.interpolate(half, size=(height, width), mode='bicubic', align_corners=False)[0]
    return dict(psnr_both_db=math.nan, psnr_low_only_db=psnr(x, back), high_energy_share=math.nan)


def evaluate_images(
        images: Dict[str, torch.Tensor],
        wae: Optional[WaveletLikeAutoEncoder],
        wae_label: str = 'wae',
) -> List[Dict[str, object]]:
    """One row per image and method, then a ``mean`` row per method."""
    methods = {'cdf97_wavelet': evaluate_wavelet, 'bicubic_x2': evaluate_bicubic}
    if wae is not None:
        methods = {wae_label: lambda x: evaluate_wae(wae, x), **methods}
    rows: List[Dict[str, object]] = []
    for name, x in images.items():
        for method, evaluate in methods.items():
            rows.append(dict(photograph=name, height=x.shape[-2], width=x.shape[-1], method=method, **evaluate(x)))
    for method in methods:
        mine = [r for r in rows if r['method'] == method]
        means = {k: float(np.mean([r[k] for r in mine])) for k in ('psnr_both_db', 'psnr_low_only_db', 'high_energy_share')}
        rows.append(dict(photograph='mean', height='', width='', method=method, **means))
    return rows


def summary(rows: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
    """The ``mean`` rows."""
    return [r for r in rows if r['photograph'] == 'mean']
