"""The training engine: one epoch, one evaluation pass, and the epoch loop (fit) with checkpoints and resume.

Batches are ``(x: [B, C, H, W] float, y: [B] int64)`` as timm's loaders and the
project's datasets yield them (stage 1 ignores ``y``). Each batch is checked for
NaN/Inf where it enters (the error names the epoch and batch), and so is its loss.
"""
import contextlib
import itertools
import logging
import math
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..layers.checks import check_finite
from ..data.sampler import ResumableSampler, sample_seed
from .checkpoint import Checkpointer, TrainState
from .distributed import unwrap
from .losses import LossFn, paper_loss

__all__ = ['train_one_epoch', 'evaluate', 'fit', 'seed_step', 'StepCallback']

_logger = logging.getLogger(__name__)

# on_step(epoch, batches_done_in_epoch, num_updates) -> True to stop training now
StepCallback = Callable[[int, int, int], Optional[bool]]


def _autocast(device: torch.device, amp_dtype: Optional[torch.dtype]):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _is_primary() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def seed_step(seed: int, step: int, device) -> None:
    """Seed torch's generator of ``device`` (and the CPU's) for optimizer step ``step`` of this process.

    The model's random draws then depend on ``(seed, rank, step)`` only, not on
    what ran before in the process: nothing of the random state has to be
    checkpointed, and every process of a DDP run draws its own.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    step_seed = sample_seed(seed, rank, step)
    torch.default_generator.manual_seed(step_seed)
    device = torch.device(device)
    if device.type == 'cuda':
        with torch.cuda.device(device):
            torch.cuda.manual_seed(step_seed)


def train_one_epoch(
        model: nn.Module,
        loader: Sequence,
        optimizer: torch.optim.Optimizer,
        *,
        aux_loss_weight: Optional[float] = None,
        loss_fn: Optional[LossFn] = None,
        criterion: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
        lr_scheduler=None,
        epoch: int = 0,
        device='cpu',
        start_step: int = 0,
        num_updates: Optional[int] = None,
        on_step: Optional[StepCallback] = None,
        clip_grad: Optional[float] = None,
        amp_dtype: Optional[torch.dtype] = None,
        loss_scaler: Optional[torch.amp.GradScaler] = None,
        progress: bool = True,
        seed: Optional[int] = None,
) -> Dict[str, float]:
    """Train ``model`` on every batch ``loader`` yields; return the epoch's mean metrics.

    Args:
        model: the module to call (a WAEWrapper, a plain timm model, or DDP around one,
            see :func:`~wae_timm.train.losses.paper_loss`).
        aux_loss_weight: gamma of :func:`paper_loss` (``None``: the model's own).
        loss_fn: ``loss_fn(model, x, y) -> (loss, metrics)``; default :func:`paper_loss`
            with ``aux_loss_weight`` and ``criterion``.
        lr_scheduler: a timm scheduler; ``step_update(num_updates)`` runs after each step.
        start_step: batches of this epoch already done (a resumed run); the loader
            yields only the remaining ones, steps are numbered from here.
        num_updates: optimizer steps before this epoch (default ``epoch * len(loader)``).
        on_step: called after each step as ``on_step(epoch, batches_done, num_updates)``
            (checkpointing); returning True stops the epoch early.
        amp_dtype: autocast dtype (``torch.bfloat16``/``torch.float16``), None for fp32.
        loss_scaler: a ``GradScaler`` for float16 autocast.
        seed: seed the model's randomness (dropout, drop-path) of each step from
            ``(seed, rank, step number)`` (see :func:`seed_step`), so a resumed run
            draws what the uninterrupted one would have; ``None``: the global state as it is.

    Returns:
        ``dict(loss=..., <other loss terms>..., lr=..., steps=..., num_updates=..., stopped=0/1)``.
    """
    device = torch.device(device)
    if loss_fn is None:
        def loss_fn(m, x, y):
            return paper_loss(m, x, y, aux_loss_weight=aux_loss_weight, criterion=criterion)
    if num_updates is None:
        num_updates = epoch * (len(loader) + start_step)
    model.train()
    sums: Dict[str, float] = defaultdict(float)
    steps = 0
    stopped = False
    bar = tqdm(loader, desc=f'train epoch {epoch}', initial=start_step, total=len(loader) + start_step,
               disable=not (progress and _is_primary()), leave=False, dynamic_ncols=True)
    for step, (x, y) in enumerate(bar, start=start_step):
        where = f'train epoch {epoch} batch {step}'
        x = check_finite(x.to(device, non_blocking=True), where)
        y = y.to(device, non_blocking=True)
        if seed is not None:
            seed_step(seed, num_updates, device)
        with _autocast(device, amp_dtype):
            loss, metrics = loss_fn(model, x, y)
        if not math.isfinite(metrics['loss']):
            raise FloatingPointError(f'{where}: the loss is {metrics["loss"]} ({metrics}); lower the learning rate '
                                     'or check the data')
        optimizer.zero_grad(set_to_none=True)
        if loss_scaler is not None:
            loss_scaler.scale(loss).backward()
            loss_scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(unwrap(model).parameters(), clip_grad)
        if loss_scaler is not None:
            loss_scaler.step(optimizer)
            loss_scaler.update()
        else:
            optimizer.step()
        num_updates += 1
        steps += 1
        if lr_scheduler is not None:
            lr_scheduler.step_update(num_updates=num_updates)
        for key, value in metrics.items():
            sums[key] += value
        bar.set_postfix(loss=f'{metrics["loss"]:.4g}', lr=f'{optimizer.param_groups[0]["lr"]:.3g}')
        if on_step is not None and on_step(epoch, step + 1, num_updates):
            stopped = True
            break
    bar.close()
    result = {key: value / max(steps, 1) for key, value in sums.items()}
    result.update(lr=optimizer.param_groups[0]['lr'], steps=steps, num_updates=num_updates, stopped=int(stopped))
    return result


@torch.no_grad()
def evaluate(
        model: nn.Module,
        loader: Sequence,
        device='cpu',
        topk: Sequence[int] = (1, 5),
        criterion: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
        amp_dtype: Optional[torch.dtype] = None,
        progress: bool = True,
) -> Dict[str, float]:
    """Top-k accuracy (in %) and mean loss of ``model``'s inference scores over ``loader``.

    Uses the model's plain ``forward`` in eval mode (for a WAEWrapper the
    averaged score ``(s_L + s_c) / 2``). ``k`` larger than the number of classes
    counts every sample as correct. Under ``torch.distributed`` each process
    evaluates its own shard and the sums are all-reduced.

    Returns:
        ``dict(top1=..., top5=..., loss=..., count=...)`` (one ``top{k}`` per ``k``).

    Raises:
        ValueError: ``loader`` yielded no samples (in all processes together).
    """
    device = torch.device(device)
    criterion = criterion or F.cross_entropy
    net = unwrap(model)
    was_training = net.training
    net.eval()
    totals = torch.zeros(len(topk) + 2, dtype=torch.float64, device=device)  # correct@k..., loss sum, count
    bar = tqdm(loader, desc='evaluate', disable=not (progress and _is_primary()), leave=False, dynamic_ncols=True)
    for step, (x, y) in enumerate(bar):
        x = check_finite(x.to(device, non_blocking=True), f'eval batch {step}')
        y = y.to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            logits = net(x)
        logits = logits.float()
        ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        hits = ranked.eq(y[:, None])
        for i, k in enumerate(topk):
            totals[i] += hits[:, :k].any(dim=1).sum()
        totals[-2] += criterion(logits, y) * y.shape[0]
        totals[-1] += y.shape[0]
    net.train(was_training)
    if dist.is_initialized():
        dist.all_reduce(totals)
    if totals[-1].item() == 0:
        raise ValueError('nothing to evaluate: the evaluation loader yielded no samples (an accuracy of 0 would be '
                         'reported for a model that was never tested)')
    count = totals[-1].item()
    result = {f'top{k}': 100. * totals[i].item() / count for i, k in enumerate(topk)}
    result.update(loss=totals[-2].item() / count, count=int(totals[-1].item()))
    return result


def _remaining_batches(loader: DataLoader, epoch: int, start_step: int):
    """The loader for epoch ``epoch`` without its first ``start_step`` batches."""
    sampler = getattr(loader, 'sampler', None)
    if hasattr(sampler, 'set_epoch'):
        sampler.set_epoch(epoch)
    if isinstance(sampler, ResumableSampler):
        sampler.set_start(start_step * loader.batch_size)
        return loader
    if start_step:
        # the order of a plain sampler need not repeat: skipped batches are only an approximation
        _logger.warning('loader has no ResumableSampler: skipping %d batches by reading them', start_step)
        return _Skipped(loader, start_step)
    return loader


class _Skipped:
    def __init__(self, loader, start: int) -> None:
        self.loader, self.start = loader, start

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.start, None)

    def __len__(self) -> int:
        return len(self.loader) - self.start


def fit(
        model: nn.Module,
        loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        loss_fn: Optional[LossFn] = None,
        lr_scheduler=None,
        checkpointer: Optional[Checkpointer] = None,
        resume: bool = False,
        eval_loader: Optional[DataLoader] = None,
        eval_metric: str = 'top1',
        device='cpu',
        max_updates: Optional[int] = None,
        on_epoch_end: Optional[Callable[[int, Dict[str, float]], None]] = None,
        **train_kwargs,
) -> List[Dict[str, float]]:
    """Train for ``epochs`` epochs (from where a checkpoint stopped, with ``resume``).

    Checkpoints go to ``checkpointer`` every ``checkpointer.every_updates`` steps and
    after each epoch. With a :class:`ResumableSampler` in ``loader``, a resumed run
    continues with exactly the batches the interrupted one had not trained on.

    Args:
        model: what the loss calls (a model, or DDP around one).
        loss_fn: see :func:`train_one_epoch` (default: the paper's loss).
        lr_scheduler: a timm scheduler; ``step(epoch + 1, metric)`` after each epoch.
        eval_loader: evaluated after each epoch; ``eval_metric`` feeds plateau schedulers.
        max_updates: stop (after checkpointing) once this many optimizer steps were
            made in total, as if the run was killed there.
        on_epoch_end: called with ``(epoch, metrics)`` after each finished epoch.
        train_kwargs: passed on to :func:`train_one_epoch` (amp_dtype, clip_grad, ...).

    Returns:
        One dict per epoch finished in this call: the training metrics, ``epoch``
        and the evaluation metrics prefixed ``eval_``.
    """
    state = TrainState()
    if checkpointer is not None:
        checkpointer.remove_stale_temporaries()  # of a process killed while saving
    if resume:
        if checkpointer is None:
            raise ValueError('resume=True needs a checkpointer')
        state = checkpointer.load()
        _logger.info('resuming at epoch %d, batch %d (%d updates)', state.epoch, state.step_in_epoch,
                     state.num_updates)
    # the learning rate itself comes back with the optimizer's state (param_groups' 'lr')
    steps_per_epoch = len(loader)

    def on_step(epoch: int, batches_done: int, num_updates: int) -> bool:
        state.epoch, state.step_in_epoch, state.num_updates = epoch, batches_done, num_updates
        finished_epoch = batches_done == steps_per_epoch
        if checkpointer is not None and not finished_epoch:
            checkpointer.maybe_save(state)
        stop = max_updates is not None and num_updates >= max_updates
        if stop and checkpointer is not None and not finished_epoch:
            checkpointer.save(state)
        return stop

    history = []
    for epoch in range(state.epoch, epochs):
        batches = _remaining_batches(loader, epoch, state.step_in_epoch)
        metrics = train_one_epoch(
            model, batches, optimizer, loss_fn=loss_fn, lr_scheduler=lr_scheduler, epoch=epoch, device=device,
            start_step=state.step_in_epoch, num_updates=state.num_updates, on_step=on_step, **train_kwargs)
        if state.step_in_epoch < steps_per_epoch:
            return history  # stopped part-way (max_updates); the checkpoint is already written
        metrics['epoch'] = epoch
        if eval_loader is not None:
            metrics.update({f'eval_{k}': v for k, v in evaluate(
                model, eval_loader, device=device, progress=train_kwargs.get('progress', True)).items()})
        if lr_scheduler is not None:
            lr_scheduler.step(epoch + 1, metrics.get(f'eval_{eval_metric}'))
        state.epoch, state.step_in_epoch = epoch + 1, 0
        if checkpointer is not None:
            checkpointer.save(state)
        history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if max_updates is not None and state.num_updates >= max_updates:
            break
    return history
