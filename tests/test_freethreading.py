"""Threads without the GIL: the package keeps free-threaded CPython
free-threaded, and what the Python layer shares between threads holds when
several threads hammer it at once.

The hammer tests run on every build (with the GIL they still interleave at
every release point: numpy's loops, the handler's nogil calls); under a
free-threaded interpreter (scripts/build_freethreaded_python.sh, the CI's
free-threaded stage) they run truly in parallel.  Each thread's failure is
collected and re-raised in the main thread.
"""
import gc
import glob
import os
import subprocess
import sys
import sysconfig
import textwrap
import threading
import warnings

import numpy as np
import pytest

import mempool
from mempool import _core
from mempool.errors import CODES

MP_EDOUBLEFREE = CODES["MP_EDOUBLEFREE"]

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
PKG = os.path.dirname(os.path.abspath(mempool.__file__))
THREADS = 4


def run_threads(target, n=THREADS, args=()):
    """Start n threads on target(i, barrier, *args) together; re-raise the
    first failure."""
    barrier = threading.Barrier(n)
    errors = []

    def body(i):
        try:
            target(i, barrier, *args)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


# ------------------------------------------------- the GIL stays off --

def extension_modules():
    """Every compiled module of the package, as import names."""
    names = []
    for path in glob.glob(os.path.join(PKG, "**", "*.so"), recursive=True):
        rel = os.path.relpath(path, os.path.dirname(PKG))
        names.append(rel.split(".")[0].replace(os.sep, "."))
    return sorted(names)


def test_every_extension_is_checked():
    assert {"mempool._core", "mempool._testhooks"} <= set(extension_modules())


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded (3.13t+) interpreter")
@pytest.mark.parametrize("how", ["import", "install", "startup"])
def test_the_gil_stays_off(how):
    """Importing every extension, install(), and MEMPOOL_INSTALL=1's start-up
    install leave sys._is_gil_enabled() False; the warning CPython prints
    when a module re-enables the GIL is turned into an error."""
    code = textwrap.dedent(f"""
        import importlib, sys
        import numpy as np
        assert not sys._is_gil_enabled(), "GIL on before mempool"
        import mempool
        for name in {extension_modules()!r}:
            importlib.import_module(name)
        if {how!r} == "install":
            mempool.install()
        if {how!r} == "startup":
            assert mempool.installed() is not None, "not installed at start-up"
        a = np.ones(1 << 16) * 2
        assert mempool.handler_name() == ("default_allocator" if {how!r} == "import"
                                          else "mempool")
        print(sys._is_gil_enabled())
        """)
    env = dict(os.environ)
    env.pop("PYTHON_GIL", None)   # what the interpreter decides by itself
    if how == "startup":
        env["MEMPOOL_INSTALL"] = "1"
    else:
        env.pop("MEMPOOL_INSTALL", None)
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "GIL" not in out.stderr, out.stderr
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------- hammers --

def test_use_scopes_on_one_pool_from_many_threads(pool):
    """Threads enter and leave use(pool) at once, handing arrays to each
    other to free: every capsule's life is counted, none is reused while it
    dies (the race a shared cached capsule had), and nothing leaks."""
    handed = []
    lock = threading.Lock()

    def worker(i, barrier):
        rng = np.random.default_rng(i)
        barrier.wait()
        for step in range(400):
            with mempool.use(pool):
                a = np.empty(int(rng.integers(1, 40_000)), dtype=np.uint8)
                a[:] = i
                assert mempool.handler_name(a) == "mempool"
            with lock:
                handed.append(a)
                other = handed.pop(0) if len(handed) > THREADS else None
            if other is not None:
                assert (other == other[0]).all()
                del other
            del a

    run_threads(worker)
    handed.clear()
    gc.collect()
    assert pool.stats().live_bytes == 0
    assert not pool._handler_in_use
    assert pool.check() == 0


