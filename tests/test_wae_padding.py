"""The WAE's padding option: what reflection changes (the borders only), and that weights carry their padding."""
import copy

import pytest
import timm
import torch

from wae_timm import WAEWrapper
from wae_timm.data.photographs import find_photographs, load_photograph, photograph_name
from wae_timm.deploy.inference import prepare_for_inference
from wae_timm.experiments.reconstruction import evaluate_wae
from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder, load_wae_weights, weights_padding_mode
from wae_timm.publish.hub import architecture_args
from wae_timm.train.stage1 import save_wae
from wae_timm.train.wavelet_init import LUMA_WEIGHTS, init_as_colour_wavelet


@pytest.mark.parametrize('height, width', [(9, 9), (32, 17), (3, 4)])
def test_reflect_padding_keeps_every_shape(height, width):
    wae = WaveletLikeAutoEncoder(padding_mode='reflect')
    low, high, reconstruction = wae(torch.randn(2, 3, height, width))
    assert low.shape == high.shape == (2, 3, (height + 1) // 2, (width + 1) // 2)
    assert reconstruction.shape == (2, 3, height, width)


def test_reflect_padding_changes_the_borders_only_and_rebuilds_them_better():
    """A grey photograph, which the colour 6-band start rebuilds exactly away from the borders."""
    photo = {photograph_name(p): p for p in find_photographs()}['LadyBird.jpg']
    image = load_photograph(photo, 64)
    grey = (torch.tensor(LUMA_WEIGHTS).view(3, 1, 1) * image).sum(0, keepdim=True).expand(3, -1, -1).contiguous()
    scores = {}
    for mode in ('zeros', 'reflect'):
        wae = init_as_colour_wavelet(WaveletLikeAutoEncoder(padding_mode=mode), 'bior2.2').eval()
        with torch.no_grad():
            scores[mode] = evaluate_wae(wae, grey)
    assert scores['zeros']['psnr_both_interior_db'] > 100  # exact inside: only the borders lose
    assert scores['reflect']['psnr_both_interior_db'] == pytest.approx(scores['zeros']['psnr_both_interior_db'])
    assert scores['reflect']['psnr_both_db'] > scores['zeros']['psnr_both_db'] + 2
    assert scores['reflect']['psnr_both_db'] > 100  # the borders too: symmetric filters, reflected at every layer


@pytest.mark.parametrize('height, width', [(32, 48), (33, 47), (8, 8)])
def test_reflecting_legall_start_rebuilds_a_grey_image_exactly_to_its_borders(height, width):
    """Every layer's reflection is the true symmetric extension of what it reads (JPEG 2000's rule)."""
    grey = torch.rand(1, height, width).expand(3, -1, -1).contiguous()
    wae = init_as_colour_wavelet(WaveletLikeAutoEncoder(padding_mode='reflect'), 'bior2.2').eval()
    assert evaluate_wae(wae, grey)['psnr_both_db'] > 100


def test_unknown_padding_is_refused():
    with pytest.raises(ValueError, match=r"padding_mode='circular': expected one of \('zeros', 'reflect'\)"):
        WaveletLikeAutoEncoder(padding_mode='circular')
    with pytest.raises(ValueError, match="wae_padding='mirror'"):
        WAEWrapper('resnet18', num_classes=10, wae_padding='mirror')
    with pytest.raises(ValueError, match='wae_padding=.* needs decomposition="wae"'):
        WAEWrapper('resnet18', num_classes=10, decomposition='wavelet', wae_padding='reflect')


@pytest.fixture
def reflect_weights(tmp_path):
    return save_wae(WaveletLikeAutoEncoder(padding_mode='reflect'), tmp_path / 'reflect.safetensors')


def test_weights_carry_their_padding_into_every_model_built_from_them(reflect_weights, tmp_path):
    assert weights_padding_mode(reflect_weights) == 'reflect'
    assert weights_padding_mode(save_wae(WaveletLikeAutoEncoder(), tmp_path / 'zeros.safetensors')) == 'zeros'
    with pytest.raises(ValueError, match=rf"{reflect_weights.name} is of a WAE with padding_mode 'reflect'.*"
                                         r"wae_padding='reflect'"):
        load_wae_weights(WaveletLikeAutoEncoder(), reflect_weights)
    model = timm.create_model('wae_resnet18', num_classes=10, wae_weights=str(reflect_weights))
    assert model.wae.padding_mode == 'reflect' and model.wae.stem[0].padding_mode == 'reflect'
    assert timm.create_model('wae_resnet18', num_classes=10).wae.padding_mode == 'zeros'
    with pytest.raises(ValueError, match="is of a WAE with padding_mode 'reflect'"):
        WAEWrapper('resnet18', num_classes=10, wae_weights=str(reflect_weights), wae_padding='zeros')


def test_a_whole_checkpoint_refuses_a_model_of_the_other_padding():
    """What timm's validate.py does with a checkpoint: load_state_dict into the model it built."""
    reflecting = timm.create_model('wae_resnet18', num_classes=10, wae_padding='reflect')
    zero_padded = timm.create_model('wae_resnet18', num_classes=10)
    with pytest.raises(ValueError, match="padding_mode 'reflect'.*--model-kwargs wae_padding=reflect"):
        zero_padded.load_state_dict(reflecting.state_dict())
    with pytest.raises(ValueError, match="padding_mode 'zeros'.*--model-kwargs wae_padding=zeros"):
        reflecting.load_state_dict(zero_padded.state_dict())
    timm.create_model('wae_resnet18', num_classes=10, wae_padding='reflect').load_state_dict(reflecting.state_dict())


def test_published_config_records_the_padding_the_weights_chose(reflect_weights, tmp_path):
    assert architecture_args({'num_classes': 10, 'wae_weights': str(reflect_weights)}, False) == \
        {'num_classes': 10, 'wae_padding': 'reflect'}
    zeros = save_wae(WaveletLikeAutoEncoder(), tmp_path / 'zeros.safetensors')
    assert architecture_args({'num_classes': 10, 'wae_weights': str(zeros)}, False) == {'num_classes': 10}
    with pytest.raises(ValueError, match="cannot be read here.*add wae_padding="):
        architecture_args({'wae_weights': str(tmp_path / 'gone.safetensors')}, False)


@pytest.mark.parametrize('backend', ['eager', 'jit', 'onnxruntime'])
def test_reflect_padded_model_runs_the_same_on_every_deployment_path(backend):
    torch.manual_seed(0)
    model = WAEWrapper('resnet18', num_classes=10, wae_padding='reflect').eval()
    assert copy.deepcopy(model).fuse_for_inference().wae.to_bands.padding_mode == 'reflect'
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fast = prepare_for_inference(copy.deepcopy(model), backend=backend, example_input=x[:1])
        torch.testing.assert_close(fast(x), expected, rtol=0, atol=1e-4)
