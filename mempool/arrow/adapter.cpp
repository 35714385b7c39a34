// adapter.cpp - mpa::Pool (an arrow::MemoryPool on a mempool pool) and the
// redirect of arrow::default_memory_pool().  See adapter.h.
#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL mpa_numpy_api_unused
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include "adapter.h"

#include <dlfcn.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include <numpy/arrayobject.h>  // PyDataMem_Handler: the pool's capsule

#include "arrow/config.h"
#include "arrow/util/config.h"

#if PY_VERSION_HEX >= 0x030D0000
#define MPA_FINALIZING() Py_IsFinalizing()
#else
#define MPA_FINALIZING() _Py_IsFinalizing()
#endif

namespace mpa {

CoreApi core;

namespace {

// The largest alignment mp_alloc gives without being asked (mempool.h).
constexpr int64_t kCoreAlignment = 64;

// Runs in the main thread with the GIL (Py_AddPendingCall): the pool's
// Python owner warns about what report() recorded.  Never raises.
int run_pending_report(void *arg) {
    PyObject *owner = static_cast<PyObject *>(arg);
    PyObject *r = PyObject_CallMethod(owner, "_on_arrow_report", nullptr);
    if (r == nullptr)
        PyErr_WriteUnraisable(owner);
    else
        Py_DECREF(r);
    return 0;
}

}  // namespace

Pool::Pool(mp_handler_head *head, int debug, PyObject *owner)
    : head_(head), debug_(debug != 0), owner_(owner) {}

// One allocation on the core: through the binding's full path while it
// records (bypass), so the trace and the history see Arrow's blocks as
// numpy's; straight to the core otherwise.
void *Pool::raw_alloc(int64_t size, int64_t alignment) {
    mp_handler_head *h = head_;
    if (alignment <= kCoreAlignment) {
        if (h->bypass)
            return h->malloc_full(h, static_cast<size_t>(size));
        return core.alloc(h->pool, static_cast<size_t>(size));
    }
    return core.alloc_aligned(h->pool, static_cast<size_t>(size),
                              static_cast<size_t>(alignment));
}

// One free on the core; MP_OK or the error (already counted by the core).
int Pool::raw_free(void *ptr, int64_t size) {
    mp_handler_head *h = head_;
    if (h->bypass) {
        size_t requested;
        // the full path would report a bad pointer as numpy's: check first
        if (core.requested_size(h->pool, ptr, &requested) == MP_OK) {
            h->free_full(h, ptr, static_cast<size_t>(size));
            return MP_OK;
        }
    }
    return core.free(h->pool, ptr, static_cast<size_t>(size));
}

arrow::Status Pool::refused(const char *what, int64_t size, int64_t alignment, int code) {
    if (code != MP_ENOMEM && code != MP_ESIZE && code != MP_EOVERFLOW)
        return arrow::Status::Invalid("mempool: Arrow's ", what, " of ", size,
                                      " bytes (alignment ", alignment, "): ",
                                      core.strerror(code));
    refused_.fetch_add(1, std::memory_order_relaxed);
    mp_config cfg;
    mp_stats st;
    core.pool_config(head_->pool, &cfg);
    core.stats_get(head_->pool, &st);
    return arrow::Status::OutOfMemory(
        "mempool: the pool refused Arrow's ", what, " of ", size, " bytes (",
        core.strerror(code), "; capacity ",
        cfg.capacity ? std::to_string(cfg.capacity) : std::string("unlimited"),
        ", resident limit ",
        cfg.resident_limit ? std::to_string(cfg.resident_limit) : std::string("none"),
        ", live ", st.live_bytes, " bytes of which Arrow's ", stats_.bytes_allocated(),
        ")");
}

// A pointer Arrow handed back that the pool cannot take (or, in debug mode,
// corruption found): counted here, warned about from the main thread.
void Pool::report(int code, const void *ptr, int64_t size) {
    if (code != MP_ECORRUPT)
        errors_.fetch_add(1, std::memory_order_relaxed);
    last_code_.store(code, std::memory_order_relaxed);
    last_address_.store(reinterpret_cast<uintptr_t>(ptr), std::memory_order_relaxed);
    last_size_.store(size, std::memory_order_relaxed);
    // Never take the GIL here: Arrow frees from its own threads while a
    // Python thread may hold the GIL and wait for them.
    if (owner_ == nullptr || !Py_IsInitialized() || MPA_FINALIZING())
        return;
    if (code != MP_ECORRUPT && warned_.exchange(true))
        return;  // one warning per pool; the rest are only counted
    Py_AddPendingCall(run_pending_report, owner_);
}

void Pool::poll_corruption(const void *ptr, int64_t size) {
    if (debug_ && core.debug_reports(head_->pool, nullptr, 0) > 0)
        report(MP_ECORRUPT, ptr, size);
}

arrow::Status Pool::Allocate(int64_t size, int64_t alignment, uint8_t **out) {
    if (size < 0)
        return arrow::Status::Invalid("negative malloc size");
    void *p = raw_alloc(size, alignment);
    if (p == nullptr)
        return refused("allocation", size, alignment, core.last_error());
    poll_corruption(p, size);
    stats_.DidAllocateBytes(size);
    *out = static_cast<uint8_t *>(p);
    return arrow::Status::OK();
}

arrow::Status Pool::Reallocate(int64_t old_size, int64_t new_size, int64_t alignment,
                               uint8_t **ptr) {
    if (new_size < 0)
        return arrow::Status::Invalid("negative realloc size");
    uint8_t *old = *ptr;
    void *p;
    if (alignment > kCoreAlignment || head_->bypass) {
        // mp_realloc keeps 64-byte alignment only, and the recording path has
        // no realloc: move by hand.
        size_t requested;
        int code = core.requested_size(head_->pool, old, &requested);
        if (code != MP_OK) {
            core.free(head_->pool, old, 0);  // counts the error in the core
            report(code, old, old_size);
            return arrow::Status::Invalid("mempool: Arrow reallocated a pointer the pool "
                                          "cannot resize: ", core.strerror(code));
        }
        p = raw_alloc(new_size, alignment);
        if (p == nullptr)
            return refused("reallocation", new_size, alignment, core.last_error());
        std::memcpy(p, old, static_cast<size_t>(std::min(old_size, new_size)));
        raw_free(old, old_size);
    } else {
        p = core.realloc(head_->pool, old, static_cast<size_t>(old_size),
                         static_cast<size_t>(new_size));
        if (p == nullptr) {
            int code = core.last_error();
            size_t requested = 0;
            bool too_large = code == MP_ESIZE &&
                             core.requested_size(head_->pool, old, &requested) == MP_OK &&
                             requested == static_cast<size_t>(old_size);
            if (code == MP_ENOMEM || code == MP_EOVERFLOW || too_large)
                return refused("reallocation", new_size, alignment, code);
            report(code, old, old_size);
            return arrow::Status::Invalid("mempool: Arrow reallocated a pointer the pool "
                                          "cannot resize (", core.error_name(code), "): ",
                                          core.strerror(code));
        }
    }
    poll_corruption(p, new_size);
    stats_.DidReallocateBytes(old_size, new_size);
    reallocs_.fetch_add(1, std::memory_order_relaxed);
    *ptr = static_cast<uint8_t *>(p);
    return arrow::Status::OK();
}

void Pool::Free(uint8_t *buffer, int64_t size, int64_t /*alignment*/) {
    int code = raw_free(buffer, size);
    if (code == MP_OK || code == MP_ECORRUPT) {  // ECORRUPT: freed all the same
        stats_.DidFreeBytes(size);
        frees_.fetch_add(1, std::memory_order_relaxed);
    }
    if (code != MP_OK)
        report(code, buffer, size);
}

void Pool::ReleaseUnused() { core.trim(head_->pool); }

void Pool::PrintStats() {
    Share s = share();
    std::fprintf(stderr,
                 "mempool (Arrow's share): bytes_allocated %" PRId64 ", max_memory %" PRId64
                 ", total_bytes_allocated %" PRId64 ", num_allocations %" PRId64
                 ", frees %" PRId64 ", refused %" PRId64 ", errors %" PRId64 "\n",
                 s.bytes_allocated, s.max_memory, s.total_bytes_allocated, s.num_allocations,
                 s.frees, s.refused, s.errors);
}

Share Pool::share() const {
    Share s;
    s.bytes_allocated = stats_.bytes_allocated();
    s.max_memory = stats_.max_memory();
    s.total_bytes_allocated = stats_.total_bytes_allocated();
    s.num_allocations = stats_.num_allocations();
    s.frees = frees_.load(std::memory_order_relaxed);
    s.reallocs = reallocs_.load(std::memory_order_relaxed);
    s.refused = refused_.load(std::memory_order_relaxed);
    s.errors = errors_.load(std::memory_order_relaxed);
    return s;
}

void Pool::last_report(int *code, uintptr_t *address, int64_t *size) const {
    *code = last_code_.load(std::memory_order_relaxed);
    *address = last_address_.load(std::memory_order_relaxed);
    *size = last_size_.load(std::memory_order_relaxed);
}

// ------------------------------------------------------------ the redirect --
namespace {

// Itanium C++ ABI (gcc and clang on Linux): a pointer to member function is
// {ptr, adj}; for a virtual member, ptr is 1 + the slot's offset in bytes in
// the vtable; for a non-virtual one, the (even) address of the function.
struct PmfRep {
    uintptr_t ptr;
    ptrdiff_t adj;
};

using AllocateFn = arrow::Status (arrow::MemoryPool::*)(int64_t, int64_t, uint8_t **);
using ReallocateFn = arrow::Status (arrow::MemoryPool::*)(int64_t, int64_t, int64_t,
                                                          uint8_t **);
using FreeFn = void (arrow::MemoryPool::*)(uint8_t *, int64_t, int64_t);
using VoidFn = void (arrow::MemoryPool::*)();
using CountFn = int64_t (arrow::MemoryPool::*)() const;
using NameFn = std::string (arrow::MemoryPool::*)() const;

const AllocateFn kAllocate = static_cast<AllocateFn>(&arrow::MemoryPool::Allocate);
const ReallocateFn kReallocate = static_cast<ReallocateFn>(&arrow::MemoryPool::Reallocate);
const FreeFn kFree = static_cast<FreeFn>(&arrow::MemoryPool::Free);
const VoidFn kReleaseUnused = &arrow::MemoryPool::ReleaseUnused;
const VoidFn kPrintStats = &arrow::MemoryPool::PrintStats;
const CountFn kBytes = &arrow::MemoryPool::bytes_allocated;
const CountFn kMax = &arrow::MemoryPool::max_memory;
const CountFn kTotal = &arrow::MemoryPool::total_bytes_allocated;
const CountFn kCount = &arrow::MemoryPool::num_allocations;
const NameFn kName = &arrow::MemoryPool::backend_name;

static_assert(sizeof(AllocateFn) == sizeof(PmfRep), "Itanium C++ ABI member pointers");

std::mutex g_lock;                          // serialises mpa_redirect_default
arrow::MemoryPool *g_default = nullptr;     // the object redirected
void *const *g_orig_vtable = nullptr;       // its vtable before
std::atomic<Pool *> g_target{nullptr};      // where new allocations go
constexpr int kMaxOwners = 16;              // pools ever targeted
std::atomic<Pool *> g_owners[kMaxOwners];
std::atomic<int> g_owner_count{0};

// The vtable slot a virtual member occupies, or -1 if pmf is not virtual.
template <typename PMF>
ptrdiff_t slot_of(PMF pmf) {
    PmfRep rep;
    std::memcpy(&rep, &pmf, sizeof rep);
    if ((rep.ptr & 1) == 0 || rep.adj != 0)
        return -1;
    return static_cast<ptrdiff_t>((rep.ptr - 1) / sizeof(void *));
}

// The original class's implementation of virtual member pmf, as a
// non-virtual member pointer: (pool->*original(kFree))(...) runs the
// backend's own Free on the same object, whatever its vptr says now.
template <typename PMF>
PMF original(PMF pmf) {
    PmfRep out{reinterpret_cast<uintptr_t>(g_orig_vtable[slot_of(pmf)]), 0};
    PMF result;
    std::memcpy(&result, &out, sizeof result);
    return result;
}

// The pool (of those ever targeted) that owns ptr, or nullptr.
Pool *owner_of(const void *ptr) {
    int n = g_owner_count.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
        Pool *p = g_owners[i].load(std::memory_order_acquire);
        if (p != nullptr && p->owns(ptr))
            return p;
    }
    return nullptr;
}

// The vtable the redirected default pool gets.  No data member: `this` is
// the original backend's object, used only to call its own methods.
class Redirect final : public arrow::MemoryPool {
 public:
    using arrow::MemoryPool::Allocate;
    using arrow::MemoryPool::Free;
    using arrow::MemoryPool::Reallocate;

