"""The paper's comparison set (Chen et al., AAAI 2018): every method, as this package builds it.

One table, read by the timm registry (:mod:`wae_timm.models.baselines`), the
Fashion-MNIST reproduction, the speed benchmark and the FLOP report:

=======================  =========================  =================  =============  ==================================
key                      timm name                  paper label        tables         change from ``wae_<b>``
=======================  =========================  =================  =============  ==================================
``backbone``             ``<b>``                    backbone @224      1, 2, 7        the plain backbone (the reference)
``backbone_half_input``  ``<b>`` on 112x112         backbone @112      1              the plain backbone at half side
``wae``                  ``wae_<b>``                WAE                1, 2, 3, 4, 7  none: the WAE model itself
``wavelet_cnn``          ``wavelet_cnn_<b>``        Wavelet+CNN        2              CDF 9/7 cA -> low, details -> high
``ca_only_wavelet``      ``ca_only_wavelet_<b>``    cA                 3              CDF 9/7 cA only, no fusion branch
``decomposition_cnn``    ``decomposition_cnn_<b>``  Decomposition+CNN  2              no decoder (classification loss)
``low_only_wae``         ``low_only_wae_<b>``       I_L only           3              no fusion branch: scores are s_L
``half_res``             ``half_res_<b>``           I_R                3              resized image, no fusion branch
=======================  =========================  =================  =============  ==================================

Each method's ``summary`` says more. The baselines (a
:class:`~wae_timm.models.wae.WAEWrapper` with changes) are registered as
``<key>_<backbone>`` and keep the WAE model's heads, so comparisons are fair. Their names do not start with ``wae_``, so that
``timm.list_models('wae_*')`` lists the WAE models only.
"""
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional, Tuple

__all__ = [
    'Method', 'COMPARISON', 'PAPER_BACKBONES', 'FULL_INPUT_SIZE', 'REFERENCE', 'WAE', 'comparison_method',
    'baseline_methods',
]

# the backbones the paper reports on ImageNet
PAPER_BACKBONES: Tuple[str, ...] = ('vgg16', 'resnet50')
# the input side of the paper's ImageNet models
FULL_INPUT_SIZE = 224


@dataclass(frozen=True)
class Method:
    """One method of the paper's comparison.

    ``timm_name`` is the timm model name with ``{backbone}`` in place of the
    backbone. ``wrapper_changes`` are the :class:`~wae_timm.models.wae.WAEWrapper`
    arguments that differ from the WAE model of the same backbone (empty for the
    WAE itself); ``None`` means the method is the plain timm backbone, no wrapper.
    ``input_size`` is the square image side the method is fed at the paper's
    ImageNet resolution.
    """
    key: str
    label: str  # what the paper calls it
    timm_name: str
    wrapper_changes: Optional[Mapping[str, Any]]
    paper_tables: Tuple[int, ...]
    summary: str
    input_size: int = FULL_INPUT_SIZE

    def __post_init__(self) -> None:
        if self.wrapper_changes is not None:  # read-only: every consumer builds from the same changes
            object.__setattr__(self, 'wrapper_changes', MappingProxyType(dict(self.wrapper_changes)))

    def model_name(self, backbone: str) -> str:
        """The timm name of this method for ``backbone``: ``'wavelet_cnn_resnet50'``."""
        return self.timm_name.format(backbone=backbone)

    @property
    def is_baseline(self) -> bool:
        """Whether the method is a WAE model with changes (registered by :mod:`wae_timm.models.baselines`)."""
        return bool(self.wrapper_changes)


COMPARISON: Tuple[Method, ...] = (
    Method('backbone', 'backbone @224', '{backbone}', None, (1, 2, 7),
           'the plain timm backbone at full resolution: the reference of every speed-up'),
    Method('backbone_half_input', 'backbone @112', '{backbone}', None, (1,),
           'the plain timm backbone on an image of half the side', input_size=FULL_INPUT_SIZE // 2),
    Method('wae', 'WAE', 'wae_{backbone}', {}, (1, 2, 3, 4, 7),
           'the WAE model: I_L -> backbone at half resolution, I_H -> its quarter-width copy, fused scores'),
    Method('wavelet_cnn', 'Wavelet+CNN', 'wavelet_cnn_{backbone}', dict(decomposition='wavelet'), (2,),
           'CDF 9/7 DWT front end: cA -> backbone, cH, cV, cD -> the quarter-width copy'),
    Method('ca_only_wavelet', 'cA', 'ca_only_wavelet_{backbone}', dict(decomposition='wavelet', fusion=False), (3,),
           'CDF 9/7 cA only, no fusion branch'),
    Method('decomposition_cnn', 'Decomposition+CNN', 'decomposition_cnn_{backbone}', dict(with_decoder=False), (2,),
           'no decoder: the encoder learns from the classification loss'),
    Method('low_only_wae', 'I_L only', 'low_only_wae_{backbone}', dict(fusion=False), (3,),
           'no fusion branch: scores are s_L'),
    Method('half_res', 'I_R', 'half_res_{backbone}', dict(decomposition='resize', fusion=False), (3,),
           'the image resized to half resolution, no fusion branch'),
)


def comparison_method(key: str) -> Method:
    """The method of :data:`COMPARISON` called ``key``; raises ``KeyError`` naming the known keys."""
    for method in COMPARISON:
        if method.key == key:
            return method
    raise KeyError(f'no method {key!r} in the comparison; known: {[m.key for m in COMPARISON]}')


def baseline_methods() -> Tuple[Method, ...]:
    """The methods registered as baselines: a WAE model with changes, in table order."""
    return tuple(m for m in COMPARISON if m.is_baseline)


REFERENCE = comparison_method('backbone')
WAE = comparison_method('wae')
