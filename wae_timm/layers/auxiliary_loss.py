"""Let a model add a target-free loss to whatever loss the training script computes.

timm's train.py optimises ``criterion(model(x), y)`` and nothing else. In stage
3 the paper adds ``gamma * L_t`` (the transform loss, which needs no target).
:func:`attach_auxiliary_loss` returns the model output unchanged, but in the
backward pass it also sends the gradient ``weight * dL_aux`` into the graph of
the auxiliary loss. The parameters then receive exactly
``d(criterion)/dθ + weight * dL_aux/dθ``, as if the script had minimised
``criterion + weight * L_aux``, for one ``backward()`` per forward.

Caveat: a loss scaler (fp16 ``GradScaler``, ``--amp`` with float16) multiplies
the criterion's gradient but not this one, so the auxiliary term then counts
``1/scale`` as much; bfloat16 autocast and fp32 need no scaler and are exact.
"""
import torch

__all__ = ['attach_auxiliary_loss']


class _AttachAuxiliaryLoss(torch.autograd.Function):

    @staticmethod
    def forward(ctx, output: torch.Tensor, auxiliary_loss: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        ctx.loss_shape = auxiliary_loss.shape
        ctx.loss_dtype = auxiliary_loss.dtype
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        aux_grad = torch.full(ctx.loss_shape, ctx.weight, dtype=ctx.loss_dtype, device=grad_output.device)
        return grad_output, aux_grad, None


def attach_auxiliary_loss(output: torch.Tensor, auxiliary_loss: torch.Tensor, weight: float) -> torch.Tensor:
    """``output`` unchanged; backward through it also back-propagates ``weight * auxiliary_loss``."""
    if auxiliary_loss.dim() != 0:
        raise ValueError(f'the auxiliary loss must be a scalar, got shape {tuple(auxiliary_loss.shape)}')
    return _AttachAuxiliaryLoss.apply(output, auxiliary_loss, weight)
