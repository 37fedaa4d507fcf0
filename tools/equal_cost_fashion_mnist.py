#!/usr/bin/env python3
"""The equal-cost comparison on Fashion-MNIST: every method x 3 seeds, the backbone at 32/24/20/16 px.

    # train every unfinished (row, seed), appending to results/fashion_mnist_seeds.csv; rerun to continue
    PYTHONPATH=. nice -n 5 python tools/equal_cost_fashion_mnist.py train --seeds 0 1 2
    # cost of every row, side by side (run on a quiet machine: check `uptime`)
    python tools/equal_cost_fashion_mnist.py cost --overwrite
    # mean +- std over seeds, the paper's tables, the Pareto plot
    python tools/equal_cost_fashion_mnist.py report
    # drop finished rows (and the rows continuing them) so that `train` trains them again
    python tools/equal_cost_fashion_mnist.py forget --rows wae_stage3 --seeds 0 1

See wae_timm/experiments/equal_cost.py for every choice (GRID_CONFIG is the one schedule).
"""
import argparse
import logging
from pathlib import Path

import torch

from wae_timm.experiments.equal_cost import GRID_CONFIG, GRID_ROWS, forget_rows, measure_grid_costs, run_grid


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('command', choices=('train', 'cost', 'report', 'forget'))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--rows', nargs='+', default=None, choices=[r.key for r in GRID_ROWS])
    parser.add_argument('--max-rows', type=int, default=None, help='stop after training this many rows')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--results-dir', type=Path, default=Path('results'))
    parser.add_argument('--checkpoint-dir', type=Path, default=Path('output/fashion_mnist_grid'))
    parser.add_argument('--overwrite', action='store_true', help='cost: replace the cost CSV')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if args.command == 'forget' and not args.rows:
        parser.error('forget needs --rows: the rows to train again')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    torch.set_num_threads(args.threads)
    if args.command == 'train':
        run_grid(GRID_CONFIG, args.seeds, args.results_dir, args.checkpoint_dir, rows=args.rows,
                 progress=not args.no_progress, max_rows=args.max_rows)
    elif args.command == 'cost':
        measure_grid_costs(GRID_CONFIG, args.results_dir, rows=args.rows, overwrite=args.overwrite)
    elif args.command == 'forget':
        for record in forget_rows(args.results_dir, args.rows, args.seeds):
            print(f"forgot {record['key']} seed {record['seed']} (top-1 {record['top1']})")
    else:
        from wae_timm.experiments.equal_cost_report import write_grid_report
        print(write_grid_report(args.results_dir))


if __name__ == '__main__':
    main()
