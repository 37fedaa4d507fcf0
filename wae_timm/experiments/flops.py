"""FLOP counting with fvcore, and the cost report that compares WAE models with their baselines.

Conventions (batch 1):

- fvcore counts one fused multiply-add as one FLOP, so convolutions and fc
  layers count their MACs (conv bias not counted). The paper's 15.36B for
  VGG16 follows the same convention.
- fvcore skips many cheap ops (``max_pool2d``, ``add``, ``mul``, ``relu``,
  ``sigmoid``, ``gelu``, ...), some with a warning and some silently. Here
  each one gets a handle in fvcore's own style for the cheap ops it does
  count (``adaptive_avg_pool2d``, upsampling): elementwise ops and
  activations count one FLOP per output element (:data:`ELEMENTWISE_OPS`),
  pools and reductions one per input element (:data:`POOLING_OPS`).
  Copies such as padding count zero (:data:`ZERO_FLOP_OPS`). Any op still
  without a handle is reported in :attr:`FlopCount.unsupported_ops` and in
  the report's ``uncounted ops`` column, never dropped in silence.

For a :class:`~wae_timm.models.wae.WAEWrapper`, :func:`wae_components` splits the
total into encoder, low branch, high branch and heads. The decoder never runs
at inference and is not part of the total; :func:`count_decoder_flops` runs it
on its own to count it apart.
"""
import csv
import io
import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from tqdm import tqdm

with warnings.catch_warnings():
    # fvcore scripts a loss of its own at import, which torch 2.14 answers with a deprecation warning that
    # every user of the demo and the FLOP report would see and none can act on
    warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

from .tables import records_table
from ..models.baselines import BASELINE_MODEL_ARGS
from ..models.comparison import COMPARISON, FULL_INPUT_SIZE, PAPER_BACKBONES
from ..models.wae import WAE_MODEL_ARGS, WAEWrapper

__all__ = [
    'FlopCount', 'count_flops', 'count_decoder_flops', 'wae_components', 'parameter_count', 'parse_model_spec',
    'flop_report', 'FlopReport',
    'WAE_COMPONENTS', 'ELEMENTWISE_OPS', 'POOLING_OPS', 'ZERO_FLOP_OPS', 'PAPER_GFLOPS', 'THEORETICAL_SPEEDUP',
    'DEFAULT_REPORT_MODELS', 'comparison_specs',
]

# activations and elementwise arithmetic: one FLOP per output element
ELEMENTWISE_OPS: Tuple[str, ...] = tuple(f'aten::{op}' for op in (
    'relu', 'relu_', 'add', 'add_', 'sub', 'sub_', 'mul', 'mul_', 'div', 'div_', 'rsub',
    'sigmoid', 'sigmoid_', 'silu', 'silu_', 'gelu', 'gelu_', 'hardswish', 'hardswish_',
    'hardsigmoid', 'hardsigmoid_', 'hardtanh', 'hardtanh_', 'clamp', 'clamp_', 'clamp_min', 'clamp_min_',
    'leaky_relu', 'leaky_relu_', 'tanh', 'tanh_', 'softmax', 'exp', 'sqrt', 'rsqrt', 'pow',
))
# pools and reductions: one FLOP per input element, fvcore's rule for adaptive_avg_pool2d
POOLING_OPS: Tuple[str, ...] = tuple(f'aten::{op}' for op in (
    'max_pool2d', 'avg_pool2d', 'adaptive_max_pool2d', 'mean', 'sum', 'amax', 'max',
))
# memory only
ZERO_FLOP_OPS: Tuple[str, ...] = ('aten::pad', 'aten::reflection_pad2d', 'aten::replication_pad2d')
# antialiased bilinear resizing (the I_R front end): fvcore's rule for upsample_bilinear2d
_RESIZE_OPS: Tuple[str, ...] = ('aten::_upsample_bilinear2d_aa',)


def _extra_handles() -> Dict[str, Optional[Callable]]:
    handles: Dict[str, Optional[Callable]] = {op: elementwise_flop_counter(0, 1) for op in ELEMENTWISE_OPS}
    handles.update({op: elementwise_flop_counter(1, 0) for op in POOLING_OPS})
    handles.update({op: elementwise_flop_counter(0, 4) for op in _RESIZE_OPS})
    handles.update({op: None for op in ZERO_FLOP_OPS})
    return handles


# top-level modules of a WAEWrapper grouped into the parts a report shows; the
# wrapper's own ops (the heads' pooling of flatten_grid, the score average) go to 'heads'
WAE_COMPONENTS: Dict[str, Tuple[str, ...]] = {
    'encoder': ('wae', 'low_norm', 'high_norm'),
    'low branch': ('low',),
    'high branch': ('high',),
    'heads': ('head_low', 'head_fusion'),
}


