"""Fold every BatchNorm that follows a convolution into it, leaving what the model computes unchanged.

A model's conv -> BN pairs are found by tracing its calls with torch.fx (timm's
leaf modules and functions stay leaves); each BN is folded into its
convolution's weight and bias and replaced by an identity (or by its
activation, for timm's ``BatchNormAct2d``). The model is changed in place and
keeps its class, attributes and methods.

``torch.fx.experimental.optimization.fuse`` is not used: it matches the exact
type ``nn.BatchNorm2d`` (timm's ``BatchNormAct2d`` is traced through and stays
unfolded) and returns a new ``GraphModule`` in place of the model.
"""
from typing import Dict, List, Tuple

import torch
import torch.fx
import torch.nn as nn
from timm.layers import BatchNormAct2d
from timm.layers._fx import get_notrace_functions, is_notrace_module
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ['fold_batchnorms']


class _ModuleCallTracer(torch.fx.Tracer):
    """An fx tracer that keeps timm's no-trace modules, and every BatchNorm, as single calls."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=tuple(get_notrace_functions()))

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or is_notrace_module(type(m)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _through_layout_changes(node):
    """The node whose values ``node`` carries unchanged, looking through functions that only change the
    memory layout (marked ``fold_through_arg = i``: the output equals argument ``i``) and have no other reader."""
    while (isinstance(node, torch.fx.Node) and node.op == 'call_function' and len(node.users) == 1
           and getattr(node.target, 'fold_through_arg', None) is not None):
        node = node.args[node.target.fold_through_arg]
    return node


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
        source = _through_layout_changes(node.args[0])
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
    :class:`~wae_timm.models.wae.WAEWrapper` are. Each folded BatchNorm is replaced
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
