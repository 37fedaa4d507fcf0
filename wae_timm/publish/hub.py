"""Publishing trained ``wae_*`` checkpoints as timm models on the Hugging Face Hub.

The published folder of a tag (``wae-timm/<model>.<tag>``) is what timm's
``push_to_hf_hub`` would upload: ``model.safetensors`` and ``config.json``
(written by timm's own ``save_for_hf``: ``architecture``, ``num_classes``,
``num_features``, ``model_args``, ``pretrained_cfg``), plus ``README.md``, the
model card generated here from ``results/`` (see :mod:`wae_timm.publish.model_card`).

Pipeline (``wae-timm push`` is a thin shell over it)::

    checkpoint (timm train.py .pth.tar / the project's trainer / .safetensors)
      --read_checkpoint--> state dict (EMA weights when present; no optimizer)
      --strip_training_state--> without the WAE decoder unless the tag keeps it
      --build_for_export--> a model of the tag, loaded strictly (a foreign checkpoint fails here)
      --export_folder--> model.safetensors + config.json + README.md
      --upload_folder--> the Hub (create_repo + upload_folder)
      --install_into_hf_cache--> or a local HF cache, for offline machines

A published folder loads as it is with timm's own local source, no cache
needed: ``timm.create_model('local-dir:<folder>', pretrained=True)``.
:func:`install_into_hf_cache` is for the names that resolve through the Hub
(the tag ``wae_resnet18.fmnist`` with ``pretrained=True``, ``hf-hub:`` ids,
``torch.hub.load``): offline, huggingface_hub finds them in its cache only.
"""
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import timm
import torch
import torch.nn as nn
from huggingface_hub import HfApi, constants
from huggingface_hub.file_download import repo_folder_name
from safetensors import SafetensorError
from timm import __version__ as timm_version
from timm.models import load_state_dict, save_for_hf

from ..layers.checks import non_finite_keys, state_dict_mismatch
from ..models.pretrained import PretrainedTag, drop_decoder
from ..models.wae import PRETRAINED_TAGS
from .model_card import render_model_card
from ..files import PathLike

__all__ = [
    'read_checkpoint', 'strip_training_state', 'build_for_export', 'export_folder', 'export_checkpoint',
    'upload_folder', 'install_into_hf_cache', 'find_tag', 'TRAINING_ONLY_ARGS', 'architecture_args',
    'EXPORTED_FILES',
]

# what export_folder writes, and all that upload_folder sends (never other files a user keeps in the folder)
EXPORTED_FILES = ('model.safetensors', 'config.json', 'README.md')

# model arguments that only matter while training (or name a file on the machine that trained): a published
# config.json must not hold them, or loading it elsewhere would look for that file / train-time settings
TRAINING_ONLY_ARGS = ('wae_weights', 'freeze_wae', 'aux_loss_weight', 'pretrained_backbone')


def find_tag(name: str) -> PretrainedTag:
    """The registered tag called ``name`` (``'wae_resnet18.fmnist'``)."""
    if name not in PRETRAINED_TAGS:
        raise KeyError(f'unknown pretrained tag {name!r}; registered tags: {sorted(PRETRAINED_TAGS)}')
    return PRETRAINED_TAGS[name]


def read_checkpoint(path: PathLike, use_ema: bool = True) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint file, read safely.

    Accepts a ``.safetensors`` state dict, or a ``torch.save``'d dict as timm's
    train.py writes it (``state_dict``, ``state_dict_ema``, ``optimizer``,
    ``args``...) or the project's trainer does (``state_dict``, ``optimizer``);
    ``.pth`` files are read with ``weights_only=True``. With ``use_ema`` the EMA
    weights are taken when the checkpoint has them. Everything but the model
    weights (optimizer, scheduler, args) is left behind; DDP / torch.compile
    prefixes are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    try:
        state_dict = load_state_dict(str(path), use_ema=use_ema, weights_only=True)
    except SafetensorError as err:
        raise ValueError(f'checkpoint {path} is not a readable safetensors file: {err}') from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f'cannot read checkpoint {path} with weights_only=True: {err}') from err
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) != len(state_dict):
        raise ValueError(f'checkpoint {path} does not hold a state dict of tensors '
                         f'(found {len(tensors)} tensors among {len(state_dict)} entries)')
    broken = non_finite_keys(tensors)
    if broken:
        raise ValueError(f'checkpoint {path} holds NaN/Inf values in {len(broken)} tensors {broken[:3]}: '
                         'refusing to publish it')
    return tensors


def strip_training_state(state_dict: Mapping[str, torch.Tensor], keep_decoder: bool) -> Dict[str, torch.Tensor]:
    """Drop what inference does not need: the WAE decoder (only used by the transform loss)."""
    return dict(state_dict) if keep_decoder else drop_decoder(state_dict)


def architecture_args(model_kwargs: Optional[Mapping[str, Any]], keeps_decoder: bool) -> Dict[str, Any]:
    """The published ``model_args``: ``model_kwargs`` without :data:`TRAINING_ONLY_ARGS`.

    ``with_decoder`` is decided by the tag: ``True`` when it keeps the decoder,
    else left out (the model's default, no decoder without a transform loss).
    """
    kwargs = {k: v for k, v in (model_kwargs or {}).items() if k not in TRAINING_ONLY_ARGS and k != 'with_decoder'}
    if keeps_decoder:
        kwargs['with_decoder'] = True
    return kwargs


