"""Resolving a resident limit: ``resident_limit=BYTES | "512MiB" | "auto" | None``.

``"auto"`` is the smallest of the limits that apply to this process: the
cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``, of the
process's own cgroup and its ancestors) and, inside a Dask worker, the
worker's ``memory_limit``.  None when none applies.  The pool's core
enforces the result; this module only finds the number.
"""
from __future__ import annotations

import numbers
import os
import sys
from typing import Any, Iterator, List, Optional, Tuple

__all__ = ["resolve_resident_limit", "cgroup_memory_limit", "dask_memory_limit"]

# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX rounded to pages (about
# 2**63); anything this large is no limit.
_V1_UNLIMITED = 1 << 62


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroups(proc_cgroup: str) -> List[Tuple[str, str]]:
    """(controllers, path) pairs of /proc/self/cgroup ("" = the v2 line)."""
    text = _read(proc_cgroup) or ""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[1], parts[2]))
    return out


def _dirs_up(root: str, path: str) -> Iterator[str]:
    """``root/path`` and its ancestors up to ``root``: every cgroup whose
    limit also binds this one (in a container the mount root is the
    container's own cgroup, while /proc/self/cgroup may name a host path)."""
    parts = [p for p in path.split("/") if p and p != ".."]
    for n in range(len(parts), -1, -1):
        yield os.path.join(root, *parts[:n])


def _limit_in(dirs: Iterator[str], filename: str) -> Optional[int]:
    best: Optional[int] = None
    for d in dirs:
        text = _read(os.path.join(d, filename))
        if text is None or text == "max":
            continue
        try:
            value = int(text)
        except ValueError:
            continue
        if 0 < value < _V1_UNLIMITED and (best is None or value < best):
            best = value
    return best


def cgroup_memory_limit(cgroup_root: str = "/sys/fs/cgroup",
                        proc_cgroup: str = "/proc/self/cgroup") -> Optional[int]:
    """The tightest cgroup memory limit on this process in bytes (v1 or v2),
    or None when there is none (or no cgroup file system)."""
    limits = []
    for controllers, path in _own_cgroups(proc_cgroup):
        if controllers == "":                       # v2 unified hierarchy
            limits.append(_limit_in(_dirs_up(cgroup_root, path), "memory.max"))
        elif "memory" in controllers.split(","):    # v1 memory controller
            mount = os.path.join(cgroup_root, "memory")
            if not os.path.isdir(mount):
                mount = os.path.join(cgroup_root, controllers)
            limits.append(_limit_in(_dirs_up(mount, path), "memory.limit_in_bytes"))
    found = [x for x in limits if x is not None]
    return min(found) if found else None


def dask_memory_limit() -> Optional[int]:
    """The ``memory_limit`` of the Dask worker this code runs in, or None
    (not in a worker, no limit, or distributed never imported: this does
    not import it)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return None
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    return int(limit) if limit else None


def resolve_resident_limit(value: Any, *, cgroup_root: str = "/sys/fs/cgroup",
                           proc_cgroup: str = "/proc/self/cgroup") -> Optional[int]:
    """Bytes for a ``resident_limit`` setting.

    ``None`` -> None (no limit); an int > 0 -> itself; a string with a unit
    (``"512MiB"``, ``"4G"``) -> its bytes; ``"auto"`` -> the smallest of the
    cgroup limit and the Dask worker's memory_limit, or None when neither
    applies.  Anything else is a ValueError (or TypeError) naming the value.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            found = [x for x in (cgroup_memory_limit(cgroup_root, proc_cgroup),
                                 dask_memory_limit()) if x is not None]
            return min(found) if found else None
        from mempool._units import parse_size
        try:
            value = parse_size(value)
        except ValueError as exc:
            raise ValueError(f"resident_limit={value!r}: {exc}, or 'auto'") from None
    elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"resident_limit must be a number of bytes, a size string "
                        f"('512MiB'), 'auto' or None, got {value!r}")
    value = int(value)
    if value <= 0:
        raise ValueError(f"resident_limit must be > 0 bytes (None: no limit), got {value!r}")
    return value
