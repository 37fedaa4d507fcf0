"""How much a small stage 3 degrades stage-1 WAE weights: L_t per epoch, next to the same run at lr 0.

    python tools/stage3_drift.py --weights photos --with-start --overwrite   # -> results/wae_stage3_drift.csv

For every weights and every setting below, wae_timm.experiments.stage3_drift.stage3_transform_drift
trains a wae_resnet18 on the training photographs (never the held-out ones) with the project's
trainer: stage 2 (the WAE frozen) when the setting has stage-2 epochs, then stage 3 (gamma = 0.001,
SGD) at the setting's lr, and the same stage 3 at lr 0. The ratio of their last epochs' L_t is how
much stage 3 degraded the WAE's reconstruction.
"""
import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from wae_timm.data.photographs import split_photographs
from wae_timm.experiments.shipped_wae import match_start_high_band
from wae_timm.experiments.stage3_drift import Stage3Probe, ratio_summary, stage3_transform_drift
from wae_timm.experiments.tables import records_table
from wae_timm.files import write_csv
from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder, load_wae_weights, weights_padding_mode
from wae_timm.train.wavelet_init import init_as_colour_wavelet

# (img_size, stage-2 epochs, stage-3 lr): the resume test's case (untrained classifier, 32 px) at the
# paper's lr and at 10x, and the paper's path at the paper's size (stage 2, then stage 3 at lr 1e-4)
SETTINGS = ((32, 0, 1e-4), (32, 0, 1e-3), (224, 4, 1e-4))
START_WAVELET = 'bior2.2'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', nargs='+', default=['photos'], help='shipped names or .safetensors paths')
    parser.add_argument('--match-high-band', nargs='+', default=[], metavar='WEIGHTS',
                        help='also these weights with I_H scaled to the start\'s RMS on the training photographs '
                             '(D_H inversely: the same reconstructions; match_start_high_band)')
    parser.add_argument('--with-start', action='store_true',
                        help=f'also the untrained colour-wavelet start ({START_WAVELET}, reflection padding)')
    parser.add_argument('--seeds', type=int, default=3, help='runs per weights and setting (seeds 1..N)')
    parser.add_argument('--out', type=Path, default=Path('results/wae_stage3_drift.csv'))
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    args = parser.parse_args(argv)
    if args.out.suffix != '.csv':
        parser.error(f'--out is the CSV to write (ending in .csv), got {args.out}')
    if args.out.exists() and not args.overwrite:
        parser.error(f'{args.out} exists: pass --overwrite to replace it')
    for weights in [*args.weights, *args.match_high_band]:  # every file is checked before the first run
        try:
            load_wae_weights(WaveletLikeAutoEncoder(padding_mode=weights_padding_mode(weights)), weights)
        except (FileNotFoundError, ValueError) as err:
            parser.error(f'--weights {weights}: {err}')

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        candidates = {weights: weights for weights in args.weights}
        for weights in args.match_high_band:
            wae = WaveletLikeAutoEncoder(padding_mode=weights_padding_mode(weights))
            load_wae_weights(wae, weights)
            matched, scale = match_start_high_band(wae, split_photographs()[0], START_WAVELET)
            path = Path(tmp) / f'matched_{len(candidates)}.safetensors'
            save_file(matched.state_dict(), str(path))
            candidates[f'{weights} (I_H x {scale:.2f})'] = str(path)
        if args.with_start:
            start = Path(tmp) / 'start.safetensors'
            save_file(init_as_colour_wavelet(WaveletLikeAutoEncoder(padding_mode='reflect'), START_WAVELET)
                      .state_dict(), str(start))
            candidates[f'untrained start ({START_WAVELET})'] = str(start)
        runs = [(label, path, setting, seed) for label, path in candidates.items() for setting in SETTINGS
                for seed in range(1, args.seeds + 1)]
        for label, path, (img_size, stage2_epochs, lr), seed in tqdm(runs, desc='stage-3 runs'):
            probe = dataclasses.replace(Stage3Probe(), img_size=img_size, stage2_epochs=stage2_epochs, stage3_lr=lr,
                                        photo_size=(img_size * 3 // 2, img_size * 8 // 7), seed=seed)
            drift = stage3_transform_drift(path, probe)
            rows.append(dict(weights=label, img_size=img_size, stage2_epochs=stage2_epochs, stage3_lr=lr, seed=seed,
                             untouched_lt=drift['untouched'][-1], stage3_lt=drift['stage3'][-1],
                             ratio=drift['stage3'][-1] / drift['untouched'][-1]))
    write_csv(args.out, rows)
    print(records_table(ratio_summary(rows), lambda v: f'{v:.4g}' if isinstance(v, float) else str(v)))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
