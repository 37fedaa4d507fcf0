"""Pretrained tags of the ``wae_*`` models, and weight loading that says what went wrong.

Every model has timm-style tags (``wae_resnet50.in1k``, ``wae_resnet18.fmnist``).
A tag with weights points its ``pretrained_cfg`` at a Hugging Face Hub repo
``wae-timm/<model>.<tag>`` holding ``model.safetensors`` and ``config.json``
(written by :mod:`wae_timm.publish.hub`), so ``timm.create_model(name, pretrained=True)``
downloads and loads them with timm's own ``build_model_with_cfg`` /
``load_pretrained``: HF cache, ``HF_HUB_OFFLINE``, ``num_classes`` and
``in_chans`` adaptation included. Only ``model.safetensors`` is ever read
from the Hub (``hf_hub_filename`` is pinned).

A tag without trained weights (the ImageNet tags: the recipe is ready, the
weights are not trained) has no weight source in its cfg, only a note; asking
for ``pretrained=True`` on it raises :class:`NoPretrainedWeightsError`
instead of returning random weights.

timm's loader reports a missing, corrupt or foreign checkpoint with errors that
name neither the file nor the model; :func:`explain_load_errors` and
:func:`checkpoint_filter` turn those into errors that name both. For
``create_model('hf-hub:wae-timm/...')`` timm reads ``config.json`` before any
code of this package runs, so ``import wae_timm`` wraps that one timm function
(:func:`explain_missing_hub_configs`) for this organisation's repos only.
"""
import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError
from safetensors import SafetensorError
from timm.models import resolve_pretrained_cfg

from ..data.fashion_mnist import FASHION_MNIST_CLASSES
from ..layers.autoencoder import WaveletLikeAutoEncoder, optional_part_keys
from ..layers.checks import non_finite_keys, state_dict_mismatch

__all__ = [
    'HF_ORG', 'WEIGHTS_FILENAME', 'SHIPPED_FOLDERS', 'PretrainedTag',
    'build_tags', 'pretrained_cfgs', 'WeightsSource', 'prepare_pretrained',
    'checkpoint_filter', 'explain_load_errors', 'drop_decoder',
    'NoPretrainedWeightsError', 'MissingWeightsError', 'CorruptWeightsError', 'CheckpointMismatchError',
    'INSTALL_HINT', 'explain_missing_hub_configs',
]

HF_ORG = 'wae-timm'
WEIGHTS_FILENAME = 'model.safetensors'  # timm's HF_SAFE_WEIGHTS_NAME
DECODER_PREFIX = 'wae.decode_'  # WAEWrapper keys of the WAE decoder
# the end of every "weights not found" message: how to get them
INSTALL_HINT = ("Online, check the repo id. Offline (HF_HUB_OFFLINE=1), install the exported folder into the "
                "local Hugging Face cache first: `bash tools/setup.sh` does it for the folders shipped in the "
                "repository's hub/, `wae-timm install-weights FOLDER` for any exported folder.")
_HUB_ERRORS = (EntryNotFoundError, RepositoryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError)


class NoPretrainedWeightsError(RuntimeError):
    """``pretrained=True`` on a tag whose weights do not exist (yet)."""


class MissingWeightsError(FileNotFoundError):
    """The weight file is neither reachable on the Hub nor in the local HF cache."""


class CorruptWeightsError(ValueError):
    """The weight file exists but is not a readable safetensors file."""


class CheckpointMismatchError(ValueError):
    """The weight file belongs to another architecture or configuration."""


@dataclass(frozen=True)
class PretrainedTag:
    """One ``<architecture>.<tag>``: what it was trained on, and whether its weights exist.

    Args:
        architecture: registered model name (``wae_resnet18``).
        tag: timm pretrained tag (``fmnist``).
        dataset: Hugging Face dataset id of the training data (model-card metadata).
        status: one line for the README / error messages.
        has_weights: the Hub repo holds (or is meant to hold) trained weights; tags
            without are listed but ``pretrained=True`` raises.
        keeps_decoder: the checkpoint keeps the WAE decoder. Tags meant as a start for
            further stage-3 fine-tuning (the ImageNet tags) keep it; tags that are final
            classifiers (Fashion-MNIST) drop it, and their models build without one.
        cfg: entries of the pretrained cfg that differ from the model's default.
        training_command: how the weights were (or are to be) trained, for the model card.
        results_rows: rows of the ``results/`` files a model card shows for context (matched on their
            ``key`` / ``model`` column): other checkpoints. The accuracy of the tag's own weights is bound
            to their file (``results/pretrained_weights.csv``, see :mod:`wae_timm.publish.measurements`).
    """
    architecture: str
    tag: str
    dataset: str
    status: str
    has_weights: bool
    keeps_decoder: bool
    cfg: Mapping[str, Any] = field(default_factory=dict)
    training_command: str = ''
    results_rows: Tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f'{self.architecture}.{self.tag}'

    @property
    def hf_hub_id(self) -> str:
        return f'{HF_ORG}/{self.name}'

    def pretrained_cfg(self, base_cfg: Mapping[str, Any]) -> Dict[str, Any]:
        """The tag's full pretrained cfg: ``base_cfg`` with the tag's entries and weight source."""
        cfg = dict(base_cfg, **self.cfg)
        if self.has_weights:
            cfg.update(hf_hub_id=self.hf_hub_id, hf_hub_filename=WEIGHTS_FILENAME)
        else:
            cfg['notes'] = (f'no weights: {self.status}',)
        return cfg


