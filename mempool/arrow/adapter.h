// adapter.h - an arrow::MemoryPool served by a mempool pool.
//
// Built on first use against the installed pyarrow (mempool/arrow/_build.py),
// linked with no file of the core: it calls the core of the loaded
// mempool._core through the public C API (mempool.h), resolved by name once
// (mpa_resolve_core), so Arrow's buffers and numpy's arrays share one pool,
// one capacity and resident limit, one set of pages.
//
// Two objects:
//  - mpa::Pool: a MemoryPool on one mp_pool.  It counts Arrow's own share
//    (Arrow's MemoryPoolStats plus frees, refusals and errors) in the adapter,
//    so the core's numpy fast path is unchanged.
//  - the default-pool redirect (mpa_redirect_default): arrow::default_memory_pool()
//    is a static object inside libarrow that many C++ paths use directly
//    (Parquet's reader and writer properties, some compute kernels), whatever
//    pa.set_memory_pool says.  The redirect gives that object a vtable whose
//    methods send new allocations to the target mpa::Pool and frees to
//    whichever pool owns the block (blocks the original backend handed out
//    before go back to it, through its own methods).
#ifndef MEMPOOL_ARROW_ADAPTER_H
#define MEMPOOL_ARROW_ADAPTER_H

#include <Python.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "arrow/memory_pool.h"
#include "arrow/status.h"
#include "mempool.h"

namespace mpa {

// The core's functions, resolved by name in the loaded mempool._core.
struct CoreApi {
    decltype(&mp_alloc) alloc;
    decltype(&mp_alloc_aligned) alloc_aligned;
    decltype(&mp_realloc) realloc;
    decltype(&mp_free) free;
    decltype(&mp_last_error) last_error;
    decltype(&mp_owns) owns;
    decltype(&mp_requested_size) requested_size;
    decltype(&mp_trim) trim;
    decltype(&mp_strerror) strerror;
    decltype(&mp_error_name) error_name;
    decltype(&mp_stats_get) stats_get;
    decltype(&mp_pool_config) pool_config;
    decltype(&mp_debug_reports) debug_reports;
};
extern CoreApi core;

// Counters of Arrow's share of one pool (a consistent-enough snapshot: each
// field is read atomically on its own).
struct Share {
    int64_t bytes_allocated, max_memory, total_bytes_allocated, num_allocations;
    int64_t frees, reallocs, refused, errors;
};

class Pool final : public arrow::MemoryPool {
 public:
    // head: the pool's NEP 49 handler context (mempool.h's mp_handler_head,
    // first member of the binding's context): its pool, and the full path
    // (malloc_full/free_full) the binding records through while bypass is set.
    // owner: a Python object whose _on_arrow_report() is called from the main
    // thread (Py_AddPendingCall) after a bad pointer or, in debug mode,
    // corruption (borrowed: it must live as long as the pool).
    Pool(mp_handler_head *head, int debug, PyObject *owner);

    using arrow::MemoryPool::Allocate;
    using arrow::MemoryPool::Free;
    using arrow::MemoryPool::Reallocate;
    arrow::Status Allocate(int64_t size, int64_t alignment, uint8_t **out) override;
    arrow::Status Reallocate(int64_t old_size, int64_t new_size, int64_t alignment,
                             uint8_t **ptr) override;
    void Free(uint8_t *buffer, int64_t size, int64_t alignment) override;
    void ReleaseUnused() override;
    void PrintStats() override;
    int64_t bytes_allocated() const override { return stats_.bytes_allocated(); }
    int64_t max_memory() const override { return stats_.max_memory(); }
    int64_t total_bytes_allocated() const override { return stats_.total_bytes_allocated(); }
    int64_t num_allocations() const override { return stats_.num_allocations(); }
    std::string backend_name() const override { return "mempool"; }

    // 1 when ptr is the start of a live block of this pool.
    bool owns(const void *ptr) const { return core.owns(head_->pool, ptr) != 0; }
    mp_pool *mp() const { return head_->pool; }
    Share share() const;
    // What the last report was about (for the warning).
    void last_report(int *code, uintptr_t *address, int64_t *size) const;

 private:
    void *raw_alloc(int64_t size, int64_t alignment);
    int raw_free(void *ptr, int64_t size);
    arrow::Status refused(const char *what, int64_t size, int64_t alignment, int code);
    void report(int code, const void *ptr, int64_t size);
    void poll_corruption(const void *ptr, int64_t size);

    mp_handler_head *head_;
    const bool debug_;
    PyObject *owner_;
    arrow::internal::MemoryPoolStats stats_;
    std::atomic<int64_t> frees_{0}, reallocs_{0}, refused_{0}, errors_{0};
    std::atomic<int> last_code_{0};
    std::atomic<uintptr_t> last_address_{0};
    std::atomic<int64_t> last_size_{0};
    std::atomic<bool> warned_{false};
};

}  // namespace mpa

// A Pool on the mempool pool whose numpy handler capsule this is (the
// caller keeps the capsule, hence the pool, alive for the Pool's lifetime).
// nullptr with the reason in err.
mpa::Pool *mpa_pool_from_capsule(PyObject *capsule, PyObject *owner, std::string *err);

// The pool as pyarrow's Cython declarations know it.
inline arrow::MemoryPool *mpa_as_arrow(mpa::Pool *pool) { return pool; }

// Resolve the core's functions in the shared object at core_path (the file
// of the already loaded mempool._core).  0 on success; otherwise -1 with the
// reason in err.
int mpa_resolve_core(const char *core_path, std::string *err);

// Make arrow::default_memory_pool() serve its new allocations from target
// (nullptr: from its original backend again; blocks of earlier targets still
// go back to them).  0 on success; -1 with the reason in err (the default
// pool is then unchanged).
int mpa_redirect_default(mpa::Pool *target, std::string *err);

// The original backend's own counters (what it allocated itself: before the
// redirect, and while it was off): bytes_allocated, total_bytes_allocated,
// num_allocations; and its name.  Before any redirect: the default pool's.
void mpa_default_backend_stats(int64_t *bytes, int64_t *total, int64_t *count,
                               std::string *name);

// 1 while arrow::default_memory_pool() sends new allocations to a mempool pool.
int mpa_redirect_active(void);

// The Arrow C++ version the adapter was compiled against, and the one loaded.
int mpa_compiled_arrow_version(void);
int mpa_runtime_arrow_version(void);

#endif  // MEMPOOL_ARROW_ADAPTER_H
