#!/usr/bin/env python3
"""`wae-timm benchmark --profile` from a checkout: where the WAE models' time goes, component by component.

    PYTHONPATH=. python tools/profile_components.py --threads 2 --overwrite   # -> results/profile_cpu.{csv,md}

Takes the flags of `wae-timm benchmark` (--profile-models, --batch-sizes, --rounds, --clock, ...); see
wae_timm/experiments/profile.py.
"""
import sys

from wae_timm.cli import console_main

if __name__ == '__main__':
    sys.exit(console_main(['benchmark', '--profile', *sys.argv[1:]]))
