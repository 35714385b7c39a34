/*
 * mempool.h - the one public contract of the mempool native core.
 *
 * A pool hands out memory for numpy arrays (and anything else) from address
 * space it reserves itself.  Small requests (<= small_max) come from
 * size-classed slabs behind a per-thread cache; large ones from a TLSF
 * good-fit heap with split and coalesce; blocks bigger than an arena from a
 * mapping of their own.  Free pages go back to the OS after they have stayed
 * free for `decay_ms`, so a loop that reuses its memory takes no page faults
 * while memory that stays free stops costing resident memory.
 *
 * Every misuse (double free, foreign or interior pointer, wrong size, bad
 * alignment, overflow, capacity exhausted) is reported as an error code,
 * counted in the statistics, and leaves the pool unchanged.  Nothing here
 * aborts or prints.
 *
 * Thread safety: every function may be called from any thread, except
 * mp_pool_destroy, which must not race with other calls on the same pool.
 * fork() leaves the child with a working pool.
 */
#ifndef MEMPOOL_H
#define MEMPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error codes ------------------------------------------------------ */
/* X-macro: one list feeds the enum, mp_strerror and the error counters. */
#define MP_ERROR_LIST(X)                                                      \
    X(MP_OK, 0, "success")                                                    \
    X(MP_ENOMEM, 1, "out of memory: the capacity or the OS refused")          \
    X(MP_EINVAL, 2, "invalid argument")                                       \
    X(MP_EDOUBLEFREE, 3, "double free: the block is already free")            \
    X(MP_EFOREIGN, 4, "pointer was not handed out by this pool")              \
    X(MP_EINTERIOR, 5, "pointer into the middle of a block")                  \
    X(MP_ESIZE, 6, "size does not match the block, or is too large")          \
    X(MP_EOVERFLOW, 7, "count * size overflows")                              \
    X(MP_EALIGN, 8, "alignment is not a power of two, or too large")          \
    X(MP_EBUSY, 9, "the pool still has live blocks")                        \
    X(MP_ECORRUPT, 10, "heap corruption detected: canary or freed-memory pattern overwritten")

typedef enum mp_error {
#define MP_ERROR_ENUM(name, value, text) name = -(value),
    MP_ERROR_LIST(MP_ERROR_ENUM)
#undef MP_ERROR_ENUM
} mp_error;

/* Number of entries in MP_ERROR_LIST (MP_OK included), counted by the list
 * itself: adding a code changes the list and nothing else in C. */
#define MP_ERROR_ONE_(name, value, text) +1
enum { MP_ERROR_COUNT = 0 MP_ERROR_LIST(MP_ERROR_ONE_) };

/* Static text for an error code (never NULL; unknown codes get a text too). */
const char *mp_strerror(int code);

/* Symbolic name of an error code ("MP_EDOUBLEFREE"); "MP_UNKNOWN" if none. */
const char *mp_error_name(int code);

/* ---- configuration ---------------------------------------------------- */
/*
 * Every setting of a pool, once.  From this list come the mp_config struct,
 * mp_config_default, the core's validation (mp_config_check), the table
 * exported to bindings (mp_settings) and the setter of live pools
 * (mp_pool_set); the Python package derives from that table Pool's keyword
 * arguments and properties, the MEMPOOL_* variables, `python -m mempool run`'s
 * flags, the Dask and Ray helpers' arguments and the README's settings table.
 *
 *   X(name, type, unit, default, min, max, none, runtime, doc)
 *
 *   name     the mp_config field.  Python spells it the same, less a "_ms"
 *            suffix (Python speaks seconds); MEMPOOL_<NAME>, run --<name>.
 *   type     its C type in mp_config
 *   unit     "bytes", "ms", "count", "flag" (0/1), or the words of a choice
 *            separated by '|' (the value is the word's index)
 *   default  the value a pool gets when nobody says otherwise
 *   min, max the values the core accepts ...
 *   none     ... and this one outside them, meaning "no limit" / "never"
 *            (MP_SETTING_NO_NONE: there is none)
 *   runtime  1: mp_pool_set may change it on a live pool (mp_pool_set says
 *            what the change does to the pool)
 *   doc      one line; shown by Python's help, the CLI and the README
 *
 * Adding a setting: one line here, then use config->name where the core
 * needs it (and, when runtime is 1, what a change must do in mp_pool_set's
 * switch, config.c).  Everything else follows; see "Adding a setting" in
 * the README.  The order is the struct's layout: append new settings.
 */
