"""The paper's ablations (Tables 2, 3, 4 and 7) reproduced on the real Fashion-MNIST 60k/10k split.

Data: Debian's ``dataset-fashion-mnist`` through
:class:`wae_timm.train.FashionMNIST`: native 28x28 images zero-padded to
32x32 (no resampling), grey repeated to 3 channels, normalised with the
training split's mean/std. Training adds random horizontal flips.

The comparison set, all around one backbone (ResNet-18 by default), trained
with the same optimizer, schedule, batches and number of epochs:

==================  =====================================================  ==========
key                 model                                                  paper
==================  =====================================================  ==========
backbone            the backbone on the 32x32 image                        Tab. 2
resize              the backbone on I_R, the image resized to 16x16       Tab. 3
wavelet_ca          CDF 9/7 DWT, the backbone on cA only                   Tab. 3
wavelet             CDF 9/7 DWT, cA + (cH, cV, cD) on the 1/4-width copy   Tab. 2
decomposition       WAE encoder trained by classification loss only       Tab. 2
wae_low             stage-1 WAE (frozen), backbone on I_L only             Tab. 3
wae_stage2          stage-1 WAE (frozen), I_L + I_H (paper stage 2)        Tab. 4
wae_stage3          wae_stage2 fine-tuned jointly, + gamma * L_t          Tab. 2-4
wae_stage2_longer   wae_stage2 trained as long again, WAE still frozen     control
==================  =====================================================  ==========

Stage 1 (the WAE alone, transform loss) runs once, first, on the same
training images; its weights are shared by the ``wae_*`` rows. The last row
is not in the paper: stage 3 trains ``wae_stage2`` for extra epochs, and the
control trains it just as long without unfreezing the WAE or adding
``L_t``, so Table 4's difference can be told apart from "more training".

Gaussian noise (Table 7) of variance ``V`` is added to the grey test image in
[0, 1] (the padded 32x32 one the models see), one value per pixel shared by
the 3 channels, *not* clipped by default (so the added noise has exactly the
variance ``V``), then the image is normalised. The noise is drawn from a fixed
seed, so every model sees the same noisy images.

The CPU cost of each model is fvcore's FLOP count at batch 1 and the
best-of-N latency of an eval-mode forward of a batch, measured on this machine.

A time budget fixes how many training images (a fixed random subset, the
same for every row) fit: :func:`plan_train_images` measures each row's time
per training image on a few batches first.
"""
import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .flops import count_flops, parameter_count
from ..data import FashionMNIST
from ..train import autoencoder_loss, evaluate, fit, paper_loss, save_wae, train_one_epoch
from ..train.checkpoint import atomic_write
from ..models.wae import WAEWrapper

__all__ = [
    'ReproductionConfig', 'RowSpec', 'ROWS', 'NOISE_VARIANCES', 'add_gaussian_noise', 'NoisyTestSet',
    'plan_train_images', 'measure_latency', 'run_reproduction', 'RESULT_FILES',
]

_logger = logging.getLogger(__name__)

NOISE_VARIANCES: Tuple[float, ...] = (0., 0.01, 0.02, 0.05, 0.1)
NUM_CLASSES = 10
INPUT_SIZE = (3, 32, 32)
TRAIN_SPLIT_SIZE = 60000
# what a run writes under its results directory (the decomposition figure is written by the same run)
RESULT_FILES = {
    'results': 'fashion_mnist_results.csv',
    'noise': 'fashion_mnist_noise.csv',
    'markdown': 'fashion_mnist.md',
    'figure': 'fashion_mnist_decomposition.png',
}


@dataclass
class ReproductionConfig:
    """Every choice of a run; written into the markdown report.

    ``lr`` is the classifiers' SGD learning rate (the paper's 0.1 for ResNet-50 at
    batch 256, halved for batch 128), cosine-annealed to 0 over the run after a
    linear warm-up. Stage 1 uses Adam (``wae_lr``): the paper's SGD at lr 1e-6 is
    tuned for millions of steps and does not move the WAE in a budget of a few
    hundred. ``finetune_lr`` is stage 3's (and the control's) starting lr.
    """
    backbone: str = 'resnet18'
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)  # e.g. narrower ResNet channels
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05
    wae_epochs: int = 1
    wae_batch_size: int = 32
    wae_lr: float = 1e-3
    finetune_lr: float = 0.005
    gamma: float = 0.001
    budget_minutes: float = 60.
    train_images: Optional[int] = None  # None: as many as the budget allows (at most 60000)
    test_images: Optional[int] = None  # None: the whole 10k test split
    noise_variances: Tuple[float, ...] = NOISE_VARIANCES
    noise_clip: bool = False
    latency_batch: int = 64
    latency_repeats: int = 10
    calibration_batches: int = 2
    seed: int = 0
    rows: Optional[Tuple[str, ...]] = None  # None: every row of ROWS


