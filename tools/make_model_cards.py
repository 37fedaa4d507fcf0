"""Rewrite (or check) the model card of every shipped folder, hub/<model>.<tag>/README.md, from results/.

    python tools/make_model_cards.py            # after merging new results/
    python tools/make_model_cards.py --check    # exit 1 if a card differs from what results/ gives

A card is rendered for the sha256 of the folder's model.safetensors, so it quotes
accuracy only from results/pretrained_weights.csv rows that measured that file
(see wae_timm/publish/model_card.py). Only README.md is written; the weights and
config.json are never touched. A published tag without a folder is reported.
"""
import argparse
import sys
from pathlib import Path

from wae_timm.models.wae import published_tags
from wae_timm.publish.measurements import sha256_of_file
from wae_timm.publish.model_card import render_model_card


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hub-dir', type=Path, default=Path('hub'), help='folder of the shipped tag folders')
    parser.add_argument('--results-dir', type=Path, default=Path('results'))
    parser.add_argument('--check', action='store_true', help='compare instead of writing')
    args = parser.parse_args(argv)
    stale, missing = [], []
    for tag in published_tags():
        folder = args.hub_dir / tag.name
        if not (folder / 'model.safetensors').is_file():
            missing.append(tag.name)
            continue
        card = render_model_card(tag, args.results_dir, weights_sha256=sha256_of_file(folder / 'model.safetensors'))
        path = folder / 'README.md'
        if path.is_file() and path.read_text(encoding='utf-8') == card:
            continue
        stale.append(tag.name)
        if not args.check:
            path.write_text(card, encoding='utf-8')
            print(f'wrote {path}')
    if missing:
        print(f'no shipped folder (not in {args.hub_dir}/): {missing}', file=sys.stderr)
    if args.check:
        print(f'stale or missing cards: {stale}' if stale else 'all model cards are up to date')
        return 1 if stale else 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