#define MP_SETTING_NO_NONE INT64_MIN
#define MP_CONFIG_LIST(X)                                                                \
    X(capacity, size_t, "bytes", 0, (int64_t)2 << 20, INT64_MAX, 0, 0,                   \
      "most bytes of address space the pool may reserve; 0 = unlimited")                  \
    X(small_max, size_t, "bytes", 32768, 64, 65536, MP_SETTING_NO_NONE, 0,               \
      "largest request served by size-classed slabs")                                     \
    X(arena_bytes, size_t, "bytes", (int64_t)256 << 20, (int64_t)2 << 20, (int64_t)1 << 40, \
      MP_SETTING_NO_NONE, 0, "address space reserved per arena (rounded up to 2 MiB)")    \
    X(huge_min, size_t, "bytes", 0, 1, (int64_t)1 << 46, 0, 0,                           \
      "requests this large use a heap of 2 MiB granules (> small_max); 0 = none")          \
    X(decay_ms, int64_t, "ms", 1000, 0, (int64_t)365 * 86400 * 1000, -1, 1,              \
      "free pages go back to the OS after this long (0: at once; never: only on trim)")    \
    X(huge_pages, int, "off|on|auto", 2, 0, 2, MP_SETTING_NO_NONE, 0,                    \
      "transparent huge pages: never, every arena, or (auto) large blocks' whole extents") \
    X(background_purge, int, "flag", 1, 0, 1, MP_SETTING_NO_NONE, 1,                     \
      "a thread gives aged pages back, so idle memory returns without further calls")     \
    X(debug, int, "flag", 0, 0, 1, MP_SETTING_NO_NONE, 0,                                \
      "fill patterns, tail canaries and write-after-free checks (debug mode)")            \
    X(retain_arenas, unsigned, "count", 1, 0, UINT32_MAX, MP_SETTING_NO_NONE, 1,         \
      "wholly free arenas each heap keeps mapped, so a loop does not map and unmap")      \
    X(resident_limit, size_t, "bytes", 0, (int64_t)2 << 20, INT64_MAX, 0, 1,             \
      "free pages go back before resident memory would pass this; 0 = no limit")          \
    X(mesh, int, "flag", 0, 0, 1, MP_SETTING_NO_NONE, 0,                                 \
      "mesh slabs whose live blocks do not overlap onto one physical page")

typedef enum mp_huge_pages {
    MP_HUGE_OFF = 0,  /* never advise huge pages */
    MP_HUGE_ON = 1,   /* advise huge pages on every arena */
    MP_HUGE_AUTO = 2, /* huge pages for large blocks' whole 2 MiB extents (and the huge_min heap) */
} mp_huge_pages;

/* A pool's settings (see MP_CONFIG_LIST for each field).  Notes beyond the
 * one-line docs: resident_limit: before resident memory would pass it, the
 * pool gives back every free page it holds, and a request still over it gets
 * MP_ENOMEM, so the pool's cache never causes an OOM kill.  mesh: slabs live
 * in memfd-backed arenas and the purger and mp_trim mesh them (Mesh, PLDI
 * 2019); see "Meshing" in the README.  debug: see "debug mode" below. */
typedef struct mp_config {
#define MP_CONFIG_FIELD(name, type, unit, def, min, max, none, runtime, doc) type name;
    MP_CONFIG_LIST(MP_CONFIG_FIELD)
#undef MP_CONFIG_FIELD
} mp_config;

/* One row of MP_CONFIG_LIST, for bindings (values as int64_t). */
typedef struct mp_setting {
    const char *name, *unit, *doc;
    int64_t default_value, min, max, none;
    int runtime;
} mp_setting;

/* The table: a pointer to its rows (static), their number in *count. */
const mp_setting *mp_settings(size_t *count);

/* Fill `config` with the defaults (the measured choices, see README). */
void mp_config_default(mp_config *config);

/* MP_OK when every field is within its range (or its none value), else
 * MP_EINVAL with the reason in mp_config_error(). */
int mp_config_check(const mp_config *config);

