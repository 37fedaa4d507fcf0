"""Width scaling: build a copy of any supported timm CNN with every width divided.

The WAE's high-frequency branch is "the same architecture as the standard
network except that the channel numbers of all the conv layers are divided by
4". Rather than a hand-written table of layers per model, this module asks the
backbone's own timm entrypoint which constructor arguments it would use
(:func:`capture_build_args` intercepts its call to ``build_model_with_cfg``
before anything is built), rewrites the width arguments with the family's rule
and builds the model through timm's ``build_model_with_cfg`` as the entrypoint
would have. A family rule knows only where a family keeps its widths
(``channels``, ``cfg``, ``dims``, ``round_chs_fn``, ...), never a model's layers.

Supported families and what is scaled:

- ResNet / ResNeXt / wide ResNet: ``channels`` and the stem.
- VGG: the ``cfg`` list.
- ConvNeXt: ``dims`` (and ``head_hidden_size`` where set).
- EfficientNet / MobileNetV3 / MobileNet-style (``_efficientnet_builder``):
  the channel-rounding function, the head width, and a fixed stem.
- RegNet: stage widths, group widths and stem width.

Every branch is also turned into a *trunk* by :func:`prepare_trunk`: the
classifier is removed so only ``forward_features`` / ``forward_head(...,
pre_logits=True)`` are used by the wrapper.
"""
import inspect
import sys
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Dict, Tuple, Type
from unittest import mock

import torch.nn as nn
import timm
from timm.models import build_model_with_cfg, is_model, model_entrypoint
from timm.models.convnext import ConvNeXt
from timm.models.efficientnet import EfficientNet
from timm.models.mobilenetv3 import MobileNetV3
from timm.models.regnet import RegNet
from timm.models.resnet import ResNet, downsample_conv
from timm.models.vgg import VGG

__all__ = [
    'BuildArgs', 'capture_build_args', 'create_width_scaled', 'prepare_trunk', 'family_of', 'default_out_indices',
    'SUPPORTED_FAMILIES', 'UnsupportedBackboneError',
]


class UnsupportedBackboneError(ValueError):
    """The backbone's architecture family has no width-scaling rule."""


@dataclass
class BuildArgs:
    """What a timm entrypoint passes to ``build_model_with_cfg``."""
    model_cls: Type[nn.Module]
    variant: str
    kwargs: Dict[str, Any]


class _Captured(Exception):
    def __init__(self, build_args: BuildArgs) -> None:
        super().__init__(build_args.variant)
        self.build_args = build_args


def capture_build_args(model_name: str, **kwargs: Any) -> BuildArgs:
    """The class and constructor arguments timm's entrypoint for ``model_name`` uses.

    The entrypoint runs with ``pretrained=False`` and its module's
    ``build_model_with_cfg`` replaced by a recorder that stops it before any
    layer is allocated, so this costs microseconds.

    This is the one place that depends on how timm's entrypoints are written:
    each calls ``build_model_with_cfg(model_cls, variant, pretrained, **kwargs)``
    as a name of its own module. ``tests/test_width_scaling.py`` checks that
    contract for every supported family and names the timm version if it breaks.
    """
    if not is_model(model_name):
        raise UnsupportedBackboneError(f'unknown timm model {model_name!r}: see timm.list_models()')
    entrypoint = model_entrypoint(model_name)
    module = sys.modules[entrypoint.__module__]

    def record(model_cls, variant, pretrained, **build_kwargs):
        raise _Captured(BuildArgs(model_cls, variant, build_kwargs))

    if not hasattr(module, 'build_model_with_cfg'):
        raise UnsupportedBackboneError(_unsupported_message(model_name, 'its entrypoint is not built by timm'))
    try:
        with mock.patch.object(module, 'build_model_with_cfg', record):
            entrypoint(pretrained=False, **kwargs)
    except _Captured as captured:
        return captured.build_args
    raise UnsupportedBackboneError(_unsupported_message(
        model_name, f'its entrypoint did not call build_model_with_cfg (timm {timm.__version__})'))


def _constructor_default(model_cls: type, name: str) -> Any:
    return inspect.signature(model_cls.__init__).parameters[name].default


def _divide(width: int, divisor: int) -> int:
    return max(1, int(round(width / divisor)))


def _scaled_round_channels(channels: float, base_round_fn: Callable[[float], int], divisor: int) -> int:
    # Round as the backbone does first, then divide: the branch's widths are
    # then exactly the backbone's divided by `divisor`, not re-rounded to 8.
    return _divide(base_round_fn(channels), divisor)


