"""How well a two-band decomposition keeps an image: the WAE next to the CDF 9/7 wavelet, a colour 6-band
wavelet scheme with the WAE's budget, and bicubic resampling.

For an image ``x`` in [0, 1] (``[3, H, W]``, ``H`` and ``W`` even):

- ``psnr_both_db``: PSNR of the reconstruction from both bands (WAE: ``D_L(I_L) + D_H(I_H)``;
  wavelet: the inverse DWT of all four sub-bands).
- ``psnr_low_only_db``: PSNR of the reconstruction from the low band alone (WAE: the decoder
  with ``I_H = 0``; wavelet: the inverse DWT of ``cA`` with zero details; bicubic: the
  half-resolution image upsampled back).
- ``psnr_both_interior_db``, ``psnr_low_only_interior_db``: the same without the outer
  :data:`INTERIOR_BORDER` pixels of each side, which tells what the image borders cost (the
  WAE's layers pad with zeros; the wavelets here extend the image periodically).
- ``high_energy_share``: ``||high||^2 / (||low||^2 + ||high||^2)`` of the bands the front end
  produces from the normalised image the models see (WAE: ``I_H`` vs ``I_L``; wavelet: the
  three detail bands vs ``cA``), i.e. how little the high branch has to carry.
- ``high_decoded_share`` (WAE only): ``||D_H(I_H)||^2 / ||I'||^2`` of the decoder's outputs in
  the same normalised space: how much of the reconstruction comes from ``I_H``. A small
  ``high_energy_share`` means little when the decoder amplifies ``I_H`` back.

The colour 6-band scheme (:func:`evaluate_colour_6band`) has exactly the WAE's budget of six
half-resolution channels: the CDF 9/7 ``cA`` of R, G and B (3 channels) and the three detail
bands of the luma only (3 channels); the luma details are added back to every colour channel,
as 4:2:0 chroma subsampling drops the chroma details natural images can lose.

PSNR is ``10 log10(1 / MSE)`` in [0, 1] pixel space, reconstructions clipped to [0, 1].
"""
import math
from copy import deepcopy
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pywt
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_STD

from ..layers.autoencoder import WaveletLikeAutoEncoder
from ..layers.wavelet import WAVELET
from ..train.wavelet_init import LUMA_WEIGHTS
from ..data.photographs import denormalize, normalize

__all__ = ['psnr', 'energy_share', 'evaluate_wae', 'evaluate_wavelet', 'evaluate_colour_6band', 'evaluate_bicubic',
           'evaluate_images', 'rescale_high_band', 'high_band_rms', 'match_high_band_rms', 'balance_hidden_layers',
           'MEASURES', 'INTERIOR_BORDER', 'WAVELET']

MEASURES = ('psnr_both_db', 'psnr_low_only_db', 'psnr_both_interior_db', 'psnr_low_only_interior_db',
            'high_energy_share', 'high_decoded_share')
INTERIOR_BORDER = 8


def psnr(reference: torch.Tensor, estimate: torch.Tensor, border: int = 0) -> float:
    """PSNR in dB of ``estimate`` (clipped to [0, 1]) against ``reference`` in [0, 1], leaving out ``border``
    pixels on each side."""
    if border:
        reference, estimate = reference[..., border:-border, border:-border], estimate[..., border:-border, border:-border]
    mse = (reference.double() - estimate.double().clamp(0., 1.)).pow(2).mean().item()
    return math.inf if mse == 0 else 10. * math.log10(1. / mse)


def _psnrs(x: torch.Tensor, both: Optional[torch.Tensor], low_only: torch.Tensor) -> Dict[str, float]:
    """The four PSNR measures of a method's two reconstructions (``both=None``: it has no high band)."""
    return dict(
        psnr_both_db=math.nan if both is None else psnr(x, both), psnr_low_only_db=psnr(x, low_only),
        psnr_both_interior_db=math.nan if both is None else psnr(x, both, INTERIOR_BORDER),
        psnr_low_only_interior_db=psnr(x, low_only, INTERIOR_BORDER))


def energy_share(low: torch.Tensor, high: torch.Tensor) -> float:
    low_energy, high_energy = low.double().pow(2).sum().item(), high.double().pow(2).sum().item()
    return high_energy / (low_energy + high_energy)


@torch.no_grad()
def evaluate_wae(wae: WaveletLikeAutoEncoder, x: torch.Tensor) -> Dict[str, float]:
    """The measures for the WAE on one image ``x`` ([3, H, W] in [0, 1])."""
    wae = wae.eval()
    inputs = normalize(x)[None]
    low, high = wae.encode(inputs)
    height, width = x.shape[-2:]
    decoded_low = wae.decode_low(low, height, width)
    decoded_high = wae.decode_high(high, height, width)
    reconstruction = decoded_low + decoded_high
    return dict(
        **_psnrs(x, denormalize(reconstruction[0]), denormalize(decoded_low[0])),
        high_energy_share=energy_share(low, high),
        high_decoded_share=(decoded_high.double().pow(2).sum() / reconstruction.double().pow(2).sum()).item())