/* Whether `value` is valid for the setting `name`: MP_OK, or MP_EINVAL with
 * the reason in mp_config_error() (an unknown name is one). */
int mp_setting_check(const char *name, int64_t value);

/* Set the field `name` of `config` to `value` after mp_setting_check (MP_OK,
 * or MP_EINVAL and nothing changed); read it, widened, with mp_config_get.
 * Bindings fill a config by name and need no copy of the struct. */
int mp_config_set(mp_config *config, const char *name, int64_t value);
int mp_config_get(const mp_config *config, const char *name, int64_t *out);

/* Why the last mp_config_check, mp_setting_check, mp_config_set/get,
 * mp_pool_create or mp_pool_set/get of this thread refused a value: one
 * line naming the setting, the value and what is allowed ("" if none did). */
const char *mp_config_error(void);

/* ---- pool lifetime ---------------------------------------------------- */
typedef struct mp_pool mp_pool;

/* Change a setting of a live pool (a row with runtime 1), like jemalloc's
 * mallctl: MP_EINVAL, with the reason in mp_config_error(), for an unknown
 * name, a setting fixed at creation or a value out of range.  The pool acts
 * on the change at once: a shorter decay gives back what aged past it, a
 * resident limit gives back cached pages over it (and is refused below the
 * live bytes, which cannot be given back), background_purge starts or idles
 * the purger, retain_arenas applies at the next purge. */
int mp_pool_set(mp_pool *pool, const char *name, int64_t value);

/* A setting of a live pool, in *out (MP_EINVAL for an unknown name). */
int mp_pool_get(const mp_pool *pool, const char *name, int64_t *out);

/* mp_pool_set(pool, "resident_limit", resident_limit). */
int mp_pool_set_resident_limit(mp_pool *pool, size_t resident_limit);

/* Create a pool; *out is set only on MP_OK.  NULL config = defaults.
 * Returns MP_EINVAL for a setting out of range (mp_config_error() names it). */
int mp_pool_create(const mp_config *config, mp_pool **out);

/* Give every byte of the pool back to the OS.  Blocks still live are freed
 * with it: pointers into the pool are dangling afterwards.  NULL is a no-op. */
void mp_pool_destroy(mp_pool *pool);

/* ---- allocation ------------------------------------------------------- */
/* Allocate `size` bytes aligned to 64; size 0 gives a unique pointer.
 * NULL on failure, with the reason in mp_last_error(). */
void *mp_alloc(mp_pool *pool, size_t size);

/* Allocate with a power-of-two alignment (any value up to 1 GiB). */
void *mp_alloc_aligned(mp_pool *pool, size_t size, size_t align);

/* Allocate count*size zeroed bytes; MP_EOVERFLOW when the product overflows. */
void *mp_calloc(mp_pool *pool, size_t count, size_t size);

/* Resize a block, keeping min(old, new) bytes of content.  old_size 0 means
 * unknown; a non-zero old_size must equal the size the block was last
 * requested with (MP_ESIZE otherwise).  ptr NULL acts as mp_alloc; new_size 0
 * gives a zero-size block (the old one is freed).  On failure returns NULL
 * and the old block is untouched and still live. */
void *mp_realloc(mp_pool *pool, void *ptr, size_t old_size, size_t new_size);

/* Free a block.  size 0 means unknown; otherwise it must equal the size the
 * block was requested with.  NULL is MP_OK.  Returns an error code; on error
 * nothing changes, except MP_ECORRUPT (debug mode: the canary was broken),
 * returned after the block was freed. */
int mp_free(mp_pool *pool, void *ptr, size_t size);

/* NEP 49 (numpy's PyDataMem_Handler) entry points, for a binding whose
 * handler context starts with an mp_handler_head: they run the inlined fast
 * paths of mp_alloc and mp_free (the latter with size 0, unknown) and pass
 * every other call, untouched, to the binding's own malloc_full/free_full
 * (which do the whole work: errors, reports, tracing).  bypass nonzero sends
 * every call there (while the binding records a trace). */
typedef struct mp_handler_head {
    mp_pool *pool;
    int bypass;
    void *(*malloc_full)(void *ctx, size_t size);
    void (*free_full)(void *ctx, void *ptr, size_t size);
} mp_handler_head;
void *mp_handler_malloc(void *ctx, size_t size);
void mp_handler_free(void *ctx, void *ptr, size_t size);

