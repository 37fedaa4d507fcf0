#!/usr/bin/env python3
"""`wae-timm benchmark` (speed benchmark) from a checkout, with the same flags; see wae_timm/cli/."""
import sys

from wae_timm.cli import console_main

if __name__ == '__main__':
    sys.exit(console_main(['benchmark', *sys.argv[1:]]))
