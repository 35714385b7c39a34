"""``python -m mempool.tools.demo``: the demo without going through the CLI."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
