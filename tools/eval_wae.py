"""Reconstruction PSNR and band energies of a stage-1 WAE on the held-out photographs, next to fixed transforms.

    python tools/eval_wae.py --weights photos --overwrite   # -> results/wae_photos.csv and results/wae_photos.png
    # the same measures on the photographs it was trained on (how well it fits, next to how well it generalises)
    python tools/eval_wae.py --weights photos --photographs training --out results/wae_photos_training.csv
    # grey copies of them (the luma in all three channels): does the WAE keep a grey photograph grey?
    python tools/eval_wae.py --weights photos --photographs training --grayscale \
        --out results/wae_photos_training_grey.csv

Every held-out photograph (wae_timm.data.photographs.HELD_OUT_PHOTOGRAPHS, never trained on;
those of packages not installed are skipped, with a note) is evaluated whole, shorter side
resized to 256, by the WAE (both bands, and D_L(I_L) alone), CDF 9/7, the colour 6-band scheme
and bicubic x2 down/up (wae_timm.experiments.reconstruction). The PNG is the paper's Fig. 4
(input, I_L, I_H, reconstruction, D_L(I_L) alone) for three of them.
"""
import argparse
import math
import sys
from pathlib import Path

from torchvision.transforms.functional import rgb_to_grayscale

from wae_timm.data.photographs import EVAL_SHORT_SIDE, HELD_OUT_PHOTOGRAPHS, load_photograph, photograph_name, \
    split_photographs
from wae_timm.experiments.reconstruction import evaluate_images, summary
from wae_timm.experiments.shipped_wae import render_reconstruction_figure
from wae_timm.experiments.tables import records_table
from wae_timm.files import write_csv
from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder, load_wae_weights, weights_padding_mode

# the Fig. 4 rows: a macro shot (mate-backgrounds), boats at sunset and a forest (plasma-workspace-wallpapers)
FIGURE_PHOTOGRAPHS = ('LadyBird.jpg', 'EveningGlow', 'Path')


def _cell(value) -> str:
    if isinstance(value, float):
        return '-' if math.isnan(value) else f'{value:.4f}' if value < 1 else f'{value:.2f}'
    return str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', default='photos', help='shipped name or .safetensors path')
    parser.add_argument('--photographs', choices=('held_out', 'training'), default='held_out',
                        help='which photographs: the held-out ones (the report) or those trained on (the fit)')
    parser.add_argument('--grayscale', action='store_true',
                        help='evaluate grey copies of the photographs (their luma in all three channels)')
    parser.add_argument('--out', type=Path, default=Path('results/wae_photos.csv'))
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out CSV and its PNG')
    args = parser.parse_args(argv)
    if args.out.suffix != '.csv':
        parser.error(f'--out is the CSV to write (ending in .csv), got {args.out}')
    figure = args.out.with_suffix('.png')
    existing = [str(p) for p in (args.out, figure) if p.exists()]
    if existing and not args.overwrite:
        parser.error(f'{" and ".join(existing)} exist: pass --overwrite to replace them')

    try:
        wae = WaveletLikeAutoEncoder(padding_mode=weights_padding_mode(args.weights))
        load_wae_weights(wae, args.weights)
    except (FileNotFoundError, ValueError) as err:
        parser.error(f'--weights: {err}')
    training, held_out = split_photographs()
    chosen = held_out if args.photographs == 'held_out' else training
    images = {photograph_name(p): load_photograph(p, EVAL_SHORT_SIDE) for p in chosen}
    if args.grayscale:
        images = {name: rgb_to_grayscale(x, num_output_channels=3) for name, x in images.items()}
    missing = [n for n in HELD_OUT_PHOTOGRAPHS if n not in images] if args.photographs == 'held_out' else []
    if missing:
        print(f'note: held-out photographs {missing} are not installed (bash tools/setup.sh --photographs); '
              'the means below leave them out', file=sys.stderr)
    rows = evaluate_images(images, wae.eval(), wae_label=f'wae ({args.weights})')
    write_csv(args.out, rows)
    shown = {n: images[n] for n in FIGURE_PHOTOGRAPHS if n in images} or dict(list(images.items())[:3])
    render_reconstruction_figure(wae, shown, figure, overwrite=True)
    print(records_table([{k: v for k, v in r.items() if k not in ('height', 'width')} for r in summary(rows)], _cell))
    print(f'wrote {args.out} and {figure}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
