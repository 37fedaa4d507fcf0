"""Image folders as training data: the paper's stage-1 crops, timm's classification transforms, loaders.

Any folder timm's ``create_dataset`` reads works: an ImageNet-style tree of
class folders, a tar, or a plain folder of photographs (one class). Loaders
use :class:`ResumableSampler`, so a resumed run sees the same batches the
interrupted one would have.
"""
from pathlib import Path
from typing import Sequence, Union

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision import transforms

from .sampler import ResumableSampler

__all__ = ['paper_crop_transform', 'create_image_dataset', 'create_train_loader', 'create_eval_loader']


def paper_crop_transform(
        crop_size: int = 224,
        resize: int = 256,
        hflip: bool = True,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
):
    """PIL image -> ``[3, crop_size, crop_size]`` normalised tensor, as the paper trains every stage.

    The image is resized to ``resize x resize`` (``0``: kept at its own size,
    for crops of large photographs at native scale), a random
    ``crop_size`` square is cut out, and flipped horizontally half of the time.
    """
    steps = []
    if resize:
        if resize < crop_size:
            raise ValueError(f'resize ({resize}) must be at least the crop size ({crop_size}), or 0 to keep the size')
        steps.append(transforms.Resize((resize, resize), interpolation=transforms.InterpolationMode.BILINEAR))
    steps.append(transforms.RandomCrop(crop_size, pad_if_needed=True))
    if hflip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def create_image_dataset(
        roots: Union[str, Path, Sequence[Union[str, Path]]],
        transform=None,
        dataset: str = '',
        split: str = 'train',
        repeats: int = 1,
        is_training: bool = True,
) -> Dataset:
    """A timm dataset over one or several image folders, with ``transform`` applied to every image.

    Args:
        roots: folder(s) (or timm dataset roots); several are concatenated.
        dataset: timm dataset type ('' for image folders/tars, e.g. 'torch/cifar10').
        split: the split to look for under each root (a plain folder is used as is).
        repeats: list every image this many times per epoch (small photo sets).
    """
    from timm.data import create_dataset
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    if not roots:
        raise ValueError('no image folder given')
    parts = []
    for root in roots:
        if not dataset and not Path(root).exists():
            raise FileNotFoundError(f'image folder {root} does not exist')
        part = create_dataset(dataset, root=str(root), split=split, is_training=is_training)
        if len(part) == 0:
            raise ValueError(f'no images found under {root}')
        part.transform = transform
        parts.append(part)
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    parts = parts * repeats
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def create_train_loader(
        dataset: Dataset,
        batch_size: int,
        seed: int = 0,
        workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = False,
) -> DataLoader:
    """Shuffled batches from a :class:`ResumableSampler` (this process's share under torch.distributed)."""
    sampler = ResumableSampler(dataset, shuffle=True, seed=seed, drop_last=drop_last)
    if drop_last and len(sampler) < batch_size:
        raise ValueError(f'{len(sampler)} training samples per process is fewer than one batch of {batch_size}')
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, pin_memory=pin_memory, persistent_workers=workers > 0)


def create_eval_loader(dataset: Dataset, batch_size: int, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches in order; under torch.distributed each process gets its own shard."""
    sampler = ResumableSampler(dataset, shuffle=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory)
