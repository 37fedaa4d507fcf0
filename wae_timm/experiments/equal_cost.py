"""The equal-cost comparison on Fashion-MNIST: every method with several seeds, the backbone at several resolutions.

A user's question is whether ``wae_*`` beats simply running the backbone at a lower
resolution that costs the same. The grid (:data:`~wae_timm.experiments.reproduction_setup.GRID_ROWS`)
trains, for each seed, a fresh stage-1 WAE, then every row with the same schedule
(:class:`~wae_timm.experiments.reproduction_setup.ReproductionConfig`): the backbone at
32, 24, 20 and 16 px, the WAE (stage 2, stage 3 continued from it, and the control that
continues stage 2 as long without ``L_t``), Decomposition+CNN, Wavelet+CNN, cA only, I_L only.

The run is resumable and may be done in pieces: each finished (row, seed) is appended to
the results CSV at once (with the sha256 of the checkpoint it measured), and a rerun skips
the finished ones. A row interrupted half way trains again from its start. Rows that
continue another (stage 3, the control) load their parent's checkpoint from
``checkpoint_dir``.

Cost (fvcore GFLOPs, batch-64 latency) does not depend on the weights: :func:`measure_grid_costs`
measures every row's architecture side by side, in one process, when the machine is quiet.
"""
import csv
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from safetensors.torch import load_file

from .flops import count_flops, parameter_count
from .noise import NoisyTestSet
from .reproduction import build_row_model, continue_from, measure_latency, row_epochs, save_classifier, \
    train_classifier, train_loader, train_stage1_wae
from .reproduction_setup import GRID_ROWS, INPUT_SIZE, ReproductionConfig, RowSpec
from ..data import FashionMNIST
from ..files import write_csv
from ..train import evaluate, save_wae

__all__ = ['GRID_CONFIG', 'GRID_FILES', 'GRID_COLUMNS', 'COST_COLUMNS', 'grid_rows', 'read_rows', 'file_sha256', 'run_grid',
           'forget_rows', 'measure_grid_costs']

_logger = logging.getLogger(__name__)

GRID_FILES = {
    'results': 'fashion_mnist_seeds.csv',
    'noise': 'fashion_mnist_seeds_noise.csv',
    'cost': 'fashion_mnist_cost.csv',
}
GRID_COLUMNS = ('key', 'label', 'seed', 'top1', 'top5', 'loss', 'train_loss', 'epochs', 'lr', 'gamma', 'batch_size',
                'train_images', 'train_seconds', 'top1_per_epoch', 'load_average', 'weights_sha256', 'checkpoint')
NOISE_COLUMNS = ('key', 'label', 'seed', 'variance', 'top1', 'top5')
COST_COLUMNS = ('key', 'label', 'params_m', 'gflops', 'latency_ms', 'latency_batch', 'threads', 'load_average')
# The grid's one schedule, the same for every row: 5 epochs of SGD (warm-up + cosine, batch 128, lr 0.05)
# from scratch; stage 3 and its control continue the 5-epoch stage-2 model for 1 epoch at the paper's
# stage-3 lr, 1e-4 (a 50x larger lr, 0.005, sent L_t to inf on one seed of three).
# Five epochs: the backbone at 32 px gains <0.5 points in its last epoch (top1_per_epoch of backbone_32).
GRID_CONFIG = ReproductionConfig(epochs=5, finetune_epochs=1, batch_size=128, lr=0.05, finetune_lr=1e-4)
# rows whose test accuracy is measured after every epoch: the evidence for how near the plateau the schedule ends
CURVE_ROWS = ('backbone_32',)


def grid_rows(names: Optional[Sequence[str]] = None) -> List[RowSpec]:
    """The rows of :data:`GRID_ROWS` named by ``names`` (all by default), parents before the rows that continue them."""
    known = {r.key: r for r in GRID_ROWS}
    if names is None:
        return list(GRID_ROWS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f'unknown grid rows {unknown}; known: {list(known)}')
    selected = {n for n in names} | {known[n].parent for n in names if known[n].parent}
    return [r for r in GRID_ROWS if r.key in selected]


