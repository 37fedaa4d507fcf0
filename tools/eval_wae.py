"""Reconstruction PSNR and I_H energy of the shipped WAE on held-out photographs, next to CDF 9/7 and bicubic.

    python tools/eval_wae.py --weights photos     # -> results/wae_photos.csv and results/wae_photos.png

Every held-out photograph (wae_timm.data.photographs.HELD_OUT_PHOTOGRAPHS, never
trained on) is evaluated whole, shorter side resized to 256.
"""
import argparse
import csv
import sys
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder, load_wae_weights  # noqa: E402
from wae_timm.data.photographs import EVAL_SHORT_SIDE, denormalize, load_photograph, normalize, split_photographs  # noqa: E402
from wae_timm.experiments.reconstruction import evaluate_images, evaluate_wavelet, summary  # noqa: E402
from wae_timm.experiments.flops import markdown_table  # noqa: E402


def _figure(wae: WaveletLikeAutoEncoder, name: str, x: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        low, high = wae.encode(normalize(x)[None])
        both = denormalize(wae.decode(low, high, *x.shape[-2:])[0]).clamp(0, 1)

    def show_band(band: torch.Tensor) -> torch.Tensor:
        band = band[0]
        return ((band - band.min()) / (band.max() - band.min() + 1e-12)).permute(1, 2, 0)

    panels = [('held-out photograph', x.permute(1, 2, 0)), ('WAE reconstruction', both.permute(1, 2, 0)),
              ('I_L (rescaled)', show_band(low)), ('|I_H| (rescaled)', show_band(high.abs()))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image.numpy())
        ax.set_title(title)
        ax.axis('off')
    fig.suptitle(f'{name}: shipped stage-1 WAE')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', default='photos', help='shipped name or .safetensors path')
    parser.add_argument('--out', type=Path, default=Path('results/wae_photos.csv'))
    args = parser.parse_args(argv)

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
    _figure(wae.eval(), first, images[first], args.out.with_suffix('.png'))
    print(markdown_table(summary(rows)))
    print(f'wrote {args.out} and {args.out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
