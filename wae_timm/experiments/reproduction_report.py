"""The markdown report of a Fashion-MNIST reproduction: the paper's Tables 2, 3, 4 and 7 from the run's records."""
from typing import Any, Dict, Optional, Sequence

from .reproduction_setup import ReproductionConfig
from .tables import markdown_table

__all__ = ['format_markdown', 'TABLE2_ROWS', 'TABLE3_ROWS', 'TABLE4_ROWS']

# the rows (keys of reproduction_setup.ROWS) in the order of each paper table's columns
TABLE2_ROWS = ('backbone', 'wavelet', 'decomposition', 'wae_stage3')  # VGG16, Wavelet+CNN, Decomposition+CNN, Ours
TABLE3_ROWS = ('wavelet_ca', 'resize', 'wae_low', 'wae_stage3')  # cA, I_R, I_L, I_L + I_H
TABLE4_ROWS = ('wae_stage2', 'wae_stage3', 'wae_stage2_longer')  # w/o FT, w/ FT, control


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def format_markdown(
        records: Sequence[Dict[str, Any]], noise: Sequence[Dict[str, Any]], config: ReproductionConfig,
        command: str, environment: Dict[str, Any],
) -> str:
    """The report: the paper's Tables 2, 3, 4 and 7 from the run's records (nothing typed by hand)."""
    by_key = {r['key']: r for r in records}
    base = by_key.get('backbone')

    def err(key: str, k: int) -> str:
        return _fmt(100. - by_key[key][f'top{k}']) if key in by_key else 'not run'

    lines = [f'Command: `{command}`', '',
             f"Training images per epoch: {environment['train_images']} of 60000 (a fixed random subset, the same "
             f"for every row); test images: {environment['test_images']} of 10000; epochs: {config.epochs} "
             f"(stage 1: {config.wae_epochs}). Run took {environment['run_minutes']:.1f} min on "
             f"{environment['threads']} torch threads (load average at the cost measurement: "
             f"{environment['load_average']}).", '']
    lines += ['All models (top-1/top-5 error in %, fvcore GFLOPs at batch 1 on 3x32x32, CPU latency: best of '
              f'{config.latency_repeats} eval forwards of a batch of {config.latency_batch}, in ms):', '']
    rows = []
    for r in records:
        speedup = base['latency_ms'] / r['latency_ms'] if base else None
        flops_ratio = base['gflops'] / r['gflops'] if base else None
        rows.append([r['label'], _fmt(100 - r['top1']), _fmt(100 - r['top5']), _fmt(r['gflops'], 4),
                     _fmt(flops_ratio) + 'x', _fmt(r['latency_ms'], 1), _fmt(speedup) + 'x', _fmt(r['params_m'])])
    lines.append(markdown_table(
        ['model', 'top-1 err', 'top-5 err', 'GFLOPs', 'FLOPs ratio', 'CPU ms', 'CPU speed-up', 'params (M)'], rows))
    lines += ['', 'Table 2 (paper: VGG16 / Wavelet+CNN / Decomposition+CNN / Ours, top-5 err 11.65 / 14.42 / '
              '12.98 / 11.87 on ImageNet):', '']
    lines.append(markdown_table(
        ['method', 'top-1 err', 'top-5 err'],
        [[by_key[k]['label'], err(k, 1), err(k, 5)] for k in TABLE2_ROWS if k in by_key]))
    lines += ['', 'Table 3 (paper, top-5 err: cA 15.92, I_R 15.73, I_L 14.20, I_L + I_H 11.87):', '']
    lines.append(markdown_table(
        ['input', 'cA', 'I_R', 'I_L', 'I_L + I_H'],
        [[f'top-{k} err'] + [err(key, k) for key in TABLE3_ROWS] for k in (1, 5)]))
    lines += ['', 'Table 4 (paper, top-5 err: w/o FT 12.21, w/ FT 11.87); the control trains the stage-2 model '
              'as long as stage 3 does, WAE frozen, no L_t:', '']
    lines.append(markdown_table(
        ['', 'w/o FT (stage 2)', 'w/ FT (stage 3)', 'control: stage 2 continued'],
        [[f'top-{k} err'] + [err(key, k) for key in TABLE4_ROWS] for k in (1, 5)]))
    variances = sorted({n['variance'] for n in noise})
    noisy_keys = list(dict.fromkeys(n['key'] for n in noise))
    top1 = {(n['key'], n['variance']): n['top1'] for n in noise}
    clip = 'clipped to [0, 1]' if config.noise_clip else 'not clipped'
    lines += ['', f'Table 7: top-1 accuracy (%) with zero-mean Gaussian noise of variance V added to the test images '
              f'in [0, 1] ({clip}); paper (CACD, VGG16 vs Ours) at V=0.05: 45.10 vs 55.91:', '']
    lines.append(markdown_table(
        ['V'] + [by_key[k]['label'] for k in noisy_keys],
        [[f'{v:g}'] + [_fmt(top1[(k, v)]) for k in noisy_keys] for v in variances]))
    return '\n'.join(lines) + '\n'
