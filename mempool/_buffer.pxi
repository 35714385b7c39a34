# Movable buffers: the glue of mp_buffer_* and mp_defragment (csrc/pool/buffer.c).
# Included by _core.pyx; policy (the defragment report) lives in pool.py.

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_FillInfo


cdef class Buffer:
    """Bytes in a pool that the pool may move to close holes.

    Made by :meth:`mempool.Pool.buffer`.  A buffer has no fixed address: it
    is pinned (cannot move) while a view of it is exported, that is while a
    ``memoryview(buf)`` or an array from :meth:`array` is alive, and
    :meth:`mempool.Pool.defragment` moves only unpinned buffers.  Content is
    preserved by every move.  Arrays allocated by numpy through the pool's
    handler hold raw pointers and are never moved: only buffers are.
    """

    cdef _PoolBase _owner
    cdef mp_buffer _handle
    cdef readonly Py_ssize_t nbytes
    cdef Py_ssize_t _exports

    def __cinit__(self):
        self._handle = 0
        self._exports = 0

    def __init__(self):
        raise TypeError("buffers are made by Pool.buffer(nbytes)")

    @staticmethod
    cdef Buffer _create(_PoolBase owner, size_t nbytes):
        cdef mp_pool *pool = owner._require()
        cdef mp_buffer handle = 0
        cdef int code
        with nogil:
            code = mp_buffer_create(pool, nbytes, &handle)
        if code != MP_OK:
            owner._raise(code, size=nbytes)
        cdef Buffer buf = Buffer.__new__(Buffer)
        buf._owner = owner
        buf._handle = handle
        buf.nbytes = nbytes
        cdef mp_history *h = owner._ctx.history
        cdef int32_t site
        if h != NULL:  # recorded as an allocation, with its call site
            site = mph_capture(owner._ctx.hist_depth)
            mp_history_lock(h)
            mp_history_note_alloc(h, MP_HIST_ALLOC, buf._address(pool), nbytes, site)
            mp_history_unlock(h)
        return buf

    cdef void *_address(self, mp_pool *pool) noexcept:
        # where the bytes are now (a pin and its unpin)
        cdef void *address = NULL
        if mp_buffer_pin(pool, self._handle, &address) == MP_OK:
            mp_buffer_unpin(pool, self._handle)
        return address

    cdef int _destroy(self, mp_pool *pool) noexcept:
        # mp_buffer_destroy, recorded as a free when a history is on (its
        # lock held throughout: no defragment moves the buffer meanwhile)
        cdef mp_history *h = self._owner._ctx.history
        cdef void *address = NULL
        cdef uint64_t size = self.nbytes
        cdef int32_t site = MP_STACK_UNKNOWN
        if h == NULL:
            return mp_buffer_destroy(pool, self._handle)
        mp_history_lock(h)
        address = self._address(pool)
        cdef int code = mp_buffer_destroy(pool, self._handle)
        if code == MP_OK:
            mp_history_take(h, address, &size, &site)
            mp_history_note_free(h, MP_HIST_FREE, address, size, site)
        mp_history_unlock(h)
        return code

    cdef mp_pool *_live(self) except NULL:
        if self._handle == 0:
            raise ValueError("the buffer has been freed")
        return self._owner._require()

    @property
    def pinned(self):
        """True while a view (memoryview or array) of the buffer is alive."""
        return self._exports > 0

    @property
    def freed(self):
        """True once :meth:`free` has given the bytes back."""
        return self._handle == 0

    def __getbuffer__(self, Py_buffer *view, int flags):
        cdef mp_pool *pool = self._live()
        cdef void *address = NULL
        cdef int code = mp_buffer_pin(pool, self._handle, &address)
        if code != MP_OK:
            self._owner._raise(code, size=self.nbytes)
        try:
            PyBuffer_FillInfo(view, self, address, self.nbytes, 0, flags)
        except BaseException:
            mp_buffer_unpin(pool, self._handle)
            raise
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self._exports -= 1
        if self._handle != 0 and self._owner._pool != NULL:
            mp_buffer_unpin(self._owner._pool, self._handle)

    def array(self, shape, dtype=float, offset=0):
        """A numpy view of the buffer (``shape`` and ``dtype`` as in
        ``np.ndarray``, starting ``offset`` bytes in); the buffer stays
        pinned while the array (or any view of it) is alive."""
        import numpy as np
        dt = np.dtype(dtype)
        shape_t = (int(shape),) if np.ndim(shape) == 0 else tuple(int(d) for d in shape)
        if any(d < 0 for d in shape_t):
            raise ValueError(f"negative dimension in shape {shape_t}")
        count = 1
        for d in shape_t:
            count *= d
        offset = int(offset)
        need = count * dt.itemsize
        if offset < 0 or offset + need > self.nbytes:
            raise ValueError(
                f"shape {shape_t} of {dt} needs {need} bytes at offset {offset}, "
                f"the buffer has {self.nbytes}")
        flat = np.frombuffer(self, dtype=dt, count=count, offset=offset)
        return flat.reshape(shape_t)

    def free(self):
        """Give the bytes back to the pool now (BufferError while pinned).
        Freeing twice is a no-op."""
        if self._handle == 0:
            return
        if self._exports:
            raise BufferError(
                f"buffer of {self.nbytes} bytes is pinned by {self._exports} "
                "live view(s): drop them before freeing it")
        cdef mp_pool *pool = self._owner._require()
        cdef int code = self._destroy(pool)
        if code != MP_OK:
            self._owner._raise(code, size=self.nbytes)
        self._handle = 0

    def __dealloc__(self):
        # Views hold a reference to the buffer, so no pin is left here; the
        # owner (a strong reference) keeps the pool open unless it was
        # destroyed explicitly, in which case the bytes went with it.
        if self._handle != 0 and self._owner is not None and self._owner._pool != NULL:
            self._destroy(self._owner._pool)
            self._handle = 0

    def __repr__(self):
        state = "freed" if self._handle == 0 else ("pinned" if self._exports else "movable")
        return f"<mempool.Buffer {self.nbytes} bytes, {state}>"


def _buffer_create(_PoolBase owner, size_t nbytes):
    """mp_buffer_create: a new movable Buffer of ``nbytes`` in ``owner``."""
    return Buffer._create(owner, nbytes)


def _defragment(_PoolBase owner):
    """mp_defragment: compact ``owner``'s unpinned buffers; return the
    mp_defrag_result as a dict."""
    cdef mp_pool *pool = owner._require()
    cdef mp_defrag_result result
    cdef int code
    # the buffers it moves keep their history sites (history.c's bracket)
    cdef bint bracket = _history_moves(owner, True)
    with nogil:
        code = mp_defragment(pool, &result)
    if bracket:
        _history_moves(owner, False)
    if code != MP_OK:
        owner._raise(code)
    return {"moved_buffers": result.moved_buffers, "moved_bytes": result.moved_bytes,
            "pinned_skipped": result.pinned_skipped,
            "released_bytes": result.released_bytes}
