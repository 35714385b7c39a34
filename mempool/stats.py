"""Typed, immutable view of a pool's counters (``Pool.stats()``).

The core hands up a flat ``mp_stats`` snapshot; this module names every field,
derives the figures people actually ask about (how fragmented, how much is
held per byte in use) and renders them.  Nothing here touches the pool.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from mempool.errors import ERROR_NAMES, format_bytes

__all__ = ["PoolStats", "SizeClassStats", "format_bytes"]


@dataclass(frozen=True)
class SizeClassStats:
    """One small-block size class.

    block_size:  bytes per block of the class.
    slabs:       slabs the class holds now.
    blocks:      blocks in those slabs (free and live).
    live_blocks: blocks handed out and not yet freed.
    live_bytes:  requested bytes of those live blocks.
    """

    block_size: int
    slabs: int
    blocks: int
    live_blocks: int
    live_bytes: int

    @property
    def utilisation(self) -> float:
        """Fraction of the class's blocks that are live (0.0 when it has none)."""
        return self.live_blocks / self.blocks if self.blocks else 0.0


@dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of one pool's counters.

    Bytes
      live_bytes:          sum of the requested sizes of live blocks.
      peak_live_bytes:     highest live_bytes seen (may lag by up to 64 KiB
                           per thread for small blocks, which are counted in
                           per-thread batches).
      allocated_bytes:     sum of the rounded (block) sizes of live blocks.
      reserved_bytes:      address space the pool holds (arenas + mappings).
      resident_bytes:      estimate of pages touched and not given back.
      peak_resident_bytes: highest resident_bytes seen.
      free_bytes:          free bytes inside arenas.
      dirty_free_bytes:    of those, still resident (waiting for the decay).
      largest_free_bytes:  largest free span: a request up to this size fits
                           without reserving more address space.
      released_bytes:      total bytes given back to the OS so far.
      metadata_bytes:      bookkeeping held outside the arenas.
    Calls
      alloc_count:         successful allocations (calloc included).
      free_count:          successful frees.
      realloc_count:       successful reallocs (their internal allocation
                           and free are not counted again).
      calloc_count:        successful callocs (also in alloc_count).
      small_alloc_count, large_alloc_count, direct_alloc_count: allocations
                           served by slabs, by the large-block heap and by a
                           mapping of their own.
    OS calls
      mmap_count, munmap_count, madvise_count, mremap_count.
    Structure
      arena_count:         arenas reserved now.
      direct_count:        blocks living in a mapping of their own.
      thread_cache_count:  per-thread caches attached to the pool.
      free_span_count:     free spans in the large-block heap.
    Errors
      errors:              misuse caught by the core, by error name
                           ("MP_EDOUBLEFREE", ...), successes excluded.
      error_total:         sum of those.
    Classes
      classes:             one SizeClassStats per small size class.
    """

    live_bytes: int
    peak_live_bytes: int
    allocated_bytes: int
    reserved_bytes: int
    resident_bytes: int
    peak_resident_bytes: int
    free_bytes: int
    dirty_free_bytes: int
    largest_free_bytes: int
    released_bytes: int
    metadata_bytes: int
    alloc_count: int
    free_count: int
    realloc_count: int
    calloc_count: int
    small_alloc_count: int
    large_alloc_count: int
    direct_alloc_count: int
    mmap_count: int
    munmap_count: int
    madvise_count: int
    mremap_count: int
    arena_count: int
    direct_count: int
    thread_cache_count: int
    free_span_count: int
    errors: Mapping[str, int] = field(default_factory=dict)
    error_total: int = 0
    classes: Tuple[SizeClassStats, ...] = ()

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> "PoolStats":
        """Build from the dict the extension returns (``_stats_raw``)."""
        names = [f.name for f in dataclasses.fields(cls)
                 if f.name not in ("errors", "classes")]
        values = {name: int(raw[name]) for name in names}
        errors = {ERROR_NAMES.get(-i, f"MP_E{i}"): int(n)
                  for i, n in enumerate(raw["errors"]) if i > 0}
        classes = tuple(SizeClassStats(*map(int, row)) for row in raw["classes"])
        return cls(errors=errors, classes=classes, **values)

    @property
    def fragmentation(self) -> float:
        """1 - live/resident: the share of resident memory not holding live
        data (0.0 when nothing is resident)."""
        if self.resident_bytes <= 0:
            return 0.0
        return 1.0 - self.live_bytes / self.resident_bytes

    @property
    def resident_over_live(self) -> Optional[float]:
        """resident/live: bytes held in RAM per byte in use (None when
        nothing is live)."""
        if self.live_bytes <= 0:
            return None
        return self.resident_bytes / self.live_bytes

    @property
    def live_blocks(self) -> int:
        """Blocks handed out and not freed (allocations minus frees)."""
        return max(0, self.alloc_count - self.free_count)

    def as_dict(self) -> Dict[str, Any]:
        """Plain dict (JSON-ready) of every field plus the derived figures."""
        out: Dict[str, Any] = dataclasses.asdict(self)
        out["errors"] = dict(self.errors)
        out["classes"] = [dataclasses.asdict(c) for c in self.classes]
        out["fragmentation"] = self.fragmentation
        out["resident_over_live"] = self.resident_over_live
        out["live_blocks"] = self.live_blocks
        return out

    def summary(self) -> str:
        """One line: live, peak, resident, reserved, fragmentation."""
        return (f"live {format_bytes(self.live_bytes)} "
                f"(peak {format_bytes(self.peak_live_bytes)}), "
                f"resident {format_bytes(self.resident_bytes)} "
                f"(peak {format_bytes(self.peak_resident_bytes)}), "
                f"reserved {format_bytes(self.reserved_bytes)}, "
                f"fragmentation {self.fragmentation:.1%}")
