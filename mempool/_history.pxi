# Glue of the allocation history (csrc/trace/history.c), the Python call
# sites (_stacks.h) and the pool walk (mp_pool_walk).  Included by _core.pyx;
# the policy (recording contexts, snapshots, their JSON) lives in
# mempool/history.py and mempool/snapshot.py.

from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport free, realloc

HISTORY_EVENT_BYTES = 32   # csrc/trace/history.c: what one event costs in the ring
HISTORY_POOL_EVENT_BYTES = 40


def _history_start(_PoolBase pool, size_t max_entries, int depth):
    """Start recording ``pool``'s history: events (a ring of
    ``max_entries``) with call sites of ``depth`` frames."""
    cdef mp_pool *p = pool._require()
    if pool._ctx.history != NULL:
        raise RuntimeError("this pool's history is already being recorded")
    if pool._ctx.hist_rec == NULL:
        pool._ctx.hist_rec = mp_history_create()
        if pool._ctx.hist_rec == NULL:
            raise MemoryError("cannot create the history recorder")
        mp_pool_observe(p, mp_history_observe, pool._ctx.hist_rec)
    if mp_history_start(pool._ctx.hist_rec, max_entries) != 0:
        raise ValueError(f"max_entries must be at least 1, got {max_entries}")
    pool._ctx.hist_depth = depth
    pool._ctx.history = pool._ctx.hist_rec
    pool._ctx.head.bypass = 1  # every call through _h_malloc/_h_free, which record


def _history_stop(_PoolBase pool):
    """Stop recording (the events stay readable)."""
    cdef mp_history *h = pool._ctx.history
    if h == NULL:
        return
    pool._ctx.history = NULL
    if pool._ctx.trace == NULL:
        pool._ctx.head.bypass = 0
    mp_history_stop(h)


def _history_recording(_PoolBase pool):
    """True while ``pool``'s history is being recorded."""
    return pool._ctx.history != NULL


def _history_info(_PoolBase pool):
    """The history's figures as a dict, or None when none was recorded."""
    cdef mp_history_info info
    if pool._ctx.hist_rec == NULL:
        return None
    mp_history_counts(pool._ctx.hist_rec, &info)
    cdef dict out = info
    out["stack_depth"] = pool._ctx.hist_depth
    out["live_blocks"] = mp_history_live_count(pool._ctx.hist_rec)
    return out


cdef inline bytes _column(size_t n, size_t width):
    return PyBytes_FromStringAndSize(NULL, n * width)


def _history_events(_PoolBase pool):
    """The allocation events held now, oldest first, as little-endian
    columns of bytes: t_ns (u8), op (u1), address (u8), size (u8), stack
    (i4), thread (u4)."""
    cdef mp_history *h = pool._ctx.hist_rec
    cdef mp_history_info info
    if h == NULL:
        return None
    mp_history_counts(h, &info)
    cdef size_t n = info.held + 1024  # events may arrive meanwhile
    t_ns, op, address = _column(n, 8), _column(n, 1), _column(n, 8)
    size, stack, thread = _column(n, 8), _column(n, 4), _column(n, 4)
    n = mp_history_copy_events(
        h, n, <uint64_t *>PyBytes_AS_STRING(t_ns), <uint8_t *>PyBytes_AS_STRING(op),
        <uint64_t *>PyBytes_AS_STRING(address), <uint64_t *>PyBytes_AS_STRING(size),
        <int32_t *>PyBytes_AS_STRING(stack), <uint32_t *>PyBytes_AS_STRING(thread))
    return {"count": n, "t_ns": t_ns, "op": op, "address": address, "size": size,
            "stack": stack, "thread": thread}


def _history_pool_events(_PoolBase pool):
    """The pool events held now, oldest first, as columns of bytes: t_ns
    (u8), kind (i4), address (u8), size (u8), arg (u8), stack (i4)."""
    cdef mp_history *h = pool._ctx.hist_rec
    cdef mp_history_info info
    if h == NULL:
        return None
    mp_history_counts(h, &info)
    cdef size_t n = info.pool_held + 1024
    t_ns, kind, address = _column(n, 8), _column(n, 4), _column(n, 8)
    size, arg, stack = _column(n, 8), _column(n, 8), _column(n, 4)
    n = mp_history_copy_pool_events(
        h, n, <uint64_t *>PyBytes_AS_STRING(t_ns), <int32_t *>PyBytes_AS_STRING(kind),
        <uint64_t *>PyBytes_AS_STRING(address), <uint64_t *>PyBytes_AS_STRING(size),
        <uint64_t *>PyBytes_AS_STRING(arg), <int32_t *>PyBytes_AS_STRING(stack))
    return {"count": n, "t_ns": t_ns, "kind": kind, "address": address, "size": size,
            "arg": arg, "stack": stack}