@dataclass(frozen=True)
class RowSpec:
    """One model of the comparison.

    ``wrapper_args`` builds a :class:`WAEWrapper` around the backbone (None: the plain
    timm backbone). ``stage``: 'scratch' (every weight trained), 'frozen_wae' (stage-1
    WAE loaded and kept fixed: the paper's stage 2), or 'continue' (starts from the
    trained ``parent`` row; ``unfreeze_wae`` and ``gamma`` make it the paper's stage 3).
    """
    key: str
    label: str
    wrapper_args: Optional[Dict[str, Any]] = None
    stage: str = 'scratch'
    parent: Optional[str] = None
    unfreeze_wae: bool = False
    use_gamma: bool = False
    noise: bool = False


ROWS: Tuple[RowSpec, ...] = (
    RowSpec('backbone', 'backbone @32 (full resolution)', None, noise=True),
    RowSpec('resize', 'backbone on I_R @16', dict(decomposition='resize', fusion=False)),
    RowSpec('wavelet_ca', 'Wavelet+CNN, cA only', dict(decomposition='wavelet', fusion=False)),
    RowSpec('wavelet', 'Wavelet+CNN, cA + details', dict(decomposition='wavelet')),
    RowSpec('decomposition', 'Decomposition+CNN', dict(decomposition='wae', with_decoder=False)),
    RowSpec('wae_low', 'WAE, I_L only', dict(fusion=False, with_decoder=False), stage='frozen_wae'),
    # with the (frozen) stage-1 decoder: wae_stage3 continues from this model and computes L_t with it
    RowSpec('wae_stage2', 'WAE, I_L + I_H, w/o stage 3', dict(with_decoder=True), stage='frozen_wae'),
    RowSpec('wae_stage3', 'WAE, I_L + I_H, with stage 3 (ours)', dict(), stage='continue', parent='wae_stage2',
            unfreeze_wae=True, use_gamma=True, noise=True),
    RowSpec('wae_stage2_longer', 'WAE, I_L + I_H, stage 2 continued (control)', dict(), stage='continue',
            parent='wae_stage2'),
)


# ----------------------------------------------------------------------------- data
def add_gaussian_noise(
        images: torch.Tensor,
        variance: float,
        generator: Optional[torch.Generator] = None,
        clip: bool = False,
) -> torch.Tensor:
    """``images`` (in [0, 1]) plus zero-mean Gaussian noise of ``variance``; clipped to [0, 1] if ``clip``."""
    if variance < 0:
        raise ValueError(f'noise variance must be >= 0, got {variance}')
    if variance == 0:
        return images.clone()
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype) * math.sqrt(variance)
    noisy = images + noise
    return noisy.clamp_(0, 1) if clip else noisy


