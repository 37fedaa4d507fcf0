"""Weight files a user names (``checkpoint_path=``, ``--initial-checkpoint``, ``--resume``, a teacher's weights).

Each is read safely (safetensors, or ``torch.load(weights_only=True)``) and
every way it can be unusable becomes one of the errors of
:mod:`wae_timm.models.pretrained`, with the file, the flag it came from and the
problem in the message: ``MissingWeightsError`` (no such file),
``CorruptWeightsError`` (empty, truncated, not a checkpoint, a pickle of
arbitrary objects, NaN/Inf values) and ``CheckpointMismatchError`` (weights of
another architecture or number of classes). torch and safetensors would
otherwise say ``header too small``, a bare ``EOFError`` or ``Error(s) in
loading state_dict`` without naming the file.
"""
import contextlib
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

import torch
import torch.nn as nn
from timm.models import load_state_dict as timm_load_state_dict

from ..layers.checks import non_finite_keys, state_dict_mismatch
from .pretrained import CheckpointMismatchError, CorruptWeightsError, MissingWeightsError

__all__ = ['reading_weights_file', 'read_state_dict', 'load_state_dict_strictly', 'load_weights_file',
           'explain_checkpoint_path_errors']

PathLike = Union[str, Path]


def _check_present(path: Path, role: str) -> None:
    if not path.is_file():
        raise MissingWeightsError(f'{role} {path} does not exist' if not path.exists()
                                  else f'{role} {path} is not a file')
    if path.stat().st_size == 0:
        raise CorruptWeightsError(f'{role} {path} is empty (0 bytes): a save that never finished, or the wrong file')


@contextlib.contextmanager
def reading_weights_file(path: PathLike, role: str) -> Iterator[Path]:
    """Check that ``path`` exists and is not empty, then re-raise any error of reading it as ``CorruptWeightsError``.

    ``role`` says where the file came from (``'--resume checkpoint'``) for the message.
    """
    path = Path(path)
    _check_present(path, role)
    try:
        yield path
    except (MissingWeightsError, CorruptWeightsError, CheckpointMismatchError):
        raise
    except Exception as err:  # noqa: BLE001 - whatever a reader raises on bad bytes (pickle, zip, safetensors, EOF)
        raise CorruptWeightsError(
            f'{role} {path} is not a readable checkpoint ({type(err).__name__}: {_first_line(err)}): expected a '
            '.safetensors file or a torch.save file of tensors; it may be truncated, corrupt, or a pickle of '
            'other objects (refused: only tensors are loaded)') from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else 'no message'


def read_state_dict(path: PathLike, role: str, use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """The state dict in ``path``, read as timm reads a checkpoint (``state_dict``/``model`` entries of a
    training checkpoint, its EMA weights when present and ``use_ema``, ``module.`` prefixes removed); every
    tensor finite, else the errors above."""
    with reading_weights_file(path, role) as path:
        state = timm_load_state_dict(str(path), use_ema=use_ema, device='cpu', weights_only=True)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptWeightsError(f'{role} {path} holds no state dict (a mapping of parameter names to tensors), '
                                  f'got {type(state).__name__}')
    broken = non_finite_keys(state)
    if broken:
        raise CorruptWeightsError(f'{role} {path} holds NaN/Inf values in {len(broken)} tensors {broken[:3]}: '
                                  'it is not a usable checkpoint')
    return state


def _architecture(model: nn.Module) -> str:
    return getattr(model, 'pretrained_cfg', {}).get('architecture', type(model).__name__)


def load_state_dict_strictly(model: nn.Module, state: Dict[str, torch.Tensor], path: PathLike, role: str) -> Any:
    """``model.load_state_dict(state)``, its key and shape errors as ``CheckpointMismatchError`` naming ``path``."""
    try:
        return model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        problem = state_dict_mismatch(model.state_dict(), state) or _first_line(err)
        raise CheckpointMismatchError(
            f'{role} {path} is not a checkpoint of this {_architecture(model)} model: {problem}') from err


def load_weights_file(model: nn.Module, path: PathLike, role: str) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (strictly), with the errors above; returns ``model``."""
    load_state_dict_strictly(model, read_state_dict(path, role), path, role)
    return model


def explain_checkpoint_path_errors(model_class: type) -> None:
    """Make ``timm.create_model(..., checkpoint_path=F)`` of a ``model_class`` model raise the errors above.

    timm loads ``checkpoint_path`` in ``create_model`` itself, after the model's
    entrypoint has returned, through ``timm.models._factory.load_checkpoint``:
    no argument or hook of the model reaches it, so that name is wrapped (once).
    Other models, and the arguments this project's models never get from
    ``create_model`` (``remap``, ``filter_fn``, numpy files), go to timm's own.
    """
    from timm.models import _factory
    timm_load_checkpoint = _factory.load_checkpoint
    classes = getattr(timm_load_checkpoint, 'explained_classes', None)
    if classes is not None:
        classes.add(model_class)
        return

    def load_checkpoint(model: nn.Module, checkpoint_path: str, use_ema: bool = True, device='cpu',
                        strict: bool = True, remap: bool = False, filter_fn=None, weights_only: bool = True,
                        ) -> Optional[Any]:
        plain = (strict and not remap and filter_fn is None and weights_only and use_ema
                 and not str(checkpoint_path).lower().endswith(('.npz', '.npy')))
        if not (plain and isinstance(model, tuple(load_checkpoint.explained_classes))):
            return timm_load_checkpoint(model, checkpoint_path, use_ema=use_ema, device=device, strict=strict,
                                        remap=remap, filter_fn=filter_fn, weights_only=weights_only)
        state = read_state_dict(checkpoint_path, 'checkpoint_path')
        state = {k: v.to(device) for k, v in state.items()}
        return load_state_dict_strictly(model, state, checkpoint_path, 'checkpoint_path')

    load_checkpoint.explained_classes = {model_class}
    _factory.load_checkpoint = load_checkpoint
