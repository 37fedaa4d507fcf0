"""The CDF 9/7 DWT: agreement with PyWavelets, perfect reconstruction, shapes, tracing."""
import numpy as np
import pytest
import pywt
import torch
from torch.fx import symbolic_trace

from wae_timm.layers.wavelet import WAVELET, WaveletDecomposition, WaveletReconstruction

SIZES = [(16, 16), (17, 16), (15, 21), (33, 33)]


def test_is_cdf_9_7_from_pywavelets():
    wavelet = pywt.Wavelet(WAVELET)
    assert wavelet.biorthogonal and not wavelet.orthogonal
    # CDF 9/7: a 9-tap analysis low-pass and a 7-tap analysis high-pass (zero-padded to 10 by PyWavelets)
    assert np.count_nonzero(np.round(wavelet.dec_lo, 12)) == 9
    assert np.count_nonzero(np.round(wavelet.dec_hi, 12)) == 7
    assert sum(wavelet.dec_lo) == pytest.approx(2 ** 0.5)


@pytest.mark.parametrize('size', SIZES)
def test_matches_pywt_dwt2(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    low, high = WaveletDecomposition()(x)
    c_a, (c_h, c_v, c_d) = pywt.dwt2(x.numpy(), WAVELET, mode='periodization')
    half = ((size[0] + 1) // 2, (size[1] + 1) // 2)
    assert low.shape == (2, 3, *half) and high.shape == (2, 9, *half)
    np.testing.assert_allclose(low.numpy(), c_a, atol=1e-12)
    np.testing.assert_allclose(high.numpy(), np.concatenate([c_h, c_v, c_d], axis=1), atol=1e-12)


@pytest.mark.parametrize('size', SIZES)
def test_perfect_reconstruction_and_matches_pywt_idwt2(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    low, high = WaveletDecomposition()(x)
    rebuilt = WaveletReconstruction()(low, high, *size)
    assert rebuilt.shape == x.shape
    torch.testing.assert_close(rebuilt, x, atol=1e-9, rtol=0)  # PyWavelets' filters carry ~1e-12 precision
    c_h, c_v, c_d = np.split(high.numpy(), 3, axis=1)
    expected = pywt.idwt2((low.numpy(), (c_h, c_v, c_d)), WAVELET, mode='periodization')[..., :size[0], :size[1]]
    np.testing.assert_allclose(rebuilt.numpy(), expected, atol=1e-12)


def test_float32_and_energy_of_a_smooth_image():
    # a smooth image puts (almost) all its energy in cA: the detail bands of a ramp are ~0 away from the wrap
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 2, 64, 64).contiguous()
    low, high = WaveletDecomposition()(ramp)
    assert low.dtype == high.dtype == torch.float32
    assert high[..., 4:-4, 4:-4].abs().max() < 1e-5
    assert low.abs().mean() > 0.5
    torch.testing.assert_close(WaveletReconstruction()(low, high, 64, 64), ramp, atol=1e-5, rtol=0)


def test_gradients_flow_and_no_parameters():
    dwt = WaveletDecomposition()
    assert not list(dwt.parameters()) and not dwt.state_dict()
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    low, high = dwt(x)
    (low.sum() + high.pow(2).sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_script_and_fx_trace_on_odd_sizes():
    dwt = WaveletDecomposition()
    scripted = torch.jit.script(dwt)
    traced = symbolic_trace(dwt)
    for size in [(32, 32), (33, 31)]:
        x = torch.randn(1, 3, *size)
        expected = dwt(x)
        for got in (scripted(x), traced(x)):
            torch.testing.assert_close(got, expected)


def test_torch_compile_has_no_graph_break():
    explanation = torch._dynamo.explain(WaveletDecomposition())(torch.randn(1, 3, 33, 32))
    assert explanation.graph_break_count == 0


def test_reconstruction_rejects_mismatched_bands():
    low, high = WaveletDecomposition()(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r'\[B, 3C, h, w\]'):
        WaveletReconstruction()(low, high[:, :6], 32, 32)
    with pytest.raises(ValueError, match='got 40x32'):
        WaveletReconstruction()(low, high, 40, 32)
