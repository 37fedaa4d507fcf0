"""Fashion-MNIST as the classifiers take it: 3-channel float images at native resolution.

Images are the real 28x28 grayscale ones (Debian's ``dataset-fashion-mnist``),
zero-padded to 32x32 (every model needs at least 32 px; the background is 0, so
padding adds more background and no resampling happens), repeated to 3
channels and normalised with the training split's mean and std.

The IDX files are read by ``torchvision.datasets.FashionMNIST``. Its reader
opens uncompressed files under ``<root>/FashionMNIST/raw/`` only, while Debian
ships them gzipped, so they are decompressed (with torchvision's
``extract_archive``) once into :data:`FASHION_MNIST_CACHE`.
"""
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torchvision.datasets
from torch.utils.data import Dataset
from torchvision.datasets.utils import extract_archive


__all__ = [
    'FASHION_MNIST_DIR', 'FASHION_MNIST_CACHE', 'load_fashion_mnist', 'FashionMNIST', 'fashion_mnist_stats',
    'FASHION_MNIST_CLASSES',
]

FASHION_MNIST_DIR = Path('/usr/share/datasets/fashion-mnist')  # Debian's dataset-fashion-mnist (gzipped IDX files)
# torchvision root the decompressed files go to: <cache>/FashionMNIST/raw/*-ubyte
FASHION_MNIST_CACHE = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'wae_timm'

FASHION_MNIST_CLASSES: Tuple[str, ...] = tuple(torchvision.datasets.FashionMNIST.classes)


def _decompress_into(raw_dir: Path, gz_files: Sequence[Path]) -> None:
    """Decompress ``gz_files`` into ``raw_dir``; each file appears whole or not at all (safe across processes)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=raw_dir, prefix='.extract-') as scratch:
        for gz_file in gz_files:
            extracted = Path(extract_archive(str(gz_file), scratch))
            os.replace(extracted, raw_dir / extracted.name)


def load_fashion_mnist(
        split: str = 'train',
        root: Union[str, Path] = FASHION_MNIST_DIR,
        cache_dir: Union[str, Path] = FASHION_MNIST_CACHE,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` of the real 60k/10k Fashion-MNIST split.

    ``root`` holds the four gzipped IDX files (``train-images-idx3-ubyte.gz``,
    ...). The first call decompresses them into ``cache_dir/FashionMNIST/raw/``,
    from where ``torchvision.datasets.FashionMNIST`` reads them; later calls
    read the decompressed files, so each ``root`` needs its own ``cache_dir``.
    """
    if split not in ('train', 'test'):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    gz_files = [root / name for name, _ in torchvision.datasets.FashionMNIST.resources]
    absent = [f for f in gz_files if not f.is_file()]
    if absent:
        raise FileNotFoundError(f'{absent[0]} not found: run tools/setup.sh (it installs dataset-fashion-mnist)')
    raw_dir = Path(cache_dir) / torchvision.datasets.FashionMNIST.__name__ / 'raw'  # torchvision's raw_folder
    to_extract = [f for f in gz_files if not (raw_dir / f.stem).is_file()]
    if to_extract:
        _decompress_into(raw_dir, to_extract)
    dataset = torchvision.datasets.FashionMNIST(str(cache_dir), train=split == 'train', download=False)
    images, labels = dataset.data, dataset.targets
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f'{root}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} split')
    return images, labels


@lru_cache(maxsize=2)
def _load_split(split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    # reading the IDX files takes a while: once per process is enough (the tensors are never modified)
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
