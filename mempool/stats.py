"""Typed, immutable view of a pool's counters (``Pool.stats()``).

The core hands up a flat ``mp_stats`` snapshot and the list of its figures
(``MP_STATS_LIST``, whence PoolStats' fields and their documentation); this module
derives the figures people actually ask about (how fragmented, how much is
held per byte in use) and renders them.  Nothing here touches the pool.
"""
from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from mempool import _core
from mempool.errors import ERROR_NAMES, format_bytes

__all__ = ["ArrowShare", "DefragReport", "LayerStats", "PoolStats", "SizeClassStats",
           "STATS_FIELDS", "format_bytes", "format_summary", "LAYER_NAMES"]


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
class ArrowShare:
    """Arrow's share of a pool (:mod:`mempool.arrow`), counted by the adapter
    (its blocks are also in the pool's own figures).

    bytes_allocated:       bytes Arrow holds now (its requested sizes).
    max_memory:            highest bytes_allocated seen.
    total_bytes_allocated: bytes Arrow ever asked for.
    num_allocations:       Arrow's allocations (and growing reallocations).
    frees, reallocs:       its frees and reallocations.
    refused:               requests the pool refused (capacity, resident
                           limit): Arrow's OutOfMemory.
    errors:                pointers Arrow handed back that the pool could
                           not free or resize (ignored, warned about once).
    """

    bytes_allocated: int
    max_memory: int
    total_bytes_allocated: int
    num_allocations: int
    frees: int
    reallocs: int
    refused: int
    errors: int


@dataclass(frozen=True)
class LayerStats:
    """What one layer of the pool holds (``PoolStats.layers``).

    live_bytes:         requested bytes of its live blocks.
    in_use_bytes:       bytes its live blocks occupy (small: its slabs' bytes).
    free_bytes:         free bytes it holds (small: free blocks inside slabs,
                        cached by threads or not).
    dirty_free_bytes:   of those, still resident (page and huge heaps).
    largest_free_bytes: its largest free span.
    resident_bytes:     its resident pages (the page heap's include the slabs').
    reserved_bytes:     its address space (the page heap's include the slabs').
    blocks:             live blocks (not counted for the page heap: 0).
    """

    live_bytes: int = 0
    in_use_bytes: int = 0
    free_bytes: int = 0
    dirty_free_bytes: int = 0
    largest_free_bytes: int = 0
    resident_bytes: int = 0
    reserved_bytes: int = 0
    blocks: int = 0


#: Names of ``PoolStats.layers``, in order (mempool.h's MP_LAYER_*).
LAYER_NAMES = ("small", "pages", "huge", "direct")

#: ``(name, unit, doc)`` of every scalar figure of a pool's snapshot, in
#: order: the core's ``MP_STATS_LIST`` (``mempool.h``), the one list of them,
#: from which PoolStats' fields and their documentation are made.
STATS_FIELDS: Tuple[Tuple[str, str, str], ...] = tuple(_core.stats_fields())

# The fields PoolStats adds to those figures: what from_raw builds itself.
_COMPOSITE_DOC = """\
  free_histogram:      free spans by size: (lower bound in bytes, spans,
                       bytes) per power-of-two bin from 4 KiB up, the last
                       bin holding everything larger.
  process_rss_bytes:   the whole process's resident set when the snapshot
                       was taken, next to the pool's estimate; None when
                       unknown.
  errors:              misuse caught by the core, by error name
                       ("MP_EDOUBLEFREE", ...), successes excluded.
  classes:             one SizeClassStats per small size class.
  arrow:               Arrow's share (an ArrowShare) once Arrow has used
                       the pool (mempool.arrow), else None.
  layers:              one LayerStats per layer, by name: "small" (slabs),
                       "pages" (the page heap's large blocks), "huge" (the
                       huge-page heap), "direct" (direct mappings).

``str()`` of a snapshot is its memory_summary(): a table for people."""


def _pool_stats_doc() -> str:
    lines = ["A consistent snapshot of one pool's counters (``Pool.stats()``).", "",
             "The core's figures (unit in brackets):"]
    for name, unit, doc in STATS_FIELDS:
        lines.append(textwrap.fill(f"{name} [{unit}]: {doc}.", 76, initial_indent="  ",
                                   subsequent_indent="      "))
    return "\n".join(lines + ["", "Built from them:", _COMPOSITE_DOC, ""])


