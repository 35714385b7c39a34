"""``python -m mempool.arrow {build,info}``: build the Arrow adapter for the
installed pyarrow ahead of time (images, clusters: ``MEMPOOL_ARROW_CACHE``
says where), or show where it is and what it was built with."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mempool.arrow",
                                     description="mempool's Arrow adapter.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    build = sub.add_parser("build", help="build the adapter for the installed pyarrow")
    build.add_argument("--force", action="store_true", help="rebuild even if it is cached")
    sub.add_parser("info", help="where the adapter is, and what it was built with")
    ns = parser.parse_args(argv)
    from mempool.arrow import _build
    try:
        if ns.command == "build":
            path = _build.build(force=ns.force)
            print(path)
            return 0
        if ns.command == "info":
            import pyarrow
            directory = _build.build_dir()
            print(json.dumps({"pyarrow": pyarrow.__version__, "cache": str(_build.cache_root()),
                              "adapter": str(directory), "built": directory.exists(),
                              "build": _build.build_info(directory)}, indent=1))
            return 0
    except (ImportError, OSError) as exc:
        print(f"python -m mempool.arrow {ns.command}: {exc}", file=sys.stderr)
        return 1
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
