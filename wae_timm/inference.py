"""Inference fast paths that leave what a model computes unchanged.

Every step here is exact in eval mode (up to float rounding) and applies to
any timm CNN as well as to a :class:`~wae_timm.wrapper.WAEWrapper`, so a speed
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

:data:`wae_timm.benchmark.STEPS` lists the combinations the speed benchmark's
ablation measures.
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.fx
import torch.nn as nn
from timm.layers import BatchNormAct2d
from timm.layers._fx import get_notrace_functions, is_notrace_module
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ['fold_batchnorms', 'prepare_for_inference', 'BACKENDS']

BACKENDS = ('eager', 'jit', 'compile')

class _ModuleCallTracer(torch.fx.Tracer):
    """An fx tracer that keeps timm's no-trace modules, and every BatchNorm, as single calls."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=tuple(get_notrace_functions()))

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or is_notrace_module(type(m)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _conv_bn_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    """Names of (conv, bn) pairs in ``model.forward`` where the BN's only input is the conv's output
    and the conv's output goes nowhere else."""
    graph = _ModuleCallTracer().trace(model)
    modules = dict(model.named_modules())
    calls: Dict[str, int] = {}
    for node in graph.nodes:
        if node.op == 'call_module':
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != 'call_module' or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if not (isinstance(source, torch.fx.Node) and source.op == 'call_module'):
            continue
        conv = modules[source.target]
        # a module called twice (shared weights) or an output read elsewhere cannot be rewritten
        if (isinstance(conv, nn.Conv2d) and len(source.users) == 1
                and calls[source.target] == 1 and calls[node.target] == 1):
            pairs.append((source.target, node.target))
    return pairs


def _replacement_for(bn: nn.BatchNorm2d) -> nn.Module:
    # timm's BatchNormAct2d applies dropout and an activation after normalising: they stay
    if isinstance(bn, BatchNormAct2d):
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


@torch.no_grad()
def fold_batchnorms(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it, in place.

    The model is switched to eval mode (folding uses the running statistics)
    and must be traceable by torch.fx, as timm's models and
    :class:`~wae_timm.wrapper.WAEWrapper` are. Each folded BatchNorm is replaced
    by ``nn.Identity`` (or by its activation, for timm's ``BatchNormAct2d``).
    Returns the number of BatchNorms folded.

    After folding, the model is for inference only: training it would train
    the folded convolutions without normalisation.
    """
    model.eval()
    pairs = _conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        bn = model.get_submodule(bn_name)
        if bn.running_mean is None or bn.running_var is None:
            continue  # batch statistics even in eval mode: not an affine map
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
        conv.weight, conv.bias = weight, bias
        parent_name, _, attr = bn_name.rpartition('.')
        setattr(model.get_submodule(parent_name), attr, _replacement_for(bn))
    return len(pairs)


def _freeze_with_jit(model: nn.Module) -> torch.jit.ScriptModule:
    scripted = torch.jit.script(model)
    return torch.jit.optimize_for_inference(torch.jit.freeze(scripted))


def _compile(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch._inductor.config as inductor_config
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
