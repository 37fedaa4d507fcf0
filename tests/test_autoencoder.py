"""The Wavelet-like Auto-Encoder: shapes, the transform loss, initialisation."""
import pytest
import torch

from wae_timm import WaveletLikeAutoEncoder, transform_loss


@pytest.mark.parametrize('height,width', [(64, 64), (65, 63), (33, 47), (224, 224)])
def test_decomposition_and_reconstruction_shapes(height, width):
    wae = WaveletLikeAutoEncoder()
    x = torch.randn(2, 3, height, width)
    low, high, reconstruction = wae(x)
    half = (2, 3, (height + 1) // 2, (width + 1) // 2)
    assert low.shape == half and high.shape == half
    assert reconstruction.shape == x.shape


def test_layer_widths_follow_the_paper():
    wae = WaveletLikeAutoEncoder()
    stem_convs = [m for m in wae.stem if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in stem_convs] == [16, 16, 16]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in stem_convs)
    for branch in (wae.to_low, wae.to_high):
        assert (branch.out_channels, branch.stride, branch.kernel_size) == (3, (2, 2), (3, 3))
    for decoder in (wae.decode_low, wae.decode_high):
        assert decoder.up.kernel_size == (4, 4) and decoder.up.stride == (2, 2)
        assert [decoder.conv1.out_channels, decoder.conv2.out_channels, decoder.conv3.out_channels] == [16, 16, 3]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in wae.modules())


def test_transform_loss_by_hand():
    image = torch.full((2, 3, 2, 2), 2.0)
    reconstruction = torch.ones(2, 3, 2, 2)  # error 1 at 12 pixels per image -> 12
    high = torch.full((2, 3, 1, 1), 3.0)  # energy 3 * 9 = 27 per image
    assert transform_loss(image, reconstruction, high, energy_weight=0.5).item() == pytest.approx(12 + 0.5 * 27)
    # a batch mean: one image with zero error halves the reconstruction term
    reconstruction[1] = image[1]
    assert transform_loss(image, reconstruction, high).item() == pytest.approx(6 + 27)


def test_transform_loss_gradient_reaches_encoder_and_decoder():
    wae = WaveletLikeAutoEncoder()
    x = torch.randn(2, 3, 33, 33)
    low, high, reconstruction = wae(x)
    transform_loss(x, reconstruction, high).backward()
    for name, p in wae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_xavier_init_and_zero_bias():
    wae = WaveletLikeAutoEncoder()
    conv = wae.stem[0]
    bound = (6 / (conv.in_channels * 9 + conv.out_channels * 9)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > bound / 2
    assert torch.count_nonzero(conv.bias) == 0


def test_without_decoder():
    wae = WaveletLikeAutoEncoder(with_decoder=False)
    assert not wae.has_decoder
    low, high = wae.encode(torch.randn(1, 3, 32, 32))
    with pytest.raises(RuntimeError, match='with_decoder'):
        wae.decode(low, high, 32, 32)