def _history_live(_PoolBase pool):
    """The blocks allocated while recording and still live: columns of
    bytes address (u8), size (u8), stack (i4); None without a recording."""
    cdef mp_history *h = pool._ctx.hist_rec
    if h == NULL:
        return None
    cdef size_t n = mp_history_live_count(h) + 1024
    address, size, stack = _column(n, 8), _column(n, 8), _column(n, 4)
    n = mp_history_copy_live(h, n, <uint64_t *>PyBytes_AS_STRING(address),
                             <uint64_t *>PyBytes_AS_STRING(size),
                             <int32_t *>PyBytes_AS_STRING(stack))
    return {"count": n, "address": address, "size": size, "stack": stack}


def _history_moves(_PoolBase pool, bint begin):
    """Open (begin) or close the bracket around a defragment, so the
    buffers it moves keep their sites."""
    cdef mp_history *h = pool._ctx.history
    if h == NULL:
        return False
    if begin:
        with nogil:
            mp_history_moves_begin(h)
    else:
        mp_history_moves_end(h)
    return True


def _history_note_buffer(_PoolBase pool, bint made, uintptr_t address, uint64_t size):
    """Record a movable buffer made (with this thread's call site) or freed."""
    cdef mp_history *h = pool._ctx.history
    cdef uint64_t old_size = size
    cdef int32_t site
    if h == NULL:
        return
    if made:
        site = mph_capture(pool._ctx.hist_depth)
        _hist_made(h, MP_HIST_ALLOC, <void *>address, size, site)
        return
    site = MP_STACK_UNKNOWN
    mp_history_lock(h)
    mp_history_take(h, <void *>address, &old_size, &site)
    mp_history_note_free(h, MP_HIST_FREE, <void *>address, old_size, site)
    mp_history_unlock(h)


def _history_note_pool(_PoolBase pool, int kind, uintptr_t address, uint64_t size,
                       uint64_t arg):
    """Record a pool event found in Python (with this thread's call site)."""
    cdef mp_history *h = pool._ctx.history
    if h != NULL:
        mp_history_note_pool(h, kind, address, size, arg, mph_capture(pool._ctx.hist_depth))


def capture_stack(int depth):
    """The calling thread's stack, ``depth`` frames, as an interned stack id
    (the id the history gives to an allocation made here)."""
    return mph_capture(depth)


def stack_frames(int32_t stack_id):
    """Frame ids of an interned stack, innermost first; None if unknown."""
    cdef int32_t buf[128]
    cdef int n = mph_stack_frames(stack_id, buf, 128)
    if n < 0:
        return None
    return [buf[i] for i in range(n)]


def frame_info(int32_t frame_id):
    """``(file, line, function)`` of an interned frame; None if unknown."""
    return mph_frame_info(frame_id)


def stack_table_sizes():
    """``(stacks, stack frames, frames, captures refused)`` interned so far."""
    return mph_table_sizes()


def event_names():
    """Names of the core's pool events by kind (mp_event_name), then the
    binding's (exhausted, error): index = kind."""
    names = [mp_event_name(k).decode() for k in range(MP_HIST_EXHAUSTED)]
    names[0] = None
    return names + ["exhausted", "error"]


# ------------------------------------------------------------------ walk --

cdef struct _WalkOut:
    mp_walk_segment *segs
    size_t n_segs, cap_segs
    mp_walk_block *blocks
    size_t n_blocks, cap_blocks


cdef int _walk_segment(void *ctx, const mp_walk_segment *seg) noexcept nogil:
    cdef _WalkOut *w = <_WalkOut *>ctx
    cdef mp_walk_segment *grown
    if w.n_segs == w.cap_segs:
        grown = <mp_walk_segment *>realloc(w.segs, (w.cap_segs * 2 + 64) * sizeof(mp_walk_segment))
        if grown == NULL:
            return 1
        w.segs = grown
        w.cap_segs = w.cap_segs * 2 + 64
    w.segs[w.n_segs] = seg[0]
    w.n_segs += 1
    return 0