def _scale_resnet(args: BuildArgs, divisor: int) -> BuildArgs:
    channels = args.kwargs.get('channels', _constructor_default(ResNet, 'channels'))
    kwargs = dict(args.kwargs, channels=tuple(_divide(c, divisor) for c in channels))
    stem_width = args.kwargs.get('stem_width', _constructor_default(ResNet, 'stem_width'))
    kwargs['stem_width'] = _divide(stem_width, divisor)
    return replace(args, kwargs=kwargs)


def _scale_vgg(args: BuildArgs, divisor: int) -> BuildArgs:
    cfg = [v if v == 'M' else _divide(v, divisor) for v in args.kwargs['model_cfg']]
    return replace(args, kwargs=dict(args.kwargs, model_cfg=cfg))


def _scale_convnext(args: BuildArgs, divisor: int) -> BuildArgs:
    dims = args.kwargs.get('dims', _constructor_default(ConvNeXt, 'dims'))
    kwargs = dict(args.kwargs, dims=tuple(_divide(d, divisor) for d in dims))
    if args.kwargs.get('head_hidden_size'):
        kwargs['head_hidden_size'] = _divide(args.kwargs['head_hidden_size'], divisor)
    return replace(args, kwargs=kwargs)


def _scale_efficientnet(args: BuildArgs, divisor: int) -> BuildArgs:
    cls = args.model_cls
    base_round_fn = args.kwargs.get('round_chs_fn', _constructor_default(cls, 'round_chs_fn'))
    kwargs = dict(args.kwargs, round_chs_fn=partial(
        _scaled_round_channels, base_round_fn=base_round_fn, divisor=divisor))
    num_features = args.kwargs.get('num_features', _constructor_default(cls, 'num_features'))
    if num_features:
        kwargs['num_features'] = _divide(num_features, divisor)
    if args.kwargs.get('fix_stem', False):
        # a fixed stem bypasses round_chs_fn, so it is divided here
        stem_size = args.kwargs.get('stem_size', _constructor_default(cls, 'stem_size'))
        kwargs['stem_size'] = _divide(stem_size, divisor)
    return replace(args, kwargs=kwargs)


class WidthScaledRegNet(RegNet):
    """RegNet whose stage, group and stem widths are the config's divided by ``width_divisor``.

    RegNet derives its widths from ``(w0, wa, wm)`` quantised to multiples of 8,
    so dividing the config's parameters cannot give exactly a quarter of the
    backbone's widths; dividing the generated stage arguments does.
    """

    def __init__(self, cfg, *args, width_divisor: int = 4, **kwargs) -> None:
        self.width_divisor = width_divisor
        super().__init__(replace(cfg, stem_width=_divide(cfg.stem_width, width_divisor)), *args, **kwargs)

    def _get_stage_args(self, cfg, *args, **kwargs):
        per_stage_args, common_args = super()._get_stage_args(cfg, *args, **kwargs)
        for stage in per_stage_args:
            stage['out_chs'] = _divide(stage['out_chs'], self.width_divisor)
            stage['group_size'] = _divide(stage['group_size'], self.width_divisor)
        return per_stage_args, common_args


def _scale_regnet(args: BuildArgs, divisor: int) -> BuildArgs:
    kwargs = dict(args.kwargs, width_divisor=divisor)
    if kwargs['model_cfg'].num_features:
        kwargs['model_cfg'] = replace(
            kwargs['model_cfg'], num_features=_divide(kwargs['model_cfg'].num_features, divisor))
    return replace(args, model_cls=WidthScaledRegNet, kwargs=kwargs)


@dataclass(frozen=True)
class _Family:
    name: str
    model_cls: type
    scale: Callable[[BuildArgs, int], BuildArgs]


SUPPORTED_FAMILIES: Tuple[_Family, ...] = (
    _Family('resnet', ResNet, _scale_resnet),
    _Family('vgg', VGG, _scale_vgg),
    _Family('convnext', ConvNeXt, _scale_convnext),
    _Family('efficientnet', EfficientNet, _scale_efficientnet),
    _Family('mobilenetv3', MobileNetV3, _scale_efficientnet),
    _Family('regnet', RegNet, _scale_regnet),
)


def _unsupported_message(model_name: str, why: str) -> str:
    names = ', '.join(f.name for f in SUPPORTED_FAMILIES)
    return f'backbone {model_name!r} is not supported ({why}); supported families: {names}'