class _PoolStatsMethods:
    """What PoolStats derives from its fields (the fields themselves come
    from the core's list: see PoolStats)."""

    __slots__ = ()

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> "PoolStats":
        """Build from the dict the extension returns (``_stats_raw``)."""
        values = {name: int(raw[name]) for name, _, _ in STATS_FIELDS}
        errors = {ERROR_NAMES.get(-i, f"MP_E{i}"): int(n)
                  for i, n in enumerate(raw["errors"]) if i > 0}
        classes = tuple(SizeClassStats(*map(int, row)) for row in raw["classes"])
        histogram = tuple(
            (4096 << i, int(count), int(nbytes))
            for i, (count, nbytes) in enumerate(
                zip(raw["free_histogram_count"], raw["free_histogram_bytes"])))
        rss = raw.get("process_rss_bytes")
        arrow = raw.get("arrow")
        layers = {name: LayerStats(**{k: int(v) for k, v in row.items()})
                  for name, row in zip(LAYER_NAMES, raw.get("layers", ()))}
        return cls(errors=errors, classes=classes, free_histogram=histogram,
                   process_rss_bytes=None if rss is None else int(rss),
                   arrow=None if arrow is None else ArrowShare(**arrow), layers=layers,
                   **values)

    @property
    def cached_bytes(self) -> int:
        """Resident bytes the pool keeps only as a cache, which its decay or
        :meth:`~mempool.Pool.trim` gives back: free pages awaiting the decay
        (``dirty_free_bytes``) and the slabs of size classes with no live
        block."""
        idle_slabs = sum(c.blocks * c.block_size for c in self.classes if not c.live_blocks)
        return self.dirty_free_bytes + idle_slabs

    @property
    def fragmentation(self) -> float:
        """Share of the resident memory that is stuck: it holds no live data,
        yet the decay and :meth:`~mempool.Pool.trim` cannot give it back.

        ``(resident - live - cached) / resident`` (see :attr:`cached_bytes`):
        rounding of live blocks to their size class or granule, and free
        blocks in slabs that also hold live ones.  Free pages kept as a cache
        are not fragmentation, so an idle pool (nothing live) reads 0.0, as
        does an empty one or one with nothing resident.  The denominator is
        all resident memory, cache included, so that the figure stays
        steady as a pool empties (a few live bytes in one slab read ~0, not
        ~1); right after a large free it dips until the decay returns that
        cache.  An upper bound: a wholly free slab of a class that still
        has live blocks elsewhere counts as stuck.
        """
        if self.resident_bytes <= 0 or self.live_bytes <= 0:
            return 0.0
        stuck = self.resident_bytes - self.live_bytes - self.cached_bytes
        return min(1.0, max(0.0, stuck / self.resident_bytes))

    @property
    def resident_over_live(self) -> Optional[float]:
        """resident/live: bytes held in RAM per byte in use (None when
        nothing is live)."""
        if self.live_bytes <= 0:
            return None
        return self.resident_bytes / self.live_bytes

    @property
    def peak_resident_over_peak_live(self) -> Optional[float]:
        """peak resident / peak live: the memory the pool needed at its
        worst per byte the program had live (None before anything was live)."""
        if self.peak_live_bytes <= 0:
            return None
        return self.peak_resident_bytes / self.peak_live_bytes

    @property
    def internal_waste_bytes(self) -> int:
        """Bytes lost to rounding: block sizes minus requested sizes of the
        live blocks (size classes and page granules)."""
        return max(0, self.allocated_bytes - self.live_bytes)

    @property
    def largest_free_share(self) -> Optional[float]:
        """largest free span / all free bytes: 1.0 when the free memory is
        one run, near 0 when it is scattered holes (None when nothing is free)."""
        if self.free_bytes <= 0:
            return None
        return self.largest_free_bytes / self.free_bytes

    @property
    def live_blocks(self) -> int:
        """Blocks handed out and not freed (allocations minus frees)."""
        return max(0, self.alloc_count - self.free_count)

    def as_dict(self) -> Dict[str, Any]:
        """Plain dict (JSON-ready) of every field plus the derived figures."""
        out: Dict[str, Any] = dataclasses.asdict(self)
        out["errors"] = dict(self.errors)
        out["classes"] = [dataclasses.asdict(c) for c in self.classes]
        out["layers"] = {k: dataclasses.asdict(v) for k, v in self.layers.items()}
        out["free_histogram"] = [list(row) for row in self.free_histogram]
        out["fragmentation"] = self.fragmentation
        out["cached_bytes"] = self.cached_bytes
        out["resident_over_live"] = self.resident_over_live
        out["peak_resident_over_peak_live"] = self.peak_resident_over_peak_live
        out["internal_waste_bytes"] = self.internal_waste_bytes
        out["largest_free_share"] = self.largest_free_share
        out["live_blocks"] = self.live_blocks
        return out

    def memory_summary(self, title: str = "mempool memory summary") -> str:
        """A table for people (jemalloc's malloc_stats_print, PyTorch's
        memory_summary): bytes now and at their peak, by layer, how
        fragmented, meshing, what went back to the OS, errors caught."""
        return format_summary(self, title)

    def __str__(self) -> str:
        return self.memory_summary()

    def summary(self) -> str:
        """One line: live, peak, resident, reserved, fragmentation."""
        return (f"live {format_bytes(self.live_bytes)} "
                f"(peak {format_bytes(self.peak_live_bytes)}), "
                f"resident {format_bytes(self.resident_bytes)} "
                f"(peak {format_bytes(self.peak_resident_bytes)}), "
                f"reserved {format_bytes(self.reserved_bytes)}, "
                f"fragmentation {self.fragmentation:.1%}")


