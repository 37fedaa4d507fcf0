"""Demo: a pretrained WAE classifier on real Fashion-MNIST test images, then the shipped WAE on a photograph.

    wae-timm demo                                  # the README's first command (python tools/demo.py)
    wae-timm demo --test-images 1000               # a faster run on the first 1000 test images
    wae-timm demo --model wae_vgg16 --image my.jpg --figure demo.png

1. `timm.create_model('wae_resnet18.fmnist', pretrained=True)` loads the weights
   shipped in the repository's hub/ folder (tools/setup.sh installs them into the
   local Hugging Face cache; with the Hub repo published they download the same
   way), classifies the real Fashion-MNIST test split and prints its top-1 next
   to the number results/pretrained_weights.csv records for the same file
   (matched by sha256). A PNG shows a few test images with I_L, I_H and the
   predicted and true labels.
2. The stage-1 WAE shipped in the package (`wae_weights='photos'`) decomposes a
   real photograph (input, I_L, I_H, reconstruction), and fvcore counts params and
   FLOPs of the WAE model next to its backbone.

Without installed weights it prints how to install them and exits with status 2.
From a checkout, `python tools/demo.py` is the same command.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from PIL import Image
from timm.data import create_transform, resolve_data_config

from ..data.photographs import denormalize, find_photographs
from ..experiments.figures import render_decomposition_figure
from ..experiments.flops import flop_report
from ..experiments.reconstruction import energy_share, psnr
from ..layers.checks import check_finite
from ..models.pretrained import SHIPPED_FOLDERS, WEIGHTS_FILENAME, MissingWeightsError
from ..publish.hub import find_tag
from ..publish.measurements import (MEASUREMENTS_FILE, evaluate_test_split, find_measurement, find_results_dir,
                                    sha256_of_file)

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``wae-timm demo``."""
    parser.add_argument('--tag', default='wae_resnet18.fmnist', help='a pretrained Fashion-MNIST tag')
    parser.add_argument('--test-images', type=int, default=None,
                        help='classify the first N test images (default: all 10000)')
    parser.add_argument('--examples', type=int, default=6, help='test images shown in --classification-figure')
    parser.add_argument('--classification-figure', default='output/demo_fashion_mnist.png',
                        help='PNG of test images, I_L, I_H, predicted and true labels (replaced on each run)')
    parser.add_argument('--results-dir', type=Path, default=None,
                        help="where results/pretrained_weights.csv is (default: ./results, else the checkout's)")
    parser.add_argument('--model', default='wae_resnet50', help='a registered wae_* model for the photograph')
    parser.add_argument('--image', default=None, help='an image file (default: a photograph from Debian wallpapers)')
    parser.add_argument('--wae-weights', default='photos',
                        help="stage-1 WAE weights: a shipped name or a .safetensors path ('' for random init)")
    parser.add_argument('--figure', default='output/demo_decomposition.png',
                        help='PNG of input, I_L, I_H and reconstruction (replaced on each run)')