    arrow::Status Allocate(int64_t size, int64_t alignment, uint8_t **out) override {
        if (Pool *t = g_target.load(std::memory_order_acquire))
            return t->Allocate(size, alignment, out);
        return (this->*original(kAllocate))(size, alignment, out);
    }

    arrow::Status Reallocate(int64_t old_size, int64_t new_size, int64_t alignment,
                             uint8_t **ptr) override {
        if (Pool *o = owner_of(*ptr))
            return o->Reallocate(old_size, new_size, alignment, ptr);
        Pool *t = g_target.load(std::memory_order_acquire);
        if (t == nullptr)
            return (this->*original(kReallocate))(old_size, new_size, alignment, ptr);
        // a block of the original backend: move it into the pool
        uint8_t *moved;
        ARROW_RETURN_NOT_OK(t->Allocate(new_size, alignment, &moved));
        std::memcpy(moved, *ptr, static_cast<size_t>(std::min(old_size, new_size)));
        (this->*original(kFree))(*ptr, old_size, alignment);
        *ptr = moved;
        return arrow::Status::OK();
    }

    void Free(uint8_t *buffer, int64_t size, int64_t alignment) override {
        if (Pool *o = owner_of(buffer))
            return o->Free(buffer, size, alignment);
        (this->*original(kFree))(buffer, size, alignment);
    }