/* The error of this thread's last failed mp_alloc/aligned/calloc/realloc. */
int mp_last_error(void);

/* ---- queries ---------------------------------------------------------- */
/* 1 if ptr is the start of a live block of this pool, else 0. */
int mp_owns(const mp_pool *pool, const void *ptr);

/* Bytes usable at ptr (>= the requested size); 0 if ptr is not a live block. */
size_t mp_usable_size(const mp_pool *pool, const void *ptr);

/* Requested size of a live block, in *out; error code otherwise. */
int mp_requested_size(const mp_pool *pool, const void *ptr, size_t *out);

/* The whole process's resident set in bytes (/proc/self/statm); 0 when it
 * cannot be read. */
uint64_t mp_process_rss(void);

/* ---- statistics ------------------------------------------------------- */
#define MP_MAX_CLASSES 64
#define MP_FREE_BINS 16 /* 4 KiB .. 64 MiB and larger */

typedef struct mp_class_stats {
    uint64_t block_size;  /* bytes per block of this class */
    uint64_t slabs;       /* slabs currently held by the class */
    uint64_t blocks;      /* blocks in those slabs */
    uint64_t live_blocks; /* blocks handed out and not freed */
    uint64_t live_bytes;  /* requested bytes of those blocks */
} mp_class_stats;

/* One layer of the pool (mp_stats.layers, indexed by MP_LAYER_*). */
enum { MP_LAYER_SMALL = 0, MP_LAYER_PAGES = 1, MP_LAYER_HUGE = 2, MP_LAYER_DIRECT = 3,
       MP_LAYER_COUNT = 4 };
typedef struct mp_layer_stats {
    uint64_t live_bytes;     /* requested bytes of its live blocks */
    uint64_t in_use_bytes;   /* bytes its live blocks occupy (SMALL: its slabs) */
    uint64_t free_bytes;     /* free bytes it holds (SMALL: free blocks in slabs) */
    uint64_t dirty_free_bytes; /* of those, resident (PAGES and HUGE) */
    uint64_t largest_free_bytes;
    uint64_t resident_bytes; /* PAGES: slabs' pages included (SMALL: 0) */
    uint64_t reserved_bytes; /* address space (SMALL: 0, in PAGES) */
    uint64_t blocks;         /* live blocks (PAGES: not counted, 0) */
} mp_layer_stats;

/* X-macro: every scalar figure of mp_stats, in order, as X(name, unit,
 * doc).  One list feeds the struct, the table the core exports
 * (mp_stats_fields: names, offsets, units, docs) and, through that table,
 * the Python side: the dict of Pool._stats_raw and the fields and docs of
 * mempool.PoolStats.  Adding a figure = one line here and the line of
 * mp_stats_get (pool/stats.c) that fills it.  Units: "bytes", "calls" (of
 * the pool's API or the OS), "count" (things that exist now), "pages", "ns". */
