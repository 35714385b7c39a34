# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible = True
"""Thin glue between the native core (csrc/include/mempool.h) and Python.

It owns two things and no algorithm: the ``mp_pool*`` of each pool object and
that pool's NEP 49 ``PyDataMem_Handler`` (the functions numpy calls to
allocate array data).  It imports no Python module of the package: errors
are raised through the subclass (``mempool.Pool._error_from_code`` and
``_PoolClosed``, from :mod:`mempool.errors`), whose code tables are in turn
built from :func:`error_table`.  Policy (argument checking, array
constructors, install/use, reports) lives in the pure-Python modules.

Lifetime: each ``mem_handler`` capsule holds a strong reference to its pool
object and numpy keeps the capsule alive in every array it allocated through
it, so a pool (and its arenas) outlives every array whose data it holds.  The
pool only counts its live capsules (no reference, so no cycle).

Threads (free-threaded CPython included: the module declares it runs without
the GIL): numpy calls the handler from any thread, GIL or not; the core is
thread-safe.  What this glue shares between threads it guards itself: the
count of live capsules and the warned-once flag are atomics; the native pool
pointer, the trace recorder and buffer pins change only under the pool's
``_life`` mutex, which every method that reaches the native pool holds around
its core calls (never around Python code, so a finalizer run by the garbage
collector cannot find it held by its own thread).  A capsule is made anew
for each ``_handler_capsule()``: reusing one would need an "incref unless
dying" that CPython 3.13 does not offer.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.pycapsule cimport (PyCapsule_Destructor, PyCapsule_GetContext,
                                PyCapsule_GetPointer, PyCapsule_IsValid,
                                PyCapsule_New, PyCapsule_SetContext)
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.stdint cimport int64_t, uint64_t, uintptr_t
from libc.stdlib cimport free as c_free, malloc as c_malloc
from libc.string cimport memcpy, memset, strncpy

cimport cython

from mempool._mempool cimport *
from mempool._tracing cimport *


cdef extern from "numpy/arrayobject.h":
    # Declared here rather than through `cimport numpy` to get the exact
    # layout of the name field (a char[127] array, not a pointer).
    ctypedef struct PyDataMemAllocator:
        void *ctx
        void *(*malloc)(void *ctx, size_t size) noexcept nogil
        void *(*calloc)(void *ctx, size_t nelem, size_t elsize) noexcept nogil
        void *(*realloc)(void *ctx, void *ptr, size_t new_size) noexcept nogil
        void (*free)(void *ctx, void *ptr, size_t size) noexcept nogil

    ctypedef struct PyDataMem_Handler:
        char name[127]
        unsigned char version
        PyDataMemAllocator allocator

    bint PyArray_Check(object obj)
    PyObject *PyArray_HANDLER(void *arr)   # borrowed; NULL: no data of its own
    object PyDataMem_SetHandler(object handler)
    object PyDataMem_GetHandler()
    int _import_array() except -1


cdef extern from *:
    """
    /* What the last failed handler call on this thread asked for: numpy turns
     * a NULL from the handler into a bare MemoryError, and Pool.empty() wants
     * to say why and how much.  Thread-local because numpy calls the handler
     * on the thread that creates the array. */
    static _Thread_local int mph_fail_code = 0;
    static _Thread_local size_t mph_fail_size = 0;
    static _Thread_local uintptr_t mph_fail_pool = 0; /* which pool refused */

    /* Call owner._on_handler_error(code, addr, size) from inside a numpy
     * handler call, which cannot fail: an exception already in flight (an
     * array dying during unwinding) is parked and put back untouched, and
     * one raised by the method (a warning turned into an error) goes to
     * sys.unraisablehook. */
    static void mph_notify(PyObject *owner, int code, uintptr_t addr,
                           size_t size)
    {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        PyObject *r = PyObject_CallMethod(owner, "_on_handler_error", "iKn",
                                          code, (unsigned long long)addr,
                                          (Py_ssize_t)size);
        if (r == NULL)
            PyErr_WriteUnraisable(owner);
        else
            Py_DECREF(r);
        PyErr_Restore(et, ev, etb);
    }

    /* Atomics for what the glue shares between threads (see the module
     * doc): a counter, a once-flag and a pointer published to handler calls
     * that run on other threads without any lock. */
    static inline Py_ssize_t mph_count_add(Py_ssize_t *c, Py_ssize_t d)
    { return __atomic_add_fetch(c, d, __ATOMIC_SEQ_CST); }
    static inline Py_ssize_t mph_count_load(Py_ssize_t *c)
    { return __atomic_load_n(c, __ATOMIC_SEQ_CST); }
    static inline int mph_test_and_set(int *flag)
    { return __atomic_exchange_n(flag, 1, __ATOMIC_SEQ_CST); }
    static inline void *mph_ptr_load(void **p)
    { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void mph_ptr_store(void **p, void *v)
    { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void mph_int_store(int *p, int v)
    { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    int mph_fail_code
    size_t mph_fail_size
    uintptr_t mph_fail_pool
    void mph_notify(object owner, int code, uintptr_t addr, size_t size)
    Py_ssize_t mph_count_add(Py_ssize_t *c, Py_ssize_t d) noexcept nogil
    Py_ssize_t mph_count_load(Py_ssize_t *c) noexcept nogil
    int mph_test_and_set(int *flag) noexcept nogil
    void *mph_ptr_load(void **p) noexcept nogil
    void mph_ptr_store(void **p, void *v) noexcept nogil
    void mph_int_store(int *p, int v) noexcept nogil


_import_array()

HANDLER_NAME = "mempool"
ERROR_COUNT = MP_ERROR_COUNT


cdef struct HandlerCtx:
    mp_handler_head head  # first member: numpy calls the core's
                          # mp_handler_malloc/free, which read it (pool
                          # first: ctx can be read as an mp_pool**)
    PyObject *owner    # the pool object (borrowed; capsules keep it alive)
    mp_trace *trace    # non-NULL while recording (mempool.trace): one test
                       # per call when not recording; read once per call
                       # (_trace_of), set under the pool's _life mutex
    mp_trace *recorder # owned; kept after recording stops, because a
                       # handler call on another thread may still hold it
    bint debug         # the pool is in debug mode: poll corruption reports


# ---------------------------------------------------------------- handler --
# numpy may call these without the GIL, hence noexcept nogil.

cdef inline mp_trace *_trace_of(HandlerCtx *c) noexcept nogil:
    # One load per call: recording may stop on another thread meanwhile (the
    # recorder itself stays until the pool dies and ignores late events).
    return <mp_trace *>mph_ptr_load(<void **>&c.trace)


cdef inline void _note_failure(HandlerCtx *c, size_t size) noexcept nogil:
    global mph_fail_code, mph_fail_size, mph_fail_pool
    mph_fail_code = mp_last_error()
    mph_fail_size = size
    mph_fail_pool = <uintptr_t>c.head.pool


cdef inline void _poll_corruption(HandlerCtx *c, void *p,
                                  size_t size) noexcept nogil:
    # Debug mode: a call that succeeded may still have found corruption (a
    # write into the freed block it reused, a broken canary on a realloc):
    # the pool object turns the core's reports into warnings.
    if c.debug and mp_debug_reports(c.head.pool, NULL, 0) > 0:
        _report_bad_pointer(c, MP_ECORRUPT, p, size)


cdef void *_h_malloc(void *ctx, size_t size) noexcept nogil:
    cdef HandlerCtx *c = <HandlerCtx *>ctx
    cdef mp_trace *t = _trace_of(c)
    cdef void *p = mp_alloc(c.head.pool, size)
    if p == NULL:
        _note_failure(c, size)
    elif t != NULL:
        mp_trace_note_alloc(t, MP_TRACE_ALLOC, p, size)
    _poll_corruption(c, p, size)
    return p


cdef void *_h_calloc(void *ctx, size_t nelem, size_t elsize) noexcept nogil:
    cdef HandlerCtx *c = <HandlerCtx *>ctx
    cdef mp_trace *t = _trace_of(c)
    cdef void *p = mp_calloc(c.head.pool, nelem, elsize)
    if p == NULL:
        _note_failure(c, nelem * elsize)
    elif t != NULL:
        mp_trace_note_alloc(t, MP_TRACE_CALLOC, p, nelem * elsize)
    _poll_corruption(c, p, nelem * elsize)
    return p


cdef void *_h_realloc(void *ctx, void *ptr, size_t new_size) noexcept nogil:
    # old size 0 = unknown: numpy's idea of the old size is not trusted.
    cdef HandlerCtx *c = <HandlerCtx *>ctx
    # While recording, the recorder's lock spans the call (see trace.h).
    cdef mp_trace *t = _trace_of(c)
    if t != NULL:
        mp_trace_lock(t)
    cdef void *p = mp_realloc(c.head.pool, ptr, 0, new_size)
    if t != NULL:
        mp_trace_note_realloc(t, ptr, p, new_size)
    cdef int code
    if p == NULL:
        _note_failure(c, new_size)
        code = mph_fail_code
        if code == MP_EDOUBLEFREE or code == MP_EFOREIGN or code == MP_EINTERIOR:
            _report_bad_pointer(c, code, ptr, 0)
    _poll_corruption(c, p, new_size)
    return p


cdef void _h_free(void *ctx, void *ptr, size_t size) noexcept nogil:
    # numpy's size is sometimes wrong (see DESIGN §4): pass 0 = unknown.
    cdef HandlerCtx *c = <HandlerCtx *>ctx
    cdef mp_trace *t = _trace_of(c)
    if t != NULL:
        mp_trace_lock(t)
    cdef int code = mp_free(c.head.pool, ptr, 0)
    if t != NULL:
        # MP_ECORRUPT (debug mode): the block was freed all the same
        mp_trace_note_free(t, ptr, code == MP_OK or code == MP_ECORRUPT)
    if code != MP_OK:
        _report_bad_pointer(c, code, ptr, size)


cdef void _report_bad_pointer(HandlerCtx *c, int code, void *ptr,
                              size_t size) noexcept nogil:
    # The core has already counted the error; tell the pool object so it can
    # warn.  Takes the GIL (PyGILState_Ensure) because numpy may not hold it.
    with gil:
        mph_notify(<object>c.owner, code, <uintptr_t>ptr, size)


cdef void _capsule_destructor(object capsule) noexcept:
    cdef _PoolBase owner = <_PoolBase>PyCapsule_GetContext(capsule)
    mph_count_add(&owner._capsules, -1)
    Py_DECREF(owner)


# ------------------------------------------------------------------ pool --

cdef class _PoolBase:
    """Owner of one native pool and its numpy handler (see mempool.Pool)."""

    cdef mp_pool *_pool
    cdef PyDataMem_Handler _handler
    cdef HandlerCtx _ctx
    cdef Py_ssize_t _capsules   # live capsules (atomic); each holds a reference
    cdef int _warned            # the bad-pointer warning was given (atomic)
    cdef cython.pymutex _life   # held around core calls and _pool changes
    cdef bint _opened
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._pool = NULL
        self._capsules = 0
        self._warned = 0
        self._opened = False
        memset(&self._handler, 0, sizeof(self._handler))
        strncpy(self._handler.name, HANDLER_NAME.encode(), 126)
        self._handler.version = 1
        self._handler.allocator.ctx = &self._ctx
        # the core's entry points run the fast paths and call _h_malloc /
        # _h_free for everything else
        self._handler.allocator.malloc = mp_handler_malloc
        self._handler.allocator.calloc = _h_calloc
        self._handler.allocator.realloc = _h_realloc
        self._handler.allocator.free = mp_handler_free
        self._ctx.head.bypass = 0
        self._ctx.head.malloc_full = _h_malloc
        self._ctx.head.free_full = _h_free
        self._ctx.head.pool = NULL
        self._ctx.owner = <PyObject *>self
        self._ctx.trace = NULL
        self._ctx.recorder = NULL

    def __dealloc__(self):
        # Reached only when no capsule (hence no array) refers to the pool.
        if self._pool != NULL:
            mp_pool_destroy(self._pool)
            self._pool = NULL
        mp_trace_destroy(self._ctx.recorder)
        self._ctx.recorder = NULL

    def _open(self, dict overrides):
        """Create the native pool from the defaults plus ``overrides``
        ({core setting name: int}); a value the core refuses raises
        ``self._InvalidSetting`` with the core's reason (mp_config_error)."""
        cdef mp_config cfg
        cdef mp_pool *pool = NULL
        cdef int code
        cdef int64_t debug = 0
        if self._opened:
            raise RuntimeError("pool already opened")
        mp_config_default(&cfg)
        for key, value in overrides.items():
            if mp_config_set(&cfg, (<str>key).encode(), value) != MP_OK:
                raise self._InvalidSetting(mp_config_error().decode())
        code = mp_pool_create(&cfg, &pool)
        if code != MP_OK:
            if code == MP_EINVAL:
                raise self._InvalidSetting(mp_config_error().decode())
            raise self._error_from_code(code)
        self._pool = pool
        self._ctx.head.pool = pool
        mp_pool_config(pool, &cfg)   # a core built with MP_DEBUG_MODE_ALWAYS forces it
        mp_config_get(&cfg, b"debug", &debug)
        self._ctx.debug = debug != 0
        self._opened = True

    cdef mp_pool *_lock(self) noexcept:
        # Take _life (waiting without the GIL); the native pool, or NULL when
        # closed (locked either way).  Callers unlock before raising or
        # running any Python code (see the module doc).
        self._life.acquire()
        return self._pool

    cdef void _unlock(self) noexcept nogil:
        self._life.release()

    cdef mp_pool *_require(self) except NULL:
        if self._pool == NULL:
            raise self._PoolClosed(
                "the pool is closed" if self._opened
                else "the pool was never opened (Pool.__init__ not called)")
        return self._pool

    @property
    def _native_id(self):
        """An id of the native pool (its address; 0 when closed), as
        take_failure() names the pool that refused."""
        return <uintptr_t>self._pool

    @property
    def closed(self):
        """True once the pool is closed (or was never opened)."""
        return self._pool == NULL

    def _destroy(self):
        """Destroy the native pool now (callers check that nothing is live);
        False, and nothing done, when a handler capsule exists (another
        thread entered ``use()`` meanwhile)."""
        cdef mp_pool *pool = self._lock()
        if pool != NULL and mph_count_load(&self._capsules) > 0:
            self._unlock()
            return False
        self._pool = NULL
        self._ctx.head.pool = NULL
        if pool != NULL:
            with nogil:
                mp_pool_destroy(pool)
        self._unlock()
        return True

    def _handler_capsule(self):
        """A new ``mem_handler`` capsule of the pool (numpy's handler
        object); it keeps the pool alive and open while it exists."""
        cdef mp_pool *pool = self._lock()
        if pool != NULL:
            mph_count_add(&self._capsules, 1)   # before the lock goes: close waits
        self._unlock()
        if pool == NULL:
            self._require()
        try:
            cap = PyCapsule_New(&self._handler, "mem_handler",
                                <PyCapsule_Destructor>_capsule_destructor)
        except BaseException:
            mph_count_add(&self._capsules, -1)
            raise
        Py_INCREF(self)   # the capsule's reference, dropped by its destructor
        PyCapsule_SetContext(cap, <void *>self)
        return cap

    @property
    def _handler_in_use(self):
        """True while some capsule of this pool exists (numpy context, array)."""
        return mph_count_load(&self._capsules) > 0

    def _claim_warning(self):
        """True for the first caller only, across threads: who gives the
        pool's one bad-pointer warning."""
        return mph_test_and_set(&self._warned) == 0

    def _config_raw(self):
        """The pool's settings as the core holds them: {name: int}, every
        row of the core's table (after defaults, rounding, changes)."""
        cdef mp_config cfg
        cdef mp_pool *pool = self._lock()
        if pool != NULL:
            mp_pool_config(pool, &cfg)
        self._unlock()
        if pool == NULL:
            self._require()
        return _config_dict(&cfg)

    def _stats_raw(self):
        """A snapshot of mp_stats as a dict: every figure of stats_fields(),
        and the histogram, errors and classes as lists."""
        cdef mp_stats st
        cdef int code = MP_OK
        cdef mp_pool *pool = self._lock()
        if pool != NULL:
            with nogil:
                code = mp_stats_get(pool, &st)
        self._unlock()
        if pool == NULL:
            self._require()
        if code != MP_OK:
            raise self._error_from_code(code)
        cdef const mp_stats_field *fields = mp_stats_fields()
        cdef const char *base = <const char *>&st
        cdef dict raw = {name: (<const uint64_t *>(base + fields[i].offset))[0]
                         for i, name in enumerate(_STATS_NAMES)}
        raw["free_histogram_count"] = [st.free_histogram_count[i]
                                       for i in range(MP_FREE_BINS)]
        raw["free_histogram_bytes"] = [st.free_histogram_bytes[i]
                                       for i in range(MP_FREE_BINS)]
        raw["errors"] = [st.errors[i] for i in range(MP_ERROR_COUNT)]
        cdef unsigned n_classes = min(<unsigned>st.class_count,
                                      <unsigned>MP_MAX_CLASSES)
        raw["classes"] = [
            (st.classes[i].block_size, st.classes[i].slabs,
             st.classes[i].blocks, st.classes[i].live_blocks,
             st.classes[i].live_bytes)
            for i in range(n_classes)]
        return raw

    cdef size_t _locked_count(self, size_t (*fn)(mp_pool *) noexcept nogil) except? 0:
        # fn(pool) under _life, without the GIL; PoolClosed when closed
        cdef size_t n = 0
        cdef mp_pool *pool = self._lock()
        if pool != NULL:
            with nogil:
                n = fn(pool)
        self._unlock()
        if pool == NULL:
            self._require()
        return n

    def trim(self):
        """Give every free page back to the OS now; return the bytes given."""
        return self._locked_count(mp_trim)

    def purge_aged(self):
        """Give back pages free for longer than the decay; return the bytes."""
        return self._locked_count(mp_purge_aged)

    def check(self):
        """Walk the pool's structures; return the number of broken invariants."""
        return self._locked_count(mp_pool_check)

    def check_named(self):
        """Walk the pool's structures; return (the number of broken
        invariants, the texts naming the first of them, at most 8)."""
        cdef const char *what[8]
        cdef size_t named = 0, n = 0
        cdef mp_pool *pool = self._lock()
        if pool != NULL:
            with nogil:
                n = mp_pool_check_named(pool, what, 8, &named)
        self._unlock()
        if pool == NULL:
            self._require()
        return n, [what[i].decode() for i in range(named)]

    def _corruption_reports(self):
        """Take (and clear) the core's pending corruption reports, oldest
        first, as dicts with the fields of mp_corruption_report."""
        cdef mp_corruption_report buf[MP_DEBUG_REPORTS]
        cdef size_t n = 0
        cdef mp_pool *pool = self._lock()
        if pool != NULL:
            n = mp_debug_reports(pool, buf, MP_DEBUG_REPORTS)
        self._unlock()
        if pool == NULL:
            self._require()
        return [buf[i] for i in range(n)]

    def _set_setting(self, str name, int64_t value):
        """mp_pool_set: change a setting of the live pool; a refusal raises
        ``self._InvalidSetting`` with the core's reason."""
        cdef bytes key = name.encode()
        cdef const char *c_key = key
        cdef int code = MP_OK
        cdef mp_pool *pool = self._lock()
        if pool != NULL:
            with nogil:
                code = mp_pool_set(pool, c_key, value)
        self._unlock()
        if pool == NULL:
            self._require()
        if code != MP_OK:
            raise self._InvalidSetting(mp_config_error().decode())

    def _raise(self, int code, **context):
        if code == MP_ENOMEM:
            context.setdefault("requested", context.get("size"))
            cfg = self._config_raw()
            context["capacity"] = cfg["capacity"] or None
            context["resident_limit"] = cfg["resident_limit"] or None
            context["live_bytes"] = self._stats_raw()["live_bytes"]
        raise self._error_from_code(code, **context)


# ------------------------------------------- shared with mempool._testhooks --

cdef mp_core_api _CORE_API = mp_core_api(
    alloc=mp_alloc, alloc_aligned=mp_alloc_aligned, calloc=mp_calloc,
    realloc=mp_realloc, free=mp_free, last_error=mp_last_error, owns=mp_owns,
    usable_size=mp_usable_size, requested_size=mp_requested_size,
    debug_reports=mp_debug_reports)


cdef const mp_core_api *core_api() noexcept:
    """The core's functions as pointers (see _core.pxd)."""
    return &_CORE_API


cdef mp_pool *pool_of(object pool) except NULL:
    """The native pool of an open Pool (PoolClosed when closed, TypeError
    for anything else)."""
    return (<_PoolBase?>pool)._require()


cdef bint pool_debug(object pool) except -1:
    """True when the Pool is in debug mode (its handler polls corruption)."""
    return (<_PoolBase?>pool)._ctx.debug


# ------------------------------------------------------- module functions --

def set_handler(handler):
    """PyDataMem_SetHandler: make ``handler`` (a mem_handler capsule, or None
    for numpy's default) current in this context; return the previous one."""
    return PyDataMem_SetHandler(handler)


def get_handler():
    """PyDataMem_GetHandler: the handler capsule current in this context."""
    return PyDataMem_GetHandler()


def take_failure():
    """Return ``(code, size, pool id)`` of this thread's last failed handler
    call and forget it; ``(0, 0, 0)`` when none.  The id is the refusing
    pool's ``_native_id``."""
    global mph_fail_code, mph_fail_size, mph_fail_pool
    out = (mph_fail_code, mph_fail_size, mph_fail_pool)
    mph_fail_code = 0
    mph_fail_size = 0
    mph_fail_pool = 0
    return out


def error_table():
    """``[(code, name, text)]`` for every core error code, ``MP_OK`` first,
    from the core's ``MP_ERROR_LIST`` (``mp_error_name``, ``mp_strerror``):
    the one source of :mod:`mempool.errors`' tables."""
    return [(-i, mp_error_name(-i).decode(), mp_strerror(-i).decode())
            for i in range(MP_ERROR_COUNT)]


def error_name(int code):
    """mp_error_name: the symbolic name of a core error code."""
    return mp_error_name(code).decode()


def strerror(int code):
    """mp_strerror: the core's text for an error code."""
    return mp_strerror(code).decode()


cdef dict _config_dict(const mp_config *cfg):
    cdef size_t n = 0, i
    cdef const mp_setting *rows = mp_settings(&n)
    cdef int64_t value
    cdef dict out = {}
    for i in range(n):
        mp_config_get(cfg, rows[i].name, &value)
        out[rows[i].name.decode()] = value
    return out


def stats_fields():
    """``[(name, unit, doc)]`` of every scalar figure of mp_stats, in order,
    from the core's ``MP_STATS_LIST`` (``mp_stats_fields``): the one source
    of :class:`mempool.PoolStats`' fields."""
    cdef const mp_stats_field *f = mp_stats_fields()
    return [(f[i].name.decode(), f[i].unit.decode(), f[i].doc.decode())
            for i in range(MP_STATS_COUNT)]


_STATS_NAMES = tuple(name for name, _, _ in stats_fields())


def default_config():
    """mp_config_default as {name: int}."""
    cdef mp_config cfg
    mp_config_default(&cfg)
    return _config_dict(&cfg)


def settings_table():
    """The core's table of settings (MP_CONFIG_LIST, through mp_settings):
    one tuple ``(name, unit, default, min, max, none, runtime, doc)`` per
    setting, in the table's order; ``none`` is None when the setting has no
    "none" value.  The one source of mempool._settings."""
    cdef size_t n = 0, i
    cdef const mp_setting *rows = mp_settings(&n)
    return [(rows[i].name.decode(), rows[i].unit.decode(), rows[i].default_value,
             rows[i].min, rows[i].max,
             None if rows[i].none == MP_SETTING_NO_NONE else rows[i].none,
             bool(rows[i].runtime), rows[i].doc.decode())
            for i in range(n)]


def check_setting(str name, int64_t value):
    """mp_setting_check: None when the core accepts ``value`` for the
    setting ``name``, else its reason (naming the setting, the value and
    the range)."""
    if mp_setting_check(name.encode(), value) == MP_OK:
        return None
    return mp_config_error().decode()


def array_pool(arr):
    """The pool object whose handler allocated the data of ``arr`` (an
    ndarray that owns its data), or None (numpy's own handler, another
    one, or no data of its own).  Reads the handler numpy keeps in the
    array (PyArray_HANDLER): the capsule's context is the pool."""
    if not PyArray_Check(arr):
        raise TypeError(f"expected a numpy array, got {type(arr).__name__}")
    cdef PyObject *handler = PyArray_HANDLER(<void *>arr)
    if handler == NULL:
        return None
    cdef object capsule = <object>handler
    if not PyCapsule_IsValid(capsule, "mem_handler"):
        return None
    cdef PyDataMem_Handler *h = <PyDataMem_Handler *>PyCapsule_GetPointer(
        capsule, "mem_handler")
    if h.allocator.malloc != mp_handler_malloc:
        return None
    cdef void *owner = PyCapsule_GetContext(capsule)
    return None if owner == NULL else <object>owner


def process_rss():
    """mp_process_rss: this process's resident set in bytes (0 when
    /proc/self/statm cannot be read)."""
    return mp_process_rss()


def size_class_count(size_t small_max):
    """mp_size_class_count: number of small classes for ``small_max``."""
    return mp_size_class_count(small_max)


def size_class_of(size_t size):
    """mp_size_class_of: index of the class serving ``size``."""
    return mp_size_class_of(size)


def size_class_block(unsigned cls):
    """mp_size_class_block: block size of class ``cls``."""
    return mp_size_class_block(cls)


include "_trace.pxi"
include "_buffer.pxi"