def _dwt(image: np.ndarray):
    return pywt.dwt2(image, WAVELET, mode='periodization', axes=(-2, -1))


def evaluate_wavelet(x: torch.Tensor) -> Dict[str, float]:
    """The measures for a single-level CDF 9/7 DWT (pywt ``bior4.4``, periodic borders)."""
    image = x.double().numpy()
    approx, details = _dwt(image)
    both = pywt.idwt2((approx, details), WAVELET, mode='periodization', axes=(-2, -1))
    low_only = pywt.idwt2((approx, (None, None, None)), WAVELET, mode='periodization', axes=(-2, -1))
    n_approx, n_details = _dwt(normalize(x).double().numpy())
    return dict(
        **_psnrs(x, torch.from_numpy(both), torch.from_numpy(low_only)),
        high_energy_share=energy_share(torch.from_numpy(n_approx), torch.from_numpy(np.stack(n_details))),
        high_decoded_share=math.nan)


def _luma(image: np.ndarray) -> np.ndarray:
    return np.tensordot(np.asarray(LUMA_WEIGHTS), image, axes=(0, 0))


def evaluate_colour_6band(x: torch.Tensor) -> Dict[str, float]:
    """The measures for the colour 6-band scheme: RGB ``cA`` + the luma's three detail bands (CDF 9/7)."""
    image = x.double().numpy()
    approx, _ = _dwt(image)
    _, luma_details = _dwt(_luma(image))
    # every colour channel gets the same (grey) details back
    details = tuple(np.broadcast_to(d, approx.shape) for d in luma_details)
    both = pywt.idwt2((approx, details), WAVELET, mode='periodization', axes=(-2, -1))
    low_only = pywt.idwt2((approx, (None, None, None)), WAVELET, mode='periodization', axes=(-2, -1))
    # in the normalised input's units: the colours as the models see them, the luma over its std
    n_approx, _ = _dwt(normalize(x).double().numpy())
    luma_std = float(np.dot(LUMA_WEIGHTS, IMAGENET_DEFAULT_STD))
    _, n_details = _dwt(_luma(image) / luma_std)
    return dict(
        **_psnrs(x, torch.from_numpy(both), torch.from_numpy(low_only)),
        high_energy_share=energy_share(torch.from_numpy(n_approx), torch.from_numpy(np.stack(n_details))),
        high_decoded_share=math.nan)


