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
import re
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset
from torchvision.transforms.functional import rgb_to_grayscale


__all__ = ['PHOTOGRAPH_DIRS', 'PhotographSource', 'PHOTOGRAPH_SOURCES', 'find_photographs', 'find_all_photographs',
           'write_photograph_folder', 'photograph_name', 'HELD_OUT_PHOTOGRAPHS', 'EVAL_SHORT_SIDE', 'split_photographs',
           'load_photograph', 'normalize', 'denormalize', 'PhotoCrops']

# the photographs of the one wallpaper package tools/setup.sh always installs (the tests use these only)
PHOTOGRAPH_DIRS: Tuple[Path, ...] = (Path('/usr/share/backgrounds/mate/nature'),)


class PhotographSource(NamedTuple):
    """The photographs of one Debian wallpaper package.

    ``names=None``: every JPEG directly in ``directory`` is a photograph. Otherwise
    ``names`` are wallpaper folders in KDE's layout (``<directory>/<name>/contents/images/<W>x<H>.jpg``);
    the largest image of each is the photograph, and the folder name is its name.
    """
    package: str
    directory: Path
    names: Optional[Tuple[str, ...]] = None


# Which wallpapers are photographs was decided by eye, once, over every wallpaper of the four Debian
# packages (drawings, logos, renders, gradients and flat-colour art are left out because a learned
# transform for natural images should not be fitted to them):
# - mate-backgrounds: nature/ holds photographs only (abstract/ and desktop/ are art);
# - plasma-workspace-wallpapers 5.27: the 12 listed below (the other 18 are drawings or renders);
# - gnome-backgrounds 43 (patterns and renders) and ukui-wallpapers (digital art): none.
PHOTOGRAPH_SOURCES: Tuple[PhotographSource, ...] = (
    PhotographSource('mate-backgrounds', PHOTOGRAPH_DIRS[0]),
    PhotographSource('plasma-workspace-wallpapers', Path('/usr/share/wallpapers'), (
        'BytheWater', 'ColdRipple', 'ColorfulCups', 'DarkestHour', 'EveningGlow', 'FallenLeaf', 'Grey', 'Kite',
        'OneStandsOut', 'Path', 'Volna', 'summer_1am')),
)

_JPEG = ('.jpg', '.jpeg')


def find_photographs(dirs: Sequence[Union[str, Path]] = PHOTOGRAPH_DIRS) -> List[Path]:
    """The JPEG photographs directly under ``dirs`` (mate-backgrounds' by default), sorted by name."""
    photos = sorted(p for d in map(Path, dirs) if d.is_dir() for p in d.iterdir() if p.suffix.lower() in _JPEG)
    if not photos:
        raise FileNotFoundError(
            f'no photographs found in {[str(d) for d in dirs]}: run tools/setup.sh '
            '(it installs the mate-backgrounds package) or pass an image path')
    return photos


def _source_photographs(source: PhotographSource) -> List[Path]:
    if source.names is None:
        return sorted(p for p in source.directory.glob('*') if p.suffix.lower() in _JPEG)
    photos = []
    for name in source.names:
        images = [p for p in (source.directory / name / 'contents' / 'images').glob('*') if p.suffix.lower() in _JPEG]
        if images:  # the largest rendition: <W>x<H>.jpg
            photos.append(max(images, key=lambda p: (int(p.stem.split('x')[0]) * int(p.stem.split('x')[1])
                                                     if re.fullmatch(r'\d+x\d+', p.stem) else 0, p.name)))
    return photos


def find_all_photographs(
        sources: Sequence[PhotographSource] = PHOTOGRAPH_SOURCES, require_all: bool = False) -> List[Path]:
    """The photographs of every installed package of ``sources``, in source order.

    ``require_all``: raise if a package is missing (training the shipped weights needs
    them all: ``bash tools/setup.sh --photographs`` installs them).
    """
    photos, missing = [], []
    for source in sources:
        found = _source_photographs(source)
        if not found:
            missing.append(source.package)
        photos += found
    if missing and (require_all or not photos):
        raise FileNotFoundError(
            f'no photographs of the Debian package(s) {missing} (looked in '
            f'{[str(s.directory) for s in sources if s.package in missing]}): run `bash tools/setup.sh --photographs`')
    return photos


