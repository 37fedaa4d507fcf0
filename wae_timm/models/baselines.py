"""timm registry entries for the paper's baselines (Chen et al., AAAI 2018, Tables 2 and 3).

Each baseline of :data:`wae_timm.models.comparison.COMPARISON` (Wavelet+CNN,
cA, Decomposition+CNN, I_L only, I_R) is the WAE model of the same backbone
(same branches, same heads, so comparisons are fair) with the method's
``wrapper_changes``, registered as ``<key>_<backbone>`` for ``<backbone>`` in
vgg16, resnet18, resnet50: ``wavelet_cnn_resnet50``, ``half_res_vgg16``, ...
The reference for all of them is the plain timm backbone at 224
(``timm.create_model('resnet50')``).
"""
from typing import Any, Dict, Mapping

from timm.models import generate_default_cfgs, get_pretrained_cfg_value, register_model

from .comparison import baseline_methods
from .wae import WAE_MODEL_ARGS, WAEWrapper, build_wrapper, wrapper_cfg

__all__ = ['BASELINE_MODEL_ARGS', 'BASELINE_CHANGES', 'BASELINE_BACKBONES']

# the WAEWrapper arguments that turn a WAE model into each baseline, by registry prefix
BASELINE_CHANGES: Dict[str, Dict[str, Any]] = {m.key: dict(m.wrapper_changes) for m in baseline_methods()}
BASELINE_BACKBONES = ('vgg16', 'resnet18', 'resnet50')


def _baseline_args(backbone: str, changes: Mapping[str, Any]) -> Dict[str, Any]:
    args = dict(WAE_MODEL_ARGS[f'wae_{backbone}'], **changes)
    if not args.get('fusion', True):
        args.pop('fusion_hidden', None)  # no fusion head to shape
    return args


BASELINE_MODEL_ARGS: Dict[str, Dict[str, Any]] = {
    method.model_name(backbone): _baseline_args(backbone, method.wrapper_changes)
    for method in baseline_methods() for backbone in BASELINE_BACKBONES
}


def _baseline_cfg(model_args: Dict[str, Any]) -> Dict[str, Any]:
    learned_front_end = model_args.get('decomposition', 'wae') == 'wae'
    # a fixed front end has no weights: the first conv is the low branch's own
    first_conv = 'wae.stem.0' if learned_front_end else 'low.' + get_pretrained_cfg_value(
        model_args['backbone'], 'first_conv')
    classifier = ('head_low.fc', 'head_fusion.fc') if model_args.get('fusion', True) else ('head_low.fc',)
    return wrapper_cfg(first_conv=first_conv, classifier=classifier)


default_cfgs = generate_default_cfgs({name: _baseline_cfg(args) for name, args in BASELINE_MODEL_ARGS.items()})


def _create_baseline(variant: str, pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    return build_wrapper(variant, BASELINE_MODEL_ARGS[variant], pretrained, **kwargs)


@register_model
def wavelet_cnn_vgg16(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """Wavelet+CNN baseline for VGG16: CDF 9/7 cA -> VGG16, cH/cV/cD -> its quarter-width copy, WAE heads."""
    return _create_baseline('wavelet_cnn_vgg16', pretrained, **kwargs)


@register_model
def wavelet_cnn_resnet18(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """Wavelet+CNN baseline for ResNet-18: CDF 9/7 cA -> ResNet-18, cH/cV/cD -> its quarter-width copy, WAE heads."""
    return _create_baseline('wavelet_cnn_resnet18', pretrained, **kwargs)


@register_model
def wavelet_cnn_resnet50(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """Wavelet+CNN baseline for ResNet-50: CDF 9/7 cA -> ResNet-50, cH/cV/cD -> its quarter-width copy, WAE heads."""
    return _create_baseline('wavelet_cnn_resnet50', pretrained, **kwargs)


@register_model
def ca_only_wavelet_vgg16(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """"cA only" baseline for VGG16: VGG16 on the CDF 9/7 approximation band alone (paper Table 3)."""
    return _create_baseline('ca_only_wavelet_vgg16', pretrained, **kwargs)


@register_model
def ca_only_wavelet_resnet18(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """"cA only" baseline for ResNet-18: ResNet-18 on the CDF 9/7 approximation band alone (paper Table 3)."""
    return _create_baseline('ca_only_wavelet_resnet18', pretrained, **kwargs)


@register_model
def ca_only_wavelet_resnet50(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """"cA only" baseline for ResNet-50: ResNet-50 on the CDF 9/7 approximation band alone (paper Table 3)."""
    return _create_baseline('ca_only_wavelet_resnet50', pretrained, **kwargs)


@register_model
def decomposition_cnn_vgg16(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """Decomposition+CNN baseline for VGG16: WAE encoder, no decoder, classification loss only."""
    return _create_baseline('decomposition_cnn_vgg16', pretrained, **kwargs)


@register_model
def decomposition_cnn_resnet18(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """Decomposition+CNN baseline for ResNet-18: WAE encoder, no decoder, classification loss only."""
    return _create_baseline('decomposition_cnn_resnet18', pretrained, **kwargs)


@register_model
def decomposition_cnn_resnet50(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """Decomposition+CNN baseline for ResNet-50: WAE encoder, no decoder, classification loss only."""
    return _create_baseline('decomposition_cnn_resnet50', pretrained, **kwargs)


@register_model
def low_only_wae_vgg16(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """"I_L only" baseline for VGG16: the WAE low branch without the fusion branch (paper Table 3)."""
    return _create_baseline('low_only_wae_vgg16', pretrained, **kwargs)


@register_model
def low_only_wae_resnet18(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """"I_L only" baseline for ResNet-18: the WAE low branch without the fusion branch (paper Table 3)."""
    return _create_baseline('low_only_wae_resnet18', pretrained, **kwargs)


@register_model
def low_only_wae_resnet50(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """"I_L only" baseline for ResNet-50: the WAE low branch without the fusion branch (paper Table 3)."""
    return _create_baseline('low_only_wae_resnet50', pretrained, **kwargs)


@register_model
def half_res_vgg16(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """I_R baseline for VGG16: VGG16 on the image resized to half resolution, with the WAE model's low head."""
    return _create_baseline('half_res_vgg16', pretrained, **kwargs)


@register_model
def half_res_resnet18(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """I_R baseline for ResNet-18: ResNet-18 on the image resized to half resolution, with the WAE model's low head."""
    return _create_baseline('half_res_resnet18', pretrained, **kwargs)


@register_model
def half_res_resnet50(pretrained: bool = False, **kwargs: Any) -> WAEWrapper:
    """I_R baseline for ResNet-50: ResNet-50 on the image resized to half resolution, with the WAE model's low head."""
    return _create_baseline('half_res_resnet50', pretrained, **kwargs)
