"""Start a WAE from a colour 6-band wavelet scheme instead of Xavier noise (a stage-1 option).

:func:`init_as_colour_wavelet` sets the weights of a :class:`WaveletLikeAutoEncoder`, whose
layers are unchanged, so that it computes the fixed colour 6-band transform of
:func:`wae_timm.experiments.reconstruction.evaluate_colour_6band` (CDF 9/7 by default; any
PyWavelets wavelet whose filters have at most 9 taps):

- ``I_L``: the CDF 9/7 ``cA`` of each normalised colour channel (3 channels);
- ``I_H``: the three CDF 9/7 detail bands (``cH``, ``cV``, ``cD``) of the luma, in units of the
  normalised input (the luma of the ``[0, 1]`` image divided by the luma's std, so its size is
  comparable with ``I_L``'s: the energy term judges it fairly);
- ``D_L``: the inverse DWT of ``cA`` with zero details, per colour channel;
- ``D_H``: the inverse DWT of the luma details, added to every colour channel.

Why it fits exactly: every filter of the CDF 9/7 bank is separable and at most 9 taps long. A
9-tap filter is a polynomial of degree 8, a product of 4 real quadratics (complex roots come in
conjugate pairs), so the encoder's four 3x3 layers (three stem convolutions, then the stride-2
``to_low``/``to_high``) compose to it, one quadratic per layer and axis; the decoder's 4x4
transposed convolution and three 3x3 convolutions compose to the synthesis filters the same
way. The ReLUs between layers are made harmless by carrying every signal ``s`` as the pair
``relu(s), relu(-s)`` (``s = relu(s) - relu(-s)``): 6 signals x 2 = 12 of the 16 channels.
At the image borders the layers' padding decides how exact the start is. A symmetric filter
of odd length (LeGall 5/3: ``bior2.2``) is placed as JPEG 2000's symmetric-extension DWT: its
symmetric quadratic factors, centred, in the stem (or in the decoder's refining layers) and the
band's phase in the stride-2 layer (or the transposed convolution, then a pure shift). With
``padding_mode='reflect'`` each layer's reflection is then the true extension of what it reads,
and the start is exact up to the borders (a grey image is rebuilt to float precision). CDF 9/7's
9-tap low-pass needs all four encoder layers, so a shift lands in the stem and the borders are
approximate. With zero padding (the paper's) every layer drops what falls outside the image,
which the next layer would have needed: a start whose filters span several layers loses there.

Training then starts from a decomposition that already separates content from details, and
the transform loss only has to improve it (the paper trains from Xavier noise for about 20
ImageNet epochs, far beyond a CPU budget).
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pywt
import torch
from timm.data import IMAGENET_DEFAULT_STD

from ..layers.autoencoder import WaveletLikeAutoEncoder
from ..layers.wavelet import WAVELET

__all__ = ['init_as_colour_wavelet', 'LUMA_WEIGHTS']

# ITU-R BT.601 luma (JPEG's YCbCr); one source: the 6-band anchor of experiments/reconstruction reads it here
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _three_tap_factors(taps: np.ndarray, reciprocal: bool = False) -> List[np.ndarray]:
    """Real factors of the polynomial ``sum_k taps[k] z^k`` (non-zero ends), each as 3 taps on positions -1, 0, 1.

    A pair of roots (a complex root with its conjugate, or two real roots; with ``reciprocal``,
    a root with the one nearest its reciprocal) gives a quadratic; an odd real root left over
    gives a linear factor, on positions 0, 1. The gain is spread evenly.
    """
    roots = list(np.roots(taps[::-1]))  # np.roots wants the highest power first
    factors = []
    while roots:
        root = roots.pop(0)
        if not roots:
            factors.append(np.real(np.array([0., -root, 1.])))
            break
        if reciprocal:
            partner = min(range(len(roots)), key=lambda i: abs(roots[i] - 1. / root))
        elif abs(root.imag) > 1e-3:
            partner = min(range(len(roots)), key=lambda i: abs(roots[i] - np.conj(root)))
        else:
            partner = min(range(len(roots)), key=lambda i: abs(roots[i].imag))
        other = roots.pop(partner)
        factors.append(np.real(np.array([root * other, -(root + other), 1.])))
    if not factors:  # a single tap
        factors = [np.array([0., 1., 0.])]
    gain = taps[-1]
    sizes = [np.abs(f).sum() for f in factors]
    common = (abs(gain) * np.prod(sizes)) ** (1. / len(factors))
    factors = [f * common / size for f, size in zip(factors, sizes)]
    factors[0] = factors[0] * np.sign(gain)
    return factors


def _delta(position: int, length: int = 3, first: int = -1) -> np.ndarray:
    out = np.zeros(length)
    out[position - first] = 1.
    return out


def _span(taps: np.ndarray, first: int) -> Tuple[int, np.ndarray]:
    nonzero = np.flatnonzero(np.abs(taps) > 1e-12)
    return first + nonzero[0], taps[nonzero[0]:nonzero[-1] + 1]


def _compose(factors: Sequence[np.ndarray]) -> np.ndarray:
    out = np.array([1.])
    for f in factors:
        out = np.convolve(out, f)
    return out


def _symmetric_factors(span: np.ndarray) -> Optional[List[np.ndarray]]:
    """Symmetric 3-tap factors (``[a, b, a]`` on positions -1, 0, 1) whose convolution is ``span``, or None.

    A symmetric filter of odd length has its roots in pairs ``r, 1/r`` (or conjugates on the unit
    circle); each pair is a symmetric quadratic. None when the filter is not symmetric, has even
    length, or has a quadruple of complex roots off the unit circle (no real symmetric quadratic).
    """
    if len(span) % 2 == 0 or not np.allclose(span, span[::-1]):
        return None
    factors = _three_tap_factors(span, reciprocal=True)
    symmetric = all(np.allclose(f, f[::-1], atol=1e-6) for f in factors)
    return factors if symmetric and np.allclose(_compose(factors), span, atol=1e-9) else None


def _symmetric_analysis_factors(taps: np.ndarray, first: int, layers: int = 4) -> Optional[List[np.ndarray]]:
    """The stem's factors all symmetric and centred, the stride-2 layer a pure shift; None if the filter does not fit.

    Each layer pads by reflection, which extends a signal symmetrically about its first and last
    sample; a symmetric centred filter keeps that symmetry, so the next layer's reflection is again
    the true extension: the chain is exact at the image borders (with ``padding_mode='reflect'``),
    as the symmetric-extension DWT of JPEG 2000. A shift inside the stem would break it; in the
    stride-2 layer it only picks the phase the band is sampled at (even for the low band, odd for
    the high band of an odd-length biorthogonal wavelet).
    """
    start, span = _span(taps, first)
    factors = _symmetric_factors(span)
    centre = start + len(span) // 2
    if factors is None or len(factors) > layers - 1 or abs(centre) > 1:
        return None
    return factors + [_delta(0)] * (layers - 1 - len(factors)) + [_delta(centre)]


def _analysis_factors(taps: np.ndarray, first: int, layers: int = 4) -> List[np.ndarray]:
    """``layers`` 3-tap factors (positions -1, 0, 1) whose convolution is ``taps`` (positions from ``first``).

    A symmetric filter that fits is placed as :func:`_symmetric_analysis_factors` (exact at
    reflected borders); otherwise shifts (delta factors) come first: a shifted copy is exact at
    the zero-padded borders.
    """
    symmetric = _symmetric_analysis_factors(taps, first, layers)
    if symmetric is not None:
        return symmetric
    start, span = _span(taps, first)
    factors = _three_tap_factors(span)
    # where the product of the factors starts now: each factor spans [-1, 1]
    composed_start, _ = _span(_compose(factors), -len(factors))
    shift = start - composed_start
    deltas = []
    while len(deltas) + len(factors) < layers:
        step = int(np.clip(shift, -1, 1))
        deltas.append(_delta(step))
        shift -= step
    if shift != 0 or len(factors) > layers:
        raise ValueError(f'a filter of {len(span)} taps starting at {start} does not fit {layers} 3x3 layers')
    factors = deltas + factors
    if not np.allclose(_compose(factors)[start + layers:start + layers + len(span)], span, atol=1e-9):
        raise ValueError(f'a filter of {len(span)} taps starting at {start} does not factor into {layers} 3x3 layers')
    return factors


def _synthesis_factors(taps: np.ndarray, first: int) -> Tuple[np.ndarray, List[np.ndarray]]:
    """``(d, [f1, f2, f3])``: ``d`` 4 taps on [-1, 2] (the transposed conv), ``f`` 3 taps on [-1, 1], composing ``taps``.

    A symmetric filter that fits makes ``d`` a pure shift (the band's samples put at their phase,
    zeros between) and every ``f`` symmetric and centred: the upsampled band is then symmetric about
    the first and last output sample, and each refining layer's reflection is its true extension.
    """
    start, span = _span(taps, first)
    symmetric = _symmetric_factors(span)
    centre = start + len(span) // 2
    if symmetric is not None and len(symmetric) <= 3 and -1 <= centre <= 2:
        d = np.zeros(4)
        d[centre + 1] = 1.
        return d, symmetric + [_delta(0)] * (3 - len(symmetric))
    factors = _three_tap_factors(span)
    if len(factors) > 4:
        raise ValueError(f'a synthesis filter of {len(span)} taps does not fit the decoder')
    while len(factors) < 4:
        factors.insert(0, _delta(0))
    composed_start, _ = _span(_compose(factors), -4)
    shift = start - composed_start
    if shift not in (0, 1):  # d holds factor 0 at positions [-1, 1] or [0, 2]
        raise ValueError(f'a synthesis filter starting at {start} does not fit the decoder')
    d = np.zeros(4)
    d[shift:shift + 3] = factors[0]
    return d, factors[1:]


def _filters_1d(wavelet: str) -> Tuple[Tuple[np.ndarray, ...], int]:
    """The wavelet's filters as the WAE's layers apply them, with PyWavelets' alignment, and their first position.

    Analysis (PyTorch correlation, then stride 2): ``band[i] = sum_t K[t] x[2i + t]``.
    Synthesis (transposed conv): ``x[o] = sum_i band[i] S[o - 2i]``. As wae_timm.layers.wavelet, for
    filters of (even) length L: ``band[i] = sum_j dec[L-1-j] x[2i + j - L/2 + 1]``,
    ``x[o] = sum_i band[i] rec[o + L/2 - 1 - 2i]``.
    """
    dec_lo, dec_hi, rec_lo, rec_hi = (np.asarray(f, dtype=np.float64) for f in pywt.Wavelet(wavelet).filter_bank)
    return (dec_lo[::-1], dec_hi[::-1], rec_lo, rec_hi), -(len(dec_lo) // 2 - 1)


def _set(param: torch.nn.Parameter, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.from_numpy(value))


def init_as_colour_wavelet(wae: WaveletLikeAutoEncoder, wavelet: str = WAVELET) -> WaveletLikeAutoEncoder:
    """Set ``wae``'s weights (encoder and decoder) to the colour 6-band CDF 9/7 transform; returns ``wae``.

    The input is the normalised image (ImageNet mean/std, the ``wae_*`` models' default).
    Needs the paper's sizes (RGB input, 16 channels, 3-channel bands) and the decoder.
    """
    stem = [wae.stem[0], wae.stem[2], wae.stem[4]]
    if wae.in_chans != 3 or wae.band_chans != 3 or stem[0].out_channels < 12 or not wae.has_decoder:
        raise ValueError('init_as_colour_wavelet needs the paper\'s WAE: RGB input, >= 12 channels, 3-channel bands, '
                         f'with its decoder; got in_chans={wae.in_chans}, width={stem[0].out_channels}, '
                         f'band_chans={wae.band_chans}, decoder={wae.has_decoder}')
    (lo, hi, rec_lo, rec_hi), first = _filters_1d(wavelet)
    std = np.asarray(IMAGENET_DEFAULT_STD, dtype=np.float64)
    luma = np.asarray(LUMA_WEIGHTS)
    luma_std = float(luma @ std)  # the luma of the [0, 1] image, in units of the normalised input
    # the six signals the encoder carries: cA of R, G, B, then cH, cV, cD of the luma
    # (PyWavelets' 2-D band order: rows filtered first letter, columns second; a = low, d = high)
    band_filters = [(lo, lo)] * 3 + [(hi, lo), (lo, hi), (hi, hi)]
    inputs = [np.eye(3)[c] for c in range(3)] + [luma * std / luma_std] * 3
    layer_factors = []
    for rows, cols in band_filters:
        row_f, col_f = _analysis_factors(rows, first), _analysis_factors(cols, first)
        layer_factors.append([np.outer(r, c) for r, c in zip(row_f, col_f)])

    def signed_pairs(weight: np.ndarray, kernels: Sequence[np.ndarray], sources: Sequence[int]) -> None:
        """Signal ``k`` (channels 2k, 2k+1 = relu(s), relu(-s)) <- kernels[k] applied to signal sources[k]."""
        for k, (kernel, src) in enumerate(zip(kernels, sources)):
            for sign_out in (0, 1):
                for sign_in in (0, 1):
                    weight[2 * k + sign_out, 2 * src + sign_in] = kernel * (1. if sign_out == sign_in else -1.)

    width = stem[0].out_channels
    first_layer = np.zeros((width, 3, 3, 3))
    for k, mix in enumerate(inputs):
        for sign in (0, 1):
            first_layer[2 * k + sign] = np.einsum('c,hw->chw', mix, layer_factors[k][0]) * (1. if sign == 0 else -1.)
    _set(stem[0].weight, first_layer)
    for layer, conv in enumerate(stem[1:], start=1):
        weight = np.zeros((width, width, 3, 3))
        signed_pairs(weight, [f[layer] for f in layer_factors], range(6))
        _set(conv.weight, weight)
    for conv, signals in ((wae.to_low, range(0, 3)), (wae.to_high, range(3, 6))):
        weight = np.zeros((3, width, 3, 3))
        for out, k in enumerate(signals):
            weight[out, 2 * k] = layer_factors[k][3]
            weight[out, 2 * k + 1] = -layer_factors[k][3]
        _set(conv.weight, weight)

    # decoder: D_L synthesises each colour from its cA; D_H each luma band, summed into every colour
    synthesis = {'low': [(rec_lo, rec_lo)] * 3, 'high': [(rec_hi, rec_lo), (rec_lo, rec_hi), (rec_hi, rec_hi)]}
    for branch, decoder in (('low', wae.decode_low), ('high', wae.decode_high)):
        chains = []
        for rows, cols in synthesis[branch]:
            (d_row, row_f), (d_col, col_f) = _synthesis_factors(rows, first), _synthesis_factors(cols, first)
            # the refining layers are PyTorch correlations: flip a factor to convolve with it
            chains.append((np.outer(d_row, d_col), [np.outer(r, c)[::-1, ::-1] for r, c in zip(row_f, col_f)]))
        up = np.zeros((3, decoder.up.out_channels, 4, 4))  # ConvTranspose2d weight: [in, out, kH, kW]
        for k, (d, _) in enumerate(chains):
            up[k, 2 * k], up[k, 2 * k + 1] = d, -d
        _set(decoder.up.weight, up)
        for layer, conv in enumerate((decoder.conv1, decoder.conv2)):
            weight = np.zeros(conv.weight.shape)
            signed_pairs(weight, [c[1][layer] for c in chains], range(3))
            _set(conv.weight, weight)
        last = np.zeros(decoder.conv3.weight.shape)
        for k, (_, factors) in enumerate(chains):
            for out in range(3):
                if branch == 'low' and out != k:
                    continue
                # luma details in [0, 1] units added to each colour channel, in its normalised units
                gain = 1. if branch == 'low' else luma_std / std[out]
                last[out, 2 * k] = gain * factors[2]
                last[out, 2 * k + 1] = -gain * factors[2]
        _set(decoder.conv3.weight, last)
    for module in wae.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.zeros_(module.bias)
    wae.decoder_loaded = True
    return wae