def test_stats_trim_check_while_threads_allocate(pool):
    """stats(), trim(), purge_aged() and check() from some threads while
    others allocate: the snapshots stay sane and the pool consistent."""
    stop = threading.Event()

    def worker(i, barrier):
        barrier.wait()
        if i % 2 == 0:
            with mempool.use(pool):
                for step in range(300):
                    keep = [np.ones(n) for n in (10, 1000, 100_000, 300_000)]
                    assert sum(float(k.sum()) for k in keep) == 401_010
                    del keep
        else:
            while not stop.is_set():
                st = pool.stats()
                assert 0 <= st.live_bytes <= st.reserved_bytes
                pool.trim()
                pool.purge_aged()
                assert pool.check() == 0
                if i == 1:
                    break_after = st  # noqa: F841  (a snapshot outlives the call)

    def run(i, barrier):
        try:
            worker(i, barrier)
        finally:
            if i % 2 == 0:
                stop.set()

    run_threads(run)
    gc.collect()
    assert pool.stats().live_bytes == 0


def test_bad_pointer_warning_is_given_once_across_threads(pool):
    """The handler's free cannot raise: a bad pointer is warned about once
    per pool, even when threads report at the same instant."""
    def worker(i, barrier):
        barrier.wait()
        for k in range(50):
            pool._on_handler_error(MP_EDOUBLEFREE, 0x1000 + k, 64)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_threads(worker, n=8)
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1, [str(w.message) for w in runtime]


def test_shared_buffer_views_defragment_and_free(pool):
    """Threads pin one buffer through views while another defragments and
    tries to free it: pins are never lost (free refuses while any view is
    alive), content survives every move, and the last free succeeds."""
    buffers = [pool.buffer(1 << 20) for _ in range(6)]
    for k, b in enumerate(buffers):
        b.array(1 << 20, np.uint8)[:] = k
    shared = buffers[3]
    for b in buffers[::2]:
        b.free()
    refused = []

    def worker(i, barrier):
        barrier.wait()
        for step in range(300):
            if i == 0:
                pool.defragment()
            elif i == 1:
                try:
                    shared.free()
                    return          # freed: no view was alive at that moment
                except BufferError:
                    refused.append(step)
            else:
                try:
                    view = shared.array(1 << 20, np.uint8)
                except ValueError:  # freed by thread 1 meanwhile
                    return
                assert shared.pinned
                assert view[0] == 3 and view[-1] == 3
                del view

    run_threads(worker)
    for k in (1, 5):
        assert (buffers[k].array(1 << 20, np.uint8) == k).all()
    shared.free()
    assert shared.freed and not shared.pinned
    assert pool.check() == 0


def test_close_races_use_without_crashing():
    """close() from one thread while others enter use(): each close either
    refuses (PoolBusy) or closes, after which use() raises PoolClosed; the
    pool is never destroyed under an allocation."""
    for attempt in range(20):
        pool = mempool.Pool()
        outcome = {"closed": 0, "busy": 0, "after_close": 0}

        def worker(i, barrier):
            barrier.wait()
            if i == 0:
                for _ in range(50):
                    try:
                        pool.close()
                        outcome["closed"] += 1
                        return
                    except mempool.PoolBusy:
                        outcome["busy"] += 1
            else:
                for _ in range(50):
                    try:
                        with mempool.use(pool):
                            np.ones(1000).sum()
                    except mempool.PoolClosed:
                        outcome["after_close"] += 1
                        return

        run_threads(worker, n=3)
        gc.collect()
        if not pool.closed:
            pool.close()
        assert pool.closed
        with pytest.raises(mempool.PoolClosed):
            pool.stats()


def test_recording_while_threads_allocate(pool):
    """A trace recorded while threads allocate and free through the pool
    is well-formed (validated on load), and stopping it mid-flight is safe."""
    from mempool import trace

    def worker(i, barrier):
        barrier.wait()
        with mempool.use(pool):
            for step in range(200):
                a = np.ones(100 + 37 * step)
                b = a * 2
                del a, b

    with trace.record(pool=pool, use=False) as rec:
        run_threads(worker)
    assert len(rec.trace) > 0
    assert rec.trace.summary()["blocks"] > 0
    gc.collect()
    assert pool.stats().live_bytes == 0


