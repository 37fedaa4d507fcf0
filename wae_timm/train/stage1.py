"""Stage 1 of the paper: the WAE alone, trained with the transform loss.

Paper recipe (the defaults here and in ``wae-timm train-wae``): Xavier
initialisation (done by :class:`WaveletLikeAutoEncoder`), SGD with momentum
0.9, weight decay 5e-4, mini-batches of 4 random 224x224 crops (and their
horizontal flips) of images resized to 256x256, learning rate 1e-6 divided by
10 after 10 epochs (the authors trained about 20 epochs on ImageNet).

The learning rate is tiny on purpose: ``L_t`` sums squared errors over every
pixel of each image (``3 x 224 x 224`` terms) instead of averaging them, so its
gradients are about 1e5 times those of a per-pixel mean.
"""
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..layers.autoencoder import WaveletLikeAutoEncoder
from .checkpoint import Checkpointer, atomic_write
from .engine import fit
from .losses import autoencoder_loss, unwrap

__all__ = ['train_autoencoder', 'save_wae', 'create_autoencoder_optimizer']


def create_autoencoder_optimizer(
        wae: nn.Module,
        lr: float = 1e-6,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_decay_epochs: Sequence[int] = (10,),
        lr_decay_rate: float = 0.1,
):
    """The paper's stage-1 SGD and its step schedule (timm's multistep scheduler).

    Weight decay applies to every parameter, biases included, as in Caffe.
    """
    from timm.scheduler import MultiStepLRScheduler
    optimizer = torch.optim.SGD(wae.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = MultiStepLRScheduler(optimizer, decay_t=list(lr_decay_epochs), decay_rate=lr_decay_rate)
    return optimizer, scheduler


def train_autoencoder(
        wae: nn.Module,
        loader: DataLoader,
        *,
        epochs: int = 20,
        lr: float = 1e-6,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_decay_epochs: Sequence[int] = (10,),
        lr_decay_rate: float = 0.1,
        energy_weight: float = 1.0,
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
            classifier will see them (the model's mean/std).
        epochs, lr, momentum, weight_decay, lr_decay_epochs, lr_decay_rate: the
            paper's SGD recipe (defaults); the lr is tiny on purpose (see the module doc).
        energy_weight: lambda of ``L_t``.
        checkpoint_dir: keep a resumable checkpoint here (saved every
            ``checkpoint_every`` steps and after each epoch); ``resume`` continues from it.
        max_updates: stop after this many optimizer steps in total (checkpointing first).
        on_epoch_end: called with ``(epoch, metrics)`` after each epoch (logging).

    Returns:
        Per-epoch mean metrics (``loss``, ``energy``, ``lr``, ...).
    """
    inner = unwrap(wae)
    if not isinstance(inner, WaveletLikeAutoEncoder) or not inner.has_decoder:
        raise TypeError('stage 1 trains a WaveletLikeAutoEncoder with its decoder (with_decoder=True), '
                        f'got {type(inner).__name__}')
    optimizer, scheduler = create_autoencoder_optimizer(
        inner, lr, momentum, weight_decay, lr_decay_epochs, lr_decay_rate)
    checkpointer = None
    if checkpoint_dir is not None:
        config = dict(epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                      lr_decay_epochs=list(lr_decay_epochs), lr_decay_rate=lr_decay_rate,
                      energy_weight=energy_weight)
        checkpointer = Checkpointer(checkpoint_dir, inner, optimizer, scheduler, checkpoint_every, config)

    def loss_fn(model, x, y):
        return autoencoder_loss(model, x, y, energy_weight=energy_weight)

    return fit(wae, loader, optimizer, epochs=epochs, loss_fn=loss_fn, lr_scheduler=scheduler,
               checkpointer=checkpointer, resume=resume, device=device, max_updates=max_updates,
               progress=progress, on_epoch_end=on_epoch_end)


def save_wae(wae: nn.Module, path: Union[str, Path], overwrite: bool = False) -> Path:
    """Write the WAE's weights (encoder and decoder) to a ``.safetensors`` file, atomically.

    The file loads with :func:`wae_timm.layers.autoencoder.load_wae_weights` and with
    ``WAEWrapper(wae_weights=path)``. Refuses to replace an existing file unless ``overwrite``.
    """
    from safetensors.torch import save_file
    path = Path(path)
    if path.suffix != '.safetensors':
        raise ValueError(f'WAE weights are saved as .safetensors, got {path}')
    if path.exists() and not overwrite:
        raise FileExistsError(f'{path} exists: pass overwrite=True (--overwrite) to replace it')
    inner = unwrap(wae)
    state = {k: v.detach().contiguous().cpu() for k, v in inner.state_dict().items()}
    metadata = {'format': 'pt', 'model': type(inner).__name__, 'in_chans': str(inner.in_chans)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
