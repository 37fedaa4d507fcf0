"""Atomic, resumable training checkpoints.

A checkpoint is written to a temporary file beside its target and moved over
it with ``os.replace``, so a run killed while saving leaves the previous
checkpoint intact. Checkpoints load with ``torch.load(weights_only=True)``:
they hold tensors, numbers, strings and lists only.
"""
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
import torch.distributed as dist
import torch.nn as nn

from ..files import atomic_write, refuse_to_overwrite, remove_stale_temporaries
from ..models.checkpoint_files import load_state_dict_strictly, reading_weights_file
from ..models.pretrained import CheckpointMismatchError, CorruptWeightsError, MissingWeightsError
from .distributed import unwrap

__all__ = ['TrainState', 'Checkpointer', 'atomic_write', 'check_fresh_output', 'clear_run', 'read_checkpoint',
           'read_train_state', 'LAST_CHECKPOINT', 'SUMMARY_CSV']

LAST_CHECKPOINT = 'last.pth.tar'
SUMMARY_CSV = 'summary.csv'  # one row per epoch (timm's update_summary)


@dataclass
class TrainState:
    """Where training stands: ``step_in_epoch`` batches of ``epoch`` are done."""
    epoch: int = 0
    step_in_epoch: int = 0
    num_updates: int = 0


class Checkpointer:
    """Saves and restores model, optimizer, scheduler and :class:`TrainState` in ``directory/last.pth.tar``.

    Args:
        directory: where the checkpoint lives.
        model: the trained model (DDP/compile shells are unwrapped when saving and loading).
        optimizer: its optimizer.
        lr_scheduler: a timm scheduler (optional).
        every_updates: also save every this many optimizer steps (0: only when asked,
            i.e. at epoch ends); a killed run loses at most this many steps.
        config: plain values stored alongside (the tool's arguments), for the record.

    Only the primary process (rank 0) writes; every process loads.
    """

    def __init__(
            self,
            directory: Union[str, Path],
            model: nn.Module,
            optimizer: torch.optim.Optimizer,
            lr_scheduler=None,
            every_updates: int = 0,
            config: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LAST_CHECKPOINT
        self.model = model
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.every_updates = every_updates
        self.config = dict(config or {})

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, state: TrainState) -> None:
        if dist.is_initialized() and dist.get_rank() != 0:
            return
        checkpoint = {
            'state_dict': unwrap(self.model).state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'train_state': asdict(state),
            'config': self.config,
        }
        if self.lr_scheduler is not None:
            checkpoint['lr_scheduler'] = self.lr_scheduler.state_dict()
        atomic_write(self.path, lambda tmp: torch.save(checkpoint, tmp))

    def remove_stale_temporaries(self) -> None:
        """Remove what a process killed while saving left (``.last.pth.tar.tmp<pid>``); rank 0 only."""
        if dist.is_initialized() and dist.get_rank() != 0:
            return
        remove_stale_temporaries(self.path)

    def maybe_save(self, state: TrainState) -> None:
        """Save if ``state.num_updates`` is a multiple of ``every_updates``."""
        if self.every_updates > 0 and state.num_updates % self.every_updates == 0:
            self.save(state)

    def load(self, map_location='cpu') -> TrainState:
        """Restore everything from the checkpoint and return where training stopped.

        An unusable file raises ``MissingWeightsError``/``CorruptWeightsError``/``CheckpointMismatchError``
        (:mod:`wae_timm.models.pretrained`) naming it; see :func:`read_checkpoint`.
        """
        checkpoint = read_checkpoint(self.path, map_location)
        load_state_dict_strictly(unwrap(self.model), checkpoint['state_dict'], self.path, _RESUME)
        try:
            self.optimizer.load_state_dict(checkpoint['optimizer'])
        except (ValueError, KeyError) as err:
            raise CheckpointMismatchError(f'{_RESUME} {self.path}: its optimizer state does not fit this run\'s '
                                          f'optimizer ({err})') from err
        if self.lr_scheduler is not None and 'lr_scheduler' in checkpoint:
            self.lr_scheduler.load_state_dict(checkpoint['lr_scheduler'])
        return TrainState(**checkpoint['train_state'])


_RESUME = '--resume checkpoint'
_CHECKPOINT_KEYS = ('state_dict', 'optimizer', 'train_state')