cdef int _walk_block(void *ctx, const mp_walk_block *block) noexcept nogil:
    cdef _WalkOut *w = <_WalkOut *>ctx
    cdef mp_walk_block *grown
    if w.n_blocks == w.cap_blocks:
        grown = <mp_walk_block *>realloc(w.blocks,
                                         (w.cap_blocks * 2 + 1024) * sizeof(mp_walk_block))
        if grown == NULL:
            return 1
        w.blocks = grown
        w.cap_blocks = w.cap_blocks * 2 + 1024
    w.blocks[w.n_blocks] = block[0]
    w.n_blocks += 1
    return 0


def _walk(_PoolBase pool):
    """mp_pool_walk: ``(segments, blocks)`` as dicts of little-endian
    columns of bytes.  Segments: address, size, resident, mesh_owner (u8),
    parent, size_class (i4), block_size, granule (u4), kind, heap (u1).
    Blocks: address, size, requested (u8), segment (u4), state (u1)."""
    cdef mp_pool *p = pool._require()
    cdef _WalkOut w
    cdef mp_walker walker
    cdef int rc
    cdef size_t i
    memset(&w, 0, sizeof(w))
    walker.segment = _walk_segment
    walker.block = _walk_block
    walker.ctx = &w
    with nogil:
        rc = mp_pool_walk(p, &walker)
    try:
        if rc != 0:
            raise MemoryError("out of memory while walking the pool")
        segs = {k: _column(w.n_segs, width) for k, width in (
            ("address", 8), ("size", 8), ("resident", 8), ("mesh_owner", 8),
            ("parent", 4), ("size_class", 4), ("block_size", 4), ("granule", 4),
            ("kind", 1), ("heap", 1))}
        for i in range(w.n_segs):
            (<uint64_t *>PyBytes_AS_STRING(segs["address"]))[i] = w.segs[i].address
            (<uint64_t *>PyBytes_AS_STRING(segs["size"]))[i] = w.segs[i].size
            (<uint64_t *>PyBytes_AS_STRING(segs["resident"]))[i] = w.segs[i].resident
            (<uint64_t *>PyBytes_AS_STRING(segs["mesh_owner"]))[i] = w.segs[i].mesh_owner
            (<int32_t *>PyBytes_AS_STRING(segs["parent"]))[i] = w.segs[i].parent
            (<int32_t *>PyBytes_AS_STRING(segs["size_class"]))[i] = w.segs[i].size_class
            (<uint32_t *>PyBytes_AS_STRING(segs["block_size"]))[i] = w.segs[i].block_size
            (<uint32_t *>PyBytes_AS_STRING(segs["granule"]))[i] = w.segs[i].granule
            (<uint8_t *>PyBytes_AS_STRING(segs["kind"]))[i] = w.segs[i].kind
            (<uint8_t *>PyBytes_AS_STRING(segs["heap"]))[i] = w.segs[i].heap
        blocks = {k: _column(w.n_blocks, width) for k, width in (
            ("address", 8), ("size", 8), ("requested", 8), ("segment", 4), ("state", 1))}
        for i in range(w.n_blocks):
            (<uint64_t *>PyBytes_AS_STRING(blocks["address"]))[i] = w.blocks[i].address
            (<uint64_t *>PyBytes_AS_STRING(blocks["size"]))[i] = w.blocks[i].size
            (<uint64_t *>PyBytes_AS_STRING(blocks["requested"]))[i] = w.blocks[i].requested
            (<uint32_t *>PyBytes_AS_STRING(blocks["segment"]))[i] = w.blocks[i].segment
            (<uint8_t *>PyBytes_AS_STRING(blocks["state"]))[i] = w.blocks[i].state
        return segs, blocks
    finally:
        free(w.segs)
        free(w.blocks)


def default_handler():
    """numpy's own default handler capsule (PyDataMem_DefaultHandler)."""
    return <object>PyDataMem_DefaultHandler


def handler_pool():
    """The Pool whose handler numpy uses in this context, or None (numpy's
    default, or another library's handler)."""
    cap = PyDataMem_GetHandler()
    if not PyCapsule_IsValid(cap, "mem_handler"):
        return None
    cdef PyDataMem_Handler *handler = <PyDataMem_Handler *>PyCapsule_GetPointer(
        cap, "mem_handler")
    if handler.allocator.malloc != mp_handler_malloc:
        return None
    return <object>PyCapsule_GetContext(cap)
