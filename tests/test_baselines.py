"""The paper's baselines: registered names, band shapes, same heads as the WAE model, timm contract."""
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import test_models as contract  # the timm contract every wae_* model passes
import wae_timm
from wae_timm.models.baselines import BASELINE_BACKBONES, BASELINE_CHANGES, BASELINE_MODEL_ARGS
from wae_timm.models.comparison import COMPARISON, baseline_methods, comparison_method
from wae_timm.models.wae import WAE_MODEL_ARGS
from wae_timm.layers.wavelet import WaveletDecomposition

SMALL_BASELINES = sorted(f'{kind}_resnet18' for kind in BASELINE_CHANGES)

# kind -> (low band channels, high band channels, has fusion branch, has decoder)
EXPECTED_BANDS = {
    'wavelet_cnn': (3, 9, True, False),
    'ca_only_wavelet': (3, 9, False, False),
    'decomposition_cnn': (3, 3, True, False),
    'low_only_wae': (3, 0, False, False),  # no fusion branch, no decoder: nothing reads I_H
    'half_res': (3, 0, False, False),
}


def _kind(name: str) -> str:
    return name.rsplit('_', 1)[0]


def test_the_comparison_table_has_the_papers_methods_and_the_registry_reads_it():
    assert [m.label for m in COMPARISON] == [
        'backbone @224', 'backbone @112', 'WAE', 'Wavelet+CNN', 'cA', 'Decomposition+CNN', 'I_L only', 'I_R']
    assert [m.key for m in baseline_methods()] == list(BASELINE_CHANGES)
    for method in baseline_methods():
        assert method.timm_name == method.key + '_{backbone}'
        assert BASELINE_CHANGES[method.key] == dict(method.wrapper_changes)
        assert all(method.model_name(b) in BASELINE_MODEL_ARGS for b in BASELINE_BACKBONES)
    assert comparison_method('wae').model_name('resnet50') == 'wae_resnet50'
    assert comparison_method('backbone_half_input').input_size == 112
    with pytest.raises(KeyError, match='known'):
        comparison_method('vgg16')
    with pytest.raises(TypeError):
        comparison_method('half_res').wrapper_changes['fusion'] = True  # read-only: every consumer shares it


def test_registered_and_named_apart_from_wae_models():
    registered = set(timm.list_models([f'{kind}_*' for kind in BASELINE_CHANGES]))
    assert registered == set(BASELINE_MODEL_ARGS)
    assert len(registered) == len(BASELINE_CHANGES) * len(BASELINE_BACKBONES)
    assert not any(name.startswith('wae_') for name in registered)
    assert set(timm.list_models('wae_*')) == set(WAE_MODEL_ARGS)


@pytest.mark.parametrize('backbone', BASELINE_BACKBONES)
def test_same_heads_as_the_wae_model(backbone):
    head_args = ('backbone', 'flatten_grid', 'low_hidden', 'fusion_hidden', 'hidden_drop_rate')
    wae_args = WAE_MODEL_ARGS[f'wae_{backbone}']
    for kind, changes in BASELINE_CHANGES.items():
        args = BASELINE_MODEL_ARGS[f'{kind}_{backbone}']
        # without a fusion branch there is no fusion head to shape
        compared = [k for k in head_args if args.get('fusion', True) or k != 'fusion_hidden']
        assert {k: args.get(k) for k in compared} == {k: wae_args.get(k) for k in compared}
        assert {k: v for k, v in args.items() if wae_args.get(k) != v} == changes


def test_vgg16_baselines_keep_the_reference_heads():
    wae = timm.create_model('wae_vgg16', num_classes=10)
    wavelet = timm.create_model('wavelet_cnn_vgg16', num_classes=10)

    def shapes(module: nn.Module):
        return [tuple(p.shape) for p in module.parameters()]

    assert shapes(wavelet.head_low) == shapes(wae.head_low)
    # the wavelet's high branch takes 9 channels (cH, cV, cD of RGB) instead of I_H's 3: only its first conv differs
    assert shapes(wavelet.head_fusion) == shapes(wae.head_fusion)
    assert wavelet.high.features[0].in_channels == 9 and shapes(wavelet.high)[2:] == shapes(wae.high)[2:]


