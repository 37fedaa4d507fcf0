"""The losses the three training stages minimise.

- stage 1: :func:`autoencoder_loss`, the transform loss ``L_t`` of the WAE alone;
- stages 2 and 3: :func:`paper_loss`, ``CE(s_L) + CE(s_c) (+ gamma * L_t)``, the
  paper's Eq. 9 with the reference release's two cross-entropies.

Both follow one signature, ``loss_fn(model, x, y) -> (loss, metrics)``, with
``metrics`` a dict of Python floats for logging, so one training loop serves
every stage. ``model`` may be wrapped by ``DistributedDataParallel``: the
DDP module must then be built around :class:`~wae_timm.train.distributed.TrainingForward`, so that the
forward DDP sees is the one returning every score (see :func:`paper_loss`).
"""
from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.autoencoder import WaveletLikeAutoEncoder, transform_loss
from ..models.wae import WAEOutput, WAEWrapper
from .distributed import unwrap

__all__ = ['LossFn', 'paper_loss', 'paper_loss_from_output', 'model_scores', 'autoencoder_loss']

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], Tuple[torch.Tensor, Dict[str, float]]]


def model_scores(model: nn.Module, x: torch.Tensor) -> Union[WAEOutput, torch.Tensor]:
    """Every score of one training forward: a :class:`WAEOutput` for a WAEWrapper, else the logits."""
    if isinstance(model, WAEWrapper):
        return model.forward_train(x)
    return model(x)  # a plain timm model, or a TrainingForward (possibly inside DDP)


def paper_loss(
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        aux_loss_weight: Optional[float] = None,
        criterion: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """The paper's classification loss for one batch, ``x: [B, C, H, W]``, ``y: [B]`` (or soft ``[B, K]``).

    For a :class:`WAEWrapper` it is ``CE(s_L) + CE(s_c) + gamma * L_t`` from one
    ``forward_train``: without a fusion branch ``CE(s_L)`` alone, and the
    transform loss only when ``gamma > 0`` (it needs the WAE decoder). For any
    other model (a plain timm baseline) it is ``CE(model(x), y)``.

    Args:
        model: a WAEWrapper, a plain classifier, or DDP around ``TrainingForward(model)``.
        aux_loss_weight: gamma; ``None`` takes the model's own ``aux_loss_weight``
            (0 for models without one). Stage 2 is gamma = 0, stage 3 gamma = 0.001.
        criterion: ``criterion(logits, y)``; cross-entropy by default (pass timm's
            label-smoothing or soft-target losses here).

    Returns:
        ``(loss, metrics)`` with the scalar loss to back-propagate and its terms
        as floats (``loss``, ``ce_low``, ``ce_fusion``, ``transform``).

    The WAEWrapper's own ``aux_loss_weight`` hook (for timm's stock train.py)
    only acts in ``forward``; ``forward_train`` never attaches it, so ``L_t`` is
    counted exactly once here.
    """
    inner = unwrap(model)
    if aux_loss_weight is None:
        aux_loss_weight = float(getattr(inner, 'aux_loss_weight', 0.))
    out = model_scores(model, x)
    return paper_loss_from_output(out, x, y, aux_loss_weight, criterion, getattr(inner, 'energy_weight', 1.0))


def paper_loss_from_output(
        out: Union[WAEOutput, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        aux_loss_weight: float = 0.,
        criterion: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
        energy_weight: float = 1.0,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """:func:`paper_loss` for an output already computed (a :class:`WAEOutput` or plain logits)."""
    criterion = criterion or F.cross_entropy
    if not isinstance(out, WAEOutput):
        if aux_loss_weight > 0:
            raise ValueError(f'aux_loss_weight={aux_loss_weight} needs a WAEWrapper, got plain logits')
        loss = criterion(out, y)
        return loss, {'loss': loss.item()}
    ce_low = criterion(out.logits_low, y)
    loss = ce_low
    metrics = {'ce_low': ce_low.item()}
    if out.logits_fusion is not None:
        ce_fusion = criterion(out.logits_fusion, y)
        loss = loss + ce_fusion
        metrics['ce_fusion'] = ce_fusion.item()
    if aux_loss_weight > 0:
        if out.reconstruction is None:
            raise ValueError(f'aux_loss_weight={aux_loss_weight} needs the WAE decoder: build the model with '
                             'with_decoder=True and decomposition="wae"')
        l_t = transform_loss(x, out.reconstruction, out.high, energy_weight)
        loss = loss + aux_loss_weight * l_t
        metrics['transform'] = l_t.item()
    metrics['loss'] = loss.item()
    return loss, metrics


def autoencoder_loss(
        wae: nn.Module,
        x: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        energy_weight: float = 1.0,
        low_band_weight: float = 0.,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Stage 1: ``L_t = ||I - I'||^2 + lambda ||I_H||^2`` of a :class:`WaveletLikeAutoEncoder` (``y`` unused).

    ``low_band_weight`` (``mu``, 0 = the paper's loss) adds ``mu ||I - D_L(I_L)||^2``, a
    reconstruction from the low band alone (summed per image, averaged over the batch, like
    ``L_t``): it asks ``I_L`` to carry the image by itself, so that ``L_t``'s energy term cannot
    be met by shrinking ``I_H`` while ``D_H`` amplifies it back. ``wae`` may be wrapped in DDP
    (its forward returns ``(I_L, I_H, I')``) only for the paper's loss: the low-band term runs
    the decoders outside that forward.
    """
    inner = unwrap(wae)
    if not isinstance(inner, WaveletLikeAutoEncoder):
        raise TypeError(f'stage 1 trains a WaveletLikeAutoEncoder, got {type(inner).__name__}')
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    if low_band_weight == 0:
        low, high, reconstruction = wae(x)
        loss = transform_loss(x, reconstruction, high, energy_weight)
        metrics = {}
    else:
        if inner is not wae:
            raise ValueError(f'low_band_weight={low_band_weight} runs the WAE outside its forward: '
                             'train it without DistributedDataParallel, or with low_band_weight=0')
        low, high = inner.encode(x)
        decoded_low = inner.decode_low(low, height, width)
        decoded_high = inner.decode_high(high, height, width)
        reconstruction = decoded_low + decoded_high
        low_band_error = (x - decoded_low).pow(2).sum() / batch
        loss = transform_loss(x, reconstruction, high, energy_weight) + low_band_weight * low_band_error
        metrics = {'low_band': low_band_error.item(),
                   'decoded_high_share': (decoded_high.detach().pow(2).sum() / reconstruction.detach().pow(2).sum()).item()}
    # the energy term alone tells whether I_H is being pushed towards zero
    energy = high.detach().pow(2).sum().item() / batch
    return loss, {'loss': loss.item(), 'energy': energy, **metrics}
