"""The paper's ablations (Tables 2, 3, 4 and 7) reproduced on the real Fashion-MNIST 60k/10k split.

Data: Debian's ``dataset-fashion-mnist`` through
:class:`wae_timm.train.FashionMNIST`: native 28x28 images zero-padded to
32x32 (no resampling), grey repeated to 3 channels, normalised with the
training split's mean/std. Training adds random horizontal flips.

The rows (:data:`~wae_timm.experiments.reproduction_setup.ROWS`) are the
methods of the paper's comparison around one backbone, the WAE in several
training variants. Stage 1 (the WAE alone, transform loss) runs once, first,
on the same training images; its weights are shared by the ``wae_*`` rows.
Table 7's noisy test images are :class:`~wae_timm.experiments.noise.NoisyTestSet`.

The CPU cost of each model is fvcore's FLOP count at batch 1 and the
best-of-N latency of an eval-mode forward of a batch, measured on this machine.

A time budget fixes how many training images (a fixed random subset, the
same for every row) fit: :func:`plan_train_images` measures each row's time
per training image on a few batches first.
"""
import copy
import json
import logging
import os
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader

from .flops import count_flops, parameter_count
from .figures import render_decomposition_figure
from .noise import NoisyTestSet
from .reproduction_report import format_markdown
from .reproduction_setup import INPUT_SIZE, NUM_CLASSES, ROWS, ReproductionConfig, RowSpec
from .speed import time_call
from ..data import FashionMNIST
from ..layers.autoencoder import WaveletLikeAutoEncoder
from ..train import autoencoder_loss, evaluate, fit, paper_loss, save_wae, train_one_epoch
from ..files import atomic_write, refuse_to_overwrite, write_csv
from ..models.wae import WAEWrapper

__all__ = [
    'ReproductionConfig', 'RowSpec', 'ROWS', 'plan_train_images', 'measure_latency', 'run_reproduction', 'RESULT_FILES',
    'ResizedInput', 'build_row_model', 'row_epochs', 'train_classifier', 'train_stage1_wae', 'train_loader',
    'continue_from', 'save_classifier',
]

_logger = logging.getLogger(__name__)

TRAIN_SPLIT_SIZE = 60000
# what a run writes under its results directory (the decomposition figure is written by the same run)
RESULT_FILES = {
    'results': 'fashion_mnist_results.csv',
    'noise': 'fashion_mnist_noise.csv',
    'markdown': 'fashion_mnist.md',
    'figure': 'fashion_mnist_decomposition.png',
}


# ----------------------------------------------------------------------------- data
def _train_subset(num_images: int, seed: int) -> List[int]:
    if not 0 < num_images <= TRAIN_SPLIT_SIZE:
        raise ValueError(f'train_images must be in 1..{TRAIN_SPLIT_SIZE}, got {num_images}')
    if num_images == TRAIN_SPLIT_SIZE:
        return list(range(TRAIN_SPLIT_SIZE))
    return torch.randperm(TRAIN_SPLIT_SIZE, generator=torch.Generator().manual_seed(seed))[:num_images].tolist()


def train_loader(indices: Sequence[int], batch_size: int, seed: int) -> DataLoader:
    dataset = FashionMNIST('train', hflip=True, indices=indices)
    # the same seed gives every row the same batches in the same order
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size,
                      generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- models