@pytest.mark.parametrize('name', SMALL_BASELINES)
def test_forward_train_band_shapes_and_gradients(name):
    low_chans, high_chans, fusion, decoder = EXPECTED_BANDS[_kind(name)]
    model = timm.create_model(name, num_classes=5)
    x = torch.randn(2, 3, 64, 63)
    out = model.forward_train(x)
    assert out.low.shape == (2, low_chans, 32, 32) and out.high.shape == (2, high_chans, 32, 32)
    assert out.logits.shape == out.logits_low.shape == (2, 5)
    assert (out.logits_fusion is not None) == fusion == model.fusion
    assert (out.reconstruction is not None) == decoder
    if not fusion:
        assert torch.equal(out.logits, out.logits_low)
        assert model.get_classifier() is model.head_low.fc
        assert isinstance(model.high, nn.Identity) and isinstance(model.head_fusion, nn.Identity)

    loss = F.cross_entropy(out.logits, torch.tensor([0, 1]))
    if decoder:
        loss = loss + 1e-3 * model.transform_loss(x, out)
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f'parameters that get no gradient: {unused[:5]}'


def test_low_only_builds_i_h_only_for_the_transform_loss():
    """The "I_L only" model reads I_H only through the decoder, so I_H exists exactly in stage 3."""
    stage2 = timm.create_model('low_only_wae_resnet18', num_classes=5)
    assert stage2.wae.to_high is None and not stage2.wae.has_decoder
    stage3 = timm.create_model('low_only_wae_resnet18', num_classes=5, aux_loss_weight=1e-3)
    assert stage3.wae.to_high is not None and stage3.wae.has_decoder
    stage3(torch.randn(2, 3, 32, 32)).mean().backward()
    assert all(p.grad is not None for p in stage3.parameters())
    # a stage-2 checkpoint (no I_H, no decoder) loads into the stage-3 form and back
    stage3.load_state_dict(stage2.state_dict())
    stage2.load_state_dict(stage3.state_dict())


# the new front ends (DWT, resize) and the missing fusion branch: the rest of each baseline is a WAE model's
@pytest.mark.parametrize('name', ['wavelet_cnn_resnet18', 'half_res_resnet18'])
def test_timm_contract(name):
    contract.test_forward_backward(name)
    contract.test_default_cfg_and_heads(name)
    contract.test_torchscript_keeps_input_checks(name)
    contract.test_fx_trace_keeps_input_checks(name)
    contract.test_channels_last_and_bf16_autocast(name)
    contract.test_features_only(name)


def test_resnet50_baseline_runs():
    model = timm.create_model('wavelet_cnn_resnet50', num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert model.high_channels * 4 == model.low_channels == 2048


def test_fixed_front_ends_compute_what_they_name():
    x = torch.randn(2, 3, 64, 64)
    c_a, details = WaveletDecomposition()(x)
    wavelet = timm.create_model('wavelet_cnn_resnet18')
    low, high = wavelet.forward_decomposition(x)
    assert torch.equal(low, c_a) and torch.equal(high, details)
    assert wavelet.pretrained_cfg['first_conv'] == 'low.conv1'  # no weights in the DWT

    half_res = timm.create_model('half_res_resnet18')
    low, _ = half_res.forward_decomposition(x)
    torch.testing.assert_close(low, F.interpolate(x, size=(32, 32), mode='bilinear', antialias=True))


def test_decomposition_cnn_cannot_take_the_transform_loss():
    with pytest.raises(ValueError, match='needs the WAE decoder'):
        timm.create_model('decomposition_cnn_resnet18', aux_loss_weight=0.001)
    assert wae_timm.WAEWrapper  # the WAE model of the same backbone can
    assert timm.create_model('wae_resnet18', aux_loss_weight=0.001).wae.has_decoder
