"""Decomposition pictures: contrast stretch, checkpoint loading, and the figure's layout."""
import matplotlib.image
import pytest
import torch

from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder
from wae_timm.train import save_wae
from wae_timm.experiments.figures import (
    COLUMNS, FIGURE_DPI, PANEL_INCHES, contrast_stretch, decomposition_panels, load_front_end,
    render_decomposition_figure)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_contrast_stretch_maps_min_and_max_to_0_and_1():
    image = torch.randn(3, 8, 8) * 0.01 - 3.
    stretched = contrast_stretch(image)
    assert stretched.min().item() == 0. and stretched.max().item() == pytest.approx(1.)
    # linear: the order of values and their relative distances are kept
    flat, flat_stretched = image.flatten(), stretched.flatten()
    assert torch.equal(flat.argsort(), flat_stretched.argsort())
    assert torch.equal(contrast_stretch(torch.full((1, 4, 4), 7.)), torch.zeros(1, 4, 4))


def test_load_front_end_from_wae_and_from_a_classifier(tmp_path):
    torch.manual_seed(0)
    wae = WaveletLikeAutoEncoder().eval()
    wae_path = save_wae(wae, tmp_path / 'wae.safetensors')
    loaded = load_front_end(wae_path)
    x = torch.randn(1, 3, 32, 32)
    assert loaded.has_decoder
    assert torch.allclose(loaded(x)[2], wae(x)[2])

    from safetensors.torch import save_file
    from wae_timm import WAEWrapper
    classifier = WAEWrapper('resnet18', num_classes=10, with_decoder=False)
    save_file(classifier.state_dict(), str(tmp_path / 'classifier.safetensors'))
    encoder = load_front_end(tmp_path / 'classifier.safetensors')
    assert not encoder.has_decoder
    assert torch.equal(encoder.encode(x).high, classifier.wae.encode(x).high)
    with pytest.raises(FileNotFoundError, match='safetensors'):
        load_front_end(tmp_path / 'missing.safetensors')


def test_figure_layout(tmp_path):
    images = torch.randn(2, 3, 32, 32)
    front_ends = [('WAE', WaveletLikeAutoEncoder().eval()),
                  ('Decomposition+CNN', WaveletLikeAutoEncoder(with_decoder=False).eval())]
    panels = decomposition_panels(front_ends[1][1], images, MEAN, STD)
    assert len(panels) == 2 and panels[0][3] is None
    assert panels[0][1].min() == 0 and panels[0][1].max() == pytest.approx(1)

    path = render_decomposition_figure(front_ends, images, tmp_path / 'fig.png', MEAN, STD)
    height, width = matplotlib.image.imread(path).shape[:2]
    rows = len(front_ends) * images.shape[0]
    assert (width, height) == (round(len(COLUMNS) * PANEL_INCHES * FIGURE_DPI), round(rows * PANEL_INCHES * FIGURE_DPI))
    with pytest.raises(FileExistsError, match='overwrite'):
        render_decomposition_figure(front_ends, images, path, MEAN, STD)
    with pytest.raises(ValueError, match='png'):
        render_decomposition_figure(front_ends, images, tmp_path / 'fig.jpg', MEAN, STD)
