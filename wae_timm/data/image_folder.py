"""Image folders as training data: the paper's stage-1 crops, timm's classification transforms, loaders.

Any folder timm's ``create_dataset`` reads works: an ImageNet-style tree of
class folders, a tar, or a plain folder of photographs (one class). Loaders
use :class:`ResumableSampler` and :class:`SeededSamples`, so a resumed run sees
the same batches, augmented the same way, as the interrupted one would have.
"""
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageDataset
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision import transforms

from .sampler import ResumableSampler, SeededSamples

__all__ = ['paper_crop_transform', 'create_image_dataset', 'FileNamingImageDataset', 'dataset_class_to_idx',
           'create_train_loader', 'create_eval_loader']


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
        class_to_idx: Optional[Mapping[str, int]] = None,
        require_split: bool = False,
) -> Dataset:
    """A timm dataset over one or several image folders, with ``transform`` applied to every image.

    Args:
        roots: folder(s) (or timm dataset roots); several are concatenated.
        dataset: timm dataset type ('' for image folders/tars, e.g. 'torch/cifar10').
        split: the split to look for under each root (a plain folder is used as is).
        repeats: list every image this many times per epoch (small photo sets).
        class_to_idx: the class map of another split (the training one): this split must have exactly
            these classes, else ``ValueError`` naming the folder and the differing classes (a class
            folder without images counts as missing).
        require_split: a folder root must have the ``split`` sub-folder (or one of timm's synonyms of
            it, e.g. ``val`` for ``validation``); without it, ``FileNotFoundError`` naming the folder
            instead of reading the root itself (whose split folders would become the classes).
    """
    from timm.data import create_dataset
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    if not roots:
        raise ValueError('no image folder given')
    parts = []
    for root in roots:
        if not dataset and not Path(root).exists():
            raise FileNotFoundError(f'image folder {root} does not exist')
        if require_split and not dataset and Path(root).is_dir():
            _check_split_folder(Path(root), split)
        if dataset:
            part = create_dataset(dataset, root=str(root), split=split, is_training=is_training)
        else:  # timm's create_dataset for '' (folder or tar), with the file named in decoding errors
            from timm.data.dataset_factory import _search_split
            folder = _search_split(str(root), split) if Path(root).is_dir() else str(root)
            part = FileNamingImageDataset(folder, input_img_mode='RGB')
        if len(part) == 0:
            raise ValueError(f'no images found under {root}')
        if class_to_idx is not None:
            _check_same_classes(part, class_to_idx, root, split)
        part.transform = transform
        parts.append(part)
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    parts = parts * repeats
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


class FileNamingImageDataset(ImageDataset):
    """timm's ``ImageDataset`` whose errors on an image it cannot use name the file.

    timm skips a file it cannot read (``OSError``) and moves on, but lets PIL's
    ``DecompressionBombError`` (an image whose header claims more than twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels) escape with no file name; here it is a
    ``ValueError`` that names the file and the limit.
    """

    def __getitem__(self, index: int):
        try:
            return super().__getitem__(index)
        except Image.DecompressionBombError as err:
            raise ValueError(f'image {self.reader.filename(index, absolute=True)}: {err}. Remove or shrink the '
                             'image, or raise PIL.Image.MAX_IMAGE_PIXELS if it is trusted') from err


def dataset_class_to_idx(dataset: Dataset) -> Optional[Dict[str, int]]:
    """Class name -> index of a timm image dataset (``None`` when its reader has no class map)."""
    if isinstance(dataset, ConcatDataset):
        dataset = dataset.datasets[0]
    class_to_idx = getattr(getattr(dataset, 'reader', None), 'class_to_idx', None)
    return dict(class_to_idx) if class_to_idx is not None else None


def _check_split_folder(root: Path, split: str) -> None:
    from timm.data.dataset_factory import _search_split  # timm's rule: <root>/<split>, else a synonym of it
    if Path(_search_split(str(root), split)) == root:
        raise FileNotFoundError(f'split folder {root / split.split("[")[0]} does not exist: expected '
                                f'{root}/{split}/<class>/<images> (check the split name and the data folder)')


def _check_same_classes(dataset: Dataset, expected: Mapping[str, int], root: Union[str, Path], split: str) -> None:
    found = dataset_class_to_idx(dataset)
    if found is None or dict(found) == dict(expected):
        return
    folder = getattr(dataset.reader, 'root', root)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    differences = []
    if missing:
        differences.append(f'missing (no folder or no images): {missing}')
    if extra:
        differences.append(f'not in the training split: {extra}')
    if not differences:
        differences.append(f'same classes in another order: {found} instead of {dict(expected)}')
    raise ValueError(f'split {split!r} ({folder}) does not have the classes of the training split: '
                     f'{"; ".join(differences)}. Every split needs the same class folders, each with images')


def create_train_loader(
        dataset: Dataset,
        batch_size: int,
        seed: int = 0,
        workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = False,
) -> DataLoader:
    """Shuffled batches from a :class:`ResumableSampler` (this process's share under torch.distributed).

    The order of each epoch and each sample's random augmentation depend only on
    ``seed``, the epoch and the sample (:class:`SeededSamples`): not on the number
    of workers, the processes' random state, or where an interrupted run resumed.
    """
    if batch_size < 1:
        raise ValueError(f'the batch size must be at least 1, got {batch_size}')
    sampler = ResumableSampler(dataset, shuffle=True, seed=seed, drop_last=drop_last, with_epoch=True)
    if drop_last and len(sampler) < batch_size:
        raise ValueError(f'{len(sampler)} training samples per process is fewer than one batch of {batch_size}')
    # the loader's own generator: creating its iterators draws nothing from the global one (dropout's)
    return DataLoader(SeededSamples(dataset, seed), batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, pin_memory=pin_memory, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def create_eval_loader(dataset: Dataset, batch_size: int, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches in order; under torch.distributed each process gets its own shard."""
    sampler = ResumableSampler(dataset, shuffle=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory)