    void ReleaseUnused() override {
        if (Pool *t = g_target.load(std::memory_order_acquire))
            t->ReleaseUnused();
        (this->*original(kReleaseUnused))();
    }

    void PrintStats() override {
        if (Pool *t = g_target.load(std::memory_order_acquire))
            t->PrintStats();
        (this->*original(kPrintStats))();
    }

    int64_t bytes_allocated() const override { return count(kBytes); }
    int64_t max_memory() const override { return count(kMax); }
    int64_t total_bytes_allocated() const override { return count(kTotal); }
    int64_t num_allocations() const override { return count(kCount); }

    std::string backend_name() const override {
        if (Pool *t = g_target.load(std::memory_order_acquire))
            return t->backend_name();
        return (this->*original(kName))();
    }

 private:
    int64_t count(CountFn fn) const {
        if (Pool *t = g_target.load(std::memory_order_acquire))
            return (t->*fn)();
        return (this->*original(fn))();
    }
};

Redirect g_prototype;  // holds the vtable installed into the default pool

void *vptr_of(const void *object) {
    return __atomic_load_n(reinterpret_cast<void *const *>(object), __ATOMIC_ACQUIRE);
}

// Every slot the redirect forwards to must be a virtual member at a sane slot
// with an even (non-virtual-looking) function address in the original vtable.
bool slots_sane(void *const *vtable, std::string *err) {
    const ptrdiff_t slots[] = {slot_of(kAllocate), slot_of(kReallocate), slot_of(kFree),
                               slot_of(kReleaseUnused), slot_of(kPrintStats),
                               slot_of(kBytes), slot_of(kMax), slot_of(kTotal),
                               slot_of(kCount), slot_of(kName)};
    for (ptrdiff_t s : slots) {
        if (s < 0 || s > 64) {
            *err = "this compiler's member pointers are not the Itanium C++ ABI's";
            return false;
        }
        if ((reinterpret_cast<uintptr_t>(vtable[s]) & 1) != 0 || vtable[s] == nullptr) {
            *err = "the default pool's vtable has an unexpected layout";
            return false;
        }
    }
    return true;
}

}  // namespace
}  // namespace mpa

