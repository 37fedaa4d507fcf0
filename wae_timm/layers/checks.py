"""Checks: cheap shape/dtype checks inside the model, finiteness where data enters tools, state-dict fit."""
from typing import Collection, List, Mapping

import torch
from timm.layers import register_notrace_function

__all__ = ['MIN_INPUT_SIZE', 'check_image_batch', 'check_finite', 'state_dict_mismatch', 'non_finite_keys']

MIN_INPUT_SIZE = 32


@register_notrace_function
def check_image_batch(x: torch.Tensor, in_chans: int, min_size: int) -> torch.Tensor:
    """Validate a model input and return it unchanged.

    Costs a few attribute reads. A leaf for timm's fx tracer (and, in the
    modules that call it, for ``torch.fx.wrap``) so tracing keeps the check as
    one call instead of failing on its branches; TorchScript compiles it as is.
    """
    if x.dim() != 4:
        raise ValueError(
            f'expected an image batch of shape [B, {in_chans}, H, W], got a tensor with {x.dim()} dims '
            f'and shape {list(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(
            f'expected a floating point image batch (normalised with the model\'s mean/std), got {x.dtype}')
    if x.shape[1] != in_chans:
        raise ValueError(f'expected {in_chans} input channels, got {x.shape[1]} (shape {list(x.shape)})')
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(
            f'expected an input of at least {min_size}x{min_size} pixels, got {x.shape[2]}x{x.shape[3]}')
    return x



def check_finite(batch: torch.Tensor, where: str) -> torch.Tensor:
    """Raise if ``batch`` holds NaN or Inf; ``where`` names the batch (e.g. 'train batch 12').

    Needs a device sync, so it runs where data enters the project's tools
    (demo, training, evaluation), never inside a model's forward.
    """
    finite = torch.isfinite(batch)
    if not bool(finite.all()):
        bad = (~finite).flatten(1).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f'{where}: non-finite values (NaN/Inf) in sample(s) {bad[:10]} of the batch')
    return batch


def state_dict_mismatch(
        expected: Mapping[str, torch.Tensor],
        found: Mapping[str, torch.Tensor],
        adaptable: Collection[str] = (),
        optional: Collection[str] = (),
) -> str:
    """What keeps ``found`` from loading where ``expected`` is ('' if nothing), for error messages.

    ``adaptable`` keys may change shape; ``optional`` keys may be missing on either side.
    """
    missing = sorted(expected.keys() - found.keys() - set(optional))
    unexpected = sorted(found.keys() - expected.keys() - set(optional))
    reshaped = sorted(
        f'{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}'
        for k in expected.keys() & found.keys() if k not in adaptable and found[k].shape != expected[k].shape)
    if not (missing or unexpected or reshaped):
        return ''
    return (f'{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}, '
            f'{len(reshaped)} with other shapes {reshaped[:3]}')


def non_finite_keys(state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """The keys of ``state_dict``'s floating-point tensors that hold NaN or Inf (weights no training recovers from)."""
    return sorted(k for k, v in state_dict.items()
                  if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all())
