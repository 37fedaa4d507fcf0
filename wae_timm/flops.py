"""FLOP counting with fvcore.

fvcore counts one fused multiply-add as one FLOP (so its "FLOPs" are MACs, the
convention the paper's 15.36B for VGG16 also follows). Counts are for batch 1.
"""
from dataclasses import dataclass, field
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis

__all__ = ['FlopCount', 'count_flops', 'WAE_COMPONENTS']

# top-level modules of a WAEWrapper grouped into the parts a report shows
WAE_COMPONENTS: Dict[str, Tuple[str, ...]] = {
    'encoder': ('wae', 'low_norm', 'high_norm'),
    'low branch': ('low',),
    'high branch': ('high',),
    'heads': ('head_low', 'head_fusion'),
}


@dataclass
class FlopCount:
    """fvcore's count of one forward at batch 1."""
    total: int
    by_module: Dict[str, int]
    unsupported_ops: Dict[str, int] = field(default_factory=dict)

    def component(self, module_names: Sequence[str]) -> int:
        return sum(self.by_module.get(name, 0) for name in module_names)


def count_flops(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> FlopCount:
    """Count the FLOPs of ``model.forward`` on one ``input_size`` image (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = torch.randn(1, *input_size, device=device)
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        with torch.no_grad():
            total = analysis.total()
        return FlopCount(total, dict(analysis.by_module()), dict(analysis.unsupported_ops()))
    finally:
        model.train(was_training)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compare_models(model_names: Sequence[str], input_size: Sequence[int] = (3, 224, 224)) -> list:
    """One row per model: params (M), fvcore GFLOPs and the ratio to the first model's GFLOPs."""
    import timm
    rows = []
    for name in model_names:
        model = timm.create_model(name)
        rows.append(dict(model=name, params_m=parameter_count(model) / 1e6,
                         gflops=count_flops(model, input_size).total / 1e9))
    for row in rows:
        row['flops_ratio'] = rows[0]['gflops'] / row['gflops']
    return rows


def markdown_table(rows: Sequence[dict]) -> str:
    """Rows of equal keys as a markdown table; floats with 3 decimals."""
    keys = list(rows[0])
    lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
    for row in rows:
        lines.append('| ' + ' | '.join(f'{v:.3f}' if isinstance(v, float) else str(v) for v in row.values()) + ' |')
    return '\n'.join(lines)
