"""Train the shipped stage-1 WAE on crops of real photographs (held-out photographs excluded).

    nice -n 10 python tools/train_wae_photos.py --name photos --epochs 20

Writes wae_timm/weights/<name>.safetensors and <name>.json (the exact command,
photographs, settings and per-epoch losses). Evaluate with tools/eval_wae.py.
"""
import argparse
import dataclasses
import shlex
import sys

from wae_timm.data.photographs import split_photographs
from wae_timm.experiments.shipped_wae import history_summary, ship_weights, shipped_paths, shipped_provenance, \
    train_on_photographs
from wae_timm.files import refuse_to_overwrite
from wae_timm.train.stage1 import STAGE1_RECIPES

RECIPE = STAGE1_RECIPES['photos']


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
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--init', default=None,
                        help='continue from these weights (shipped name or .safetensors); their provenance is kept')
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args(argv)
    try:  # before any training: a finished run must not fail on an existing output
        refuse_to_overwrite(shipped_paths(args.name), args.overwrite)
    except FileExistsError as err:
        parser.error(str(err))

    training, held_out = split_photographs()
    print(f'training on crops of {[p.name for p in training]}; held out: {[p.name for p in held_out]}')
    settings = dict(epochs=args.epochs, crops_per_epoch=args.crops_per_epoch, batch_size=args.batch_size,
                    crop=args.crop, lr=args.lr, min_lr=args.min_lr, energy_weight=args.energy_weight, seed=args.seed)
    earlier = shipped_provenance(args.init) if args.init and not args.init.endswith('.safetensors') else None
    recipe = dataclasses.replace(RECIPE, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 min_lr=args.min_lr, energy_weight=args.energy_weight)
    wae, history = train_on_photographs(training, recipe, crops_per_epoch=args.crops_per_epoch, crop=args.crop,
                                        seed=args.seed, init=args.init)
    provenance = dict(
        command='python tools/train_wae_photos.py ' + shlex.join(sys.argv[1:] if argv is None else argv),
        recipe='photos',
        training_photographs=[str(p) for p in training], optimizer='Adam, cosine decay to min_lr (per epoch)',
        augmentation='random square crops at scale 0.25-1 of photographs resized to shorter side 512, '
                     'resized to crop, horizontal flips; ImageNet mean/std normalisation',
        settings=settings, history=history_summary(history))
    if args.init:
        provenance['initialised_from'] = earlier or args.init
    print(f'wrote {ship_weights(wae, args.name, provenance, overwrite=args.overwrite)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