#: A consistent snapshot of one pool's counters: a frozen dataclass whose
#: integer fields are the core's figures (STATS_FIELDS), plus the composite
#: ones from_raw builds.
PoolStats = dataclasses.make_dataclass(
    "PoolStats",
    [(name, int) for name, _, _ in STATS_FIELDS] + [
        ("free_histogram", Tuple[Tuple[int, int, int], ...], field(default=())),
        ("process_rss_bytes", Optional[int], field(default=None)),
        ("errors", Mapping[str, int], field(default_factory=dict)),
        ("classes", Tuple[SizeClassStats, ...], field(default=())),
        ("arrow", Optional[ArrowShare], field(default=None)),
        ("layers", Mapping[str, LayerStats], field(default_factory=dict)),
    ],
    bases=(_PoolStatsMethods,), frozen=True,
    namespace={"__doc__": _pool_stats_doc(), "__module__": __name__})


@dataclass(frozen=True)
class DefragReport:
    """What one ``Pool.defragment()`` did.

    moved_buffers:   buffers that changed address.
    moved_bytes:     bytes copied (a buffer moved twice counts twice).
    pinned_skipped:  buffers left in place because a view pinned them.
    released_bytes:  resident bytes given back to the OS by the trim that
                     ends the pass (holes the moves closed, and every other
                     free page).
    resident_before, resident_after, live_bytes: the pool's resident estimate
                     around the call, and its live bytes (unchanged by it).
    """

    moved_buffers: int
    moved_bytes: int
    pinned_skipped: int
    released_bytes: int
    resident_before: int
    resident_after: int
    live_bytes: int

    @property
    def resident_over_live(self) -> Optional[float]:
        """resident_after / live_bytes (None when nothing is live)."""
        return self.resident_after / self.live_bytes if self.live_bytes else None

    def summary(self) -> str:
        """One line for people."""
        return (f"moved {self.moved_buffers} buffer(s) "
                f"({format_bytes(self.moved_bytes)} copied), "
                f"{self.pinned_skipped} pinned left in place; resident "
                f"{format_bytes(self.resident_before)} -> "
                f"{format_bytes(self.resident_after)} for "
                f"{format_bytes(self.live_bytes)} live")


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole > 0 else "-"


