"""``python -m wae_timm COMMAND ...``: the ``wae-timm`` command line (see :mod:`wae_timm.cli`)."""
import sys

from .cli import console_main

if __name__ == '__main__':
    sys.exit(console_main())
