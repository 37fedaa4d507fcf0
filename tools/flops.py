#!/usr/bin/env python3
"""`wae-timm flops` (FLOP report) from a checkout, with the same flags; see wae_timm/cli/."""
import sys

from wae_timm.cli import console_main

if __name__ == '__main__':
    sys.exit(console_main(['flops', *sys.argv[1:]]))
