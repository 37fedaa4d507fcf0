"""Stage 1 of the paper: the WAE alone, trained with the transform loss.

One trainer, :func:`train_autoencoder`, follows a :class:`Stage1Recipe` (optimizer,
learning-rate schedule, batch size, epochs). The named recipes are in
:data:`STAGE1_RECIPES`:

- ``paper``: the paper's stage 1 (the default of ``wae-timm train-wae``);
- ``photos``: the shipped ``photos`` weights (``tools/train_wae_photos.py``), the paper's ``L_t``
  plus a low-band term (``low_band_weight``);
- ``fashion_mnist``: stage 1 of the Fashion-MNIST reproduction.

:func:`train_autoencoder` trains the WAE it is given: the Xavier initialisation of
:class:`WaveletLikeAutoEncoder` (the paper), or a fixed wavelet transform set into the same
layers (:func:`wae_timm.train.wavelet_init.init_as_colour_wavelet`, how the shipped ``photos``
weights start).
The paper's learning rate is tiny on purpose: ``L_t`` sums squared errors over
every pixel of each image (``3 x 224 x 224`` terms) instead of averaging them,
so its gradients are about 1e5 times those of a per-pixel mean. The same
schedule moves the WAE far too little within a short CPU run, so the other two
recipes use Adam, whose steps do not depend on the scale of the loss.
"""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from torch.utils.data import DataLoader

from ..layers.autoencoder import PADDING_MODES, WaveletLikeAutoEncoder
from ..files import atomic_write, refuse_to_overwrite
from .checkpoint import Checkpointer
from .engine import fit
from .distributed import unwrap
from .losses import autoencoder_loss

__all__ = [
    'Stage1Recipe', 'STAGE1_RECIPES', 'resolve_stage1_recipe', 'create_autoencoder_optimizer', 'train_autoencoder',
    'save_wae',
]

_OPTIMIZERS = ('sgd', 'adam')
_SCHEDULES = ('step', 'cosine', 'constant')
_DECODER_PREFIXES = ('decode_low.', 'decode_high.')


@dataclass(frozen=True)
class Stage1Recipe:
    """How stage 1 trains: optimizer, learning-rate schedule, batch size and length.

    Args:
        optimizer: ``'sgd'`` (with ``momentum``) or ``'adam'``.
        lr: the starting learning rate.
        epochs: passes over the training data.
        batch_size: images per optimizer step and process; callers build their loader with it.
        momentum: SGD momentum (Adam takes none).
        weight_decay: L2 penalty on every parameter, biases included (as in Caffe).
        schedule: per-epoch learning rate: ``'step'`` (multiplied by ``decay_rate`` at each
            of ``decay_epochs``), ``'cosine'`` (down to ``min_lr`` over ``epochs``) or ``'constant'``.
        decay_epochs, decay_rate: the step schedule.
        min_lr: the end of the cosine schedule.
        energy_weight: lambda of ``L_t``.
        low_band_weight: ``mu`` of an extra term ``mu ||I - D_L(I_L)||^2`` (0: the paper's loss;
            see :func:`~wae_timm.train.losses.autoencoder_loss`).
        decoder_weight_decay: an L2 penalty on the decoder's parameters only, added to
            ``weight_decay`` (0: none); it limits the gain ``D_H`` can apply to a shrunken ``I_H``.
        padding_mode: the padding of the WAE the recipe trains (``'zeros'``, the paper, or
            ``'reflect'``; see :class:`~wae_timm.layers.autoencoder.WaveletLikeAutoEncoder`). An
            architecture choice, kept with the recipe so that its weights are always built the same way.
        source: where the numbers come from.
    """
    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    momentum: float = 0.
    weight_decay: float = 0.
    schedule: str = 'constant'
    decay_epochs: Tuple[int, ...] = ()
    decay_rate: float = 0.1
    min_lr: float = 0.
    energy_weight: float = 1.0
    low_band_weight: float = 0.
    decoder_weight_decay: float = 0.
    padding_mode: str = 'zeros'
    source: str = ''

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f'optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}')
        if self.schedule not in _SCHEDULES:
            raise ValueError(f'schedule must be one of {_SCHEDULES}, got {self.schedule!r}')
        if self.momentum and self.optimizer != 'sgd':
            raise ValueError(f'momentum applies to SGD only, got momentum {self.momentum} with {self.optimizer!r}')
        if self.lr <= 0 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f'a recipe needs lr > 0, epochs >= 0 and batch_size >= 1, got lr {self.lr}, '
                             f'epochs {self.epochs}, batch_size {self.batch_size}')
        if self.low_band_weight < 0 or self.decoder_weight_decay < 0 or self.weight_decay < 0:
            raise ValueError('low_band_weight, decoder_weight_decay and weight_decay must be >= 0, got '
                             f'{self.low_band_weight}, {self.decoder_weight_decay}, {self.weight_decay}')
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f'padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}')
        object.__setattr__(self, 'decay_epochs', tuple(self.decay_epochs))


