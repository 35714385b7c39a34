"""``python -m mempool``: see :mod:`mempool.cli`."""
import sys

from mempool.cli import main

if __name__ == "__main__":
    sys.exit(main())