def family_of(model_name: str) -> str:
    """Name of the supported family ``model_name`` belongs to, or a clear error."""
    return _find_family(capture_build_args(model_name)).name


def _find_family(args: BuildArgs) -> _Family:
    for family in SUPPORTED_FAMILIES:
        if isinstance(args.model_cls, type) and issubclass(args.model_cls, family.model_cls):
            return family
    raise UnsupportedBackboneError(_unsupported_message(args.variant, f'it is a {args.model_cls.__name__}'))


def _rebuild_conv(conv: nn.Conv2d, in_channels: int = 0, out_channels: int = 0) -> nn.Conv2d:
    new = nn.Conv2d(
        in_channels or conv.in_channels, out_channels or conv.out_channels, conv.kernel_size,
        stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
        bias=conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
    nn.init.kaiming_normal_(new.weight, mode='fan_out', nonlinearity='relu')  # as ResNet.init_weights
    return new


def _shrink_plain_resnet_stem(model: ResNet, width: int) -> None:
    # timm's ResNet fixes a plain 7x7 stem at 64 channels whatever the
    # arguments (stem_width only shapes deep stems), so the stem and the
    # first block's input side are rebuilt at the divided width.
    norm_layer = type(model.bn1)
    dd = dict(device=model.conv1.weight.device, dtype=model.conv1.weight.dtype)
    model.conv1 = _rebuild_conv(model.conv1, out_channels=width)
    model.bn1 = norm_layer(width, **dd)
    model.feature_info[0]['num_chs'] = width
    first_block = model.layer1[0]
    first_block.conv1 = _rebuild_conv(first_block.conv1, in_channels=width)
    block_out = model.feature_info[1]['num_chs']
    if width == block_out:
        first_block.downsample = None
    else:
        # layer1 has stride 1, where every timm shortcut variant is a 1x1 conv + norm
        first_block.downsample = downsample_conv(width, block_out, kernel_size=1, norm_layer=norm_layer, **dd)


def create_width_scaled(model_name: str, width_divisor: int = 4, **kwargs: Any) -> nn.Module:
    """Build ``model_name`` with every channel width divided by ``width_divisor``.

    ``kwargs`` are passed to the model as ``timm.create_model`` would pass
    them (``num_classes``, ``drop_rate``, ...). The result has random weights:
    there are no pretrained weights for a narrowed network.
    """
    if width_divisor < 1:
        raise ValueError(f'width_divisor must be a positive integer, got {width_divisor}')
    args = capture_build_args(model_name, **kwargs)
    family = _find_family(args)
    scaled = family.scale(args, width_divisor)
    model = build_model_with_cfg(scaled.model_cls, scaled.variant, False, **scaled.kwargs)
    if family.name == 'resnet' and isinstance(model.conv1, nn.Conv2d):
        _shrink_plain_resnet_stem(model, _divide(model.conv1.out_channels, width_divisor))
    return model


def prepare_trunk(model: nn.Module, global_pool: str = 'avg') -> nn.Module:
    """Remove the classifier so the model only extracts features.

    VGG's 4096-wide ``pre_logits`` ConvMlp (fc6/fc7 as convolutions) is part of
    its head, not of the feature extractor the WAE branches use, so it is
    removed as well; the reference WAE-VGG16 puts its own fc layers on pool5.
    VGG's pools also switch to ceil mode, as in the reference Caffe release
    (pool5 of a 112 input is 4x4, not 3x3).
    """
    model.reset_classifier(0, global_pool)
    if isinstance(model, VGG):
        model.pre_logits = nn.Identity()
        model.head_hidden_size = model.num_features
        for module in model.features:
            if isinstance(module, nn.MaxPool2d):
                module.ceil_mode = True
    return model


def default_out_indices(model_name: str) -> Tuple[int, ...]:
    """The feature levels ``features_only=True`` returns by default for ``model_name`` (its entrypoint's choice)."""
    feature_cfg = capture_build_args(model_name).kwargs.get('feature_cfg') or {}
    return tuple(feature_cfg.get('out_indices', (0, 1, 2, 3, 4)))


def create_trunk(model_name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The backbone itself through ``timm.create_model`` (timm's pretrained loading), as a trunk."""
    _find_family(capture_build_args(model_name))
    return prepare_trunk(timm.create_model(model_name, pretrained=pretrained, num_classes=0, **kwargs))