def format_summary(st: PoolStats, title: str = "mempool memory summary") -> str:
    """The text of :meth:`PoolStats.memory_summary`."""
    fb = format_bytes
    width = 78
    rule, thin = "=" * width, "-" * width
    lines = [rule, f" {title}", rule]
    lines.append(f" {'':<26}{'now':>14}{'peak':>14}")
    lines.append(f" {'live (requested)':<26}{fb(st.live_bytes):>14}{fb(st.peak_live_bytes):>14}"
                 f"   {st.live_blocks} blocks")
    lines.append(f" {'in blocks (rounded)':<26}{fb(st.allocated_bytes):>14}{'':>14}"
                 f"   +{fb(st.internal_waste_bytes)} rounding")
    lines.append(f" {'cached':<26}{fb(st.cached_bytes):>14}"
                 f"{'':>14}   returned by decay/trim")
    lines.append(f" {'resident':<26}{fb(st.resident_bytes):>14}"
                 f"{fb(st.peak_resident_bytes):>14}")
    lines.append(f" {'reserved (address space)':<26}{fb(st.reserved_bytes):>14}{'':>14}"
                 f"   {st.arena_count} arenas, {st.direct_count} direct")
    if st.process_rss_bytes is not None:
        outside = max(0, st.process_rss_bytes - st.resident_bytes)
        lines.append(f" {'process RSS':<26}{fb(st.process_rss_bytes):>14}{'':>14}"
                     f"   +{fb(outside)} outside")
    lines.append(thin)
    lines.append(f" {'by layer':<16}{'live':>10}{'in use':>10}{'free':>10}{'free res.':>10}"
                 f"{'resident':>10}{'reserved':>10}")
    labels = {"small": "small classes", "pages": "page heap", "huge": "huge-page heap",
              "direct": "direct maps"}
    for name in LAYER_NAMES:
        l = st.layers.get(name)
        if l is None:
            continue
        res = fb(l.resident_bytes) if name != "small" else "(pages)"
        rsv = fb(l.reserved_bytes) if name != "small" else "(pages)"
        dirty = fb(l.dirty_free_bytes) if name in ("pages", "huge") else "-"
        lines.append(f" {labels[name]:<16}{fb(l.live_bytes):>10}{fb(l.in_use_bytes):>10}"
                     f"{fb(l.free_bytes):>10}{dirty:>10}{res:>10}{rsv:>10}")
    lines.append(thin)
    lines.append(f" fragmentation    {st.fragmentation:.1%} of resident is stuck (neither live "
                 f"nor cache)")
    lines.append(f"                  slab holes {fb(st.slab_free_bytes)}")
    lines.append(f"                  heaps {fb(st.free_bytes)} free, "
                 f"{fb(st.dirty_free_bytes)} of it resident; largest {fb(st.largest_free_bytes)}")
    if st.mesh_pages_total or st.mesh_calls:
        lines.append(f" meshing          {st.mesh_pages} pages ({fb(st.mesh_bytes_saved)} "
                     f"saved), {st.mesh_pages_total} ever, pause <= "
                     f"{st.mesh_pause_max_ns / 1e3:.0f} us")
    else:
        lines.append(" meshing          none")
    if st.buffer_count:
        lines.append(f" movable buffers  {st.buffer_count} ({fb(st.buffer_bytes)}), "
                     f"{st.pinned_buffer_count} pinned; defragment moved "
                     f"{fb(st.defrag_moved_bytes)}")
    if st.arrow is not None:
        a = st.arrow
        lines.append(f" Arrow's share    {fb(a.bytes_allocated)} live (peak {fb(a.max_memory)}), "
                     f"{a.num_allocations} allocations")
        lines.append(f"                  {a.refused} refused, {a.errors} bad pointers")
    lines.append(f" given back       {fb(st.released_bytes)}; mmap/munmap/madvise "
                 f"{st.mmap_count}/{st.munmap_count}/{st.madvise_count}")
    lines.append(f" calls            alloc {st.alloc_count} (small {st.small_alloc_count}, "
                 f"large {st.large_alloc_count}, direct {st.direct_alloc_count})")
    lines.append(f"                  free {st.free_count}, realloc {st.realloc_count}")
    errors = {k: v for k, v in st.errors.items() if v}
    lines.append(" errors caught    " + (", ".join(f"{k} {v}" for k, v in errors.items())
                                         if errors else "none"))
    lines.append(rule)
    return "\n".join(lines)
