#!/usr/bin/env python3
"""`wae-timm train` (stages 2 and 3 with the paper's loss) from a checkout, with the same flags; see wae_timm/cli/."""
import sys

from wae_timm.cli import console_main

if __name__ == '__main__':
    sys.exit(console_main(['train', *sys.argv[1:]]))
