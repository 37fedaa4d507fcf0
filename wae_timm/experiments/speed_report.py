"""What a speed benchmark run writes: one CSV row per (model, step, precision, batch size), the same rows
in timm benchmark.py's columns (``*_timm.csv``, see :func:`~wae_timm.experiments.speed.timm_rows`), a
markdown summary with the machine, the targets and an ablation table, and a PNG of fvcore GFLOPs against
measured latency.
"""
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Sequence, Union

import timm
import torch

from .speed import ABLATED_LABELS, EAGER, TimingRow, check_targets, timm_rows
from .tables import dataclass_records, markdown_table
from ..files import refuse_to_overwrite, write_csv

__all__ = ['cpu_model', 'environment', 'markdown_summary', 'plot_cost', 'result_paths', 'check_writable',
           'write_results']


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else ``platform.processor()``."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = 'cpu') -> Dict[str, str]:
    """What the numbers depend on: machine, library versions, threads, load."""
    env = {
        'date (UTC)': datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M'),
        'cpu': f'{cpu_model()} ({os.cpu_count()} logical cores)',
        'torch threads': str(torch.get_num_threads()),
        'torch': torch.__version__,
        'timm': timm.__version__,
        'python': platform.python_version(),
        'load average (1, 5, 15 min) at the end': ', '.join(f'{v:.2f}' for v in os.getloadavg()),
    }
    if device.startswith('cuda') and torch.cuda.is_available():
        env['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return env


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return 'n/a' if value != value else f'{value:.2f}'
    return str(value)


def _steps(final_steps: Union[str, Sequence[str]]) -> List[str]:
    return [final_steps] if isinstance(final_steps, str) else list(final_steps)


def markdown_summary(
        rows: Sequence[TimingRow], env: Dict[str, str], final_steps: Union[str, Sequence[str]], command: str) -> str:
    """The markdown report: machine, target check, main table (eager vs each backend's fast path), ablation."""
    main_steps = [EAGER] + _steps(final_steps)
    parts = ['## Machine', '', markdown_table(['', ''], list(env.items()), _fmt), '', f'Regenerate: `{command}`', '']
    targets = check_targets(rows)
    if targets:
        parts += ['## Targets (speed-up of the WAE model over its backbone at 224, ratio of medians)', '',
                  '"both at this step" is the fair ratio: the backbone got the same optimisations. '
                  '"vs eager backbone" pits the optimised WAE model against the unoptimised backbone.', '',
                  markdown_table(
                      ['model', 'vs', 'batch', 'metric', 'step', 'precision', 'target', 'paper', 'both at this step',
                       'vs eager backbone', 'target met (fair)'],
                      [[t['model'], t['backbone'], t['batch_size'], t['metric'], t['step'], t['precision'],
                        f"{t['required']:.2f}x",
                        'n/a' if t['paper'] is None else f"{t['paper']:.2f}x", f"{t['both_same_step']:.2f}x",
                        f"{t['wae_vs_eager_backbone']:.2f}x", 'yes' if t['met'] else 'NO'] for t in targets],
                      _fmt), '']
    for batch_size in sorted({r.batch_size for r in rows}):
        main = [r for r in rows if r.batch_size == batch_size and r.step in main_steps]
        if batch_size == 1:
            header = ['backbone', 'model', 'name', 'input', 'step', 'precision', 'median ms', 'min ms', 'max ms']
            values = [lambda r: r.median_ms, lambda r: r.min_ms, lambda r: r.max_ms]
        else:
            header = ['backbone', 'model', 'name', 'input', 'step', 'precision', 'img/s (median)', 'min ms', 'max ms']
            values = [lambda r: r.throughput_img_s, lambda r: r.min_ms, lambda r: r.max_ms]
        header += ['speed-up same step', 'speed-up vs eager backbone', 'GFLOPs', 'load']
        parts += [f'## Batch {batch_size} ({"latency" if batch_size == 1 else "throughput"})', '',
                  markdown_table(header, [[r.backbone, r.label, r.model, r.input_size, r.step, r.precision]
                                          + [f(r) for f in values]
                                          + [f'{r.speedup_same_step:.2f}x', f'{r.speedup_vs_eager_backbone:.2f}x',
                                             r.gflops, r.load_avg_1m] for r in main], _fmt), '']
    ablation = [r for r in rows if r.label in ABLATED_LABELS]
    if len({r.step for r in ablation}) > 2:
        parts += ['## Ablation: what each step buys (median ms; speed-up over the same model eager)', '']
        lines = []
        for r in ablation:
            eager = next(e for e in ablation if e.model == r.model and e.batch_size == r.batch_size
                         and e.step == EAGER and e.backbone == r.backbone and e.precision == r.precision)
            lines.append([r.model, r.batch_size, r.step, r.median_ms, f'{eager.median_ms / r.median_ms:.2f}x',
                          f'{r.speedup_same_step:.2f}x', f'{r.max_abs_diff:.1e}'])
        parts += [markdown_table(['model', 'batch', 'step', 'median ms', 'vs own eager', 'WAE / backbone same step',
                                  'max |out - eager out|'], lines, _fmt), '']
    return '\n'.join(parts)


def plot_cost(rows: Sequence[TimingRow], path: Path, final_steps: Union[str, Sequence[str]]) -> None:
    """PNG: fvcore GFLOPs (x) against measured batch-1 median latency (y), eager and the first backend's fast path."""
    final_step = _steps(final_steps)[0]
    # imported here: pyplot adds 0.6-1.0 s (measured on 2 cores) to this module's ~0.1 s import,
    # and choosing the Agg backend at import would switch it for the whole importing process
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 6))
    for step, marker in ((EAGER, 'o'), (final_step, '^')):
        points = [r for r in rows if r.batch_size == 1 and r.step == step]
        for backbone, colour in zip(sorted({r.backbone for r in points}), ('tab:blue', 'tab:orange', 'tab:green')):
            mine = [r for r in points if r.backbone == backbone]
            ax.scatter([r.gflops for r in mine], [r.median_ms for r in mine], marker=marker, color=colour,
                       label=f'{backbone} family, {step}')
            for r in mine:
                ax.annotate(f'{r.label}', (r.gflops, r.median_ms), fontsize=7, xytext=(3, 3),
                            textcoords='offset points')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('fvcore GFLOPs at batch 1 (1 multiply-add = 1 FLOP)')
    ax.set_ylabel('median batch-1 latency (ms)')
    ax.set_title('Cost: FLOPs vs measured latency')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def result_paths(out_dir: Path, name: str) -> Dict[str, Path]:
    """Where :func:`write_results` puts the CSV, markdown and PNG called ``name``, and the CSV in timm's
    benchmark.py columns (``name``_timm.csv)."""
    paths = {ext: out_dir / f'{name}.{ext}' for ext in ('csv', 'md', 'png')}
    paths['timm_csv'] = out_dir / f'{name}_timm.csv'
    return paths


def check_writable(out_dir: Path, name: str, overwrite: bool) -> Dict[str, Path]:
    """The result paths for ``name``; raises if any exists and ``overwrite`` is False (call before a long run)."""
    paths = result_paths(out_dir, name)
    refuse_to_overwrite(paths.values(), overwrite)
    return paths


def write_results(
        rows: Sequence[TimingRow], out_dir: Path, name: str, env: Dict[str, str],
        final_steps: Union[str, Sequence[str]], command: str, overwrite: bool = False) -> Dict[str, Path]:
    """Write ``name``.csv / .md / .png and ``name``_timm.csv under ``out_dir``; refuses to replace existing
    files unless ``overwrite``."""
    if not rows:
        raise ValueError('write_results: no rows to write')
    paths = check_writable(out_dir, name, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(paths['csv'], dataclass_records(rows))
    write_csv(paths['timm_csv'], timm_rows(rows))
    header = '# Speed benchmark\n\n'
    paths['md'].write_text(header + markdown_summary(rows, env, final_steps, command) + '\n')
    plot_cost(rows, paths['png'], final_steps)
    return paths