#define MP_STATS_LIST(X)                                                                         \
    /* bytes */                                                                                  \
    X(live_bytes, "bytes", "sum of the requested sizes of live blocks")                          \
    X(peak_live_bytes, "bytes",                                                                  \
      "highest live_bytes seen (small blocks are counted per thread in batches: it may lag by "  \
      "up to 64 KiB per thread)")                                                                \
    X(allocated_bytes, "bytes", "sum of the rounded (block) sizes of live blocks")              \
    X(reserved_bytes, "bytes", "address space the pool holds (arenas and mappings)")            \
    X(resident_bytes, "bytes", "estimate of the pages touched and not given back")              \
    X(peak_resident_bytes, "bytes", "highest resident_bytes seen")                               \
    X(free_bytes, "bytes", "free bytes inside arenas (the heaps' free spans)")                  \
    X(dirty_free_bytes, "bytes", "of those, still resident (waiting for the decay)")            \
    X(largest_free_bytes, "bytes",                                                               \
      "largest free span: a request up to this size fits without reserving more")              \
    X(released_bytes, "bytes", "total bytes given back to the OS so far")                        \
    X(metadata_bytes, "bytes", "bookkeeping held outside the arenas")                            \
    X(slab_free_bytes, "bytes",                                                                  \
      "free blocks inside slabs: memory a size class holds for its own requests only")          \
    /* calls */                                                                                  \
    X(alloc_count, "calls", "successful allocations (callocs included)")                         \
    X(free_count, "calls", "successful frees")                                                   \
    X(realloc_count, "calls",                                                                    \
      "successful reallocs (their internal allocation and free are not counted again)")         \
    X(calloc_count, "calls", "successful callocs (also in alloc_count)")                         \
    X(small_alloc_count, "calls", "allocations served by slabs")                                 \
    X(large_alloc_count, "calls", "allocations served by the large-block heaps")                 \
    X(direct_alloc_count, "calls", "allocations served by a mapping of their own")               \
    /* OS calls */                                                                               \
    X(mmap_count, "calls", "mmap calls")                                                         \
    X(munmap_count, "calls", "munmap calls")                                                     \
    X(madvise_count, "calls", "madvise calls (pages given back, huge-page advice)")              \
    X(mremap_count, "calls", "mremap calls (mappings grown or shrunk in place)")                 \
    /* structure */                                                                              \
    X(arena_count, "count", "arenas reserved now")                                               \
    X(direct_count, "count", "blocks living in a mapping of their own")                          \
    X(thread_cache_count, "count", "per-thread caches attached to the pool")                     \
    X(free_span_count, "count", "free spans in the heaps")                                       \
    /* movable buffers (mp_buffer_*) */                                                          \
    X(buffer_count, "count", "live movable buffers")                                             \
    X(buffer_bytes, "bytes", "their bytes")                                                      \
    X(pinned_buffer_count, "count", "of those, pinned (by a view) now")                          \
    X(defrag_count, "calls", "mp_defragment calls")                                              \
    X(defrag_moved_bytes, "bytes", "bytes they copied")                                          \
    /* meshing (config.mesh) */                                                                  \
    X(mesh_pages, "pages", "slab pages mapped onto another slab's memory now")                   \
    X(mesh_bytes_saved, "bytes", "the memory that saves (mesh_pages x 4 KiB)")                   \
    X(mesh_pages_total, "pages", "pages meshed since the pool was made")                         \
    X(mesh_calls, "calls", "runs of the mesher (purger and trim)")                               \
    X(mesh_pause_max_ns, "ns",                                                                   \
      "longest time one slab was write-protected while its blocks were copied (a writer to it " \
      "waited that long at most)")                                                               \
    /* threads */                                                                                \
    X(pool_lock_waits, "count",                                                                  \
      "times a thread found the pool's lock (large blocks, slabs' pages) held and waited")      \
    X(class_lock_waits, "count",                                                                 \
      "times a thread found a size class's lock (slab refills and returns) held and waited")    \
    X(purger_wakeups, "count",                                                                   \
      "times the background purger woke (a deadline passed, or work came due sooner)")         \
    /* errors */                                                                                 \
    X(error_total, "count", "misuse caught by the core, every code summed (errors[]: per code)")

/* Number of entries in MP_STATS_LIST, counted by the list itself. */
#define MP_STATS_ONE_(name, unit, doc) +1
enum { MP_STATS_COUNT = 0 MP_STATS_LIST(MP_STATS_ONE_) };

typedef struct mp_stats {
#define MP_STATS_MEMBER_(name, unit, doc) uint64_t name;
    MP_STATS_LIST(MP_STATS_MEMBER_)
#undef MP_STATS_MEMBER_
    /* fragmentation: free spans of the heaps by size, bin i holding spans of
     * [4 KiB << i, 4 KiB << (i+1)) bytes (the last bin: everything larger) */
    uint64_t free_histogram_count[MP_FREE_BINS];
    uint64_t free_histogram_bytes[MP_FREE_BINS];
    /* errors caught, indexed by -code (index 0 unused) */
    uint64_t errors[MP_ERROR_COUNT];
    /* per size class */
    uint32_t class_count;
    mp_class_stats classes[MP_MAX_CLASSES];
    /* by layer: small blocks, the page heap's large blocks, the huge-page
     * heap, direct mappings */
    mp_layer_stats layers[MP_LAYER_COUNT];
} mp_stats;

/* One scalar figure of mp_stats: its name, where it is, its unit and what
 * it means (MP_STATS_LIST). */