class ResizedInput(nn.Module):
    """``model`` on its input resized to ``size`` x ``size`` (bilinear, antialiased): ``[B, C, H, W] -> model``.

    The equal-cost sweep's backbone at a lower resolution; the resize is part of the
    model so every row reads the same data and its cost is counted.
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model = model
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode='bilinear', align_corners=False,
                                          antialias=True)
        return self.model(x)


def build_row_model(row: RowSpec, config: ReproductionConfig, wae_weights: Optional[str] = None) -> nn.Module:
    """A freshly initialised model of ``row`` (stage-1 weights loaded for 'frozen_wae' rows)."""
    if row.wrapper_args is None:
        backbone = timm.create_model(config.backbone, num_classes=NUM_CLASSES, **config.backbone_kwargs)
        return backbone if row.resolution is None else ResizedInput(backbone, row.resolution)
    kwargs = dict(row.wrapper_args)
    if row.stage in ('frozen_wae', 'continue'):
        kwargs.update(wae_weights=wae_weights, freeze_wae=True)
    return WAEWrapper(config.backbone, num_classes=NUM_CLASSES, backbone_kwargs=config.backbone_kwargs, **kwargs)


def continue_from(parent: nn.Module, row: RowSpec) -> nn.Module:
    model = copy.deepcopy(parent)
    if row.unfreeze_wae:
        model.wae.requires_grad_(True)
    return model


def _classifier_loss(row: RowSpec, config: ReproductionConfig) -> Callable:
    return partial(paper_loss, aux_loss_weight=config.gamma if row.use_gamma else 0.)


def _row_lr(row: RowSpec, config: ReproductionConfig) -> float:
    return config.finetune_lr if row.stage == 'continue' else config.lr


def row_epochs(row: RowSpec, config: ReproductionConfig) -> int:
    """Epochs of ``row``: ``finetune_epochs`` for rows that continue a trained one, else ``epochs``."""
    if row.stage == 'continue' and config.finetune_epochs is not None:
        return config.finetune_epochs
    return config.epochs


def train_classifier(
        model: nn.Module, loader: DataLoader, row: RowSpec, config: ReproductionConfig, progress: bool = True,
        on_epoch_end: Optional[Callable[[int, Dict[str, float]], None]] = None,
) -> Dict[str, float]:
    """Train ``model`` for :func:`row_epochs` with the paper's loss (SGD, warm-up + cosine); returns the last
    epoch's training metrics plus ``train_seconds``."""
    lr = _row_lr(row, config)
    epochs = row_epochs(row, config)
    # timm's factory leaves out frozen parameters and exempts norms and biases from weight decay
    optimizer = create_optimizer_v2(model, 'sgd', lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    total_steps = max(epochs * len(loader), 1)
    warmup = int(config.warmup_fraction * total_steps) if row.stage != 'continue' else 0
    scheduler = CosineLRScheduler(optimizer, t_initial=total_steps, warmup_t=warmup, warmup_lr_init=lr * 0.01,
                                  warmup_prefix=True, t_in_epochs=False)
    start = time.perf_counter()
    history = fit(model, loader, optimizer, epochs=epochs, loss_fn=_classifier_loss(row, config),
                  lr_scheduler=scheduler, progress=progress, on_epoch_end=on_epoch_end)
    metrics = dict(history[-1]) if history else {}
    metrics['train_seconds'] = time.perf_counter() - start
    return metrics


def train_stage1_wae(loader: DataLoader, config: ReproductionConfig, progress: bool = True):
    """Stage 1: a fresh WAE trained by the ``fashion_mnist`` stage-1 recipe with ``config``'s ``wae_*`` settings."""
    from ..train.stage1 import STAGE1_RECIPES, train_autoencoder
    recipe = replace(STAGE1_RECIPES['fashion_mnist'], lr=config.wae_lr, epochs=config.wae_epochs,
                     batch_size=config.wae_batch_size)
    wae = WaveletLikeAutoEncoder(in_chans=INPUT_SIZE[0])
    start = time.perf_counter()
    history = train_autoencoder(wae, loader, recipe, progress=progress)
    metrics = dict(history[-1]) if history else {}
    metrics['train_seconds'] = time.perf_counter() - start
    return wae, metrics


# ----------------------------------------------------------------------------- cost
@torch.no_grad()
def measure_latency(
        models: Dict[str, nn.Module], input_size: Sequence[int], batch_size: int, repeats: int = 10,
) -> Dict[str, float]:
    """Best (minimum) wall time in ms of each model's eval-mode forward on a ``[batch_size, *input_size]`` batch.

    After 2 warm-up runs each, the models take turns, one run per round, so that a
    load change on a shared machine hits every model alike; the minimum over the
    rounds is the run least disturbed by other processes.
    """
    x = torch.randn(batch_size, *input_size)
    modes = {name: model.training for name, model in models.items()}
    times: Dict[str, List[float]] = {name: [] for name in models}
    for model in models.values():
        model.eval()
        for _ in range(2):
            model(x)
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(time_call(model, x))
    for name, model in models.items():
        model.train(modes[name])
    return {name: 1000. * min(t) for name, t in times.items()}


def _seconds_per_batch(run_batches: Callable[[Sequence], Any], batches: List, warmup: int = 1) -> float:
    run_batches(batches[:warmup])
    start = time.perf_counter()
    run_batches(batches[warmup:])
    return (time.perf_counter() - start) / max(len(batches) - warmup, 1)


def plan_train_images(
        config: ReproductionConfig, rows: Sequence[RowSpec], test_images: int, elapsed_s: float = 0.,
        safety: float = 0.7, fixed_overhead_s: float = 120.,
) -> Tuple[int, Dict[str, float]]:
    """The number of training images that lets the run end within ``config.budget_minutes``.

    Times ``config.calibration_batches`` training steps (after one warm-up step) and
    one evaluation batch of every row on random data, then solves
    ``n * (wae_epochs * c_wae + epochs * sum(c_row)) + evaluations <= safety * budget - elapsed - overhead``
    (the overhead: FLOP counts, latencies, figure). ``safety = 0.7`` because a run on a
    machine loaded by other jobs took ~1.3x the calibrated time (10368 images planned for 75 min).
    Returns ``(n rounded down to whole batches, at most 60000, seconds per image by phase)``.
    """
    steps = config.calibration_batches + 1

    def batches(batch_size: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.randn(batch_size, *INPUT_SIZE), torch.randint(0, NUM_CLASSES, (batch_size,)))] * steps

    per_image: Dict[str, float] = {}
    wae = WaveletLikeAutoEncoder(in_chans=INPUT_SIZE[0])
    optimizer = torch.optim.Adam(wae.parameters(), lr=config.wae_lr)
    per_image['stage1'] = _seconds_per_batch(
        lambda b: train_one_epoch(wae, b, optimizer, loss_fn=autoencoder_loss, progress=False),
        batches(config.wae_batch_size)) / config.wae_batch_size
    eval_seconds = 0.
    for row in rows:
        model = build_row_model(row, config)
        if row.unfreeze_wae and isinstance(model, WAEWrapper):
            model.wae.requires_grad_(True)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6)
        per_image[row.key] = _seconds_per_batch(
            lambda b: train_one_epoch(model, b, optimizer, loss_fn=_classifier_loss(row, config), progress=False),
            batches(config.batch_size)) / config.batch_size
        eval_batch = batches(256)[:2]
        per_image_eval = _seconds_per_batch(lambda b: evaluate(model, b, progress=False), eval_batch) / 256
        passes = 1 + (len([v for v in config.noise_variances if v > 0]) if row.noise else 0)
        eval_seconds += per_image_eval * test_images * passes
    per_image['evaluation_total'] = eval_seconds
    train_cost = config.wae_epochs * per_image['stage1'] + config.epochs * sum(per_image[r.key] for r in rows)
    available = safety * config.budget_minutes * 60. - elapsed_s - eval_seconds - fixed_overhead_s
    images = int(available / train_cost) if available > 0 else 0
    images = min(TRAIN_SPLIT_SIZE, images // config.batch_size * config.batch_size)
    if images < config.batch_size:
        raise RuntimeError(
            f'a budget of {config.budget_minutes} min leaves no time to train: evaluations need ~{eval_seconds:.0f} s '
            f'and one training image costs {train_cost * 1e3:.1f} ms over all rows; raise --budget-minutes '
            'or give --train-images')
    return images, per_image


# ----------------------------------------------------------------------------- writing
def save_classifier(model: nn.Module, path: Path, row: RowSpec, config: ReproductionConfig) -> Path:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if row.wrapper_args is None:
        architecture = dict(timm_model=config.backbone, num_classes=NUM_CLASSES)
    else:
        architecture = dict(WAEWrapper=dict(backbone=config.backbone, num_classes=NUM_CLASSES, **row.wrapper_args))
    metadata = {'format': 'pt', 'row': row.key, 'architecture': json.dumps(architecture)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))


