"""timm registry entries for the paper's baselines (Chen et al., AAAI 2018, Tables 1-3).

Each baseline is the WAE model of the same backbone (same branches, same
heads, so comparisons are fair) with one thing changed:

==========================  ======================  ==========================================================
name                        paper                   change from ``wae_<backbone>``
==========================  ======================  ==========================================================
``wavelet_cnn_<b>``         Wavelet+CNN             CDF 9/7 DWT front end: cA -> backbone, cH, cV, cD -> fusion
``ca_only_wavelet_<b>``     cA (Table 3)            CDF 9/7 cA only, no fusion branch
``decomposition_cnn_<b>``   Decomposition+CNN       no decoder: the encoder learns from the classification loss
``low_only_wae_<b>``        I_L (Table 3)           no fusion branch: scores are s_L
``half_res_<b>``            I_R (Table 3)           the image resized to half resolution, no fusion branch
==========================  ======================  ==========================================================

for ``<b>`` in vgg16, resnet18, resnet50. The reference for all of them is
the plain timm backbone at 224 (``timm.create_model('resnet50')``). Names do
not start with ``wae_`` so that ``timm.list_models('wae_*')`` lists the WAE
models only.
"""
from typing import Any, Dict

from timm.models import generate_default_cfgs, get_pretrained_cfg_value, register_model

from .wae import WAE_MODEL_ARGS, build_wrapper, wrapper_cfg
from .wae import WAEWrapper

__all__ = ['BASELINE_MODEL_ARGS', 'BASELINE_CHANGES', 'BASELINE_BACKBONES']

# the WAEWrapper arguments that turn a WAE model into each baseline
BASELINE_CHANGES: Dict[str, Dict[str, Any]] = {
    'wavelet_cnn': dict(decomposition='wavelet'),
    'ca_only_wavelet': dict(decomposition='wavelet', fusion=False),
    'decomposition_cnn': dict(with_decoder=False),
    'low_only_wae': dict(fusion=False),
    'half_res': dict(decomposition='resize', fusion=False),
}
BASELINE_BACKBONES = ('vgg16', 'resnet18', 'resnet50')



def _baseline_args(backbone: str, changes: Dict[str, Any]) -> Dict[str, Any]:
    args = dict(WAE_MODEL_ARGS[f'wae_{backbone}'], **changes)
    if not args.get('fusion', True):
        args.pop('fusion_hidden', None)  # no fusion head to shape
    return args


BASELINE_MODEL_ARGS: Dict[str, Dict[str, Any]] = {
    f'{kind}_{backbone}': _baseline_args(backbone, changes)
    for kind, changes in BASELINE_CHANGES.items() for backbone in BASELINE_BACKBONES
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