STAGE1_RECIPES: Dict[str, Stage1Recipe] = {
    'paper': Stage1Recipe(
        optimizer='sgd', lr=1e-6, epochs=20, batch_size=4, momentum=0.9, weight_decay=5e-4,
        schedule='step', decay_epochs=(10,), decay_rate=0.1,
        source='Chen et al. 2018, stage 1: Xavier init, SGD momentum 0.9, weight decay 5e-4, batch 4, '
               'lr 1e-6 divided by 10 after 10 epochs (the authors trained about 20 ImageNet epochs)'),
    'photos': Stage1Recipe(
        optimizer='adam', lr=3e-4, epochs=24, batch_size=8, schedule='cosine', min_lr=1e-5, low_band_weight=0.1,
        padding_mode='reflect',
        source='tools/train_wae_photos.py, which made the shipped photos weights (wae_timm/weights/photos.json '
               'records their run): from the colour 6-band LeGall 5/3 transform (its --start), Adam with a per-epoch '
               'cosine decay for a short CPU run, the low-band term (mu = 0.1) so that I_L alone carries the image, '
               'and reflection padding (with which the LeGall start, as built now, is exact to the image borders)'),
    'fashion_mnist': Stage1Recipe(
        optimizer='adam', lr=1e-3, epochs=1, batch_size=32,
        source='the Fashion-MNIST reproduction (ReproductionConfig wae_lr, wae_epochs, wae_batch_size): Adam at a '
               'constant lr, a budget of a few hundred steps'),
}


def resolve_stage1_recipe(recipe: Union[str, Stage1Recipe]) -> Stage1Recipe:
    """``recipe`` itself, or the named recipe of :data:`STAGE1_RECIPES`."""
    if isinstance(recipe, Stage1Recipe):
        return recipe
    if recipe not in STAGE1_RECIPES:
        raise KeyError(f'no stage-1 recipe called {recipe!r}; known: {sorted(STAGE1_RECIPES)}')
    return STAGE1_RECIPES[recipe]


