"""The high-frequency branch: the backbone's own architecture at a quarter of its widths."""
import inspect
import sys

import pytest
import timm
import torch
import torch.nn as nn
from timm.models import build_model_with_cfg, model_entrypoint

from wae_timm import UnsupportedBackboneError, create_width_scaled, family_of
from wae_timm.layers.width_scaling import SUPPORTED_FAMILIES, capture_build_args

# one small member of each supported family (and a deep-stem / grouped ResNet)
EXACT_FAMILIES = ['resnet18', 'resnet50', 'resnet26d', 'resnext50_32x4d',
                  'vgg11', 'convnext_atto', 'regnetx_002', 'regnety_002']
MULTIPLIER_FAMILIES = ['efficientnet_b0', 'mobilenetv3_small_100', 'mobilenetv3_large_100']


def _convs(model: nn.Module):
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize('name', EXACT_FAMILIES)
def test_every_conv_is_exactly_a_quarter(name):
    full = timm.create_model(name, num_classes=0)
    quarter = create_width_scaled(name, 4, num_classes=0)
    full_convs, quarter_convs = _convs(full), _convs(quarter)
    assert full_convs.keys() == quarter_convs.keys()
    for key, conv in full_convs.items():
        if key.endswith('pre_logits.fc1') or key.endswith('pre_logits.fc2'):
            continue  # VGG's head MLP, removed from branches by prepare_trunk
        scaled = quarter_convs[key]
        squeeze_excite_reduction = key.endswith('se.fc1')
        if squeeze_excite_reduction:
            # its width is a ratio of the block's width, rounded: within half a channel
            assert abs(scaled.out_channels - conv.out_channels / 4) <= 0.5, key
        else:
            assert scaled.out_channels * 4 == conv.out_channels, key
        if conv.in_channels != 3 and not key.endswith('se.fc2'):
            assert scaled.in_channels * 4 == conv.in_channels, key
        assert conv.groups == scaled.groups or conv.groups == conv.in_channels, key  # same group count, or depthwise
    assert quarter.num_features * 4 == full.num_features
    assert [f['num_chs'] * 4 for f in quarter.feature_info] == [f['num_chs'] for f in full.feature_info]
    assert [f['reduction'] for f in quarter.feature_info] == [f['reduction'] for f in full.feature_info]


@pytest.mark.parametrize('name', MULTIPLIER_FAMILIES)
def test_channel_multiplier_families_stage_widths_are_a_quarter(name):
    # inside a block, timm rounds expansion widths up to a multiple of 8 itself,
    # so the exact quarter holds for stage outputs, stem and head
    full = timm.create_model(name, num_classes=0)
    quarter = create_width_scaled(name, 4, num_classes=0)
    assert [f['num_chs'] * 4 for f in quarter.feature_info] == [f['num_chs'] for f in full.feature_info]
    assert quarter.conv_stem.out_channels * 4 == full.conv_stem.out_channels
    assert quarter.head_hidden_size * 4 == full.head_hidden_size
    ratio = sum(p.numel() for p in quarter.parameters()) / sum(p.numel() for p in full.parameters())
    assert 1 / 20 < ratio < 1 / 8


@pytest.mark.parametrize('name', EXACT_FAMILIES[:1] + ['convnext_atto', 'efficientnet_b0', 'regnetx_002', 'vgg11'])
def test_scaled_model_runs(name):
    quarter = create_width_scaled(name, 4, num_classes=7)
    out = quarter(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)


def test_other_divisors():
    half = create_width_scaled('resnet18', 2, num_classes=0)
    assert [f['num_chs'] for f in half.feature_info] == [32, 32, 64, 128, 256]


def test_family_names():
    assert family_of('resnet50') == 'resnet' and family_of('vgg16') == 'vgg'
    assert family_of('efficientnet_b3') == 'efficientnet' and family_of('regnety_016') == 'regnet'


def test_unsupported_backbone_lists_supported_families():
    with pytest.raises(UnsupportedBackboneError) as err:
        create_width_scaled('vit_tiny_patch16_224')
    for family in SUPPORTED_FAMILIES:
        assert family.name in str(err.value)
    assert 'vit_tiny_patch16_224' in str(err.value)


def test_unknown_model_name():
    with pytest.raises(UnsupportedBackboneError, match='unknown timm model'):
        create_width_scaled('resnet_does_not_exist')


def test_bad_divisor():
    with pytest.raises(ValueError, match='width_divisor'):
        create_width_scaled('resnet18', 0)


# one entrypoint per supported family, for the contract capture_build_args relies on
FAMILY_MEMBERS = {'resnet': 'resnet18', 'vgg': 'vgg11', 'convnext': 'convnext_atto', 'efficientnet': 'efficientnet_b0',
                  'mobilenetv3': 'mobilenetv3_small_100', 'regnet': 'regnetx_002'}


def _timm_changed(what: str) -> str:
    return (f'timm {timm.__version__} changed what wae_timm.layers.width_scaling.capture_build_args relies on: {what}. '
            'Width scaling (the WAE high-frequency branch) needs updating for this timm version.')


def test_every_supported_family_has_a_contract_member():
    assert sorted(FAMILY_MEMBERS) == sorted(f.name for f in SUPPORTED_FAMILIES)


def test_build_model_with_cfg_signature():
    first = list(inspect.signature(build_model_with_cfg).parameters)[:3]
    assert first == ['model_cls', 'variant', 'pretrained'], _timm_changed(
        f'build_model_with_cfg takes {first} first, not (model_cls, variant, pretrained)')


@pytest.mark.parametrize('family,name', FAMILY_MEMBERS.items())
def test_entrypoint_builds_through_build_model_with_cfg_of_its_module(family, name):
    """The entrypoint calls ``build_model_with_cfg`` from its own module's namespace with the class and
    the constructor kwargs, and those rebuild exactly the model ``timm.create_model`` makes."""
    module = sys.modules[model_entrypoint(name).__module__]
    assert getattr(module, 'build_model_with_cfg', None) is build_model_with_cfg, _timm_changed(
        f'{module.__name__} (entrypoint of {name!r}) no longer has timm.models.build_model_with_cfg in its namespace')
    try:
        args = capture_build_args(name, num_classes=7)
    except UnsupportedBackboneError as err:
        pytest.fail(_timm_changed(f'capturing the build arguments of {name!r} failed: {err}'))
    assert args.variant == name and isinstance(args.model_cls, type), _timm_changed(
        f'{name!r} passed variant={args.variant!r}, model_cls={args.model_cls!r} to build_model_with_cfg')
    assert family_of(name) == family, _timm_changed(f'{name!r} is built as a {args.model_cls.__name__}')
    rebuilt = build_model_with_cfg(args.model_cls, args.variant, False, **args.kwargs)
    expected = timm.create_model(name, num_classes=7)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert type(rebuilt) is type(expected) and shapes(rebuilt) == shapes(expected), _timm_changed(
        f'the captured arguments of {name!r} no longer rebuild the model timm.create_model makes')
