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
    cdef int failed = 0   # 1 already recording, 2 no recorder, 3 bad max_entries
    cdef mp_history *rec
    cdef mp_pool *p = pool._lock()
    if p != NULL:
        if pool._ctx.history != NULL:
            failed = 1
        elif pool._ctx.hist_rec == NULL:
            pool._ctx.hist_rec = mp_history_create()
            if pool._ctx.hist_rec == NULL:
                failed = 2
            else:
                mp_pool_observe(p, mp_history_observe, pool._ctx.hist_rec)
        rec = pool._ctx.hist_rec
        if failed == 0:
            with nogil:
                failed = 3 if mp_history_start(rec, max_entries) != 0 else 0
        if failed == 0:
            mph_int_store(&pool._ctx.hist_depth, depth)   # before the pointer
            mph_ptr_store(<void **>&pool._ctx.history, rec)
            _set_bypass(&pool._ctx)   # every call through _h_malloc/_h_free
    pool._unlock()
    if p == NULL:
        pool._require()
    if failed == 1:
        raise RuntimeError("this pool's history is already being recorded")
    if failed == 2:
        raise MemoryError("cannot create the history recorder")
    if failed == 3:
        raise ValueError(f"max_entries must be at least 1, got {max_entries}")


def _history_stop(_PoolBase pool):
    """Stop recording (the events stay readable)."""
    pool._lock()
    cdef mp_history *h = pool._ctx.history
    if h != NULL:
        mph_ptr_store(<void **>&pool._ctx.history, NULL)
        _set_bypass(&pool._ctx)   # stays on while a trace records
        with nogil:
            mp_history_stop(h)
    pool._unlock()


def _history_recording(_PoolBase pool):
    """True while ``pool``'s history is being recorded."""
    return _history_of(&pool._ctx) != NULL


cdef mp_history *_history_rec(_PoolBase pool, mp_history_info *info) noexcept:
    # The pool's history recorder (NULL when none was made) and its figures,
    # read under _life.
    pool._lock()
    cdef mp_history *h = pool._ctx.hist_rec
    if h != NULL and info != NULL:
        mp_history_counts(h, info)
    pool._unlock()
    return h


def _history_info(_PoolBase pool):
    """The history's figures as a dict, or None when none was recorded."""
    cdef mp_history_info info
    cdef size_t live = 0
    pool._lock()
    cdef mp_history *h = pool._ctx.hist_rec
    if h != NULL:
        with nogil:
            mp_history_counts(h, &info)
            live = mp_history_live_count(h)
    pool._unlock()
    if h == NULL:
        return None
    cdef dict out = info
    out["stack_depth"] = _hist_depth(&pool._ctx)
    out["live_blocks"] = live
    return out


cdef inline bytes _column(size_t n, size_t width):
    return PyBytes_FromStringAndSize(NULL, n * width)


def _history_events(_PoolBase pool):
    """The allocation events held now, oldest first, as little-endian
    columns of bytes: t_ns (u8), op (u1), address (u8), size (u8), stack
    (i4), thread (u4)."""
    cdef mp_history_info info
    if _history_rec(pool, &info) == NULL:
        return None
    cdef size_t n = info.held + 1024  # events may arrive meanwhile
    # the columns are made before _life is taken (no Python under it)
    t_ns, op, address = _column(n, 8), _column(n, 1), _column(n, 8)
    size, stack, thread = _column(n, 8), _column(n, 4), _column(n, 4)
    cdef uint64_t *c_t_ns = <uint64_t *>PyBytes_AS_STRING(t_ns)
    cdef uint8_t *c_op = <uint8_t *>PyBytes_AS_STRING(op)
    cdef uint64_t *c_address = <uint64_t *>PyBytes_AS_STRING(address)
    cdef uint64_t *c_size = <uint64_t *>PyBytes_AS_STRING(size)
    cdef int32_t *c_stack = <int32_t *>PyBytes_AS_STRING(stack)
    cdef uint32_t *c_thread = <uint32_t *>PyBytes_AS_STRING(thread)
    pool._lock()
    cdef mp_history *h = pool._ctx.hist_rec
    with nogil:
        n = mp_history_copy_events(h, n, c_t_ns, c_op, c_address, c_size, c_stack, c_thread)
    pool._unlock()
    return {"count": n, "t_ns": t_ns, "op": op, "address": address, "size": size,
            "stack": stack, "thread": thread}


def _history_pool_events(_PoolBase pool):
    """The pool events held now, oldest first, as columns of bytes: t_ns
    (u8), kind (i4), address (u8), size (u8), arg (u8), stack (i4)."""
    cdef mp_history_info info
    if _history_rec(pool, &info) == NULL:
        return None
    cdef size_t n = info.pool_held + 1024
    t_ns, kind, address = _column(n, 8), _column(n, 4), _column(n, 8)
    size, arg, stack = _column(n, 8), _column(n, 8), _column(n, 4)
    cdef uint64_t *c_t_ns = <uint64_t *>PyBytes_AS_STRING(t_ns)
    cdef int32_t *c_kind = <int32_t *>PyBytes_AS_STRING(kind)
    cdef uint64_t *c_address = <uint64_t *>PyBytes_AS_STRING(address)
    cdef uint64_t *c_size = <uint64_t *>PyBytes_AS_STRING(size)
    cdef uint64_t *c_arg = <uint64_t *>PyBytes_AS_STRING(arg)
    cdef int32_t *c_stack = <int32_t *>PyBytes_AS_STRING(stack)
    pool._lock()
    cdef mp_history *h = pool._ctx.hist_rec
    with nogil:
        n = mp_history_copy_pool_events(h, n, c_t_ns, c_kind, c_address, c_size, c_arg,
                                        c_stack)
    pool._unlock()
    return {"count": n, "t_ns": t_ns, "kind": kind, "address": address, "size": size,
            "arg": arg, "stack": stack}


def _history_live(_PoolBase pool):
    """The blocks allocated while recording and still live: columns of
    bytes address (u8), size (u8), stack (i4); None without a recording."""
    cdef size_t n = 0
    pool._lock()
    cdef mp_history *h = pool._ctx.hist_rec
    if h != NULL:
        with nogil:
            n = mp_history_live_count(h) + 1024
    pool._unlock()
    if h == NULL:
        return None
    address, size, stack = _column(n, 8), _column(n, 8), _column(n, 4)
    cdef uint64_t *c_address = <uint64_t *>PyBytes_AS_STRING(address)
    cdef uint64_t *c_size = <uint64_t *>PyBytes_AS_STRING(size)
    cdef int32_t *c_stack = <int32_t *>PyBytes_AS_STRING(stack)
    pool._lock()
    with nogil:
        n = mp_history_copy_live(h, n, c_address, c_size, c_stack)
    pool._unlock()
    return {"count": n, "address": address, "size": size, "stack": stack}


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
    cdef _WalkOut w
    cdef mp_walker walker
    cdef int rc = 0
    cdef size_t i
    memset(&w, 0, sizeof(w))
    walker.segment = _walk_segment
    walker.block = _walk_block
    walker.ctx = &w
    cdef mp_pool *p = pool._lock()
    if p != NULL:
        with nogil:   # the callbacks only copy, into malloc'd arrays
            rc = mp_pool_walk(p, &walker)
    pool._unlock()
    if p == NULL:
        pool._require()
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