def create_autoencoder_optimizer(wae: nn.Module, recipe: Union[str, Stage1Recipe] = 'paper'):
    """The optimizer of ``recipe`` over all of ``wae``'s parameters, and its timm scheduler.

    Returns ``(optimizer, scheduler)``; the scheduler is None for a constant learning rate (and for
    a cosine recipe of 0 epochs, which trains nothing).
    """
    recipe = resolve_stage1_recipe(recipe)
    params = list(wae.named_parameters())
    groups = [{'params': [p for n, p in params if not n.startswith(_DECODER_PREFIXES)],
               'weight_decay': recipe.weight_decay},
              {'params': [p for n, p in params if n.startswith(_DECODER_PREFIXES)],
               'weight_decay': recipe.weight_decay + recipe.decoder_weight_decay}]
    groups = [g for g in groups if g['params']]
    if recipe.optimizer == 'sgd':
        optimizer = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.Adam(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.schedule == 'step':
        scheduler = MultiStepLRScheduler(optimizer, decay_t=list(recipe.decay_epochs), decay_rate=recipe.decay_rate)
    elif recipe.schedule == 'cosine' and recipe.epochs > 0:  # timm's cosine needs a length; 0 epochs never steps
        scheduler = CosineLRScheduler(optimizer, t_initial=recipe.epochs, lr_min=recipe.min_lr)
    else:
        scheduler = None
    return optimizer, scheduler


def train_autoencoder(
        wae: nn.Module,
        loader: DataLoader,
        recipe: Union[str, Stage1Recipe] = 'paper',
        *,
        device='cpu',
        checkpoint_dir: Optional[Union[str, Path]] = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        max_updates: Optional[int] = None,
        progress: bool = True,
        on_epoch_end: Optional[Callable[[int, Dict[str, float]], None]] = None,
) -> List[Dict[str, float]]:
    """Train ``wae`` (a :class:`WaveletLikeAutoEncoder`, or DDP around one) with the transform loss.

    Args:
        loader: yields ``(x [B, C, H, W], anything)``, images normalised as the
            classifier will see them (the model's mean/std), in batches of ``recipe.batch_size``.
        recipe: a :class:`Stage1Recipe` or the name of one in :data:`STAGE1_RECIPES`
            (``dataclasses.replace`` changes single settings).
        checkpoint_dir: keep a resumable checkpoint here (saved every
            ``checkpoint_every`` steps and after each epoch); ``resume`` continues from it.
        max_updates: stop after this many optimizer steps in total (checkpointing first).
        on_epoch_end: called with ``(epoch, metrics)`` after each epoch (logging).

    Returns:
        Per-epoch mean metrics (``loss``, ``energy``, ``lr``, ...).
    """
    recipe = resolve_stage1_recipe(recipe)
    inner = unwrap(wae)
    if not isinstance(inner, WaveletLikeAutoEncoder) or not inner.has_decoder:
        raise TypeError('stage 1 trains a WaveletLikeAutoEncoder with its decoder (with_decoder=True), '
                        f'got {type(inner).__name__}')
    optimizer, scheduler = create_autoencoder_optimizer(inner, recipe)
    checkpointer = None
    if checkpoint_dir is not None:
        config = dict(asdict(recipe), decay_epochs=list(recipe.decay_epochs))
        checkpointer = Checkpointer(checkpoint_dir, inner, optimizer, scheduler, checkpoint_every, config)

    def loss_fn(model, x, y):
        return autoencoder_loss(model, x, y, energy_weight=recipe.energy_weight,
                                low_band_weight=recipe.low_band_weight)

    return fit(wae, loader, optimizer, epochs=recipe.epochs, loss_fn=loss_fn, lr_scheduler=scheduler,
               checkpointer=checkpointer, resume=resume, device=device, max_updates=max_updates,
               progress=progress, on_epoch_end=on_epoch_end)


def save_wae(wae: nn.Module, path: Union[str, Path], overwrite: bool = False) -> Path:
    """Write the WAE's weights (encoder and decoder) to a ``.safetensors`` file, atomically.

    The file loads with :func:`wae_timm.layers.autoencoder.load_wae_weights` and with
    ``WAEWrapper(wae_weights=path)``. Refuses to replace an existing file unless ``overwrite``.
    """
    path = Path(path)
    if path.suffix != '.safetensors':
        raise ValueError(f'WAE weights are saved as .safetensors, got {path}')
    refuse_to_overwrite([path], overwrite)
    inner = unwrap(wae)
    state = {k: v.detach().contiguous().cpu() for k, v in inner.state_dict().items()}
    metadata = {'format': 'pt', 'model': type(inner).__name__, 'in_chans': str(inner.in_chans)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
