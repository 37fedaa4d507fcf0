"""Reconstruction PSNR and I_H energy of the shipped WAE on held-out photographs, next to CDF 9/7 and bicubic.

    python tools/eval_wae.py --weights photos --overwrite   # -> results/wae_photos.csv and results/wae_photos.png

Every held-out photograph (wae_timm.data.photographs.HELD_OUT_PHOTOGRAPHS, never
trained on) is evaluated whole, shorter side resized to 256.
"""
import argparse
import csv
import sys
from pathlib import Path

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from wae_timm.data.photographs import EVAL_SHORT_SIDE, load_photograph, normalize, split_photographs
from wae_timm.experiments.figures import render_decomposition_figure
from wae_timm.experiments.tables import records_table
from wae_timm.experiments.reconstruction import evaluate_images, summary
from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder, load_wae_weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', default='photos', help='shipped name or .safetensors path')
    parser.add_argument('--out', type=Path, default=Path('results/wae_photos.csv'))
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out CSV and its PNG')
    args = parser.parse_args(argv)
    figure = args.out.with_suffix('.png')
    existing = [str(p) for p in (args.out, figure) if p.exists()]
    if existing and not args.overwrite:
        parser.error(f'{" and ".join(existing)} exist: pass --overwrite to replace them')

    wae = WaveletLikeAutoEncoder()
    load_wae_weights(wae, args.weights)
    _, held_out = split_photographs()
    images = {p.name: load_photograph(p, EVAL_SHORT_SIDE) for p in held_out}
    rows = evaluate_images(images, wae, wae_label=f'wae ({args.weights})')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open('w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    first = next(iter(images))
    render_decomposition_figure([(f'shipped stage-1 WAE, {first}', wae.eval())], normalize(images[first])[None],
                                figure, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, overwrite=True)
    print(records_table(summary(rows)))
    print(f'wrote {args.out} and {figure}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