def _imagenet_tag(architecture: str) -> PretrainedTag:
    return PretrainedTag(
        architecture, 'in1k', dataset='imagenet-1k',
        status='recipe ready, weights not trained', has_weights=False, keeps_decoder=True,
        training_command='see README "Training": stage 1 (tools/train_wae.py), then timm train.py '
                         '--device-modules wae_timm for stages 2 and 3')


# Fashion-MNIST classifiers. Inputs as wae_timm.data.FashionMNIST makes them: the 28x28 grey images
# zero-padded to 32x32, repeated to 3 channels, normalised with the training split's pixel mean / std
# (fashion_mnist_stats(); tests check these constants against it).
_FASHION_MNIST_CFG = dict(
    num_classes=10, input_size=(3, 32, 32), pool_size=(1, 1), crop_pct=1.0, interpolation='bilinear',
    mean=(0.28604,) * 3, std=(0.35302,) * 3, label_names=FASHION_MNIST_CLASSES)
# add an architecture here when a checkpoint of it is shipped in hub/<architecture>.fmnist
_FASHION_MNIST_ARCHITECTURES = ('wae_resnet18',)
# where the repository keeps the exact folder that goes to the Hub (outside the package, not in the wheel)
SHIPPED_FOLDERS = 'hub'


def _fashion_mnist_tag(architecture: str) -> PretrainedTag:
    name = f'{architecture}.fmnist'
    return PretrainedTag(
        architecture, 'fmnist', dataset='zalando-datasets/fashion_mnist',
        status=(f'shipped in the repository as {SHIPPED_FOLDERS}/{name} (loads offline after tools/setup.sh); '
                f'to be uploaded to the Hub repo {HF_ORG}/{name} with `wae-timm push`'),
        has_weights=True, keeps_decoder=False, cfg=_FASHION_MNIST_CFG,
        training_command=(
            "The Fashion-MNIST grid's seed-0 run (`wae_timm/experiments/equal_cost.py`, "
            '`results/fashion_mnist_seeds.md`): a fresh stage-1 WAE, stage 2 (classifier on the frozen WAE) for 5 '
            'epochs, stage 3 (joint, gamma = 0.001) for 1 epoch, on the 60k training images; then '
            f'`wae-timm push output/fashion_mnist_grid/seed0/wae_stage3.safetensors {name} '
            f'--out {SHIPPED_FOLDERS}/{name} --dtype float16 --measure --dry-run`'),
        # cost shown for context (results/fashion_mnist_cost.csv): the speed-up reference first
        results_rows=('backbone_32', 'backbone_16', 'wae_stage3'))


def build_tags(architectures: Sequence[str]) -> Dict[str, PretrainedTag]:
    """Every tag of ``architectures``, by ``'arch.tag'`` name: an ImageNet tag for each, Fashion-MNIST for some."""
    tags = [_fashion_mnist_tag(a) for a in _FASHION_MNIST_ARCHITECTURES if a in architectures]
    tags += [_imagenet_tag(a) for a in architectures]
    return {t.name: t for t in tags}


def pretrained_cfgs(
        tags: Mapping[str, PretrainedTag],
        base_cfg: Callable[[str], Dict[str, Any]],
) -> Dict[str, Dict[str, Any]]:
    """``{'arch.tag': cfg}`` for timm's ``generate_default_cfgs``; ``base_cfg(arch)`` is the model's default.

    The ImageNet tag is every model's default (``wae_resnet50`` means
    ``wae_resnet50.in1k``: 1000 classes at 224), even where another tag has
    weights. timm makes the first tag *with weights* the default unless a tag
    marked ``*`` comes later, so the other tags are listed first.
    """
    ordered = sorted(tags.values(), key=lambda t: t.tag == 'in1k')
    return {t.name + ('*' if t.tag == 'in1k' else ''): t.pretrained_cfg(base_cfg(t.architecture)) for t in ordered}


