"""`python -m scorepolicy ...` (what `torchrun ... -m scorepolicy train ...` runs): the scorepolicy command."""

import sys

from scorepolicy.cli import main

if __name__ == "__main__":
    sys.exit(main())
