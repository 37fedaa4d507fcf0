"""Inference fast paths that leave what a model computes unchanged.

Every step here is exact in eval mode (up to float rounding) and applies to
any timm CNN as well as to a :class:`~wae_timm.models.wae.WAEWrapper`, so a speed
comparison can optimise the plain backbone and the WAE model the same way:

- :func:`fold_batchnorms`: an eval-mode BatchNorm that reads nothing but a
  convolution's output is an affine map per channel, so it folds into that
  convolution's weights and bias and disappears. For a WAE model this removes
  the BatchNorms on ``I_L``/``I_H`` (they follow the encoder's ``to_low`` /
  ``to_high`` convolutions) and every conv-BN pair of both branches.
- :func:`prepare_for_inference`: fold, switch to channels_last (oneDNN's
  native layout on CPU), then optionally hand the model to a graph backend:
  ``'jit'`` (``torch.jit.script`` + ``torch.jit.freeze`` +
  ``torch.jit.optimize_for_inference``: weights become constants, oneDNN
  prepacks them and fuses conv-add-ReLU) or ``'compile'`` (``torch.compile``
  with Inductor's weight freezing).

:data:`wae_timm.experiments.speed.STEPS` lists the combinations the speed benchmark's
ablation measures.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..layers.bn_folding import fold_batchnorms

__all__ = ['fold_batchnorms', 'prepare_for_inference', 'BACKENDS']

BACKENDS = ('eager', 'jit', 'compile')


def _freeze_with_jit(model: nn.Module) -> torch.jit.ScriptModule:
    scripted = torch.jit.script(model)
    return torch.jit.optimize_for_inference(torch.jit.freeze(scripted))


def _compile(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch._inductor.config as inductor_config  # inductor loads only for the compile backend
    # weights become constants the compiler can prepack, as with jit freezing
    inductor_config.freezing = True
    return torch.compile(model, dynamic=False)


def prepare_for_inference(
        model: nn.Module,
        fold_bn: bool = True,
        channels_last: bool = True,
        backend: str = 'eager',
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` made fast for inference, computing the same outputs (eval mode).

    Args:
        model: a timm model or WAEWrapper; changed in place (eval mode, folded, re-laid out).
        fold_bn: fold BatchNorms into convolutions. A model with a
            ``fuse_for_inference()`` method (WAEWrapper: also drops the decoder) is
            asked to do it itself.
        channels_last: store 4-D weights NHWC; feed inputs in channels_last too for full effect.
        backend: ``'eager'`` (the module itself), ``'jit'`` (script, freeze, optimize_for_inference)
            or ``'compile'`` (``torch.compile``, Inductor freezing; compiles on first call).

    Returns a callable ``[B, C, H, W] -> outputs``; for ``'eager'`` it is ``model``.
    """
    if backend not in BACKENDS:
        raise ValueError(f'unknown backend {backend!r}; expected one of {BACKENDS}')
    model.eval()
    if fold_bn:
        fuse: Optional[Callable[[], nn.Module]] = getattr(model, 'fuse_for_inference', None)
        if fuse is not None:
            fuse()
        else:
            fold_batchnorms(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if backend == 'jit':
        return _freeze_with_jit(model)
    if backend == 'compile':
        return _compile(model)
    return model
