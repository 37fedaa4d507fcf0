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
  with Inductor's weight freezing), or ``'onnxruntime'`` (exported once with
  PyTorch's ONNX exporter, run by an onnxruntime session with all graph
  optimisations; the optional ``deploy`` extra installs it).

:data:`wae_timm.experiments.speed.STEPS` lists the combinations the speed benchmark's
ablation measures.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..layers.bn_folding import fold_batchnorms

__all__ = ['fold_batchnorms', 'prepare_for_inference', 'OnnxRuntimeModel', 'BACKENDS']

BACKENDS = ('eager', 'jit', 'compile', 'onnxruntime')


def _freeze_with_jit(model: nn.Module) -> torch.jit.ScriptModule:
    scripted = torch.jit.script(model)
    return torch.jit.optimize_for_inference(torch.jit.freeze(scripted))


def _compile(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch._inductor.config as inductor_config  # inductor loads only for the compile backend
    # weights become constants the compiler can prepack, as with jit freezing
    inductor_config.freezing = True
    return torch.compile(model, dynamic=False)


class OnnxRuntimeModel:
    """``[B, C, H, W] -> logits`` through an onnxruntime session of a model exported to ONNX.

    The model is exported once, by PyTorch's dynamo exporter (it translates every
    front end, antialiased resizing included), with a dynamic batch axis and the
    image size of ``example``; the session runs on the CPU with all graph
    optimisations and as many threads as torch uses, which sleep between runs
    instead of spinning.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        try:
            import onnxruntime  # optional: pip install 'wae-timm[deploy]'
        except ImportError as err:
            raise ImportError("backend='onnxruntime' needs onnxruntime, onnx and onnxscript: "
                              "pip install 'wae-timm[deploy]'") from err
        # torch.export specialises a batch of 1 to a constant: export with two images
        example = (example if example.shape[0] > 1 else example.expand(2, *example.shape[1:])).contiguous()
        with torch.no_grad():
            program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim('batch')},))
            onnx_program = torch.onnx.export(program, dynamo=True, input_names=['image'], output_names=['logits'])
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        # idle pool threads would otherwise spin after every run and take the CPU from the PyTorch work of the
        # same process (measured: eager resnet50 at batch 1 went from 71 to 120 ms beside a spinning session)
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        self.session = onnxruntime.InferenceSession(
            onnx_program.model_proto.SerializeToString(), options, providers=['CPUExecutionProvider'])
        self.image_size = tuple(example.shape[1:])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.image_size:
            raise ValueError(f'this onnxruntime model was exported for [B, {", ".join(map(str, self.image_size))}] '
                             f'inputs, got {list(x.shape)}')
        (logits,) = self.session.run(None, {'image': x.detach().cpu().contiguous().numpy()})
        return torch.from_numpy(logits)


def _enable_concurrent_branches(model: nn.Module, backend: str) -> None:
    if backend != 'jit':
        raise ValueError(f"concurrent_branches=True needs backend='jit' (TorchScript forks run concurrently; "
                         f"{backend!r} would run the branches one after the other), got backend={backend!r}")
    if not hasattr(model, 'concurrent_branches') or not getattr(model, 'fusion', False):
        raise ValueError(f'concurrent_branches=True needs a WAE model with a fusion branch (a second branch to '
                         f'run concurrently), got a {type(model).__name__} without one')
    model.concurrent_branches = True


def _example_input(model: nn.Module) -> torch.Tensor:
    input_size = getattr(model, 'pretrained_cfg', {}).get('input_size', (3, 224, 224))
    return torch.randn(1, *input_size)


def prepare_for_inference(
        model: nn.Module,
        fold_bn: bool = True,
        channels_last: bool = True,
        backend: str = 'eager',
        example_input: Optional[torch.Tensor] = None,
        concurrent_branches: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` made fast for inference, computing the same outputs (eval mode).

    Args:
        model: a timm model or WAEWrapper; changed in place (eval mode, folded, re-laid out).
        fold_bn: fold BatchNorms into convolutions. A model with a
            ``fuse_for_inference()`` method (WAEWrapper: also drops the decoder) is
            asked to do it itself.
        channels_last: store 4-D weights NHWC; feed inputs in channels_last too for full effect.
        backend: ``'eager'`` (the module itself), ``'jit'`` (script, freeze, optimize_for_inference)
            or ``'compile'`` (``torch.compile``, Inductor freezing; compiles on first call), or
            ``'onnxruntime'`` (:class:`OnnxRuntimeModel`; the graph is NCHW, so no channels_last).
        example_input: the input to export with for ``'onnxruntime'`` (its image size is the one the
            session accepts); default: one random image of the model's ``pretrained_cfg`` input size.
        concurrent_branches: ``'jit'`` only, for a WAE model with a fusion branch: run the
            quarter-width branch in a ``torch.jit.fork`` on the inter-op thread pool, beside the low
            branch (see ``WAEWrapper._forward_branches``). Same outputs; off by default, because
            whether the overlap pays depends on the machine (see results/speed.md).

    Returns a callable ``[B, C, H, W] -> outputs``; for ``'eager'`` it is ``model``.
    """
    if backend not in BACKENDS:
        raise ValueError(f'unknown backend {backend!r}; expected one of {BACKENDS}')
    if concurrent_branches:
        _enable_concurrent_branches(model, backend)
    model.eval()
    if fold_bn:
        fuse: Optional[Callable[[], nn.Module]] = getattr(model, 'fuse_for_inference', None)
        if fuse is not None:
            fuse()
        else:
            fold_batchnorms(model)
    if backend == 'onnxruntime':
        return OnnxRuntimeModel(model, _example_input(model) if example_input is None else example_input)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if backend == 'jit':
        return _freeze_with_jit(model)
    if backend == 'compile':
        return _compile(model)
    return model