# ----------------------------------------------------------------------------- the run
def _select_rows(names: Optional[Sequence[str]]) -> List[RowSpec]:
    if names is None:
        return list(ROWS)
    known = {r.key: r for r in ROWS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f'unknown rows {unknown}; known: {list(known)}')
    selected = [known[n] for n in names]
    for row in selected:
        if row.parent and row.parent not in names:
            raise ValueError(f'row {row.key!r} continues from {row.parent!r}: select that row too')
    return [r for r in ROWS if r in selected]  # parents train first



def run_reproduction(
        config: ReproductionConfig,
        results_dir: Path,
        checkpoint_dir: Path,
        command: str = '',
        overwrite: bool = False,
        progress: bool = True,
        figure_images: int = 3,
) -> Dict[str, Any]:
    """Run stage 1 and every selected row; write the CSVs, the markdown report, the checkpoints and the figure.

    Returns ``dict(records=[...], noise=[...], files={...})``.
    """
    start_time = time.perf_counter()
    results_dir, checkpoint_dir = Path(results_dir), Path(checkpoint_dir)
    rows = _select_rows(config.rows)
    files = {name: results_dir / filename for name, filename in RESULT_FILES.items()}
    checkpoints = {row.key: checkpoint_dir / f'fashion_mnist_{row.key}.safetensors' for row in rows}
    wae_path = checkpoint_dir / 'fashion_mnist_wae_stage1.safetensors'
    refuse_to_overwrite([*files.values(), *checkpoints.values(), wae_path], overwrite)

    test_indices = None if config.test_images is None else list(range(config.test_images))
    test_set = FashionMNIST('test', normalize=False, indices=test_indices)
    test_images = len(test_set)
    if config.train_images is None:
        train_images, per_image = plan_train_images(config, rows, test_images, time.perf_counter() - start_time)
        _logger.info('budget %.0f min: training on %d images; seconds per image %s', config.budget_minutes,
                     train_images, {k: round(v, 5) for k, v in per_image.items()})
    else:
        train_images = config.train_images
    indices = _train_subset(train_images, config.seed)

    torch.manual_seed(config.seed)
    wae, wae_metrics = train_stage1_wae(train_loader(indices, config.wae_batch_size, config.seed), config, progress)
    save_wae(wae, wae_path, overwrite=overwrite)
    _logger.info('stage 1 done in %.0f s: %s', wae_metrics['train_seconds'], wae_metrics)

    loader = train_loader(indices, config.batch_size, config.seed)
    clean = NoisyTestSet(test_set, 0., seed=config.seed)
    trained: Dict[str, nn.Module] = {}
    records, noise_records = [], []
    for index, row in enumerate(rows):
        torch.manual_seed(config.seed + index)
        if row.stage == 'continue':
            model = continue_from(trained[row.parent], row)
        else:
            model = build_row_model(row, config, str(wae_path))
        metrics = train_classifier(model, loader, row, config, progress)
        trained[row.key] = model
        result = evaluate(model, clean, progress=progress)
        save_classifier(model, checkpoints[row.key], row, config)
        records.append(dict(
            key=row.key, label=row.label, top1=result['top1'], top5=result['top5'], loss=result['loss'],
            train_loss=metrics.get('loss', float('nan')), train_seconds=metrics['train_seconds'],
            train_images=train_images, epochs=row_epochs(row, config), lr=_row_lr(row, config),
            gamma=config.gamma if row.use_gamma else 0., checkpoint=str(checkpoints[row.key])))
        _logger.info('%s: top-1 %.2f top-5 %.2f (trained in %.0f s)', row.key, result['top1'], result['top5'],
                     metrics['train_seconds'])
        if row.noise:
            for variance in config.noise_variances:
                noisy = clean if variance == 0 else NoisyTestSet(
                    test_set, variance, seed=config.seed, clip=config.noise_clip)
                scores = result if variance == 0 else evaluate(model, noisy, progress=progress)
                noise_records.append(dict(key=row.key, label=row.label, variance=variance, top1=scores['top1'],
                                          top5=scores['top5']))
        # written after every row (costs are added at the end), so a run stopped early keeps its results
        write_csv(files['results'], records)
        if noise_records:
            write_csv(files['noise'], noise_records)

    # cost last, every model measured under the same conditions
    latencies = measure_latency(trained, INPUT_SIZE, config.latency_batch, config.latency_repeats)
    for record in records:
        model = trained[record['key']]
        record['params_m'] = parameter_count(model) / 1e6
        record['gflops'] = count_flops(model, INPUT_SIZE).total / 1e9
        record['latency_ms'] = latencies[record['key']]
    environment = dict(train_images=train_images, test_images=test_images, threads=torch.get_num_threads(),
                       load_average=', '.join(f'{v:.1f}' for v in os.getloadavg()),
                       run_minutes=(time.perf_counter() - start_time) / 60.)

    write_csv(files['results'], records)
    markdown = format_markdown(records, noise_records, config, command, environment)
    atomic_write(files['markdown'], lambda tmp: Path(tmp).write_text(
        '# Reproduction on Fashion-MNIST\n\n' + markdown + '\n```json\n' + json.dumps(asdict(config), indent=1) +
        '\n```\n'))

    front_ends = [('WAE (stage 1)', wae.eval())]
    if 'decomposition' in trained:
        front_ends.append(('Decomposition+CNN', trained['decomposition'].wae.eval()))
    figure_set = FashionMNIST('test', indices=list(range(figure_images)))
    images = torch.stack([figure_set[i][0] for i in range(figure_images)])
    render_decomposition_figure(front_ends, images, files['figure'], (figure_set.mean,) * 3,
                                (figure_set.std,) * 3, overwrite=overwrite)
    return dict(records=records, noise=noise_records, files={k: str(v) for k, v in files.items()},
                checkpoints={k: str(v) for k, v in checkpoints.items()}, wae=str(wae_path), environment=environment)
