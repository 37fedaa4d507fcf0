"""The report of the equal-cost grid: mean +- std over seeds, cost, verdicts, the paper's tables, a Pareto plot.

Reads what :mod:`wae_timm.experiments.equal_cost` wrote (``fashion_mnist_seeds.csv``,
``fashion_mnist_seeds_noise.csv``, ``fashion_mnist_cost.csv``); every number of the
report comes from those files.

A comparison is a *win* or a *loss* when the difference of the mean top-1 exceeds twice
its standard error (``2 * sqrt(s_a^2 / n_a + s_b^2 / n_b)``), a *tie* otherwise, and
*undecided* while a row has fewer than 2 seeds.
"""
import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .equal_cost import GRID_FILES, read_rows
from .reproduction_report import TABLE2_ROWS, TABLE4_ROWS
from .reproduction_setup import GRID_ROWS
from .tables import markdown_table
from ..files import atomic_write

__all__ = ['RowSummary', 'summarize', 'verdict', 'write_grid_report', 'REPORT_FILES', 'OURS']

REPORT_FILES = {'markdown': 'fashion_mnist_seeds.md', 'pareto': 'fashion_mnist_pareto.png'}
OURS = 'wae_stage3'
# Table 3 of the paper with the sweep's backbone at 16 px as I_R
TABLE3_GRID_ROWS = ('wavelet_ca', 'backbone_16', 'wae_low', 'wae_stage3')
_LABELS = {r.key: r.label for r in GRID_ROWS}


class RowSummary:
    """Mean and sample standard deviation of one row's top-1/top-5 over its seeds."""

    def __init__(self, key: str, top1: Sequence[float], top5: Sequence[float], seeds: Sequence[int]) -> None:
        self.key, self.seeds = key, sorted(seeds)
        self.n = len(top1)
        self.top1, self.top5 = statistics.fmean(top1), statistics.fmean(top5)
        self.top1_std = statistics.stdev(top1) if self.n > 1 else float('nan')
        self.top5_std = statistics.stdev(top5) if self.n > 1 else float('nan')

    @property
    def label(self) -> str:
        return _LABELS.get(self.key, self.key)

    def top1_text(self) -> str:
        return f'{self.top1:.2f}' + (f' ± {self.top1_std:.2f}' if self.n > 1 else ' (1 seed)')


def summarize(rows: Sequence[Dict[str, str]]) -> Dict[str, RowSummary]:
    """``{key: RowSummary}`` over the seeds of each key, in grid order."""
    grouped: Dict[str, List[Dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row['key'], []).append(row)
    order = [r.key for r in GRID_ROWS] + sorted(set(grouped) - {r.key for r in GRID_ROWS})
    return {key: RowSummary(key, [float(r['top1']) for r in grouped[key]], [float(r['top5']) for r in grouped[key]],
                            [int(r['seed']) for r in grouped[key]]) for key in order if key in grouped}


def verdict(ours: RowSummary, other: RowSummary) -> Tuple[str, float]:
    """('win' | 'tie' | 'loss' | 'undecided', difference of mean top-1 in points) of ``ours`` against ``other``."""
    difference = ours.top1 - other.top1
    if ours.n < 2 or other.n < 2:
        return 'undecided', difference
    margin = 2. * math.sqrt(ours.top1_std ** 2 / ours.n + other.top1_std ** 2 / other.n)
    if abs(difference) <= margin:
        return 'tie', difference
    return ('win' if difference > 0 else 'loss'), difference


def _pareto_plot(summaries: Dict[str, RowSummary], cost: Dict[str, Dict[str, str]], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, s in summaries.items():
        if key not in cost:
            continue
        latency = float(cost[key]['latency_ms'])
        sweep = key.startswith('backbone_')
        ax.errorbar(latency, s.top1, yerr=0 if s.n < 2 else s.top1_std, fmt='s' if sweep else 'o', capsize=3,
                    color='tab:gray' if sweep else ('tab:red' if key == OURS else 'tab:blue'))
        ax.annotate(key, (latency, s.top1), textcoords='offset points', xytext=(4, 3), fontsize=7)
    sweep_points = sorted((float(cost[k]['latency_ms']), summaries[k].top1) for k in summaries
                          if k.startswith('backbone_') and k in cost)
    if sweep_points:
        ax.plot(*zip(*sweep_points), color='tab:gray', lw=0.8, ls='--', label='backbone at 16/20/24/32 px')
        ax.legend(loc='lower right', fontsize=8)
    any_cost = next(iter(cost.values()), None)
    batch = any_cost['latency_batch'] if any_cost else '?'
    ax.set_xlabel(f'CPU latency, batch {batch} (ms)')
    ax.set_ylabel('Fashion-MNIST top-1 (%), mean ± std over seeds')
    ax.set_title('Accuracy against measured cost (ResNet-18 rows)')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format='png'))
    plt.close(fig)


def _equal_cost_backbone(cost: Dict[str, Dict[str, str]]) -> Optional[str]:
    """The sweep row whose latency is nearest the WAE's."""
    if OURS not in cost:
        return None
    target = float(cost[OURS]['latency_ms'])
    sweep = [k for k in cost if k.startswith('backbone_')]
    return min(sweep, key=lambda k: abs(float(cost[k]['latency_ms']) - target)) if sweep else None


