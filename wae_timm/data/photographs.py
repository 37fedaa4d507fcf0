"""Real photographs for stage-1 WAE training and its evaluation.

The photographs of :func:`wae_timm.data.find_photographs` are split by name:
:data:`HELD_OUT_PHOTOGRAPHS` are never trained on and are evaluated whole;
crops of the others train the WAE.

Scale follows the paper's ImageNet pipeline (images resized to 256, crops of
224): a photograph is seen with its shorter side at :data:`EVAL_SHORT_SIDE`
when evaluated, and training crops are drawn at random scales around it.
Images are in [0, 1]; :func:`normalize` maps them to what a model sees
(ImageNet mean / std, the ``wae_*`` models' default cfg).
"""
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset


__all__ = ['PHOTOGRAPH_DIRS', 'find_photographs', 'HELD_OUT_PHOTOGRAPHS', 'EVAL_SHORT_SIDE', 'split_photographs', 'load_photograph', 'normalize',
           'denormalize', 'PhotoCrops']

# photographs (not drawings or gradients) in Debian's wallpaper packages
PHOTOGRAPH_DIRS: Tuple[Path, ...] = (Path('/usr/share/backgrounds/mate/nature'),)


def find_photographs(dirs: Sequence[Union[str, Path]] = PHOTOGRAPH_DIRS) -> List[Path]:
    """The JPEG photographs under ``dirs``, sorted by name so splits are reproducible."""
    photos = sorted(p for d in map(Path, dirs) if d.is_dir() for p in d.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg'))
    if not photos:
        raise FileNotFoundError(
            f'no photographs found in {[str(d) for d in dirs]}: run tools/setup.sh '
            '(it installs the mate-backgrounds package) or pass an image path')
    return photos


# one per kind of picture: sand texture, a macro shot, a sky; never trained on
HELD_OUT_PHOTOGRAPHS = ('Dune.jpg', 'LadyBird.jpg', 'Storm.jpg')
EVAL_SHORT_SIDE = 256


def split_photographs(photos: Sequence[Path] = ()) -> Tuple[List[Path], List[Path]]:
    """``(training, held_out)`` photographs; ``held_out`` are those named in :data:`HELD_OUT_PHOTOGRAPHS`."""
    photos = list(photos) or find_photographs()
    held_out = [p for p in photos if p.name in HELD_OUT_PHOTOGRAPHS]
    training = [p for p in photos if p.name not in HELD_OUT_PHOTOGRAPHS]
    if not held_out or not training:
        raise ValueError(f'need training and held-out photographs ({HELD_OUT_PHOTOGRAPHS}), got {[p.name for p in photos]}')
    return training, held_out


def load_photograph(path: Union[str, Path], short_side: int = EVAL_SHORT_SIDE) -> torch.Tensor:
    """``[3, H, W]`` float in [0, 1], resized (antialiased) so ``min(H, W) == short_side``, both sides even."""
    from PIL import Image
    with Image.open(path) as image:
        rgb = torch.from_numpy(np.asarray(image.convert('RGB')).copy())
    x = rgb.permute(2, 0, 1).float().div_(255.)
    height, width = x.shape[-2:]
    scale = short_side / min(height, width)
    size = (2 * round(height * scale / 2), 2 * round(width * scale / 2))
    x = F.interpolate(x[None], size=size, mode='bicubic', antialias=True, align_corners=False)[0]
    return x.clamp_(0., 1.)


_MEAN = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> the ImageNet-normalised input of the ``wae_*`` models."""
    return (x - _MEAN.to(x)) / _STD.to(x)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    return x * _STD.to(x) + _MEAN.to(x)


class PhotoCrops(Dataset):
    """``dataset[i] -> (x [3, crop, crop] normalised, 0)``: a random crop of a random training photograph.

    Each crop covers a square of side ``crop / s`` pixels of a photograph whose
    shorter side is ``max_short_side``, with ``s`` uniform in ``scale``, resized to
    ``crop`` (antialiased) and flipped horizontally with probability 0.5. The
    photographs are decoded once. ``len`` is the number of crops per epoch.
    """

    def __init__(
            self,
            photos: Sequence[Union[str, Path]],
            crop: int = 128,
            crops_per_epoch: int = 1024,
            max_short_side: int = 512,
            scale: Tuple[float, float] = (0.25, 1.0),
    ) -> None:
        if not photos:
            raise ValueError('PhotoCrops needs at least one photograph')
        self.images = [load_photograph(p, max_short_side) for p in photos]
        self.crop = crop
        self.crops_per_epoch = crops_per_epoch
        self.scale = scale

    def __len__(self) -> int:
        return self.crops_per_epoch

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        image = self.images[int(torch.randint(len(self.images), ()))]
        low, high = self.scale
        side = int(self.crop / (low + (high - low) * float(torch.rand(()))))
        side = min(side, *image.shape[-2:])
        top = int(torch.randint(image.shape[-2] - side + 1, ()))
        left = int(torch.randint(image.shape[-1] - side + 1, ()))
        x = image[:, top:top + side, left:left + side]
        x = F.interpolate(x[None], size=(self.crop, self.crop), mode='bilinear', antialias=True, align_corners=False)[0]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return normalize(x), 0