typedef struct mp_stats_field {
    const char *name;
    size_t offset; /* of its uint64_t in mp_stats */
    const char *unit;
    const char *doc;
} mp_stats_field;

/* The MP_STATS_COUNT scalar figures of mp_stats, in the struct's order. */
const mp_stats_field *mp_stats_fields(void);

/* Fill *out with a consistent snapshot of the counters. */
int mp_stats_get(mp_pool *pool, mp_stats *out);

/* Start peak_live_bytes and peak_resident_bytes over from the current
 * figures (what the pool gives back is decided on its own peak, which this
 * leaves alone).  NULL is a no-op. */
void mp_pool_reset_peak(mp_pool *pool);

/* ---- maintenance ------------------------------------------------------ */
/* Give back to the OS every free page now (thread caches of the calling
 * thread included); return the number of bytes given back. */
size_t mp_trim(mp_pool *pool);

/* Give back pages that have been free longer than decay_ms; return bytes. */
size_t mp_purge_aged(mp_pool *pool);

/* Walk every structure and count broken invariants (0 = healthy).  Safe in
 * any build; takes the pool's locks. */
size_t mp_pool_check(mp_pool *pool);

/* mp_pool_check, also naming what broke: up to `max` static texts ("heap:
 * two free neighbours (a missed coalesce)", ...) of the first violations
 * found go to what[], their number to *named.  Returns the count. */
size_t mp_pool_check_named(mp_pool *pool, const char **what, size_t max, size_t *named);

/* The configuration the pool runs with (after defaults, rounding and
 * mp_pool_set changes). */
void mp_pool_config(const mp_pool *pool, mp_config *out);

/* ---- movable buffers and compaction ----------------------------------- */
/*
 * A movable buffer is memory the pool may move while nobody holds its
 * address: the user keeps a handle, pins the buffer to get an address that
 * stays valid until the matching unpin, and mp_defragment moves unpinned
 * buffers into lower holes so the pages above go back to the OS.  A handle is
 * an id (slot + generation), so a stale or forged handle is an error code,
 * never a dangling access.  Buffers take whole 4 KiB pages of the page heap
 * (at most a page of rounding each, and no huge pages): compaction moves
 * spans of pages, never parts of a slab.  Their addresses are not blocks:
 * mp_free/mp_realloc on one give MP_EINVAL.
 */
typedef uint64_t mp_buffer; /* 0 is never a valid handle */

/* Create a buffer of `nbytes` (content unspecified); *out set on MP_OK. */
int mp_buffer_create(mp_pool *pool, size_t nbytes, mp_buffer *out);

/* Destroy a buffer; MP_EBUSY while it is pinned, MP_EINVAL for a handle that
 * is not live. */
int mp_buffer_destroy(mp_pool *pool, mp_buffer buffer);

/* Pin a buffer (pins nest) and put its address in *out: the bytes stay there
 * until the matching mp_buffer_unpin. */
int mp_buffer_pin(mp_pool *pool, mp_buffer buffer, void **out);

/* Undo one mp_buffer_pin; MP_EINVAL when the buffer is not pinned. */
int mp_buffer_unpin(mp_pool *pool, mp_buffer buffer);

/* Size of a live buffer in *out_nbytes, its pin count in *out_pins (either
 * may be NULL). */
int mp_buffer_info(mp_pool *pool, mp_buffer buffer, size_t *out_nbytes, uint32_t *out_pins);

typedef struct mp_defrag_result {
    uint64_t moved_buffers;  /* buffers that changed address */
    uint64_t moved_bytes;    /* bytes copied (a buffer moved twice counts twice) */
    uint64_t pinned_skipped; /* buffers that could not move: pinned */
    uint64_t released_bytes; /* resident bytes given back to the OS */
} mp_defrag_result;

/* Compact the unpinned buffers: slide each down over the free pages before
 * it, and move buffers of the newest arenas into the earliest holes that hold
 * them, so free memory gathers in long runs and empty arenas; then give every
 * free page back to the OS.  Content moves by memcpy/memmove (an mremap page
 * move would leave a hole in the arena's mapping whenever refilling the
 * source range failed).  Content is preserved.  *out (may be NULL) says what
 * happened.  Takes the pool lock for the whole pass. */
