"""The classifier heads of the WAE model's branches, and the reference VGG head's grid pooling."""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function

__all__ = ['BranchClassifier', 'grid_max_pool', 'head_input_size']


@register_notrace_function
def grid_max_pool(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``F.adaptive_max_pool2d(x, grid)`` as a single ``max_pool2d``, which every exporter translates.

    ``[B, C, H, W] -> [B, C, grid, grid]``. Adaptive bins are plain pooling windows
    once a side divides by ``grid``; a side that does not is repeated ``grid``
    times (each bin of ``H`` rows then covers exactly the rows the adaptive
    pooling takes). ONNX has no adaptive pooling, so the exporters fail on it.
    """
    # plain ints: exporters must see a constant kernel (only the batch axis is ever dynamic)
    height, width = int(x.shape[-2]), int(x.shape[-1])
    kernel_h, kernel_w = height // grid, width // grid
    if height % grid != 0:
        x = x.repeat_interleave(grid, dim=-2)
        kernel_h = height
    if width % grid != 0:
        x = x.repeat_interleave(grid, dim=-1)
        kernel_w = width
    return F.max_pool2d(x, (kernel_h, kernel_w))


class BranchClassifier(nn.Module):
    """``[B, in_features] -> [B, num_classes]``: optional fc-ReLU-dropout layers, then dropout and fc."""

    def __init__(
            self,
            in_features: int,
            num_classes: int,
            hidden_sizes: Sequence[int] = (),
            hidden_drop_rate: float = 0.,
            drop_rate: float = 0.,
            device: Optional[Union[str, torch.device]] = None,
            dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        layers: List[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden, **dd), nn.ReLU(inplace=True), nn.Dropout(hidden_drop_rate)]
            width = hidden
        self.hidden = nn.Sequential(*layers)
        self.num_features = width
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(width, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def reset(
            self,
            num_classes: int,
            device: Optional[Union[str, torch.device]] = None,
            dtype: Optional[torch.dtype] = None,
    ) -> None:
        """A new final fc of ``num_classes`` outputs."""
        self.fc = nn.Linear(self.num_features, num_classes, device=device, dtype=dtype) if num_classes > 0 \
            else nn.Identity()

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pre_logits(x))


def head_input_size(trunk: nn.Module) -> int:
    return int(getattr(trunk, 'head_hidden_size', trunk.num_features))