def _classify(args: argparse.Namespace) -> int:
    """Part 1: the pretrained tag on the Fashion-MNIST test split; returns 0, or 2 without installed weights."""
    tag = find_tag(args.tag)
    for flag, value in (('--test-images', args.test_images), ('--examples', args.examples)):
        if value is not None and not 0 < value <= 10000:
            raise ValueError(f'{flag} must be in 1..10000 (the test split has 10000 images), got {value}')
    try:
        model = timm.create_model(tag.name, pretrained=True).eval()
    except MissingWeightsError:
        print(f'demo: the weights of {tag.name} are not installed: run `bash tools/setup.sh` (or `wae-timm '
              f'install-weights {SHIPPED_FOLDERS}/{tag.name}`); online before the Hub repo {tag.hf_hub_id} holds '
              'them, also set HF_HUB_OFFLINE=1', file=sys.stderr)
        return 2
    weights: Optional[str] = try_to_load_from_cache(tag.hf_hub_id, WEIGHTS_FILENAME)
    digest = sha256_of_file(weights) if isinstance(weights, str) else None
    print(f"1. timm.create_model('{tag.name}', pretrained=True): {tag.architecture}, "
          f'{model.pretrained_cfg["num_classes"]} classes, input {tuple(model.pretrained_cfg["input_size"])}')
    print(f'   weights: {weights} (sha256 {digest})')

    start = time.perf_counter()
    result = evaluate_test_split(model, tag.dataset, args.test_images)
    elapsed = time.perf_counter() - start
    count = result['count']
    print(f'   Fashion-MNIST test split, {"all " if args.test_images is None else "the first "}{count} real images '
          f'(wae_timm.data.FashionMNIST): top-1 {result["top1"]:.2f}%, top-5 {result["top5"]:.2f}% '
          f'(measured now, {elapsed:.1f} s)')
    results_dir = find_results_dir(args.results_dir)
    recorded = find_measurement(results_dir, tag.name, digest, count) if digest else None
    if recorded is not None:
        same = 'the same' if float(recorded['top1']) == result['top1'] else 'DIFFERENT from the number measured now'
        print(f'   recorded in {results_dir / MEASUREMENTS_FILE} for this sha256 on the same {count} images: '
              f'top-1 {float(recorded["top1"]):.2f}% ({same})')
    else:
        any_row = find_measurement(results_dir, tag.name, digest) if digest else None
        print(f'   recorded: no row of {MEASUREMENTS_FILE} measured this file on {count} images'
              + (f'; on {any_row["images"]}: top-1 {float(any_row["top1"]):.2f}%' if any_row else ' (not measured)'))

    examples = _first_test_images(model, args.examples)
    if args.classification_figure:
        x, labels, predicted = examples
        names = model.pretrained_cfg['label_names']
        captions = [f'pred {names[p]} / true {names[t]}' for p, t in zip(predicted.tolist(), labels.tolist())]
        cfg = model.pretrained_cfg
        with torch.no_grad():
            render_decomposition_figure([('', model.wae)], x, args.classification_figure, cfg['mean'], cfg['std'],
                                        overwrite=True, image_labels=captions)
        hits = int((predicted == labels).sum())
        print(f'   figure: {args.classification_figure} (the first {len(labels)} test images, I_L, I_H; '
              f'{hits}/{len(labels)} predicted correctly)')
    return 0


def _first_test_images(model: torch.nn.Module, count: int):
    """The first ``count`` test images, their labels and the model's predictions."""
    from ..data.fashion_mnist import FashionMNIST
    data = FashionMNIST('test', indices=range(count))
    x = torch.stack([data[i][0] for i in range(count)])
    labels = torch.tensor([data[i][1] for i in range(count)])
    with torch.no_grad():
        predicted = model(x).argmax(1)
    return x, labels, predicted


def _decompose_photograph(args: argparse.Namespace) -> None:
    """Part 2: the shipped stage-1 WAE on a photograph, and the params/FLOPs table."""
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
    print(f'2. {args.model} around {model.backbone_name}; WAE weights: {wae_source} (shipped stage-1 WAE); '
          'classifier untrained (only the decomposition is shown)')
    print(f'   image {image_path} -> input {tuple(x.shape)}')
    print(f'   I_L {tuple(out.low.shape)}  I_H {tuple(out.high.shape)}  reconstruction {tuple(out.reconstruction.shape)}')
    print(f'   low branch features {model.low_channels} ch, high branch {model.high_channels} ch '
          f'(= 1/{model.width_divisor}); forward {elapsed * 1000:.0f} ms')
    # the measures of results/wae_photos.csv: PSNR in [0, 1] pixel space (the wae_* models use ImageNet mean/std)
    reconstruction_psnr = psnr(denormalize(x[0]), denormalize(out.reconstruction[0]))
    print(f'   measured now on this photograph: share of energy in I_H {energy_share(out.low, out.high):.3f}; '
          f'reconstruction PSNR {reconstruction_psnr:.1f} dB (held-out photographs: results/wae_photos.csv)')
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        cfg = model.pretrained_cfg
        with torch.no_grad():
            render_decomposition_figure([('WAE', model.wae)], x, args.figure, cfg['mean'], cfg['std'], overwrite=True)
        print(f'   figure: {args.figure}')
    print()
    print('3. params and FLOPs, counted now with fvcore at batch 1 (as results/flops.md):')
    print(flop_report([model.backbone_name, args.model]).markdown())


def run(args: argparse.Namespace) -> int:
    """Classify Fashion-MNIST with the pretrained tag, decompose a photograph, print the FLOP table; returns 0 or 2."""
    status = _classify(args)
    if status:
        return status
    print()
    _decompose_photograph(args)
    return 0
