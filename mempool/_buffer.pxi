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

    Threads may share a buffer: its handle, pins and view count change only
    under the pool's ``_life`` mutex.
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
        cdef mp_buffer handle = 0
        cdef int code = MP_OK
        cdef mp_pool *pool = owner._lock()
        if pool != NULL:
            with nogil:
                code = mp_buffer_create(pool, nbytes, &handle)
        owner._unlock()
        if pool == NULL:
            owner._require()
        if code != MP_OK:
            owner._raise(code, size=nbytes)
        cdef Buffer buf = Buffer.__new__(Buffer)
        buf._owner = owner
        buf._handle = handle
        buf.nbytes = nbytes
        return buf

    cdef _check_live(self):
        if self._handle == 0:
            raise ValueError("the buffer has been freed")
        self._owner._require()

    @property
    def pool(self):
        """The pool the buffer lives in."""
        return self._owner

    @property
    def pinned(self):
        """True while a view (memoryview or array) of the buffer is alive."""
        return self._exports > 0

    @property
    def freed(self):
        """True once :meth:`free` has given the bytes back."""
        return self._handle == 0

    def __getbuffer__(self, Py_buffer *view, int flags):
        cdef void *address = NULL
        cdef int code = MP_OK
        cdef mp_pool *pool = self._owner._lock()
        cdef bint live = pool != NULL and self._handle != 0
        if live:
            code = mp_buffer_pin(pool, self._handle, &address)
            if code == MP_OK:
                self._exports += 1
        self._owner._unlock()
        if not live:
            self._check_live()
        if code != MP_OK:
            self._owner._raise(code, size=self.nbytes)
        try:
            PyBuffer_FillInfo(view, self, address, self.nbytes, 0, flags)
        except BaseException:
            self._unpin()
            raise

    def __releasebuffer__(self, Py_buffer *view):
        self._unpin()

    cdef void _unpin(self) noexcept:
        cdef mp_pool *pool = self._owner._lock()
        self._exports -= 1
        if self._handle != 0 and pool != NULL:
            mp_buffer_unpin(pool, self._handle)
        self._owner._unlock()

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
        cdef int code = MP_OK
        cdef Py_ssize_t exports = 0
        cdef mp_pool *pool = self._owner._lock()
        cdef mp_buffer handle = self._handle
        if pool != NULL and handle != 0:
            exports = self._exports
            if exports == 0:
                code = mp_buffer_destroy(pool, handle)
                if code == MP_OK:
                    self._handle = 0
        self._owner._unlock()
        if handle == 0:
            return
        if pool == NULL:
            self._owner._require()
        if exports:
            raise BufferError(
                f"buffer of {self.nbytes} bytes is pinned by {exports} "
                "live view(s): drop them before freeing it")
        if code != MP_OK:
            self._owner._raise(code, size=self.nbytes)

    def __dealloc__(self):
        # Views hold a reference to the buffer, so no pin is left here; the
        # owner (a strong reference) keeps the pool open unless it was
        # destroyed explicitly, in which case the bytes went with it.
        cdef mp_pool *pool
        if self._handle != 0 and self._owner is not None:
            pool = self._owner._lock()
            if pool != NULL:
                mp_buffer_destroy(pool, self._handle)
            self._handle = 0
            self._owner._unlock()

    def __repr__(self):
        state = "freed" if self._handle == 0 else ("pinned" if self._exports else "movable")
        return f"<mempool.Buffer {self.nbytes} bytes, {state}>"


def _buffer_create(_PoolBase owner, size_t nbytes):
    """mp_buffer_create: a new movable Buffer of ``nbytes`` in ``owner``."""
    return Buffer._create(owner, nbytes)


def _defragment(_PoolBase owner):
    """mp_defragment: compact ``owner``'s unpinned buffers; return the
    mp_defrag_result as a dict."""
    cdef mp_defrag_result result
    cdef int code = MP_OK
    cdef mp_pool *pool = owner._lock()
    if pool != NULL:
        with nogil:
            code = mp_defragment(pool, &result)
    owner._unlock()
    if pool == NULL:
        owner._require()
    if code != MP_OK:
        owner._raise(code)
    return {"moved_buffers": result.moved_buffers, "moved_bytes": result.moved_bytes,
            "pinned_skipped": result.pinned_skipped,
            "released_bytes": result.released_bytes}
