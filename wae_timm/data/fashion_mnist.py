"""Fashion-MNIST as the classifiers take it: 3-channel float images at native resolution.

Images are the real 28x28 grayscale ones (Debian's ``dataset-fashion-mnist``),
zero-padded to 32x32 (every model needs at least 32 px; the background is 0, so
padding adds more background and no resampling happens), repeated to 3
channels and normalised with the training split's mean and std.
"""
import gzip
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


__all__ = ['FASHION_MNIST_DIR', 'read_idx', 'load_fashion_mnist', 'FashionMNIST', 'fashion_mnist_stats', 'FASHION_MNIST_CLASSES']

FASHION_MNIST_DIR = Path('/usr/share/datasets/fashion-mnist')  # Debian's dataset-fashion-mnist


def read_idx(path: Union[str, Path]) -> np.ndarray:
    """One (optionally gzipped) IDX file of unsigned bytes, as LeCun's MNIST format defines it."""
    path = Path(path)
    opener = gzip.open if path.suffix == '.gz' else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f'{path} is not an IDX file of unsigned bytes (bad magic number {data[:4].hex()})')
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f'{path} is truncated: header says {shape} = {int(np.prod(shape))} values, found {body.size}')
    return body.reshape(shape)


def load_fashion_mnist(split: str = 'train', root: Union[str, Path] = FASHION_MNIST_DIR) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` of the real 60k/10k Fashion-MNIST split."""
    prefix = {'train': 'train', 'test': 't10k'}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images_path = root / f'{prefix}-images-idx3-ubyte.gz'
    if not images_path.is_file():
        raise FileNotFoundError(f'{images_path} not found: run tools/setup.sh (it installs dataset-fashion-mnist)')
    images = torch.from_numpy(read_idx(images_path).copy())
    labels = torch.from_numpy(read_idx(root / f'{prefix}-labels-idx1-ubyte.gz').astype(np.int64))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f'{root}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} split')
    return images, labels


FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                         'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')


@lru_cache(maxsize=2)
def _load_split(split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    # decompressing the idx files takes seconds: once per process is enough (the tensors are never modified)
    return load_fashion_mnist(split)


@lru_cache(maxsize=1)
def fashion_mnist_stats() -> Tuple[float, float]:
    """Mean and standard deviation of the 60k training images' pixels in [0, 1] (28x28, unpadded)."""
    images, _ = _load_split('train')
    pixels = images.double() / 255.
    return pixels.mean().item(), pixels.std().item()


class FashionMNIST(Dataset):
    """``dataset[i] -> (x [3, 32, 32] float32, label int)``.

    Args:
        split: 'train' (60k) or 'test' (10k).
        pad: zero pixels added on each side (2 gives 32x32).
        normalize: subtract the training mean and divide by its std; ``False``
            keeps values in [0, 1] (e.g. to add noise of a given variance first,
            then :meth:`normalize` the batch).
        hflip: flip training images horizontally with probability 0.5.
        indices: a subset of the split (e.g. a small, fixed sample for tests).
    """

    def __init__(
            self,
            split: str = 'train',
            pad: int = 2,
            normalize: bool = True,
            hflip: bool = False,
            indices: Optional[Sequence[int]] = None,
    ) -> None:
        images, labels = _load_split(split)
        if indices is not None:
            index = torch.as_tensor(indices, dtype=torch.long)
            images, labels = images[index], labels[index]
        self.images = F.pad(images, (pad, pad, pad, pad))  # uint8, [N, 32, 32]
        self.labels = labels
        self.do_normalize = normalize
        self.hflip = hflip
        self.mean, self.std = fashion_mnist_stats()

    def __len__(self) -> int:
        return self.labels.shape[0]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., 3, H, W]`` in [0, 1] -> the normalised input the models are trained on."""
        return (x - self.mean) / self.std

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        x = self.images[index].float().div_(255.).expand(3, -1, -1)
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        if self.do_normalize:
            x = self.normalize(x)
        return x.contiguous(), int(self.labels[index])
