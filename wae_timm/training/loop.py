"""One training epoch and one evaluation pass, shared by every stage and tool.

Batches are ``(x: [B, C, H, W] float, y: [B] int64)`` as timm's loaders and the
project's datasets yield them (stage 1 ignores ``y``). Each batch is checked for
NaN/Inf where it enters (the error names the epoch and batch), and so is its loss.
"""
import contextlib
import math
from collections import defaultdict
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..checks import check_finite
from .losses import LossFn, paper_loss, unwrap

__all__ = ['train_one_epoch', 'evaluate', 'StepCallback']

# on_step(epoch, batches_done_in_epoch, num_updates) -> True to stop training now
StepCallback = Callable[[int, int, int], Optional[bool]]


def _autocast(device: torch.device, amp_dtype: Optional[torch.dtype]):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _is_primary() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


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
) -> Dict[str, float]:
    """Train ``model`` on every batch ``loader`` yields; return the epoch's mean metrics.

    Args:
        model: the module to call (a WAEWrapper, a plain timm model, or DDP around one,
            see :func:`~wae_timm.training.losses.paper_loss`).
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
    count = max(totals[-1].item(), 1.)
    result = {f'top{k}': 100. * totals[i].item() / count for i, k in enumerate(topk)}
    result.update(loss=totals[-2].item() / count, count=int(totals[-1].item()))
    return result
