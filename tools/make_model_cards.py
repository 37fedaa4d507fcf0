"""Write (or check) model_cards/<model>.<tag>.md for every published tag, from results/.

    python tools/make_model_cards.py            # after merging new results/
    python tools/make_model_cards.py --check    # exit 1 if a card differs from what results/ gives
"""
import argparse
import sys
from pathlib import Path

from wae_timm.publish.model_card import render_model_card, write_model_cards
from wae_timm.models.wae import published_tags


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('model_cards'))
    parser.add_argument('--results-dir', type=Path, default=Path('results'))
    parser.add_argument('--check', action='store_true', help='compare instead of writing')
    args = parser.parse_args(argv)
    if args.check:
        stale = [t.name for t in published_tags()
                 if not (args.out / f'{t.name}.md').is_file()
                 or (args.out / f'{t.name}.md').read_text(encoding='utf-8') != render_model_card(t, args.results_dir)]
        print(f'stale or missing cards: {stale}' if stale else 'all model cards are up to date')
        return 1 if stale else 0
    for path in write_model_cards(published_tags(), args.out, args.results_dir):
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
