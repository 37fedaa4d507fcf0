"""timm registry entries for the WAE model family.

After ``import wae_timm``, ``timm.list_models('wae_*')`` lists these and
``timm.create_model('wae_resnet50', num_classes=10)`` builds one. Each
entrypoint is one line of arguments to :class:`~wae_timm.wrapper.WAEWrapper`.
"""
from typing import Any, Dict, List

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .pretrained import PretrainedTag, build_tags, checkpoint_filter, explain_load_errors, prepare_pretrained, \
    pretrained_cfgs
from .width_scaling import default_out_indices
from .wrapper import WAEWrapper

__all__ = ['WAE_MODEL_ARGS', 'wrapper_cfg', 'build_wrapper', 'PRETRAINED_TAGS', 'published_tags']

# reference WAE-VGG16 heads (authors' release): fc 1024-1024 on the low pool5,
# fc 2048-2048 on both pool5 maps, dropout 0.5 after each hidden fc
_VGG_REFERENCE_HEADS = dict(flatten_grid=4, low_hidden=(1024, 1024), fusion_hidden=(2048, 2048), hidden_drop_rate=0.5)

WAE_MODEL_ARGS: Dict[str, Dict[str, Any]] = {
    'wae_vgg16': dict(backbone='vgg16', **_VGG_REFERENCE_HEADS),
    'wae_resnet18': dict(backbone='resnet18'),
    'wae_resnet34': dict(backbone='resnet34'),
    'wae_resnet50': dict(backbone='resnet50'),
    'wae_resnet101': dict(backbone='resnet101'),
    'wae_convnext_tiny': dict(backbone='convnext_tiny'),
    'wae_efficientnet_b0': dict(backbone='efficientnet_b0'),
    'wae_mobilenetv3_large_100': dict(backbone='mobilenetv3_large_100'),
    'wae_regnety_016': dict(backbone='regnety_016'),
}


def wrapper_cfg(**kwargs: Any) -> Dict[str, Any]:
    """The pretrained config of a :class:`WAEWrapper` model at 224 (``kwargs`` override entries)."""
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (4, 4),
        'crop_pct': 0.875, 'interpolation': 'bilinear',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'wae.stem.0', 'classifier': ('head_low.fc', 'head_fusion.fc'),
        'license': 'apache-2.0', 'paper_ids': 'arXiv:1712.07493',
        'paper_name': 'Learning a Wavelet-like Auto-Encoder to Accelerate Deep Neural Networks',
        **kwargs,
    }


def _base_cfg(name: str) -> Dict[str, Any]:
    # pool_size: the final map at 224, whose branches see 112 (ConvNeXt's 4x4 stem floors 7/2)
    return wrapper_cfg(pool_size=(3, 3)) if 'convnext' in name else wrapper_cfg()


# 'arch.tag' -> where its weights live and whether they exist (see wae_timm.pretrained)
PRETRAINED_TAGS: Dict[str, PretrainedTag] = build_tags(list(WAE_MODEL_ARGS))
default_cfgs = generate_default_cfgs(pretrained_cfgs(PRETRAINED_TAGS, _base_cfg))


def published_tags() -> List[PretrainedTag]:
    """Tags with weights: each has a Hub repo and a model card in ``model_cards/``."""
    return [t for t in PRETRAINED_TAGS.values() if t.has_weights]


# timm's train.py reads ``--model-kwargs k=v`` with ast.literal_eval and keeps
# what does not parse as text: 'freeze_wae=true' would arrive as the (truthy)
# string 'true'. Flags and weights must arrive as real bools and numbers.
_BOOL_ARGS = ('freeze_wae', 'pretrained_backbone', 'with_decoder', 'fusion')
_NUMBER_ARGS = ('aux_loss_weight', 'energy_weight', 'drop_rate', 'drop_path_rate', 'hidden_drop_rate')


def _check_parsed_kwargs(kwargs: Dict[str, Any]) -> None:
    for name in _BOOL_ARGS:
        if isinstance(kwargs.get(name), str):
            raise ValueError(f'{name}={kwargs[name]!r} is text, expected True or False '
                             f'(--model-kwargs values are Python literals: write {name}=True)')
    for name in _NUMBER_ARGS:
        if isinstance(kwargs.get(name), str):
            raise ValueError(f'{name}={kwargs[name]!r} is text, expected a number '
                             f'(--model-kwargs values are Python literals, e.g. {name}=0.001)')


def build_wrapper(variant: str, model_args: Dict[str, Any], pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """A registered :class:`WAEWrapper` variant built by timm from its ``model_args`` (``kwargs`` override them).

    ``pretrained=True`` fails before building when the variant's tag has no weights,
    and load errors name the weight file (see :mod:`wae_timm.pretrained`).
    """
    _check_parsed_kwargs(kwargs)
    model_args = dict(model_args, **kwargs)
    source = prepare_pretrained(variant, model_args, PRETRAINED_TAGS) if pretrained else None
    with explain_load_errors(source):
        return build_model_with_cfg(
            WAEWrapper, variant, pretrained,
            # the default FeatureListNet rebuilds a model from its direct children,
            # which cannot reach inside the branches: use forward_intermediates, with
            # the backbone's own feature levels (ConvNeXt has 4, ResNet 5, VGG 6)
            feature_cfg=dict(feature_cls='getter', out_indices=default_out_indices(model_args['backbone'])),
            pretrained_filter_fn=checkpoint_filter(source) if source else None,
            **model_args,
        )



def _create_wae(variant: str, pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    return build_wrapper(variant, WAE_MODEL_ARGS[variant], pretrained, **kwargs)


@register_model
def wae_vgg16(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE-VGG16 with the reference release's fc heads (Chen et al., AAAI 2018)."""
    return _create_wae('wae_vgg16', pretrained, **kwargs)


@register_model
def wae_resnet18(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around ResNet-18, pooled linear heads."""
    return _create_wae('wae_resnet18', pretrained, **kwargs)


@register_model
def wae_resnet34(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around ResNet-34, pooled linear heads."""
    return _create_wae('wae_resnet34', pretrained, **kwargs)


@register_model
def wae_resnet50(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE-ResNet-50 (Chen et al., AAAI 2018), pooled linear heads."""
    return _create_wae('wae_resnet50', pretrained, **kwargs)


@register_model
def wae_resnet101(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around ResNet-101, pooled linear heads."""
    return _create_wae('wae_resnet101', pretrained, **kwargs)


@register_model
def wae_convnext_tiny(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around ConvNeXt-T; the heads see each branch's normed pooled features."""
    return _create_wae('wae_convnext_tiny', pretrained, **kwargs)


@register_model
def wae_efficientnet_b0(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around EfficientNet-B0; the high branch uses a quarter channel multiplier."""
    return _create_wae('wae_efficientnet_b0', pretrained, **kwargs)


@register_model
def wae_mobilenetv3_large_100(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around MobileNetV3-Large 1.0."""
    return _create_wae('wae_mobilenetv3_large_100', pretrained, **kwargs)


@register_model
def wae_regnety_016(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """WAE around RegNetY-1.6GF."""
    return _create_wae('wae_regnety_016', pretrained, **kwargs)
