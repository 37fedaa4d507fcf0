"""Train the shipped stage-1 WAE on crops of real photographs (held-out photographs excluded).

    bash tools/setup.sh --photographs     # once: the wallpaper packages with photographs
    nice -n 5 python tools/train_wae_photos.py --name photos --checkpoint-dir output/wae_photos_run

Trains with the ``photos`` recipe (wae_timm.train.stage1.STAGE1_RECIPES; flags override single
settings) on crops of every training photograph of wae_timm.data.photographs.PHOTOGRAPH_SOURCES
(all their packages must be installed), then writes wae_timm/weights/<name>.safetensors and
<name>.json (the exact command, photographs, settings and per-epoch losses). With
--checkpoint-dir the run is resumable: run the same command with --resume after an interruption.
Evaluate with tools/eval_wae.py.
"""
import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from wae_timm.data.photographs import PHOTOGRAPH_SOURCES, find_all_photographs, photograph_name, split_photographs
from wae_timm.experiments.shipped_wae import STARTS, history_summary, ship_weights, shipped_paths, \
    match_start_high_band, shipped_provenance, train_on_photographs
from wae_timm.experiments.reconstruction import balance_hidden_layers
from wae_timm.files import refuse_to_overwrite
from wae_timm.layers.autoencoder import PADDING_MODES, WaveletLikeAutoEncoder
from wae_timm.train.wavelet_init import init_as_colour_wavelet
from wae_timm.train.stage1 import STAGE1_RECIPES