int mpa_redirect_default(mpa::Pool *target, std::string *err) {
    using namespace mpa;
    std::lock_guard<std::mutex> guard(g_lock);
    arrow::MemoryPool *def = arrow::default_memory_pool();
    void *ours = vptr_of(&g_prototype);
    void *current = vptr_of(def);
    if (target == nullptr && current != ours)
        return 0;  // never redirected: nothing to undo
    if (current != ours) {
        if (g_default != nullptr) {
            *err = "arrow::default_memory_pool() changed its vtable after the redirect";
            return -1;
        }
        void *const *vtable = static_cast<void *const *>(current);
        if (!slots_sane(vtable, err))
            return -1;
        g_orig_vtable = vtable;
        g_default = def;
    }
    bool known = false;
    for (int i = 0; i < g_owner_count.load(std::memory_order_relaxed); ++i)
        known = known || g_owners[i].load(std::memory_order_relaxed) == target;
    if (target != nullptr && !known) {
        int n = g_owner_count.load(std::memory_order_relaxed);
        if (n == kMaxOwners) {
            *err = "more than 16 pools have been Arrow's default in this process";
            return -1;
        }
        g_owners[n].store(target, std::memory_order_release);
        g_owner_count.store(n + 1, std::memory_order_release);
    }
    g_target.store(target, std::memory_order_release);
    if (current != ours)
        __atomic_store_n(reinterpret_cast<void **>(def), ours, __ATOMIC_RELEASE);
    // the proof that calls dispatch through the new vtable
    std::string name = def->backend_name();
    std::string want = target != nullptr ? "mempool" : (def->*original(kName))();
    if (name != want) {
        *err = "the redirected default pool answers backend_name() '" + name + "'";
        return -1;
    }
    return 0;
}