int mp_defragment(mp_pool *pool, mp_defrag_result *out);

/* ---- debug mode ------------------------------------------------------- */
/*
 * With config.debug (or a core built with -DMP_DEBUG_MODE_ALWAYS=1, which
 * turns it on for every pool) each block gets MP_CANARY_BYTES of canary after
 * its requested size, fresh memory reads 0xAB and freed memory 0xDF.  A free
 * or realloc whose canary was overwritten still succeeds (the block is freed
 * or resized) but returns/records MP_ECORRUPT; a small block whose 0xDF fill
 * changed while it was free is reported when it is handed out again (large
 * freed spans are merged, split and purged to zeros, so they carry no fill to
 * check).  mp_pool_check counts every live block with a broken canary.  Each
 * finding is counted in errors[MP_ECORRUPT] and described in a ring of the
 * last MP_DEBUG_REPORTS reports; the core never prints.
 */
#define MP_CANARY_BYTES 8
#define MP_DEBUG_REPORTS 16

typedef enum mp_corruption_kind {
    MP_CORRUPT_CANARY = 1, /* bytes after a live block's requested size */
    MP_CORRUPT_FREED = 2,  /* a freed small block written to while free */
} mp_corruption_kind;

typedef struct mp_corruption_report {
    uintptr_t address;    /* start of the block */
    uint64_t requested;   /* its requested size (FREED: of the new request) */
    uint64_t block_bytes; /* bytes the block occupies (class or span size) */
    uintptr_t region_base;/* base of the arena or mapping holding it */
    uint64_t offset;      /* address - region_base */
    uint64_t bad_offset;  /* first wrong byte, counted from address */
    int32_t size_class;   /* small class index; -1 large span; -2 mapping */
    int32_t kind;         /* an mp_corruption_kind */
} mp_corruption_report;

/* Move up to `max` pending reports (oldest first) into out and forget them;
 * return how many were moved.  out NULL or max 0: return how many are
 * pending, taking none.  Reports beyond MP_DEBUG_REPORTS are only counted. */
size_t mp_debug_reports(mp_pool *pool, mp_corruption_report *out, size_t max);

/* ---- observing a pool: its events and its layout --------------------- */
/*
 * What the pool does on its own (map and unmap arenas, give pages back, mesh,
 * move buffers, hit its resident limit) goes to one observer per pool, as it
 * happens.  X-macro: one list feeds the enum and mp_event_name, the names the
 * snapshot format uses (docs/snapshot-schema.md).  Fields per kind:
 *   kind            address        size                  arg
 *   ARENA_MAP       the arena      bytes reserved        granule bytes
 *   ARENA_UNMAP     the arena      bytes given back      granule bytes
 *   DIRECT_MAP      the mapping    bytes mapped          requested bytes
 *   DIRECT_UNMAP    the mapping    bytes unmapped        0
 *   PURGE           first byte     resident bytes given back to the OS   0
 *   MESH            the slab       bytes of its pages freed  the slab now holding its blocks
 *   MOVE            old address    bytes of the buffer   new address (mp_defragment)
 *   LIMIT           0              bytes wanted          the resident limit (free pages
 *                                                        were given back to stay under it)
 */
#define MP_EVENT_LIST(X)                                                      \
    X(MP_EV_ARENA_MAP, 1, "arena_map")                                        \
    X(MP_EV_ARENA_UNMAP, 2, "arena_unmap")                                    \
    X(MP_EV_DIRECT_MAP, 3, "direct_map")                                      \
    X(MP_EV_DIRECT_UNMAP, 4, "direct_unmap")                                  \
    X(MP_EV_PURGE, 5, "purge")                                                \
    X(MP_EV_MESH, 6, "mesh")                                                  \
    X(MP_EV_MOVE, 7, "move")                                                  \
    X(MP_EV_LIMIT, 8, "limit")

typedef enum mp_event_kind {
#define MP_EVENT_ENUM(name, value, text) name = (value),
    MP_EVENT_LIST(MP_EVENT_ENUM)
#undef MP_EVENT_ENUM
} mp_event_kind;

typedef struct mp_event {
    int kind; /* an mp_event_kind */
    uintptr_t address;
    uint64_t size;
    uint64_t arg;
} mp_event;

