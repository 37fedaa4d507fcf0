#!/usr/bin/env python3
"""`wae-timm push` (publish on the Hugging Face Hub) from a checkout, with the same flags; see wae_timm/cli/."""
import sys

from wae_timm.cli import console_main

if __name__ == '__main__':
    sys.exit(console_main(['push', *sys.argv[1:]]))
