"""The epoch loop: train, evaluate, step the scheduler, checkpoint, resume."""
import itertools
import logging
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .checkpoint import Checkpointer, TrainState
from .loop import evaluate, train_one_epoch
from .losses import LossFn
from .sampler import ResumableSampler

__all__ = ['fit']

_logger = logging.getLogger(__name__)


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