def photograph_name(path: Union[str, Path]) -> str:
    """The name a photograph is known by: its file name, or its wallpaper folder in KDE's layout."""
    path = Path(path)
    return path.parents[2].name if path.parent.name == 'images' and path.parent.parent.name == 'contents' \
        else path.name


# never trained on, of varied kinds; Dune, LadyBird and Storm come with mate-backgrounds (the tests use Storm)
HELD_OUT_PHOTOGRAPHS = (
    'Dune.jpg',  # sand texture
    'LadyBird.jpg',  # macro shot, blurred background
    'Storm.jpg',  # sky, smooth gradients
    'ColorfulCups',  # man-made objects, saturated colour
    'EveningGlow',  # boats at sunset, fine detail
    'Grey',  # architecture, black and white lines
    'Kite',  # sky with clouds
    'Path',  # forest, dense foliage
)
EVAL_SHORT_SIDE = 256


def split_photographs(photos: Sequence[Path] = ()) -> Tuple[List[Path], List[Path]]:
    """``(training, held_out)`` photographs (of every installed source by default).

    ``held_out`` are those named in :data:`HELD_OUT_PHOTOGRAPHS` (by :func:`photograph_name`).
    """
    photos = list(photos) or find_all_photographs()
    held_out = [p for p in photos if photograph_name(p) in HELD_OUT_PHOTOGRAPHS]
    training = [p for p in photos if photograph_name(p) not in HELD_OUT_PHOTOGRAPHS]
    if not held_out or not training:
        raise ValueError(f'need training and held-out photographs ({HELD_OUT_PHOTOGRAPHS}), '
                         f'got {[photograph_name(p) for p in photos]}')
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


def write_photograph_folder(root: Union[str, Path], photographs: Sequence[Path], size: Sequence[int],
                            classes: Sequence[str] = ('even', 'odd'), every_validation: int = 3) -> Path:
    """An ImageNet-style tree of ``photographs`` resized to ``size`` (width, height): ``train/`` and ``validation/``.

    Every ``every_validation``-th photograph goes to ``validation/``; the classes alternate.
    """
    from PIL import Image
    root = Path(root)
    for index, path in enumerate(photographs):
        split = 'validation' if index % every_validation == 0 else 'train'
        folder = root / split / classes[index % len(classes)]
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.draft('RGB', (image.width // 8, image.height // 8))
            image.convert('RGB').resize(tuple(size), Image.BICUBIC).save(folder / f'{index:03d}.png')
    return root


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
    ``crop`` (antialiased), flipped horizontally with probability 0.5 and, with probability
    ``grayscale_prob``, made grey (its luma in all three channels, as timm's ``--grayscale-prob``).
    The photographs are decoded once. ``len`` is the number of crops per epoch.
    """

    def __init__(
            self,
            photos: Sequence[Union[str, Path]],
            crop: int = 128,
            crops_per_epoch: int = 1024,
            max_short_side: int = 512,
            scale: Tuple[float, float] = (0.25, 1.0),
            grayscale_prob: float = 0.,
    ) -> None:
        if not photos:
            raise ValueError('PhotoCrops needs at least one photograph')
        if not 0. <= grayscale_prob <= 1.:
            raise ValueError(f'grayscale_prob must be in [0, 1], got {grayscale_prob}')
        self.images = [load_photograph(p, max_short_side) for p in photos]
        self.crop = crop
        self.crops_per_epoch = crops_per_epoch
        self.scale = scale
        self.grayscale_prob = grayscale_prob

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
        # drawn only when asked for, so that runs without grey crops keep their random stream
        if self.grayscale_prob and torch.rand(()) < self.grayscale_prob:
            x = rgb_to_grayscale(x, num_output_channels=3)
        return normalize(x), 0