def build_for_export(
        tag: PretrainedTag,
        state_dict: Mapping[str, torch.Tensor],
        model_kwargs: Optional[Mapping[str, Any]] = None,
) -> nn.Module:
    """A model of ``tag`` holding ``state_dict``, loaded strictly.

    ``model_kwargs`` are the arguments the checkpoint was trained with (as
    train.py's ``--model-kwargs``); their architecture arguments (see
    :func:`architecture_args`) build the model and are recorded in config.json's
    ``model_args`` so ``hf-hub:`` rebuilds the same model on any machine. The
    decoder is built exactly when the tag keeps it.
    """
    kwargs = architecture_args(model_kwargs, tag.keeps_decoder)
    model = timm.create_model(tag.name, **kwargs)
    state_dict = strip_training_state(state_dict, tag.keeps_decoder)
    problem = state_dict_mismatch(model.state_dict(), state_dict)
    if problem:
        raise ValueError(f'the checkpoint is not a {tag.architecture} with {kwargs}: {problem} '
                         '(pass the --model-kwargs it was trained with, e.g. num_classes=...)')
    model.load_state_dict(state_dict)
    return model.eval()


def _check_writable_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f'{folder} exists and is not a folder')
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f'{folder} is not empty: pass --overwrite (overwrite=True) to replace its files')


def export_folder(
        model: nn.Module,
        folder: PathLike,
        model_card: str,
        overwrite: bool = False,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` (timm's ``save_for_hf``) and ``README.md`` into ``folder``.

    Refuses a non-empty ``folder`` unless ``overwrite``.
    """
    folder = Path(folder)
    _check_writable_folder(folder, overwrite)
    save_for_hf(model, folder, safe_serialization=True)
    (folder / 'README.md').write_text(model_card, encoding='utf-8')
    return folder


def export_checkpoint(
        checkpoint: PathLike,
        tag_name: str,
        folder: PathLike,
        model_kwargs: Optional[Mapping[str, Any]] = None,
        use_ema: bool = True,
        overwrite: bool = False,
        results_dir: PathLike = 'results',
) -> Path:
    """``checkpoint`` -> the published folder of ``tag_name`` (weights, config, model card)."""
    tag = find_tag(tag_name)
    folder = Path(folder)
    _check_writable_folder(folder, overwrite)  # before the slow part
    model = build_for_export(tag, read_checkpoint(checkpoint, use_ema), model_kwargs)
    return export_folder(model, folder, render_model_card(tag, results_dir), overwrite=overwrite)


def upload_folder(
        folder: PathLike,
        repo_id: str,
        token: Optional[str] = None,
        private: bool = False,
        commit_message: str = 'Add model',
        api: Optional[Any] = None,
) -> Any:
    """Upload an exported folder with huggingface_hub: ``create_repo(exist_ok=True)`` then ``upload_folder``.

    Only :data:`EXPORTED_FILES` are sent (``allow_patterns``): anything else in
    ``folder`` (notes, old files of an ``--overwrite``) stays local.
    """
    folder = Path(folder)
    missing = [f for f in EXPORTED_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f'{folder} is not an exported model folder: {missing} missing')
    if api is None:
        api = HfApi(token=token, library_name='timm', library_version=timm_version)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=getattr(repo_url, 'repo_id', repo_id), folder_path=str(folder), commit_message=commit_message,
        allow_patterns=list(EXPORTED_FILES))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open('rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def install_into_hf_cache(
        folder: PathLike,
        repo_id: str,
        cache_dir: Optional[PathLike] = None,
        files: Iterable[str] = EXPORTED_FILES,
) -> Path:
    """Put an exported folder into a Hugging Face cache as if ``repo_id`` had been downloaded.

    Needed only where a Hub name must resolve offline (a tag such as
    ``wae_resnet18.fmnist`` with ``pretrained=True``, ``hf-hub:<repo_id>``):
    huggingface_hub has no public call that adds local files to its cache. To
    load the folder itself, ``timm.create_model('local-dir:<folder>',
    pretrained=True)`` reads it directly.

    Uses huggingface_hub's layout (``models--org--name/blobs/<sha256>``,
    ``snapshots/<commit>/<file>`` linking to the blob, ``refs/main``), so that
    with ``HF_HUB_OFFLINE=1`` timm's ``pretrained=True`` and ``hf-hub:`` load
    from it. The commit id is derived from the files' hashes. Returns the
    snapshot folder. ``cache_dir`` defaults to huggingface_hub's (``HF_HUB_CACHE``).
    """
    folder = Path(folder)
    files = [f for f in files if (folder / f).is_file()]
    if 'model.safetensors' not in files or 'config.json' not in files:
        raise FileNotFoundError(f'{folder} is not an exported model folder (needs model.safetensors and config.json)')
    repo_dir = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type='model')
    hashes = {f: _sha256(folder / f) for f in files}
    commit = hashlib.sha1(''.join(f'{f}:{h};' for f, h in sorted(hashes.items())).encode()).hexdigest()
    snapshot = repo_dir / 'snapshots' / commit
    (repo_dir / 'blobs').mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, digest in hashes.items():
        blob = repo_dir / 'blobs' / digest
        if not blob.exists():
            blob.write_bytes((folder / name).read_bytes())
        link = snapshot / name
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            link.symlink_to(os.path.relpath(blob, snapshot))
        except OSError:  # no symlinks (Windows without developer mode): huggingface_hub copies too
            link.write_bytes(blob.read_bytes())
    (repo_dir / 'refs').mkdir(exist_ok=True)
    (repo_dir / 'refs' / 'main').write_text(commit)
    return snapshot
