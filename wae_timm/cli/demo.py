"""Demo: build a WAE model, decompose a real photograph, compare cost with the backbone.

    wae-timm demo                             # wae_resnet50 on a Debian wallpaper photograph
    wae-timm demo --model wae_vgg16 --image my.jpg --figure demo.png

The WAE starts from the stage-1 weights shipped in the package (trained on
photographs, see README "Pretrained weights"); the classifier is untrained, so
the demo shows the decomposition and the cost, not predictions. From a
checkout, `python tools/demo.py` is the same command.
"""
import argparse
import time
from pathlib import Path

import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from ..layers.checks import check_finite
from ..data.photographs import find_photographs
from ..experiments.flops import flop_report
from ..data.photographs import denormalize
from ..experiments.reconstruction import energy_share, psnr
from ..experiments.figures import render_decomposition_figure

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm demo``."""
    parser.add_argument('--model', default='wae_resnet50', help='a registered wae_* model')
    parser.add_argument('--image', default=None, help='an image file (default: a photograph from Debian wallpapers)')
    parser.add_argument('--wae-weights', default='photos',
                        help="stage-1 WAE weights: a shipped name or a .safetensors path ('' for random init)")
    parser.add_argument('--figure', default='output/demo_decomposition.png',
                        help='PNG of input, I_L, I_H and reconstruction (replaced on each run)')


def run(args: argparse.Namespace) -> int:
    """Decompose the image, print shapes, PSNR, I_H energy and the FLOP table, write the figure; returns 0."""
    # with the stage-1 decoder: the demo shows how well the shipped WAE reconstructs the photograph
    model = timm.create_model(args.model, wae_weights=args.wae_weights or None, with_decoder=True).eval()
    image_path = args.image or find_photographs()[0]
    transform = create_transform(**resolve_data_config(model=model))
    x = check_finite(transform(Image.open(image_path).convert('RGB')).unsqueeze(0), f'image {image_path}')

    with torch.no_grad():
        start = time.perf_counter()
        out = model.forward_train(x)
        elapsed = time.perf_counter() - start
    wae_source = args.wae_weights or 'random init'
    print(f'{args.model} around {model.backbone_name}; WAE weights: {wae_source}; classifier: untrained')
    print(f'image {image_path} -> input {tuple(x.shape)}')
    print(f'  I_L {tuple(out.low.shape)}  I_H {tuple(out.high.shape)}  reconstruction {tuple(out.reconstruction.shape)}')
    print(f'  low branch features {model.low_channels} ch, high branch {model.high_channels} ch '
          f'(= 1/{model.width_divisor}); logits {tuple(out.logits.shape)}; forward {elapsed * 1000:.0f} ms')
    # the measures of results/wae_photos.csv: PSNR in [0, 1] pixel space (the wae_* models use ImageNet mean/std)
    reconstruction_psnr = psnr(denormalize(x[0]), denormalize(out.reconstruction[0]))
    print(f'  share of energy in I_H {energy_share(out.low, out.high):.3f}; '
          f'reconstruction PSNR {reconstruction_psnr:.1f} dB')
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        cfg = model.pretrained_cfg
        with torch.no_grad():
            render_decomposition_figure([('WAE', model.wae)], x, args.figure, cfg['mean'], cfg['std'], overwrite=True)
        print(f'  figure: {args.figure}')
    print()
    print(flop_report([model.backbone_name, args.model]).markdown())
    return 0
