#!/usr/bin/env python3
"""Render input | I_L | I_H | reconstruction for trained WAE encoders (the paper's Fig. 3 and 4) as a PNG.

    # the WAE of stage 1 and the Decomposition+CNN encoder of the Fashion-MNIST reproduction
    PYTHONPATH=. python tools/visualize_decomposition.py \\
        --front-end "WAE=output/fashion_mnist/fashion_mnist_wae_stage1.safetensors" \\
        --front-end "Decomposition+CNN=output/fashion_mnist/fashion_mnist_decomposition.safetensors" \\
        --fashion-mnist-test 0 1 2 --out results/fashion_mnist_decomposition.png

    # a WAE trained on photographs, on image files (resized to --size, ImageNet mean/std)
    PYTHONPATH=. python tools/visualize_decomposition.py --front-end WAE=my_wae.safetensors \\
        --images a.jpg b.jpg --out wae.png

A checkpoint may hold a WAE alone or a whole classifier (its ``wae.*`` weights are used).
I_L and I_H are contrast-stretched per panel (min -> black, max -> white); see wae_timm/experiments/figures.py.
"""
import argparse
from pathlib import Path
from typing import List, Tuple

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from wae_timm.layers.checks import check_finite
from wae_timm.experiments.figures import load_front_end, render_decomposition_figure


def _labelled_path(text: str) -> Tuple[str, Path]:
    label, sep, path = text.partition('=')
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f'expected LABEL=PATH.safetensors, got {text!r}')
    return label, Path(path)


def _image_files(paths: List[Path], size: int, in_chans: int, mean, std) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms import functional as TF
    batch = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f'image {path} does not exist')
        image = Image.open(path).convert('L' if in_chans == 1 else 'RGB')
        x = TF.to_tensor(TF.center_crop(TF.resize(image, size), size))
        batch.append(TF.normalize(x, mean, std))
    return check_finite(torch.stack(batch), 'input images')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--front-end', type=_labelled_path, action='append', required=True,
                        help='LABEL=PATH of a .safetensors WAE or classifier checkpoint (repeatable: one block each)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--fashion-mnist-test', type=int, nargs='+', help='indices of Fashion-MNIST test images')
    source.add_argument('--images', type=Path, nargs='+', help='image files')
    parser.add_argument('--size', type=int, default=224, help='side of the centre crop of --images')
    parser.add_argument('--out', type=Path, required=True, help='PNG to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    args = parser.parse_args()

    front_ends = [(label, load_front_end(path)) for label, path in args.front_end]
    in_chans = {fe.in_chans for _, fe in front_ends}
    if len(in_chans) != 1:
        parser.error(f'all front ends must take the same input channels, got {sorted(in_chans)}')
    in_chans = in_chans.pop()
    if args.fashion_mnist_test is not None:
        from wae_timm.data import FashionMNIST
        if in_chans != 3:
            parser.error(f'Fashion-MNIST inputs are 3-channel (grey repeated); the front ends take {in_chans}')
        dataset = FashionMNIST('test', indices=args.fashion_mnist_test)
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        mean, std = (dataset.mean,) * 3, (dataset.std,) * 3
    else:
        mean = IMAGENET_DEFAULT_MEAN if in_chans == 3 else (0.5,)
        std = IMAGENET_DEFAULT_STD if in_chans == 3 else (0.5,)
        images = _image_files(args.images, args.size, in_chans, mean, std)
    path = render_decomposition_figure(front_ends, images, args.out, mean, std, overwrite=args.overwrite)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