def write_grid_report(results_dir: Path, command: str = 'python tools/equal_cost_fashion_mnist.py report') -> str:
    """Write ``fashion_mnist_seeds.md`` and ``fashion_mnist_pareto.png`` from the grid's CSVs; returns the markdown."""
    results_dir = Path(results_dir)
    rows = read_rows(results_dir / GRID_FILES['results'])
    if not rows:
        raise FileNotFoundError(f'{results_dir / GRID_FILES["results"]} has no finished rows: run the grid first')
    summaries = summarize(rows)
    cost = {r['key']: r for r in read_rows(results_dir / GRID_FILES['cost'])}
    first = rows[0]
    seeds = sorted({int(r['seed']) for r in rows})
    lines = [f'Made by `python tools/equal_cost_fashion_mnist.py train --seeds 0 1 2`, `... cost`, `{command}` '
             '(wae_timm/experiments/equal_cost.py: GRID_CONFIG is the one schedule of every row).', '',
             f"ResNet-18 rows, Fashion-MNIST 60k/10k (28x28 zero-padded to 32x32), batch {first['batch_size']}, "
             f"{first['train_images']} training images per epoch; seeds so far: {seeds}. Top-1 in %, mean ± sample std "
             'over the seeds finished; cost: fvcore GFLOPs at batch 1, CPU latency best of N of a batch '
             '(all rows side by side in one process; load average in the cost CSV).', '']
    table = []
    for key, s in summaries.items():
        c = cost.get(key, {})
        epochs = sorted({r['epochs'] for r in rows if r['key'] == key})
        lrs = sorted({f"{float(r['lr']):g}" for r in rows if r['key'] == key})
        table.append([s.label, s.n, s.top1_text(), f'{s.top5:.2f}', ','.join(epochs), ','.join(lrs),
                      f"{float(c['gflops']):.4f}" if c else '-', f"{float(c['latency_ms']):.1f}" if c else '-',
                      c.get('load_average', '-')])
    lines.append(markdown_table(['row', 'seeds', 'top-1', 'top-5', 'epochs', 'lr', 'GFLOPs', 'CPU ms', 'load'], table))
    curve = [r['top1_per_epoch'] for r in rows if r['key'] == 'backbone_32' and r['top1_per_epoch']]
    if curve:
        lines += ['', 'Test top-1 after each epoch of `backbone_32` (how near its plateau the schedule ends): '
                  + '; '.join(f'seed {r["seed"]}: {r["top1_per_epoch"]}' for r in rows
                              if r['key'] == 'backbone_32' and r['top1_per_epoch'])]
    if OURS in summaries:
        ours = summaries[OURS]
        equal = _equal_cost_backbone(cost)
        verdicts = []
        for key, s in summaries.items():
            if key == OURS or key == 'wae_stage2_longer':
                continue
            outcome, difference = verdict(ours, s)
            note = ' (nearest latency: equal cost)' if key == equal else ''
            verdicts.append([s.label + note, outcome, f'{difference:+.2f}'])
        lines += ['', f'{ours.label} against each row (win/loss: the mean top-1 differs by more than twice its '
                  'standard error; tie otherwise; undecided below 2 seeds):', '']
        lines.append(markdown_table(['against', 'outcome', 'top-1 difference (points)'], verdicts))

    def cell(key: str) -> str:
        return summaries[key].top1_text() if key in summaries else 'not run'
    lines += ['', 'Paper tables from the means (top-1 %):', '',
              'Table 2 (backbone / Wavelet+CNN / Decomposition+CNN / ours):', '',
              markdown_table([_LABELS.get(k, k) for k in TABLE2_ROWS_GRID], [[cell(k) for k in TABLE2_ROWS_GRID]]),
              '', 'Table 3 (cA / I_R / I_L / I_L + I_H):', '',
              markdown_table([_LABELS.get(k, k) for k in TABLE3_GRID_ROWS], [[cell(k) for k in TABLE3_GRID_ROWS]]),
              '', 'Table 4 (w/o FT / w/ FT / control: stage 2 continued as long):', '',
              markdown_table([_LABELS.get(k, k) for k in TABLE4_ROWS], [[cell(k) for k in TABLE4_ROWS]])]
    noise = read_rows(results_dir / GRID_FILES['noise'])
    if noise:
        keys = list(dict.fromkeys(n['key'] for n in noise))
        variances = sorted({float(n['variance']) for n in noise})
        mean = {}
        for key in keys:
            for v in variances:
                values = [float(n['top1']) for n in noise if n['key'] == key and float(n['variance']) == v]
                mean[key, v] = (statistics.fmean(values), len(values)) if values else None
        lines += ['', 'Table 7 (top-1 % with Gaussian noise of variance V on the [0, 1] test images; mean over seeds):',
                  '', markdown_table(['V'] + [_LABELS.get(k, k) for k in keys],
                                     [[f'{v:g}'] + [f'{mean[k, v][0]:.2f} (n={mean[k, v][1]})' if mean[k, v] else '-'
                                                    for k in keys] for v in variances])]
    if cost:
        _pareto_plot(summaries, cost, results_dir / REPORT_FILES['pareto'])
        lines += ['', f'![top-1 against latency]({REPORT_FILES["pareto"]})']
    markdown = '# Equal-cost comparison on Fashion-MNIST\n\n' + '\n'.join(lines) + '\n'
    atomic_write(results_dir / REPORT_FILES['markdown'], lambda tmp: Path(tmp).write_text(markdown))
    return markdown


# Table 2 with the sweep's full-resolution backbone
TABLE2_ROWS_GRID = tuple('backbone_32' if k == 'backbone' else k for k in TABLE2_ROWS)