class NoisyTestSet:
    """Re-iterable batches ``(x [B, 3, 32, 32] normalised, y [B])`` of the test images plus noise.

    Every iteration redraws the same noise (generator seeded with ``seed``), so all
    models are evaluated on identical noisy images.
    """

    def __init__(self, dataset: FashionMNIST, variance: float, batch_size: int = 256, seed: int = 0,
                 clip: bool = False) -> None:
        self.images = dataset.images.unsqueeze(1).float().div(255.)  # grey [N, 1, 32, 32] in [0, 1]
        self.labels = dataset.labels
        self.normalize = dataset.normalize
        self.variance, self.batch_size, self.seed, self.clip = variance, batch_size, seed, clip

    def __len__(self) -> int:
        return math.ceil(self.labels.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        for start in range(0, self.labels.shape[0], self.batch_size):
            grey = add_gaussian_noise(self.images[start:start + self.batch_size], self.variance, generator, self.clip)
            yield self.normalize(grey.expand(-1, 3, -1, -1)), self.labels[start:start + self.batch_size]


def _train_subset(num_images: int, seed: int) -> List[int]:
    if not 0 < num_images <= TRAIN_SPLIT_SIZE:
        raise ValueError(f'train_images must be in 1..{TRAIN_SPLIT_SIZE}, got {num_images}')
    if num_images == TRAIN_SPLIT_SIZE:
        return list(range(TRAIN_SPLIT_SIZE))
    return torch.randperm(TRAIN_SPLIT_SIZE, generator=torch.Generator().manual_seed(seed))[:num_images].tolist()


def _train_loader(indices: Sequence[int], batch_size: int, seed: int) -> DataLoader:
    dataset = FashionMNIST('train', hflip=True, indices=indices)
    # the same seed gives every row the same batches in the same order
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size,
                      generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- models
def build_row_model(row: RowSpec, config: ReproductionConfig, wae_weights: Optional[str] = None) -> nn.Module:
    """A freshly initialised model of ``row`` (stage-1 weights loaded for 'frozen_wae' rows)."""
    if row.wrapper_args is None:
        import timm
        return timm.create_model(config.backbone, num_classes=NUM_CLASSES, **config.backbone_kwargs)
    kwargs = dict(row.wrapper_args)
    if row.stage in ('frozen_wae', 'continue'):
        kwargs.update(wae_weights=wae_weights, freeze_wae=True)
    return WAEWrapper(config.backbone, num_classes=NUM_CLASSES, backbone_kwargs=config.backbone_kwargs, **kwargs)


def _continue_from(parent: nn.Module, row: RowSpec) -> nn.Module:
    model = copy.deepcopy(parent)
    if row.unfreeze_wae:
        model.wae.requires_grad_(True)
    return model


def _classifier_loss(row: RowSpec, config: ReproductionConfig) -> Callable:
    return partial(paper_loss, aux_loss_weight=config.gamma if row.use_gamma else 0.)


def _row_lr(row: RowSpec, config: ReproductionConfig) -> float:
    return config.finetune_lr if row.stage == 'continue' else config.lr


def train_classifier(
        model: nn.Module, loader: DataLoader, row: RowSpec, config: ReproductionConfig, progress: bool = True,
) -> Dict[str, float]:
    """Train ``model`` for ``config.epochs`` with the paper's loss (SGD, warm-up + cosine); returns the last
    epoch's training metrics plus ``train_seconds``."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler
    lr = _row_lr(row, config)
    # timm's factory leaves out frozen parameters and exempts norms and biases from weight decay
    optimizer = create_optimizer_v2(model, 'sgd', lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    total_steps = max(config.epochs * len(loader), 1)
    warmup = int(config.warmup_fraction * total_steps) if row.stage != 'continue' else 0
    scheduler = CosineLRScheduler(optimizer, t_initial=total_steps, warmup_t=warmup, warmup_lr_init=lr * 0.01,
                                  warmup_prefix=True, t_in_epochs=False)
    start = time.perf_counter()
    history = fit(model, loader, optimizer, epochs=config.epochs, loss_fn=_classifier_loss(row, config),
                  lr_scheduler=scheduler, progress=progress)
    metrics = dict(history[-1]) if history else {}
    metrics['train_seconds'] = time.perf_counter() - start
    return metrics


def train_stage1_wae(loader: DataLoader, config: ReproductionConfig, progress: bool = True):
    """Stage 1: a fresh WAE trained by the ``fashion_mnist`` stage-1 recipe with ``config``'s ``wae_*`` settings."""
    from dataclasses import replace
    from ..layers.autoencoder import WaveletLikeAutoEncoder
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
            start = time.perf_counter()
            model(x)
            times[name].append(time.perf_counter() - start)
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
    from ..layers.autoencoder import WaveletLikeAutoEncoder
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
def _save_classifier(model: nn.Module, path: Path, row: RowSpec, config: ReproductionConfig) -> Path:
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if row.wrapper_args is None:
        architecture = dict(timm_model=config.backbone, num_classes=NUM_CLASSES)
    else:
        architecture = dict(WAEWrapper=dict(backbone=config.backbone, num_classes=NUM_CLASSES, **row.wrapper_args))
    metadata = {'format': 'pt', 'row': row.key, 'architecture': json.dumps(architecture)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def _write_csv(path: Path, records: Sequence[Dict[str, Any]]) -> None:
    import csv

    def write(tmp: str) -> None:
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    atomic_write(path, write)


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> List[str]:
    return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] + \
        ['| ' + ' | '.join(line) + ' |' for line in lines]


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
    lines += _table(['model', 'top-1 err', 'top-5 err', 'GFLOPs', 'FLOPs ratio', 'CPU ms', 'CPU speed-up',
                     'params (M)'], rows)
    lines += ['', 'Table 2 (paper: VGG16 / Wavelet+CNN / Decomposition+CNN / Ours, top-5 err 11.65 / 14.42 / '
              '12.98 / 11.87 on ImageNet):', '']
    lines += _table(['method', 'top-1 err', 'top-5 err'],
                    [[by_key[k]['label'], err(k, 1), err(k, 5)]
                     for k in ('backbone', 'wavelet', 'decomposition', 'wae_stage3') if k in by_key])
    lines += ['', 'Table 3 (paper, top-5 err: cA 15.92, I_R 15.73, I_L 14.20, I_L + I_H 11.87):', '']
    lines += _table(['input', 'cA', 'I_R', 'I_L', 'I_L + I_H'],
                    [['top-1 err'] + [err(k, 1) for k in ('wavelet_ca', 'resize', 'wae_low', 'wae_stage3')],
                     ['top-5 err'] + [err(k, 5) for k in ('wavelet_ca', 'resize', 'wae_low', 'wae_stage3')]])
    lines += ['', 'Table 4 (paper, top-5 err: w/o FT 12.21, w/ FT 11.87); the control trains the stage-2 model '
              'as long as stage 3 does, WAE frozen, no L_t:', '']
    lines += _table(['', 'w/o FT (stage 2)', 'w/ FT (stage 3)', 'control: stage 2 continued'],
                    [[f'top-{k} err'] + [err(key, k) for key in ('wae_stage2', 'wae_stage3', 'wae_stage2_longer')]
                     for k in (1, 5)])
    variances = sorted({n['variance'] for n in noise})
    noisy_keys = list(dict.fromkeys(n['key'] for n in noise))
    top1 = {(n['key'], n['variance']): n['top1'] for n in noise}
    clip = 'clipped to [0, 1]' if config.noise_clip else 'not clipped'
    lines += ['', f'Table 7: top-1 accuracy (%) with zero-mean Gaussian noise of variance V added to the test images '
              f'in [0, 1] ({clip}); paper (CACD, VGG16 vs Ours) at V=0.05: 45.10 vs 55.91:', '']
    lines += _table(['V'] + [by_key[k]['label'] for k in noisy_keys],
                    [[f'{v:g}'] + [_fmt(top1[(k, v)]) for k in noisy_keys] for v in variances])
    return '\n'.join(lines) + '\n'


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


def _check_outputs_free(paths: Sequence[Path], overwrite: bool) -> None:
    taken = [str(p) for p in paths if p.exists()]
    if taken and not overwrite:
        raise FileExistsError(f'would overwrite {taken}: pass overwrite=True (--overwrite) or choose other '
                              'directories')


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
    from .figures import render_decomposition_figure
    start_time = time.perf_counter()
    results_dir, checkpoint_dir = Path(results_dir), Path(checkpoint_dir)
    rows = _select_rows(config.rows)
    files = {name: results_dir / filename for name, filename in RESULT_FILES.items()}
    checkpoints = {row.key: checkpoint_dir / f'fashion_mnist_{row.key}.safetensors' for row in rows}
    wae_path = checkpoint_dir / 'fashion_mnist_wae_stage1.safetensors'
    _check_outputs_free([*files.values(), *checkpoints.values(), wae_path], overwrite)

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
    wae, wae_metrics = train_stage1_wae(_train_loader(indices, config.wae_batch_size, config.seed), config, progress)
    save_wae(wae, wae_path, overwrite=overwrite)
    _logger.info('stage 1 done in %.0f s: %s', wae_metrics['train_seconds'], wae_metrics)

    loader = _train_loader(indices, config.batch_size, config.seed)
    clean = NoisyTestSet(test_set, 0., seed=config.seed)
    trained: Dict[str, nn.Module] = {}
    records, noise_records = [], []
    for index, row in enumerate(rows):
        torch.manual_seed(config.seed + index)
        if row.stage == 'continue':
            model = _continue_from(trained[row.parent], row)
        else:
            model = build_row_model(row, config, str(wae_path))
        metrics = train_classifier(model, loader, row, config, progress)
        trained[row.key] = model
        result = evaluate(model, clean, progress=progress)
        _save_classifier(model, checkpoints[row.key], row, config)
        records.append(dict(
            key=row.key, label=row.label, top1=result['top1'], top5=result['top5'], loss=result['loss'],
            train_loss=metrics.get('loss', float('nan')), train_seconds=metrics['train_seconds'],
            train_images=train_images, epochs=config.epochs, lr=_row_lr(row, config),
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
        results_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(files['results'], records)
        if noise_records:
            _write_csv(files['noise'], noise_records)

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

    _write_csv(files['results'], records)
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