RECIPE = STAGE1_RECIPES['photos']
START_WAVELET = 'bior2.2'  # LeGall 5/3 (results/wae_photos.md: why not CDF 9/7)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--name', default='photos', help='shipped weights name (wae_weights=<name>)')
    parser.add_argument('--epochs', type=int, default=RECIPE.epochs)
    parser.add_argument('--crops-per-epoch', type=int, default=1024)
    parser.add_argument('--batch-size', type=int, default=RECIPE.batch_size)
    parser.add_argument('--crop', type=int, default=128)
    parser.add_argument('--lr', type=float, default=RECIPE.lr, help='Adam, cosine decay (the photos recipe)')
    parser.add_argument('--min-lr', type=float, default=RECIPE.min_lr)
    parser.add_argument('--energy-weight', type=float, default=RECIPE.energy_weight,
                        help='lambda of the transform loss')
    parser.add_argument('--low-band-weight', type=float, default=RECIPE.low_band_weight,
                        help='mu of the extra term mu ||I - D_L(I_L)||^2 (0: the paper\'s loss)')
    parser.add_argument('--decoder-weight-decay', type=float, default=RECIPE.decoder_weight_decay,
                        help='L2 penalty on the decoder only')
    parser.add_argument('--start', choices=STARTS, default='colour_wavelet',
                        help='initial weights: the paper\'s Xavier noise or the colour 6-band CDF 9/7 transform')
    parser.add_argument('--start-wavelet', default=START_WAVELET,
                        help='the PyWavelets wavelet of --start colour_wavelet (filters of at most 9 taps); '
                             'LeGall 5/3 by default, exact to the image borders with --padding reflect (CDF 9/7 is not)')
    parser.add_argument('--padding', choices=PADDING_MODES, default=RECIPE.padding_mode,
                        help='how the WAE\'s layers pad (reflect: no loss at the image borders for the wavelet start)')
    parser.add_argument('--grayscale-prob', type=float, default=0.,
                        help='share of crops made grey (timm train.py\'s flag; colour photographs teach no grey)')
    parser.add_argument('--match-start-high-band', action='store_true',
                        help='after training, scale I_H (and D_H inversely) back to the RMS of the colour-wavelet '
                             'start\'s on the training photographs: every reconstruction is kept, and stage 3 does '
                             'not meet a shrunk I_H (results/wae_stage3_drift.md)')
    parser.add_argument('--balance-layers', action='store_true',
                        help='after training (and matching), balance the norms of each hidden ReLU channel\'s weights '
                             '(equi-normalisation; the same function, steadier SGD steps in stage 3)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--init', default=None,
                        help='continue from these weights (shipped name or .safetensors); their provenance is kept')
    parser.add_argument('--checkpoint-dir', type=Path, default=None, help='keep a resumable checkpoint here')
    parser.add_argument('--resume', action='store_true', help='continue the run in --checkpoint-dir')
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args(argv)
    try:  # before any training: a finished run must not fail on an existing output
        refuse_to_overwrite(shipped_paths(args.name), args.overwrite)
        if args.match_start_high_band and (args.start != 'colour_wavelet' or args.init):
            raise ValueError('--match-start-high-band needs --start colour_wavelet (and no --init): '
                             'it matches the start\'s I_H')
        if args.resume and args.checkpoint_dir is None:
            raise ValueError('--resume needs --checkpoint-dir')
        if args.start == 'colour_wavelet':  # a wavelet that does not fit the WAE's layers fails here, not later
            init_as_colour_wavelet(WaveletLikeAutoEncoder(), args.start_wavelet)
        training, held_out = split_photographs(find_all_photographs(PHOTOGRAPH_SOURCES, require_all=True))
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        parser.error(str(err))

    print(f'training on crops of {[photograph_name(p) for p in training]}; '
          f'held out: {[photograph_name(p) for p in held_out]}')
    settings = dict(epochs=args.epochs, crops_per_epoch=args.crops_per_epoch, batch_size=args.batch_size,
                    crop=args.crop, lr=args.lr, min_lr=args.min_lr, energy_weight=args.energy_weight,
                    low_band_weight=args.low_band_weight, decoder_weight_decay=args.decoder_weight_decay,
                    start=args.start, start_wavelet=args.start_wavelet if args.start == 'colour_wavelet' else None,
                    padding_mode=args.padding, grayscale_prob=args.grayscale_prob,
                    match_start_high_band=args.match_start_high_band, balance_layers=args.balance_layers,
                    seed=args.seed)
    earlier = shipped_provenance(args.init) if args.init and not args.init.endswith('.safetensors') else None
    recipe = dataclasses.replace(RECIPE, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 min_lr=args.min_lr, energy_weight=args.energy_weight,
                                 low_band_weight=args.low_band_weight, decoder_weight_decay=args.decoder_weight_decay,
                                 padding_mode=args.padding)
    wae, history = train_on_photographs(training, recipe, crops_per_epoch=args.crops_per_epoch, crop=args.crop,
                                        seed=args.seed, init=args.init, start=args.start,
                                        start_wavelet=args.start_wavelet, grayscale_prob=args.grayscale_prob,
                                        checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    high_band_scale = None
    if args.match_start_high_band:
        wae, high_band_scale = match_start_high_band(wae, training, args.start_wavelet)
        print(f'I_H scaled by {high_band_scale:.4f} (D_H by its inverse) to the start\'s RMS')
    if args.balance_layers:
        wae = balance_hidden_layers(wae)
    provenance = dict(
        command='python tools/train_wae_photos.py ' + shlex.join(sys.argv[1:] if argv is None else argv),
        recipe='photos',
        training_photographs=[str(p) for p in training], optimizer='Adam, cosine decay to min_lr (per epoch)',
        augmentation='random square crops at scale 0.25-1 of photographs resized to shorter side 512, '
                     'resized to crop, horizontal flips'
                     + (f', grey with probability {args.grayscale_prob}' if args.grayscale_prob else '')
                     + '; ImageNet mean/std normalisation',
        settings=settings, history=history_summary(history))
    if high_band_scale is not None:
        provenance['high_band_scale'] = high_band_scale
    if args.init:
        provenance['initialised_from'] = earlier or args.init
    print(f'wrote {ship_weights(wae, args.name, provenance, overwrite=args.overwrite)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