def test_history_started_and_stopped_while_threads_allocate(pool):
    """One thread starts and stops the pool's history over and over (ring
    sizes and stack depths changing), reads its events, snapshots the pool
    and resets its peak, while others allocate and free arrays and movable
    buffers and defragment, and a trace records throughout: nothing crashes
    or hangs, the events held are well-formed, moved buffers keep their
    content, the trace keeps recording after the history's last stop (the
    bypass stays on while either records), and a last recording names each
    array's own line with its snapshot equal to the pool's live bytes."""
    from mempool import history, trace
    from mempool.history import ADDING_OPS, OPS
    stop = threading.Event()

    def toggle():
        for k in range(60):
            rec = history.record(pool, max_entries=(1 << 10) << (k % 4), stacks=k % 5)
            rec.start()
            if k % 10 == 0:
                assert pool.snapshot().stats["reserved_bytes"] > 0
            ev = rec.events()
            assert ((ev["op"] >= 0) & (ev["op"] < len(OPS))).all()
            assert (ev["address"] != 0).all()
            adding = np.isin(ev["op"], list(ADDING_OPS))
            assert (ev["size"][adding] > 0).all()
            assert len(ev["op"]) <= rec.max_entries
            pool.reset_peak()
            rec.stop()
            assert not rec.recording

    def allocate(i):
        with mempool.use(pool):
            step = 0
            while not stop.is_set() or step < 100:
                a = np.ones(10 + (97 * step * i) % 300_000)
                b = a[::2].copy()
                if step % 25 == 0:
                    buf = pool.buffer(1 << 16)
                    buf.array(1 << 16, np.uint8)[:] = i
                    pool.defragment()
                    assert (buf.array(1 << 16, np.uint8) == i).all()
                    buf.free()
                del a, b
                step += 1

    def worker(i, barrier):
        barrier.wait()
        try:
            if i == 0:
                toggle()
            else:
                allocate(i)
        finally:
            stop.set()

    with trace.record(pool=pool, use=False):
        run_threads(worker)
        gc.collect()
        before = _core._trace_count(pool)
        with mempool.use(pool):
            for _ in range(100):
                np.ones(8)
        assert _core._trace_count(pool) - before >= 200    # every alloc and free
    assert pool.check() == 0
    assert pool.stats().live_bytes == 0

    with mempool.use(pool), history.record(pool, stacks=2) as rec:
        kept = [np.ones(n) for n in (10, 5000, 300_000)]
        line = sys._getframe().f_lineno - 1
        snap = pool.snapshot()
    live = snap.live_blocks()
    assert set(live["address"].tolist()) == {k.__array_interface__["data"][0] for k in kept}
    assert int(live["requested"].sum()) == snap.stats["live_bytes"] == sum(k.nbytes for k in kept)
    for site in snap.data["blocks"]["site"][np.isin(snap.blocks["address"], live["address"])]:
        file, lineno, _ = snap.user_frame(int(site))
        assert (os.path.basename(file), lineno) == ("test_freethreading.py", line)
    assert rec.info()["no_gil"] == 0
    del kept


def test_install_from_many_threads_and_new_threads_get_the_pool():
    """install() raced from several threads leaves one consistent install;
    every thread started afterwards allocates from the installed pool."""
    pool = mempool.Pool()
    seen = []
    try:
        def worker(i, barrier):
            barrier.wait()
            mempool.install(pool)
            child = threading.Thread(target=lambda: seen.append(
                mempool.handler_name(np.ones(10))))
            child.start()
            child.join()

        run_threads(worker)
        assert mempool.installed() is pool
        assert seen == ["mempool"] * THREADS
    finally:
        mempool.uninstall()
    assert _core.get_handler() is not None


def test_new_thread_context_follows_the_interpreter(pool):
    """A thread started inside use(pool): with context inheritance (the
    free-threaded 3.14+ default) it allocates from the pool, else from
    numpy's default; install()'s hook never overrides an inherited choice."""
    inherits = bool(getattr(sys.flags, "thread_inherit_context", 0))
    other = mempool.Pool()
    got = []

    def child():
        got.append(mempool.handler_name(np.ones(10)))

    mempool.install(other)
    try:
        with mempool.use(pool):
            t = threading.Thread(target=child)
            t.start()
            t.join()
    finally:
        mempool.uninstall()
    assert got == ["mempool"]   # the pool (inherited) or the installed one
    if inherits:
        assert other.stats().peak_live_bytes == 0