@dataclass
class FlopCount:
    """fvcore's count of one forward at batch 1 (one multiply-add = one FLOP)."""
    total: int
    by_module: Dict[str, int]
    by_operator: Dict[str, int] = field(default_factory=dict)
    unsupported_ops: Dict[str, int] = field(default_factory=dict)
    by_module_and_operator: Dict[str, Dict[str, int]] = field(default_factory=dict)

    def component(self, module_names: Sequence[str]) -> int:
        return sum(self.by_module.get(name, 0) for name in module_names)

    def operators(self, names: Sequence[str], module: str = '') -> int:
        """FLOPs of the given operators (fvcore's short names: 'conv', 'linear', 'max_pool2d', ...)
        inside ``module`` (the whole model by default)."""
        counts = self.by_module_and_operator.get(module, {}) if module else self.by_operator
        return sum(counts.get(name, 0) for name in names)


def _analyse(module: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> FlopCount:
    analysis = FlopCountAnalysis(module, inputs).set_op_handle(**_extra_handles())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        total = analysis.total()
    return FlopCount(
        total, dict(analysis.by_module()), dict(analysis.by_operator()), dict(analysis.unsupported_ops()),
        {name: dict(ops) for name, ops in analysis.by_module_and_operator().items()})


def _example_input(model: nn.Module, input_size: Sequence[int]) -> torch.Tensor:
    if len(input_size) != 3:
        raise ValueError(f'input_size must be (channels, height, width), got {tuple(input_size)}')
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device('cpu')
    return torch.randn(1, *input_size, device=device)


def count_flops(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> FlopCount:
    """Count the FLOPs of ``model.forward`` on one ``input_size`` image (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    try:
        return _analyse(model, (_example_input(model, input_size),))
    finally:
        model.train(was_training)


class _DecoderPass(nn.Module):
    """``(I_L, I_H) -> I'``: the WAE decoder alone, as fvcore needs a module to trace."""

    def __init__(self, wae: nn.Module, height: int, width: int) -> None:
        super().__init__()
        self.wae = wae
        self.height = height
        self.width = width

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.wae.decode(low, high, self.height, self.width)


def count_decoder_flops(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> Optional[int]:
    """FLOPs of the training-only WAE decoder on the bands of one image; ``None`` if the model has none."""
    wae = getattr(model, 'wae', None)
    if not getattr(wae, 'has_decoder', False):
        return None
    x = _example_input(model, input_size)
    with torch.no_grad():
        low, high = wae.encode(x)
    # no .eval(): it would switch the caller's WAE too, and the WAE has no layer that depends on the mode
    return _analyse(_DecoderPass(wae, x.shape[-2], x.shape[-1]), (low, high)).total


def wae_components(count: FlopCount) -> Dict[str, int]:
    """A WAEWrapper's total split into :data:`WAE_COMPONENTS`; the parts sum to ``count.total``.

    Ops the wrapper runs itself (not inside a child module: the heads' grid
    pooling, the score average) belong to the heads.
    """
    parts = {name: count.component(modules) for name, modules in WAE_COMPONENTS.items()}
    children = sum(count.by_module.get(name, 0) for modules in WAE_COMPONENTS.values() for name in modules)
    parts['heads'] += count.total - children
    return parts


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parse_model_spec(spec: str, input_size: int = 224) -> Tuple[str, int]:
    """``'vgg16@112'`` -> ``('vgg16', 112)``; a name alone runs at ``input_size``."""
    name, at, size = spec.partition('@')
    if not name or (at and not size):
        raise ValueError(f'expected MODEL or MODEL@SIZE (e.g. vgg16@112), got {spec!r}')
    if not size:
        return name, input_size
    if not size.isdigit() or int(size) < 32:
        raise ValueError(f'the size after @ must be an integer >= 32 (square input), got {spec!r}')
    return name, int(size)


# the paper's figures (Chen et al., AAAI 2018, Table 1), in its FLOP convention (multiply-adds)
PAPER_GFLOPS: Dict[str, float] = {'vgg16@224': 15.36, 'vgg16@112': 3.89, 'wae_vgg16@224': 4.11}
# conv layers only: the backbone at half resolution (1/4) plus a quarter-width copy (1/16 * 1/4)
THEORETICAL_SPEEDUP = 1 / (1 / 4 + 1 / 64)


def comparison_specs(backbones: Sequence[str]) -> Tuple[str, ...]:
    """``MODEL[@SIZE]`` of every method of :data:`~wae_timm.models.comparison.COMPARISON` for each backbone.

    >>> comparison_specs(['vgg16'])[:3]
    ('vgg16', 'vgg16@112', 'wae_vgg16')
    """
    return tuple(
        method.model_name(backbone) + ('' if method.input_size == FULL_INPUT_SIZE else f'@{method.input_size}')
        for backbone in backbones for method in COMPARISON)


# the paper's comparison for VGG16 and ResNet-50
DEFAULT_REPORT_MODELS: Tuple[str, ...] = comparison_specs(PAPER_BACKBONES)

_MAC_OPERATORS = ('conv', 'linear', 'addmm', 'matmul', 'bmm', 'einsum')
_G = 1e9


def _format_ops(ops: Dict[str, int]) -> str:
    return ', '.join(f'{op} x{n}' for op, n in sorted(ops.items())) or 'none'


class _FeaturesPass(nn.Module):
    """``model.forward_features`` as a module: the feature extractor without pooling and classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


@dataclass
class _Measurement:
    name: str
    size: int
    params: int
    count: FlopCount
    backbone: str
    components: Dict[str, int]  # WAE models only
    decoder: Optional[int]


@dataclass
class FlopReport:
    """The rows of :func:`flop_report` and the notes that compare them with the paper."""
    rows: List[Dict[str, Any]]
    notes: List[str]

    def markdown(self) -> str:
        return records_table(self.rows) + '\n\n' + '\n'.join(f'- {note}' for note in self.notes) + '\n'

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]), lineterminator='\n')
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def json(self) -> str:
        return json.dumps(dict(rows=self.rows, notes=self.notes), indent=2) + '\n'

    def render(self, fmt: str) -> str:
        renderers = {'md': self.markdown, 'csv': self.csv, 'json': self.json}
        if fmt not in renderers:
            raise ValueError(f'unknown report format {fmt!r}; expected one of {sorted(renderers)}')
        return renderers[fmt]()


def _measure(spec: str, input_size: int) -> _Measurement:
    name, size = parse_model_spec(spec, input_size)
    model = timm.create_model(name)
    count = count_flops(model, (3, size, size))
    if isinstance(model, WAEWrapper):
        # inference models carry no decoder: count the one a learned WAE trains with (stages 1 and 3),
        # unless the model is registered without one (Decomposition+CNN)
        decoder = None
        if model.decomposition == 'wae' and _registered_args(name).get('with_decoder', True):
            decoder = count_decoder_flops(timm.create_model(name, with_decoder=True), (3, size, size))
        return _Measurement(name, size, parameter_count(model), count, model.backbone_name,
                            wae_components(count), decoder)
    return _Measurement(name, size, parameter_count(model), count, name, {}, None)


def _registered_args(name: str) -> Dict[str, Any]:
    return {**WAE_MODEL_ARGS, **BASELINE_MODEL_ARGS}.get(name, {})


def _gflops(flops: Optional[int]) -> Optional[float]:
    return None if flops is None else round(flops / _G, 4)


def _row(m: _Measurement, backbone_total: int) -> Dict[str, Any]:
    mac = m.count.operators(_MAC_OPERATORS)
    row = {
        'model': m.name,
        'input': m.size,
        'params (M)': round(m.params / 1e6, 2),
        'GFLOPs': _gflops(m.count.total),
        'x fewer than backbone@224': round(backbone_total / m.count.total, 2),
        'conv+fc GFLOPs': _gflops(mac),
        'other GFLOPs (pool, norm, elementwise)': _gflops(m.count.total - mac),
    }
    for part in WAE_COMPONENTS:
        row[f'{part} GFLOPs'] = _gflops(m.components.get(part))
    row['decoder GFLOPs (training only)'] = _gflops(m.decoder)
    row['paper GFLOPs'] = PAPER_GFLOPS.get(f'{m.name}@{m.size}')
    row['uncounted ops'] = _format_ops(m.count.unsupported_ops)
    return row


def _backbone_features(backbone: str) -> int:
    return count_flops(_FeaturesPass(timm.create_model(backbone)), (3, 224, 224)).total


def _paper_notes(measured: Dict[Tuple[str, int], _Measurement], backbone_totals: Dict[str, int]) -> List[str]:
    g = lambda flops: f'{flops / _G:.3f} G'  # noqa: E731
    off = lambda flops, paper: f'{abs(flops / _G - paper) / paper:.1%}'  # noqa: E731
    notes = [
        'fvcore counts one multiply-add as one FLOP (conv bias not counted), as the paper does; batch 1. '
        'Ops fvcore skips are counted by handles registered in wae_timm/experiments/flops.py: elementwise ops and '
        'activations 1 FLOP per output element, pools and reductions 1 per input element (fvcore\'s rule '
        'for adaptive_avg_pool2d); "uncounted ops" lists any op still without a handle.',
        'The decoder runs only in training (transform loss): it is counted apart by running it on the '
        'bands of one image, and is not part of GFLOPs. Params include it where the model has one.',
    ]
    wae_backbones = dict.fromkeys(m.backbone for m in measured.values() if m.components)
    for backbone in wae_backbones:
        wae = measured.get((f'wae_{backbone}', 224))
        if wae is None:
            continue
        features = _backbone_features(backbone)
        branches = wae.components['low branch'] + wae.components['high branch']
        notes.append(
            f'Theoretical bound (paper): 1 / (1/4 + 1/64) = {THEORETICAL_SPEEDUP:.2f}x fewer FLOPs, from the conv '
            f'layers alone. {backbone}: its feature extractor at 224 costs {g(features)}, the two branches of '
            f'wae_{backbone} {g(branches)}: {features / branches:.2f}x. The whole wae_{backbone} is '
            f'{backbone_totals[backbone] / wae.count.total:.2f}x, because its encoder runs three 16-channel 3x3 '
            f'convolutions at full resolution ({g(wae.components["encoder"])}).')
    vgg, vgg_half, wae_vgg = (measured.get(key) for key in (('vgg16', 224), ('vgg16', 112), ('wae_vgg16', 224)))
    if vgg is not None:
        conv, fc = vgg.count.operators(('conv',), 'features'), vgg.count.component(('pre_logits', 'head'))
        paper = PAPER_GFLOPS['vgg16@224']
        notes.append(
            f'vgg16@224, multiply-adds: the 13 conv layers {g(conv)} + the fc layers {g(fc)} (fc6/fc7 are timm\'s '
            f'ConvMlp convolutions) = {g(conv + fc)}. The paper\'s {paper} G is {off(conv, paper)} off the conv '
            f'layers alone and {off(conv + fc, paper)} off conv + fc: it most likely leaves out the fc layers here, '
            f'though its 3.89 G at 112 includes them (next note).')
    if vgg_half is not None:
        conv, fc = vgg_half.count.operators(('conv',), 'features'), vgg_half.count.component(('pre_logits', 'head'))
        # the reference Caffe model pools in ceil mode: pool5 of a 112 input is 4x4, fc6 sees 512 * 4 * 4
        caffe_fc = 512 * 4 * 4 * 4096 + 4096 * 4096 + 4096 * 1000
        paper = PAPER_GFLOPS['vgg16@112']
        notes.append(
            f'vgg16@112, multiply-adds: conv layers {g(conv)} + fc {g(fc)}: timm\'s ConvMlp pools the 3x3 pool5 '
            f'up to 7x7, so fc6 costs as much as at 224. With Caffe\'s ceil-mode pool5 (4x4, fc6 on 8192 inputs) '
            f'the fc layers cost {g(caffe_fc)}: {g(conv + caffe_fc)}, {off(conv + caffe_fc, paper)} off the '
            f'paper\'s {paper} G.')
    if wae_vgg is not None:
        macs = wae_vgg.count.operators(_MAC_OPERATORS)
        encoder = wae_vgg.count.operators(_MAC_OPERATORS, 'wae')
        paper = PAPER_GFLOPS['wae_vgg16@224']
        notes.append(
            f'wae_vgg16, multiply-adds: {g(macs)}, of which the full-resolution encoder is {g(encoder)}; without '
            f'it {g(macs - encoder)}, {off(macs - encoder, paper)} off the paper\'s {paper} G: the paper\'s figure '
            f'most likely counts the classification network only. Our GFLOPs count all that runs at inference.')
    return notes


def flop_report(
        specs: Sequence[str] = DEFAULT_REPORT_MODELS,
        input_size: int = 224,
        progress: bool = False,
) -> FlopReport:
    """One row per ``MODEL[@SIZE]`` (``input_size`` where no size is given): params, GFLOPs, how many
    times fewer FLOPs than its backbone at 224, the WAE components, the training-only decoder and the
    paper's figure where it has one; notes compare the paper's figures with ours."""
    measured: Dict[Tuple[str, int], _Measurement] = {}
    for spec in tqdm(specs, desc='counting FLOPs', disable=not progress):
        m = _measure(spec, input_size)
        measured[(m.name, m.size)] = m
    backbone_totals = {}
    for m in measured.values():
        if m.backbone not in backbone_totals:
            reference = measured.get((m.backbone, 224))
            backbone_totals[m.backbone] = reference.count.total if reference else count_flops(
                timm.create_model(m.backbone), (3, 224, 224)).total
    rows = [_row(m, backbone_totals[m.backbone]) for m in measured.values()]
    return FlopReport(rows, _paper_notes(measured, backbone_totals))

