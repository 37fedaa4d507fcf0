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
      --export_folder--> model.safetensors (fp32, or fp16 to halve the size) + config.json
                         + README.md (the card; accuracy only if results/ measured this exact file)
      --upload_folder--> the Hub (create_repo + upload_folder)
      --install_folder--> or a local HF cache, for offline machines (tools/setup.sh does this for
                          the folders shipped in the repository's hub/)

A published folder loads as it is with timm's own local source, no cache
needed: ``timm.create_model('local-dir:<folder>', pretrained=True)``.
:func:`install_into_hf_cache` is for the names that resolve through the Hub
(the tag ``wae_resnet18.fmnist`` with ``pretrained=True``, ``hf-hub:`` ids,
``torch.hub.load``): offline, huggingface_hub finds them in its cache only.
"""
import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import timm
import torch
import torch.nn as nn
from huggingface_hub import HfApi, constants
from huggingface_hub.file_download import repo_folder_name
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm import __version__ as timm_version
from timm.models import save_for_hf

from ..layers.autoencoder import weights_padding_mode
from ..layers.checks import non_finite_keys, state_dict_mismatch
from ..files import PathLike, atomic_write
from ..models.checkpoint_files import read_state_dict
from ..models.pretrained import WEIGHTS_FILENAME, PretrainedTag, drop_decoder
from ..models.wae import PRETRAINED_TAGS
from .measurements import MEASURABLE_DATASETS, find_results_dir, measure_weights, record_measurements, \
    sha256_of_file
from .model_card import render_model_card

__all__ = [
    'read_checkpoint', 'strip_training_state', 'build_for_export', 'export_folder', 'export_checkpoint',
    'upload_folder', 'install_into_hf_cache', 'find_tag', 'TRAINING_ONLY_ARGS', 'architecture_args',
    'EXPORTED_FILES', 'EXPORT_DTYPES', 'read_exported_folder', 'install_folder',
]

# what export_folder writes, and all that upload_folder sends (never other files a user keeps in the folder)
EXPORTED_FILES = ('model.safetensors', 'config.json', 'README.md')

# --dtype of `wae-timm push`: the floating-point type model.safetensors stores (loading casts back to the model's)
EXPORT_DTYPES: Dict[str, torch.dtype] = {'float32': torch.float32, 'float16': torch.float16}

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
    prefixes are removed. An unusable file raises the errors every loading path
    raises (:func:`~wae_timm.models.checkpoint_files.read_state_dict`), naming it.
    """
    return read_state_dict(path, 'checkpoint to publish', use_ema=use_ema)


def strip_training_state(state_dict: Mapping[str, torch.Tensor], keep_decoder: bool) -> Dict[str, torch.Tensor]:
    """Drop what inference does not need: the WAE decoder (only used by the transform loss)."""
    return dict(state_dict) if keep_decoder else drop_decoder(state_dict)


def architecture_args(model_kwargs: Optional[Mapping[str, Any]], keeps_decoder: bool) -> Dict[str, Any]:
    """The published ``model_args``: ``model_kwargs`` without :data:`TRAINING_ONLY_ARGS`.

    ``with_decoder`` is decided by the tag: ``True`` when it keeps the decoder,
    else left out (the model's default, no decoder without a transform loss).
    ``wae_padding`` is an architecture argument that ``wae_weights`` may have chosen
    (the model's default is the padding of its ``wae_weights``): it is recorded
    whenever it is not zeros, read from those weights if it was not given.
    """
    model_kwargs = dict(model_kwargs or {})
    kwargs = {k: v for k, v in model_kwargs.items() if k not in TRAINING_ONLY_ARGS and k != 'with_decoder'}
    if kwargs.get('wae_padding') is None and model_kwargs.get('wae_weights'):
        try:
            padding = weights_padding_mode(model_kwargs['wae_weights'])
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"the model was trained from wae_weights={model_kwargs['wae_weights']!r}, whose "
                             f'padding decides the architecture, but they cannot be read here ({err}): add '
                             "wae_padding='zeros' or 'reflect' to the model kwargs") from err
        kwargs['wae_padding'] = padding
    if kwargs.get('wae_padding') in (None, 'zeros'):
        kwargs.pop('wae_padding', None)  # the default: config.json stays as it was without the option
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
        tag: PretrainedTag,
        results_dir: Optional[PathLike] = None,
        dtype: torch.dtype = torch.float32,
        overwrite: bool = False,
        measure: bool = False,
) -> Path:
    """Write ``model.safetensors`` in ``dtype``, ``config.json`` (timm's ``save_for_hf``) and ``README.md``.

    With ``measure``, the written weights are first scored on the tag's test
    split through timm's loader and the rows (with the file's sha256) recorded
    in ``results_dir`` (:mod:`wae_timm.publish.measurements`). The card is
    rendered last, for the weights' sha256: it quotes accuracy only from a row
    that measured this exact file. Refuses a non-empty ``folder`` unless
    ``overwrite``. ``model`` itself is not changed.
    """
    folder = Path(folder)
    _check_writable_folder(folder, overwrite)
    if dtype not in EXPORT_DTYPES.values():
        raise ValueError(f'dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype}')
    if measure:
        results_dir = find_results_dir(results_dir)
        if results_dir is None:
            raise FileNotFoundError('no results/ folder to record the measurement in: pass --results-dir')
        if tag.dataset not in MEASURABLE_DATASETS:
            raise ValueError(f'{tag.name} is trained on {tag.dataset}; only {MEASURABLE_DATASETS} can be measured here')
    exported = copy.deepcopy(model).to(dtype) if dtype != torch.float32 else model
    save_for_hf(exported, folder, safe_serialization=True)
    if measure:
        record_measurements(results_dir, measure_weights(tag, folder / WEIGHTS_FILENAME))
    card = render_model_card(tag, results_dir, weights_sha256=sha256_of_file(folder / WEIGHTS_FILENAME))
    atomic_write(folder / 'README.md', lambda tmp: Path(tmp).write_text(card, encoding='utf-8'))
    return folder