def read_rows(path: Path) -> List[Dict[str, str]]:
    """The rows of a CSV written by this module; none if the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _append_row(path: Path, columns: Sequence[str], record: Dict[str, Any]) -> None:
    """Append ``record`` to the CSV at ``path`` (header first if new), replacing the file atomically."""
    existing = read_rows(path)
    if existing and tuple(existing[0]) != tuple(columns):
        raise ValueError(f'{path} has columns {list(existing[0])}, expected {list(columns)}: '
                         'it was written by another version; move it away to start a new grid')
    write_csv(path, existing + [record], columns)


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _load_parent(row: RowSpec, config: ReproductionConfig, path: Path, wae_path: Path) -> nn.Module:
    parent = next(r for r in GRID_ROWS if r.key == row.parent)
    if not path.exists():
        raise FileNotFoundError(
            f'{row.key} continues {row.parent}, whose checkpoint {path} is missing: remove the {row.parent} rows '
            'of that seed from the results CSV to train it again')
    model = build_row_model(parent, config, str(wae_path))
    model.load_state_dict(load_file(str(path)))
    return model


def _schedule(row: RowSpec, config: ReproductionConfig, train_images: int) -> Dict[str, Any]:
    # what a finished row records of the schedule it was trained with; a rerun refuses rows trained otherwise
    return dict(epochs=row_epochs(row, config), lr=config.finetune_lr if row.stage == 'continue' else config.lr,
                gamma=config.gamma if row.use_gamma else 0., batch_size=config.batch_size, train_images=train_images)


def _refuse_other_schedules(results_path: Path, recorded: Sequence[Dict[str, str]], rows: Sequence[RowSpec],
                            seeds: Sequence[int], config: ReproductionConfig, train_images: int) -> None:
    # a grid mixing schedules would average incomparable numbers: name every such row before training any
    selected = {r.key: r for r in rows}
    stale = []
    for record in recorded:
        row = selected.get(record['key'])
        if row is None or int(record['seed']) not in seeds:
            continue
        expected = _schedule(row, config, train_images)
        differs = [f'{k} {record[k]} (now {v})' for k, v in expected.items() if float(record[k]) != float(v)]
        if differs:
            stale.append(f"{record['key']} seed {record['seed']}: {', '.join(differs)}")
    if stale:
        raise ValueError(f'{results_path} has rows trained with another schedule than this grid\'s: '
                         + '; '.join(stale) + '. Forget them (tools/equal_cost_fashion_mnist.py forget --rows ... '
                         '--seeds ...) to train them again with this schedule.')


def forget_rows(results_dir: Path, rows: Sequence[str], seeds: Sequence[int]) -> List[Dict[str, str]]:
    """Remove the finished (row, seed) records of ``rows`` x ``seeds`` from the grid's CSVs; return those removed.

    Rows that continue a forgotten row (stage 3 and the control continue stage 2) are
    forgotten with it, since their numbers came from the parent's old weights. Their noise
    rows go too. Checkpoints are left on disk; the next ``run_grid`` trains the rows again
    and replaces them.
    """
    grid_rows(rows)  # refuses unknown names
    keys = set(rows) | {r.key for r in GRID_ROWS if r.parent in rows}
    seeds = set(seeds)
    removed: List[Dict[str, str]] = []
    for name, columns in (('results', GRID_COLUMNS), ('noise', NOISE_COLUMNS)):
        path = Path(results_dir) / GRID_FILES[name]
        recorded = read_rows(path)
        kept = [r for r in recorded if not (r['key'] in keys and int(r['seed']) in seeds)]
        if len(kept) != len(recorded):
            write_csv(path, kept, columns)
        if name == 'results':
            removed = [r for r in recorded if r not in kept]
    return removed


def _row_seed(seed: int, row: RowSpec) -> int:
    # independent of which rows a piece runs, so a row trains the same whether run alone or in the grid
    return 1000 * seed + [r.key for r in GRID_ROWS].index(row.key)


def run_grid(
        config: ReproductionConfig,
        seeds: Sequence[int],
        results_dir: Path,
        checkpoint_dir: Path,
        rows: Optional[Sequence[str]] = None,
        progress: bool = True,
        max_rows: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """Train and evaluate every unfinished (row, seed) of the grid on the full 60k/10k split; return the new records.

    Seeds run one after another (all rows of the first seed, then the next), so a
    partial run has whole seeds. ``config.train_images`` / ``test_images`` (``None``: all)
    take the first images of each split. ``max_rows`` stops after that many newly trained rows.
    The results CSVs are appended in ``results_dir``; checkpoints go to
    ``checkpoint_dir/seed<S>/<row>.safetensors`` (stage 1: ``wae_stage1.safetensors``).
    """
    results_dir, checkpoint_dir = Path(results_dir), Path(checkpoint_dir)
    selected = grid_rows(rows)
    results_path, noise_path = results_dir / GRID_FILES['results'], results_dir / GRID_FILES['noise']
    recorded = read_rows(results_path)
    # the whole split unless a test asks for a small, fixed slice
    train_indices = list(range(config.train_images or 60000))
    _refuse_other_schedules(results_path, recorded, selected, seeds, config, len(train_indices))
    finished = {(r['key'], int(r['seed'])) for r in recorded}
    test_set = FashionMNIST('test', normalize=False,
                            indices=None if config.test_images is None else list(range(config.test_images)))
    new_records: List[Dict[str, Any]] = []
    for seed in seeds:
        todo = [r for r in selected if (r.key, seed) not in finished]
        if not todo:
            continue
        seed_dir = checkpoint_dir / f'seed{seed}'
        seed_dir.mkdir(parents=True, exist_ok=True)
        wae_path = seed_dir / 'wae_stage1.safetensors'
        if not wae_path.exists() and any(r.wrapper_args is not None for r in todo):
            torch.manual_seed(1000 * seed)
            wae, metrics = train_stage1_wae(train_loader(train_indices, config.wae_batch_size, seed), config, progress)
            save_wae(wae, wae_path)
            _logger.info('seed %d: stage 1 done in %.0f s', seed, metrics['train_seconds'])
        loader = train_loader(train_indices, config.batch_size, seed)
        clean = NoisyTestSet(test_set, 0., seed=seed)
        for row in todo:
            if max_rows is not None and len(new_records) >= max_rows:
                return new_records
            torch.manual_seed(_row_seed(seed, row))
            if row.stage == 'continue':
                model = continue_from(_load_parent(row, config, seed_dir / f'{row.parent}.safetensors', wae_path), row)
            else:
                model = build_row_model(row, config, str(wae_path))
            curve: List[float] = []
            on_epoch_end = None
            if row.key in CURVE_ROWS:
                def on_epoch_end(epoch: int, metrics: Dict[str, float], model: nn.Module = model) -> None:
                    curve.append(evaluate(model, clean, progress=False)['top1'])
            metrics = train_classifier(model, loader, row, config, progress, on_epoch_end=on_epoch_end)
            result = evaluate(model, clean, progress=progress)
            checkpoint = save_classifier(model, seed_dir / f'{row.key}.safetensors', row, config)
            record = dict(
                key=row.key, label=row.label, seed=seed, top1=result['top1'], top5=result['top5'], loss=result['loss'],
                train_loss=metrics.get('loss', float('nan')), **_schedule(row, config, len(train_indices)),
                train_seconds=round(metrics['train_seconds'], 1), top1_per_epoch=' '.join(f'{v:.2f}' for v in curve),
                load_average=' '.join(f'{v:.1f}' for v in os.getloadavg()),
                weights_sha256=file_sha256(checkpoint), checkpoint=str(checkpoint))
            if row.noise:
                for variance in config.noise_variances:
                    scores = result if variance == 0 else evaluate(
                        model, NoisyTestSet(test_set, variance, seed=seed, clip=config.noise_clip), progress=progress)
                    _append_row(noise_path, NOISE_COLUMNS, dict(key=row.key, label=row.label, seed=seed,
                                                                variance=variance, top1=scores['top1'],
                                                                top5=scores['top5']))
            _append_row(results_path, GRID_COLUMNS, record)
            new_records.append(record)
            _logger.info('seed %d %s: top-1 %.2f (trained in %.0f s)', seed, row.key, result['top1'],
                         metrics['train_seconds'])
    return new_records


def measure_grid_costs(
        config: ReproductionConfig,
        results_dir: Path,
        rows: Optional[Sequence[str]] = None,
        overwrite: bool = False,
) -> List[Dict[str, Any]]:
    """fvcore GFLOPs (batch 1), parameters and best-of-N batch latency of every grid row, measured side by side.

    The models are random-initialised (cost does not depend on the weights) and take
    turns (see :func:`~wae_timm.experiments.reproduction.measure_latency`); the load
    average is recorded with the figures. Writes ``fashion_mnist_cost.csv``.
    """
    from ..files import refuse_to_overwrite
    path = Path(results_dir) / GRID_FILES['cost']
    refuse_to_overwrite([path], overwrite)
    selected = grid_rows(rows)
    models = {row.key: build_row_model(row, config).eval() for row in selected}
    load_before = os.getloadavg()
    latencies = measure_latency(models, INPUT_SIZE, config.latency_batch, config.latency_repeats)
    load = ' '.join(f'{max(a, b):.1f}' for a, b in zip(load_before, os.getloadavg()))
    records = [dict(key=row.key, label=row.label, params_m=round(parameter_count(models[row.key]) / 1e6, 3),
                    gflops=count_flops(models[row.key], INPUT_SIZE).total / 1e9,
                    latency_ms=round(latencies[row.key], 3), latency_batch=config.latency_batch,
                    threads=torch.get_num_threads(), load_average=load) for row in selected]
    write_csv(path, records, COST_COLUMNS)
    return records