/* Called as the event happens, often with the pool's locks held and from
 * any thread (the background purger too): it must not call into the pool,
 * allocate from it or block. */
typedef void (*mp_observer_fn)(void *ctx, const mp_event *event);

/* Install the pool's observer (fn NULL: none); it replaces the one before.
 * ctx must stay valid until another observer is installed or the pool is
 * destroyed. */
int mp_pool_observe(mp_pool *pool, mp_observer_fn fn, void *ctx);

/* The snapshot name of an event kind ("purge"); "unknown" for none. */
const char *mp_event_name(int kind);

/*
 * mp_pool_walk reports the pool's layout: every segment (an arena, a slab
 * inside an arena, a direct mapping) and every block of it, in address order
 * within a segment.  Adjacent blocks of one segment in the same state, other
 * than LIVE, BUFFER and PINNED, are reported as one run.  The enums' values
 * are the indexes of the snapshot format's name lists.
 */
typedef enum mp_walk_state {
    MP_WALK_LIVE = 0,     /* handed out */
    MP_WALK_CACHED = 1,   /* a free small block in a thread's cache */
    MP_WALK_FREE = 2,     /* free and resident */
    MP_WALK_RELEASED = 3, /* free, pages given back to the OS */
    MP_WALK_MESHED = 4,   /* free, in a slab mapped onto another's pages */
    MP_WALK_BUFFER = 5,   /* a movable buffer nobody pins */
    MP_WALK_PINNED = 6,   /* a pinned movable buffer */
    MP_WALK_UNUSED = 7,   /* the end of a slab that holds no whole block */
    MP_WALK_STATE_COUNT = 8
} mp_walk_state;

enum { MP_SEG_ARENA = 0, MP_SEG_SLAB = 1, MP_SEG_DIRECT = 2 };
enum { MP_WALK_HEAP_PAGE = 0, MP_WALK_HEAP_HUGE = 1, MP_WALK_HEAP_MESH = 2,
       MP_WALK_HEAP_DIRECT = 3 };

typedef struct mp_walk_segment {
    uintptr_t address;
    uint64_t size;
    uint64_t resident;     /* bytes of it counted resident */
    uintptr_t mesh_owner;  /* a meshed slab: the slab whose pages hold its
                              blocks (itself for a group's owner); 0 */
    uint32_t index;        /* 0, 1, 2... in the order reported */
    int32_t parent;        /* a slab: its arena's index; -1 */
    int32_t size_class;    /* a slab: its class; -1 */
    uint32_t block_size;   /* a slab: bytes per block; 0 */
    uint32_t granule;      /* bytes */
    uint8_t kind;          /* MP_SEG_* */
    uint8_t heap;          /* MP_WALK_HEAP_* */
} mp_walk_segment;

typedef struct mp_walk_block {
    uintptr_t address;
    uint64_t size;      /* bytes it occupies */
    uint64_t requested; /* LIVE, BUFFER, PINNED: bytes asked for; else 0 */
    uint32_t segment;   /* index of its segment */
    uint8_t state;      /* an mp_walk_state */
} mp_walk_block;

/* Callbacks of a walk: a nonzero return stops it.  A segment is reported
 * before its blocks; a slab's segment comes between blocks of its arena. */
typedef struct mp_walker {
    int (*segment)(void *ctx, const mp_walk_segment *segment);
    int (*block)(void *ctx, const mp_walk_block *block);
    void *ctx;
} mp_walker;

/* Walk the pool (see above).  Holds every lock of the pool for the whole
 * walk: other threads' calls wait, except small allocations and frees served
 * by their own thread cache, which run on (a block one of them hands out or
 * takes back meanwhile is reported in either state).  The callbacks run with
 * those locks held: they must not call into this pool.  Returns MP_OK, or
 * the first nonzero callback return. */
int mp_pool_walk(mp_pool *pool, const mp_walker *walker);

/* ---- size classes (exposed for tests and reports) --------------------- */
/* Number of small size classes for a given small_max. */
unsigned mp_size_class_count(size_t small_max);
/* Class index serving `size` (size <= small_max). */
unsigned mp_size_class_of(size_t size);
/* Block size of class `cls`. */
size_t mp_size_class_block(unsigned cls);

#ifdef __cplusplus
}
#endif
#endif /* MEMPOOL_H */