def evaluate_bicubic(x: torch.Tensor) -> Dict[str, float]:
    """Bicubic (antialiased) downsampling by 2 and bicubic upsampling back: the low band alone."""
    height, width = x.shape[-2:]
    half = F.interpolate(x[None], size=(height // 2, width // 2), mode='bicubic', antialias=True, align_corners=False)
    back = F.interpolate(half, size=(height, width), mode='bicubic', align_corners=False)[0]
    return dict(**_psnrs(x, None, back), high_energy_share=math.nan, high_decoded_share=math.nan)


def evaluate_images(
        images: Dict[str, torch.Tensor],
        wae: Optional[WaveletLikeAutoEncoder],
        wae_label: str = 'wae',
) -> List[Dict[str, object]]:
    """One row per image and method, then a ``mean`` row per method."""
    methods = {'cdf97_wavelet': evaluate_wavelet, 'colour_6band': evaluate_colour_6band, 'bicubic_x2': evaluate_bicubic}
    if wae is not None:
        methods = {wae_label: lambda x: evaluate_wae(wae, x), **methods}
    rows: List[Dict[str, object]] = []
    for name, x in images.items():
        for method, evaluate in methods.items():
            rows.append(dict(photograph=name, height=x.shape[-2], width=x.shape[-1], method=method, **evaluate(x)))
    for method in methods:
        mine = [r for r in rows if r['method'] == method]
        means = {k: float(np.mean([r[k] for r in mine])) for k in MEASURES}
        rows.append(dict(photograph='mean', height='', width='', method=method, **means))
    return rows


def rescale_high_band(wae: WaveletLikeAutoEncoder, scale: float) -> WaveletLikeAutoEncoder:
    """A copy of ``wae`` whose ``I_H`` is ``scale`` times ``wae``'s and whose ``D_H`` undoes it.

    ``to_high`` is linear and ``D_H`` starts with a linear layer, so scaling one by ``scale``
    and the other by ``1 / scale`` leaves ``I'`` unchanged while ``||I_H||^2`` changes by
    ``scale^2``: the paper's ``L_t`` can be lowered without limit by shrinking ``I_H`` and
    amplifying it in ``D_H``, so ``||I_H||^2`` alone says little about how much of the image
    ``I_H`` carries (``high_decoded_share`` does). Adam's steps, blind to the scale of a
    weight, walk down this valley freely; weight decay on the decoder closes it.
    """
    if not scale > 0:
        raise ValueError(f'scale must be > 0, got {scale}')
    if not wae.has_decoder or wae.to_high is None:
        raise ValueError('rescale_high_band needs a WAE with I_H and its decoder')
    copy = deepcopy(wae)
    with torch.no_grad():
        copy.to_high.weight.mul_(scale)
        copy.to_high.bias.mul_(scale)
        copy.decode_high.up.weight.div_(scale)
    return copy


@torch.no_grad()
def high_band_rms(wae: WaveletLikeAutoEncoder, images: Sequence[torch.Tensor]) -> float:
    """The root mean square of ``I_H`` over ``images`` (each ``[3, H, W]`` in [0, 1])."""
    wae = wae.eval()
    total = count = 0
    for x in images:
        high = wae.encode(normalize(x)[None]).high.double()
        total, count = total + high.pow(2).sum().item(), count + high.numel()
    return math.sqrt(total / count)


def match_high_band_rms(wae: WaveletLikeAutoEncoder, reference: WaveletLikeAutoEncoder,
                        images: Sequence[torch.Tensor]) -> Tuple[WaveletLikeAutoEncoder, float]:
    """``(rescale_high_band(wae, scale), scale)`` whose ``I_H`` has ``reference``'s RMS on ``images``; ``I'`` is kept.

    The energy term of ``L_t`` can shrink ``I_H`` while ``D_H`` amplifies it back (see
    :func:`rescale_high_band`), which moves no energy from ``I_H`` to ``I_L`` but makes stage 3
    fragile: the classifier's BatchNorm on ``I_H`` divides by its spread, so the encoder's
    gradient grows as ``I_H`` shrinks. Setting the scale back to a reference's (the wavelet
    start's) keeps every reconstruction and what share of it ``D_H(I_H)`` carries.
    """
    scale = high_band_rms(reference, images) / high_band_rms(wae, images)
    return rescale_high_band(wae, scale), scale


def _hidden_layer_pairs(wae: WaveletLikeAutoEncoder) -> List[Tuple[nn.Module, List[nn.Module]]]:
    """``(producer, readers)`` of every ReLU layer between the image and ``I_L``/``I_H``/``I'``."""
    pairs = [(wae.stem[0], [wae.stem[2]]), (wae.stem[2], [wae.stem[4]]), (wae.stem[4], [wae.to_low, wae.to_high])]
    for branch in (wae.decode_low, wae.decode_high):
        pairs += [(branch.up, [branch.conv1]), (branch.conv1, [branch.conv2]), (branch.conv2, [branch.conv3])]
    return pairs


def balance_hidden_layers(wae: WaveletLikeAutoEncoder, iterations: int = 20) -> WaveletLikeAutoEncoder:
    """A copy of ``wae`` that computes the same ``I_L``, ``I_H`` and ``I'``, its hidden layers balanced.

    A ReLU is positively homogeneous: scaling one channel's incoming weights and bias by
    ``d > 0`` and the weights that read it by ``1 / d`` changes nothing the WAE computes. SGD
    is not blind to it: a layer of small weights beside one of large weights takes large
    relative steps. Equi-normalisation (Stock et al., ICLR 2019) chooses, channel by channel,
    the ``d`` that makes the two norms equal, sweeping the layers ``iterations`` times (it
    converges to the smallest sum of squared weight norms over all such rescalings).
    """
    if not wae.has_decoder or wae.to_high is None or wae.to_bands is not None:
        raise ValueError('balance_hidden_layers needs an unmerged WAE with I_H and its decoder')
    copy = deepcopy(wae)
    with torch.no_grad():
        for _ in range(iterations):
            for producer, readers in _hidden_layer_pairs(copy):
                # a transposed convolution keeps its output channels in dimension 1
                produced = producer.weight.transpose(0, 1) if isinstance(producer, nn.ConvTranspose2d) \
                    else producer.weight
                incoming = produced.flatten(1).norm(dim=1)
                outgoing = torch.cat([r.weight.transpose(0, 1).flatten(1) for r in readers], 1).norm(dim=1)
                scale = (outgoing / incoming).sqrt().where(incoming > 0, torch.ones_like(incoming))
                produced.mul_(scale.view(-1, *[1] * (produced.dim() - 1)))
                producer.bias.mul_(scale)
                for reader in readers:
                    reader.weight.div_(scale.view(1, -1, 1, 1))
    return copy


def summary(rows: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
    """The ``mean`` rows."""
    return [r for r in rows if r['photograph'] == 'mean']
