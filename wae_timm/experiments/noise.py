"""Noisy test images for the paper's robustness test (Table 7).

Gaussian noise of variance ``V`` is added to the grey test image in [0, 1]
(the padded 32x32 one the models see), one value per pixel shared by the 3
channels, *not* clipped by default (so the added noise has exactly the
variance ``V``), then the image is normalised. The noise is drawn from a fixed
seed, so every model sees the same noisy images.
"""
import math
from typing import Iterator, Optional, Tuple

import torch

from ..data import FashionMNIST

__all__ = ['NOISE_VARIANCES', 'add_gaussian_noise', 'NoisyTestSet']

NOISE_VARIANCES: Tuple[float, ...] = (0., 0.01, 0.02, 0.05, 0.1)


def add_gaussian_noise(
        images: torch.Tensor,
        variance: float,
        generator: Optional[torch.Generator] = None,
        clip: bool = False,
) -> torch.Tensor:
    """``images`` (in [0, 1]) plus zero-mean Gaussian noise of ``variance``; clipped to [0, 1] if ``clip``."""
    if variance < 0:
        raise ValueError(f'noise variance must be >= 0, got {variance}')
    if variance == 0:
        return images.clone()
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype) * math.sqrt(variance)
    noisy = images + noise
    return noisy.clamp_(0, 1) if clip else noisy


class NoisyTestSet:
    """Re-iterable batches ``(x [B, 3, 32, 32] normalised, y [B])`` of the test images plus noise.

    Every iteration redraws the same noise (generator seeded with ``seed``), so all
    models are evaluated on identical noisy images.
    """

    def __init__(self, dataset: FashionMNIST, variance: float, batch_size: int = 256, seed: int = 0,
                 clip: bool = False) -> None:
        self.images = dataset.images.unsqueeze(1).float().div(255.)  # grey [N, 1, 32, 32] in [0, 1]
        self.labels = dataset.labels
        self.normalize = dataset.normalize
        self.variance, self.batch_size, self.seed, self.clip = variance, batch_size, seed, clip

    def __len__(self) -> int:
        return math.ceil(self.labels.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        for start in range(0, self.labels.shape[0], self.batch_size):
            grey = add_gaussian_noise(self.images[start:start + self.batch_size], self.variance, generator, self.clip)
            yield self.normalize(grey.expand(-1, 3, -1, -1)), self.labels[start:start + self.batch_size]