def read_checkpoint(path: Union[str, Path], map_location='cpu') -> Dict[str, Any]:
    """The training checkpoint in ``path`` (``torch.load(weights_only=True)``), checked to be one of this trainer.

    Raises ``MissingWeightsError`` (no file), ``CorruptWeightsError`` (empty, truncated, not a torch
    file, a pickle of other objects, or a file without this trainer's entries), naming ``path``.
    """
    with reading_weights_file(path, _RESUME) as path:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict):
        raise CorruptWeightsError(f'{_RESUME} {path} is not a checkpoint of this trainer: it holds a '
                                  f'{type(checkpoint).__name__}, not a dict with {list(_CHECKPOINT_KEYS)}')
    missing = [k for k in _CHECKPOINT_KEYS if k not in checkpoint]
    if missing:
        raise CorruptWeightsError(f'{_RESUME} {path} is not a checkpoint of this trainer: no {missing} entries '
                                  f'(it has {sorted(checkpoint)[:5]})')
    try:
        TrainState(**checkpoint['train_state'])
    except TypeError as err:
        raise CorruptWeightsError(f'{_RESUME} {path}: its train_state {checkpoint["train_state"]!r} is not '
                                  f'{list(TrainState.__dataclass_fields__)}') from err
    return checkpoint


RUN_CONFIG = 'config.json'
_RUN_MARKER = 'wae_timm_run'  # a key of RUN_CONFIG that tells this tool's config from a user's file


def write_run_config(directory: Union[str, Path], config: Dict[str, Any]) -> Path:
    """Write the run's ``config.json``, marked as this tool's, so a rerun recognises the folder as a run."""
    path = Path(directory) / RUN_CONFIG
    path.write_text(json.dumps({_RUN_MARKER: True, **config}, indent=2))
    return path


def holds_a_run(directory: Union[str, Path]) -> bool:
    """``directory`` holds a run of this tool: a checkpoint, or the marked config of a run killed before one."""
    directory = Path(directory)
    if (directory / LAST_CHECKPOINT).is_file():
        return True
    try:
        return json.loads((directory / RUN_CONFIG).read_text()).get(_RUN_MARKER) is True
    except (OSError, ValueError, AttributeError):
        return False


def check_fresh_output(directory: Union[str, Path], resume: bool, overwrite: bool,
                       final_output: Optional[Union[str, Path]] = None, clear: bool = False,
                       primary: bool = True) -> None:
    """Refuse to start a run over another one's results, or in a folder that is not a run.

    Raises unless ``directory`` holds no checkpoint (and ``final_output``, the
    file a finished run writes, does not exist), or the user asked to
    ``resume`` that run or to ``overwrite`` it. A non-empty ``directory``
    without a checkpoint is not a run of this tool (a user's folder): it is
    refused even with ``overwrite``, as is an empty path (the current folder).
    Only the ``primary`` process looks at the folder's other files (the others
    may already see its first writes). With ``overwrite`` and ``clear`` (the
    primary process), the old run's checkpoint and ``summary.csv`` are removed
    so that nothing of it mixes into the new one.
    """
    if not str(directory).strip():
        raise ValueError('the run folder (--output) is empty: give a new or empty folder for the run')
    directory = Path(directory)
    checkpoint = directory / LAST_CHECKPOINT
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f'run folder (--output) {directory} exists and is not a folder')
    if primary and not holds_a_run(directory) and directory.is_dir() and any(directory.iterdir()):
        found = sorted(p.name for p in directory.iterdir())
        shown = ', '.join(found[:5]) + (', ...' if len(found) > 5 else '')
        raise FileExistsError(f'run folder (--output) {directory} is not empty ({shown}) and holds no run of this '
                              f'tool (no {LAST_CHECKPOINT}, no {RUN_CONFIG} of this tool): give a new or empty folder')
    if resume:
        if not checkpoint.is_file():
            raise MissingWeightsError(f'--resume checkpoint {checkpoint} does not exist: there is no run to resume '
                                      'there (start one without --resume)')
        return
    if overwrite:
        if clear:
            clear_run(directory)
        return
    if checkpoint.is_file():
        raise FileExistsError(f'{checkpoint} exists (a run was started there): pass --resume to continue it '
                              'or --overwrite to start again')
    if final_output is not None:
        refuse_to_overwrite([final_output], overwrite)


def clear_run(directory: Union[str, Path]) -> None:
    """Remove the run in ``directory`` (its checkpoint and ``summary.csv``) before a new one starts there.

    ``--overwrite`` calls this last, once every argument has been checked, just
    before the new run's first write: a mistake in the new command leaves the old run intact.
    """
    directory = Path(directory)
    for stale in (directory / LAST_CHECKPOINT, directory / SUMMARY_CSV):
        stale.unlink(missing_ok=True)


def read_train_state(directory: Union[str, Path]) -> TrainState:
    """Where the run checkpointed in ``directory`` stands (``TrainState()`` if it has no checkpoint)."""
    path = Path(directory) / LAST_CHECKPOINT
    if not path.is_file():
        return TrainState()
    return TrainState(**read_checkpoint(path)['train_state'])
