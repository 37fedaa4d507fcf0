"""Real data that installs offline: Debian's wallpaper photographs and Fashion-MNIST.

``tools/setup.sh`` installs both (``mate-backgrounds``, ``dataset-fashion-mnist``).
Nothing here downloads anything.
"""
import gzip
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ['PHOTOGRAPH_DIRS', 'FASHION_MNIST_DIR', 'find_photographs', 'read_idx', 'load_fashion_mnist']

# photographs (not drawings or gradients) in Debian's wallpaper packages
PHOTOGRAPH_DIRS: Tuple[Path, ...] = (Path('/usr/share/backgrounds/mate/nature'),)
FASHION_MNIST_DIR = Path('/usr/share/datasets/fashion-mnist')


def find_photographs(dirs: Sequence[Union[str, Path]] = PHOTOGRAPH_DIRS) -> List[Path]:
    """The JPEG photographs under ``dirs``, sorted by name so splits are reproducible."""
    photos = sorted(p for d in map(Path, dirs) if d.is_dir() for p in d.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg'))
    if not photos:
        raise FileNotFoundError(
            f'no photographs found in {[str(d) for d in dirs]}: run tools/setup.sh '
            '(it installs the mate-backgrounds package) or pass an image path')
    return photos


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