int mpa_redirect_active(void) {
    return mpa::g_default != nullptr &&
           mpa::g_target.load(std::memory_order_acquire) != nullptr;
}

void mpa_default_backend_stats(int64_t *bytes, int64_t *total, int64_t *count,
                               std::string *name) {
    using namespace mpa;
    std::lock_guard<std::mutex> guard(g_lock);
    arrow::MemoryPool *def = arrow::default_memory_pool();
    if (g_default == nullptr) {
        *bytes = def->bytes_allocated();
        *total = def->total_bytes_allocated();
        *count = def->num_allocations();
        *name = def->backend_name();
        return;
    }
    *bytes = (def->*original(kBytes))();
    *total = (def->*original(kTotal))();
    *count = (def->*original(kCount))();
    *name = (def->*original(kName))();
}

int mpa_compiled_arrow_version(void) { return ARROW_VERSION; }

int mpa_runtime_arrow_version(void) { return arrow::GetBuildInfo().version; }

int mpa_resolve_core(const char *core_path, std::string *err) {
    void *lib = dlopen(core_path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == nullptr) {
        *err = std::string("mempool._core is not loaded from ") + core_path;
        return -1;
    }
    struct Entry {
        const char *name;
        void **slot;
    } entries[] = {
#define MPA_ENTRY(field, symbol) {#symbol, reinterpret_cast<void **>(&mpa::core.field)}
        MPA_ENTRY(alloc, mp_alloc),
        MPA_ENTRY(alloc_aligned, mp_alloc_aligned),
        MPA_ENTRY(realloc, mp_realloc),
        MPA_ENTRY(free, mp_free),
        MPA_ENTRY(last_error, mp_last_error),
        MPA_ENTRY(owns, mp_owns),
        MPA_ENTRY(requested_size, mp_requested_size),
        MPA_ENTRY(trim, mp_trim),
        MPA_ENTRY(strerror, mp_strerror),
        MPA_ENTRY(error_name, mp_error_name),
        MPA_ENTRY(stats_get, mp_stats_get),
        MPA_ENTRY(pool_config, mp_pool_config),
        MPA_ENTRY(debug_reports, mp_debug_reports),
#undef MPA_ENTRY
    };
    for (const Entry &e : entries) {
        void *fn = dlsym(lib, e.name);
        if (fn == nullptr) {
            *err = std::string("mempool._core does not export ") + e.name;
            return -1;
        }
        *e.slot = fn;
    }
    return 0;
}

mpa::Pool *mpa_pool_from_capsule(PyObject *capsule, PyObject *owner, std::string *err) {
    auto *handler =
        static_cast<PyDataMem_Handler *>(PyCapsule_GetPointer(capsule, "mem_handler"));
    if (handler == nullptr) {
        PyErr_Clear();
        *err = "not a numpy mem_handler capsule";
        return nullptr;
    }
    // mempool's handler context starts with an mp_handler_head (mempool.h)
    auto *head = static_cast<mp_handler_head *>(handler->allocator.ctx);
    if (head == nullptr || head->pool == nullptr || std::strcmp(handler->name, "mempool") != 0) {
        *err = "the capsule is not an open mempool pool's handler";
        return nullptr;
    }
    mp_config cfg;
    mpa::core.pool_config(head->pool, &cfg);
    // Kept reachable from a global for good (never destroyed at exit, so
    // LeakSanitizer sees them as held): Arrow may hold the pointer anywhere.
    static std::mutex lock;
    static auto *pools = new std::vector<mpa::Pool *>;
    std::lock_guard<std::mutex> guard(lock);
    pools->push_back(new mpa::Pool(head, cfg.debug, owner));
    return pools->back();
}
