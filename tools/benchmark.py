#!/usr/bin/env python3
"""`wae-timm benchmark` (speed benchmark) from a checkout, with the same flags; see wae_timm/cli/."""
import sys

from wae_timm.cli import main

if __name__ == '__main__':
    sys.exit(main(['benchmark', *sys.argv[1:]]))