# ----------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class WeightsSource:
    """Where ``pretrained=True`` reads a model's weights from, for error messages."""
    name: str  # 'wae_resnet18.fmnist', or the architecture for an untagged source
    hf_hub_id: Optional[str] = None
    filename: str = WEIGHTS_FILENAME
    file: Optional[str] = None
    url: Optional[str] = None
    cache_dir: Optional[str] = None

    def cached_path(self) -> Optional[str]:
        """The weight file's path in the local HF cache, if it is there."""
        if self.hf_hub_id is None:
            return None
        repo_id, _, revision = self.hf_hub_id.partition('@')
        path = try_to_load_from_cache(repo_id, self.filename, cache_dir=self.cache_dir, revision=revision or None)
        return path if isinstance(path, str) else None

    def describe(self) -> str:
        if self.file:
            return f'weight file {self.file}'
        if self.url:
            return f'weight url {self.url}'
        where = self.cached_path()
        located = f' (cached at {where})' if where else ''
        return f'{self.filename} of Hub repo {self.hf_hub_id}{located}'


def prepare_pretrained(variant: str, kwargs: Dict[str, Any], tags: Mapping[str, PretrainedTag]) -> WeightsSource:
    """Check that ``pretrained=True`` can be honoured before a model is built; say where from.

    ``kwargs`` are the entrypoint's keyword arguments (with timm's
    ``pretrained_cfg`` / ``pretrained_cfg_overlay`` / ``cache_dir``).
    """
    cfg = resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'))
    name = f'{variant}.{cfg.tag}' if cfg.tag else variant
    if not cfg.has_weights:
        with_weights = [t.name for t in tags.values() if t.architecture == variant and t.has_weights]
        why = '; '.join(cfg.notes or ()) or 'no weight source in its pretrained_cfg'
        raise NoPretrainedWeightsError(
            f'{name} has no pretrained weights ({why}). Use pretrained=False for random init'
            + (f', or a tag with weights: {with_weights}' if with_weights else '') + '.')
    cache_dir = kwargs.get('cache_dir')
    return WeightsSource(
        name, hf_hub_id=cfg.hf_hub_id, filename=cfg.hf_hub_filename or WEIGHTS_FILENAME,
        file=cfg.file, url=cfg.url, cache_dir=str(cache_dir) if cache_dir else None)


def _classifier_keys(model: nn.Module) -> set:
    """The classifier weights named by the model's cfg: timm's ``load_pretrained`` drops or
    re-initialises them for another ``num_classes`` (0 included), so they may be absent either side."""
    names = getattr(model, 'pretrained_cfg', {}).get('classifier') or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return {f'{n}.{p}' for n in names for p in ('weight', 'bias')}


def _adaptable_keys(model: nn.Module) -> set:
    """Weights timm's ``load_pretrained`` may legitimately reshape: classifiers and the first conv."""
    keys = _classifier_keys(model)
    first_conv = getattr(model, 'pretrained_cfg', {}).get('first_conv')
    if first_conv:
        keys.add(f'{first_conv}.weight')
    return keys