def export_checkpoint(
        checkpoint: PathLike,
        tag_name: str,
        folder: PathLike,
        model_kwargs: Optional[Mapping[str, Any]] = None,
        use_ema: bool = True,
        overwrite: bool = False,
        results_dir: Optional[PathLike] = None,
        dtype: torch.dtype = torch.float32,
        measure: bool = False,
) -> Path:
    """``checkpoint`` -> the published folder of ``tag_name`` (weights in ``dtype``, config, model card);
    ``measure``: score the written weights first (see :func:`export_folder`)."""
    tag = find_tag(tag_name)
    folder = Path(folder)
    _check_writable_folder(folder, overwrite)  # before the slow part
    model = build_for_export(tag, read_checkpoint(checkpoint, use_ema), model_kwargs)
    return export_folder(model, folder, tag, results_dir, dtype=dtype, overwrite=overwrite, measure=measure)


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


def read_exported_folder(folder: PathLike) -> Tuple[PretrainedTag, Dict[str, torch.Tensor]]:
    """Check that ``folder`` is an exported folder of a registered tag; returns the tag and the weights.

    Validates everything an install needs before anything is written:
    ``config.json`` names a registered ``<architecture>.<tag>``, and
    ``model.safetensors`` is a readable safetensors file of that model with
    finite values. Raises ``FileNotFoundError`` / ``ValueError`` naming the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'{folder} is not a folder (expected an exported model folder such as '
                                'hub/wae_resnet18.fmnist)')
    config_path, weights_path = folder / 'config.json', folder / WEIGHTS_FILENAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f'{path} does not exist: {folder} is not an exported model folder '
                                    f'(expected {list(EXPORTED_FILES)}, written by `wae-timm push`)')
    try:
        config = json.loads(config_path.read_text(encoding='utf-8'))
        name = f"{config['architecture']}.{config['pretrained_cfg']['tag']}"
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f'{config_path} is not a timm config.json with architecture and pretrained_cfg.tag '
                         f'({type(err).__name__}: {err})') from err
    if name not in PRETRAINED_TAGS:
        raise ValueError(f'{config_path} names {name!r}, which is not a registered tag: {sorted(PRETRAINED_TAGS)}')
    tag = PRETRAINED_TAGS[name]
    try:
        weights = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        raise ValueError(f'{weights_path} is not a readable safetensors file: {err}') from err
    expected = timm.create_model(tag.name, with_decoder=tag.keeps_decoder).state_dict()
    problem = state_dict_mismatch(expected, weights)
    if problem:
        raise ValueError(f'{weights_path} is not a checkpoint of {tag.name}: {problem}')
    broken = non_finite_keys(weights)
    if broken:
        raise ValueError(f'{weights_path} holds NaN/Inf values in {len(broken)} tensors {broken[:3]}')
    return tag, weights


def install_folder(folder: PathLike, cache_dir: Optional[PathLike] = None,
                   repo_id: Optional[str] = None) -> Tuple[Path, bool]:
    """Validate an exported folder (:func:`read_exported_folder`) and install it into the HF cache.

    ``repo_id`` defaults to the tag's Hub repo. The folder is only read. Returns
    the snapshot folder and whether anything was written (``False``: it was
    already installed, byte for byte). ``tools/setup.sh`` and ``wae-timm push
    --to-cache`` both go through here.
    """
    tag, _ = read_exported_folder(folder)
    return install_into_hf_cache(folder, repo_id or tag.hf_hub_id, cache_dir)


def _copy_atomically(source: Path, target: Path) -> None:
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(source.read_bytes()))


def install_into_hf_cache(
        folder: PathLike,
        repo_id: str,
        cache_dir: Optional[PathLike] = None,
        files: Iterable[str] = EXPORTED_FILES,
) -> Tuple[Path, bool]:
    """Put an exported folder into a Hugging Face cache as if ``repo_id`` had been downloaded.

    Needed only where a Hub name must resolve offline (a tag such as
    ``wae_resnet18.fmnist`` with ``pretrained=True``, ``hf-hub:<repo_id>``,
    ``torch.hub.load``): huggingface_hub has no public call that adds local
    files to its cache. To load the folder itself, ``timm.create_model(
    'local-dir:<folder>', pretrained=True)`` reads it directly. This writes the
    layout only; :func:`install_folder` validates the folder first.

    Uses huggingface_hub's layout (``models--org--name/blobs/<sha256>``,
    ``snapshots/<commit>/<file>`` linking to the blob, ``refs/main``), so that
    with ``HF_HUB_OFFLINE=1`` timm's ``pretrained=True`` and ``hf-hub:`` load
    from it. The commit id is derived from the files' hashes, so installing the
    same folder again writes nothing; blobs are written atomically and an
    existing blob whose bytes do not match its name is replaced. ``folder`` is
    only read. Returns the snapshot folder and whether anything was written.
    ``cache_dir`` defaults to huggingface_hub's (``HF_HUB_CACHE``).
    """
    folder = Path(folder)
    files = [f for f in files if (folder / f).is_file()]
    if 'model.safetensors' not in files or 'config.json' not in files:
        raise FileNotFoundError(f'{folder} is not an exported model folder (needs model.safetensors and config.json)')
    repo_dir = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type='model')
    hashes = {f: sha256_of_file(folder / f) for f in files}
    commit = hashlib.sha1(''.join(f'{f}:{h};' for f, h in sorted(hashes.items())).encode()).hexdigest()
    snapshot = repo_dir / 'snapshots' / commit
    changed = False
    for name, digest in hashes.items():
        blob = repo_dir / 'blobs' / digest
        if not blob.is_file() or sha256_of_file(blob) != digest:
            _copy_atomically(folder / name, blob)
            changed = True
        link = snapshot / name
        target = os.path.relpath(blob, snapshot)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if not link.is_symlink() and link.is_file() and sha256_of_file(link) == digest:
            continue  # a copy made where symlinks are not available
        snapshot.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            link.symlink_to(target)
        except OSError:  # no symlinks (Windows without developer mode): huggingface_hub copies too
            _copy_atomically(blob, link)
        changed = True
    ref = repo_dir / 'refs' / 'main'
    if not ref.is_file() or ref.read_text().strip() != commit:
        atomic_write(ref, lambda tmp: Path(tmp).write_text(commit))
        changed = True
    return snapshot, changed
