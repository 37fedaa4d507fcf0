#!/usr/bin/env python3
"""Demo: build a WAE model, decompose a real photograph, compare cost with the backbone.

    python tools/demo.py                      # wae_resnet50 on a Debian wallpaper photograph
    python tools/demo.py --model wae_vgg16 --image my.jpg
"""
import argparse
import time

import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

import wae_timm
from wae_timm.checks import check_finite
from wae_timm.data import find_photographs
from wae_timm.flops import flop_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='wae_resnet50', help='a registered wae_* model')
    parser.add_argument('--image', default=None, help='an image file (default: a photograph from Debian wallpapers)')
    args = parser.parse_args()

    model = timm.create_model(args.model).eval()
    image_path = args.image or find_photographs()[0]
    transform = create_transform(**resolve_data_config(model=model))
    x = check_finite(transform(Image.open(image_path).convert('RGB')).unsqueeze(0), f'image {image_path}')

    with torch.no_grad():
        start = time.perf_counter()
        out = model.forward_train(x)
        elapsed = time.perf_counter() - start
    print(f'{args.model} around {model.backbone_name}; weights: untrained (random init)')
    print(f'image {image_path} -> input {tuple(x.shape)}')
    print(f'  I_L {tuple(out.low.shape)}  I_H {tuple(out.high.shape)}  reconstruction {tuple(out.reconstruction.shape)}')
    print(f'  low branch features {model.low_channels} ch, high branch {model.high_channels} ch '
          f'(= 1/{model.width_divisor}); logits {tuple(out.logits.shape)}; forward {elapsed * 1000:.0f} ms')
    print()
    print(flop_report([model.backbone_name, args.model]).markdown())


if __name__ == '__main__':
    main()