def drop_decoder(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A model's state dict without the WAE decoder (used by the transform loss only)."""
    return {k: v for k, v in state_dict.items() if not k.startswith(DECODER_PREFIX)}


def _classes_mismatch(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    """Which classifier of the checkpoint has another number of classes than its pretrained cfg declares ('' if none).

    timm trusts the cfg: with the cfg's ``num_classes`` it loads the classifiers
    strictly (a bare size-mismatch error), with any other it drops them and
    loads the rest, so a checkpoint that contradicts its tag (3 classes for the
    10-class ``fmnist`` tag) would pass silently as a "new head". The rule here
    does not depend on the ``num_classes`` asked for: the file must hold what
    its cfg says.
    """
    cfg = getattr(model, 'pretrained_cfg', {})
    declared = cfg.get('num_classes')
    if not declared:
        return ''
    for key in sorted(_classifier_keys(model)):
        if key.endswith('.weight') and key in state_dict and state_dict[key].shape[0] != declared:
            return (f'its classifier {key} has {state_dict[key].shape[0]} classes, the pretrained cfg '
                    f'(tag {cfg.get("tag")!r}) declares num_classes={declared}; for a file of your own with '
                    f'{state_dict[key].shape[0]} classes, say so: pretrained_cfg_overlay=dict(file=..., '
                    f'num_classes={state_dict[key].shape[0]})')
    return ''


def checkpoint_filter(source: WeightsSource) -> Callable[[Dict[str, torch.Tensor], nn.Module], Dict[str, torch.Tensor]]:
    """A ``pretrained_filter_fn`` that refuses a checkpoint of another model, naming the file.

    timm loads non-strictly whenever it drops the classifiers, so without this a
    foreign checkpoint would leave missing layers at random init silently. The
    WAE's optional parts (decoder, ``to_high``) follow the WAE's load rule (see
    :func:`wae_timm.layers.autoencoder.optional_part_keys`), and the classifiers may be
    absent either side: timm itself drops them for ``num_classes=0``. A checkpoint
    whose classifiers contradict the cfg's ``num_classes`` is refused whatever
    ``num_classes`` the caller asks for (see :func:`_classes_mismatch`).
    """
    def check(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
        expected = model.state_dict()
        wae = getattr(model, 'wae', None)
        if isinstance(wae, WaveletLikeAutoEncoder):
            surplus, kept = optional_part_keys(wae, state_dict, prefix='wae.')
            state_dict = {k: v for k, v in state_dict.items() if k not in surplus}
            expected = {k: v for k, v in expected.items() if k not in kept}
        problem = (state_dict_mismatch(expected, state_dict, _adaptable_keys(model), _classifier_keys(model))
                   or _classes_mismatch(state_dict, model))
        if problem:
            architecture = getattr(model, 'pretrained_cfg', {}).get('architecture', type(model).__name__)
            raise CheckpointMismatchError(f'{source.describe()} is not a checkpoint of this {architecture} model: {problem}')
        broken = non_finite_keys(state_dict)
        if broken:
            raise CorruptWeightsError(f'{source.describe()} holds NaN/Inf values in {len(broken)} tensors '
                                      f'{broken[:3]}: it is not a usable checkpoint')
        return state_dict
    return check


@contextlib.contextmanager
def explain_load_errors(source: Optional[WeightsSource]) -> Iterator[None]:
    """Re-raise the errors of an unreachable or unreadable weight file with its name and the fix."""
    if source is None:
        yield
        return
    try:
        yield
    except _HUB_ERRORS as err:
        raise MissingWeightsError(
            f'pretrained weights of {source.name} not found: {source.describe()} is neither reachable on the Hub '
            f'nor in the local Hugging Face cache ({type(err).__name__}). {INSTALL_HINT}') from err
    except SafetensorError as err:
        raise CorruptWeightsError(
            f'pretrained weights of {source.name}: {source.describe()} is not a readable safetensors file '
            f'({err}); it is corrupt or truncated: delete it and download it again.') from err
    except FileNotFoundError as err:
        if source.file and not str(err):  # timm raises a bare FileNotFoundError for a missing file
            raise MissingWeightsError(f'pretrained weights of {source.name}: {source.describe()} does not exist') from err
        raise


def _explain_missing_hub_config(load_config: Callable[..., Any]) -> Callable[..., Any]:
    """``load_config`` (timm's ``load_model_config_from_hf``) whose "not found" errors for this
    organisation's repos name the repo, the file and the fix; other repos' errors are untouched."""
    @functools.wraps(load_config)
    def load(model_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return load_config(model_id, *args, **kwargs)
        except _HUB_ERRORS as err:
            repo_id = model_id.partition('@')[0]
            if not repo_id.startswith(f'{HF_ORG}/'):
                raise
            raise MissingWeightsError(
                f'hf-hub:{model_id}: config.json of Hub repo {repo_id} is neither reachable on the Hub nor in the '
                f'local Hugging Face cache ({type(err).__name__}), so neither it nor {WEIGHTS_FILENAME} can be '
                f'loaded. {INSTALL_HINT}') from err
    load.wae_timm_explains_errors = True
    return load


def explain_missing_hub_configs() -> bool:
    """Make ``create_model('hf-hub:wae-timm/...')`` name the missing repo and file; called by ``import wae_timm``.

    timm's own message for a ``config.json`` missing offline names neither, and
    timm reads it in ``create_model`` before any entrypoint of this package
    runs, so the only place to intercept it is timm's (private)
    ``timm.models._factory.load_model_config_from_hf``, wrapped once. Returns
    ``False`` if a timm version no longer has it (its own message is then shown).
    """
    try:
        from timm.models import _factory
    except ImportError:
        return False
    original = getattr(_factory, 'load_model_config_from_hf', None)
    if original is None:
        return False
    if not getattr(original, 'wae_timm_explains_errors', False):
        _factory.load_model_config_from_hf = _explain_missing_hub_config(original)
    return True


explain_missing_hub_configs()
