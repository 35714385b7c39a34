# Extern-only declarations of csrc/include/mempool.h, the public contract of the
# native core.  Nothing here is implemented: keep it a mirror of the header.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uintptr_t


cdef extern from "mempool.h" nogil:
    enum: MP_ERROR_COUNT
    enum: MP_MAX_CLASSES
    enum: MP_FREE_BINS

    ctypedef enum mp_error:
        MP_OK
        MP_ENOMEM
        MP_EINVAL
        MP_EDOUBLEFREE
        MP_EFOREIGN
        MP_EINTERIOR
        MP_ESIZE
        MP_EOVERFLOW
        MP_EALIGN
        MP_EBUSY
        MP_ECORRUPT

    const char *mp_strerror(int code)
    const char *mp_error_name(int code)

    # The fields come from MP_CONFIG_LIST (mempool.h): the glue sets and
    # reads them by name (mp_config_set/get), so nothing here lists them.
    ctypedef struct mp_config:
        pass

    ctypedef struct mp_setting:
        const char *name
        const char *unit
        const char *doc
        int64_t default_value
        int64_t min
        int64_t max
        int64_t none
        int runtime

    const mp_setting *mp_settings(size_t *count)
    int mp_config_check(const mp_config *config)
    int mp_setting_check(const char *name, int64_t value)
    int mp_config_set(mp_config *config, const char *name, int64_t value)
    int mp_config_get(const mp_config *config, const char *name, int64_t *out)
    const char *mp_config_error()
    int64_t MP_SETTING_NO_NONE
    void mp_config_default(mp_config *config)

    ctypedef struct mp_pool:
        pass

    int mp_pool_create(const mp_config *config, mp_pool **out)
    int mp_pool_set(mp_pool *pool, const char *name, int64_t value)
    int mp_pool_get(const mp_pool *pool, const char *name, int64_t *out)

    # debug mode
    enum: MP_DEBUG_REPORTS
    enum: MP_CANARY_BYTES
    ctypedef struct mp_corruption_report:
        uintptr_t address
        uint64_t requested
        uint64_t block_bytes
        uintptr_t region_base
        uint64_t offset
        uint64_t bad_offset
        int32_t size_class
        int32_t kind
    size_t mp_debug_reports(mp_pool *pool, mp_corruption_report *out, size_t max)
    void mp_pool_destroy(mp_pool *pool)

    void *mp_alloc(mp_pool *pool, size_t size)
    void *mp_alloc_aligned(mp_pool *pool, size_t size, size_t align)
    void *mp_calloc(mp_pool *pool, size_t count, size_t size)
    void *mp_realloc(mp_pool *pool, void *ptr, size_t old_size,
                     size_t new_size)
    int mp_free(mp_pool *pool, void *ptr, size_t size)
    ctypedef struct mp_handler_head:
        mp_pool *pool
        int bypass
        void *(*malloc_full)(void *ctx, size_t size) noexcept nogil
        void (*free_full)(void *ctx, void *ptr, size_t size) noexcept nogil
    void *mp_handler_malloc(void *ctx, size_t size) noexcept
    void mp_handler_free(void *ctx, void *ptr, size_t size) noexcept
    int mp_last_error()

    int mp_owns(const mp_pool *pool, const void *ptr)
    size_t mp_usable_size(const mp_pool *pool, const void *ptr)
    int mp_requested_size(const mp_pool *pool, const void *ptr, size_t *out)
    uint64_t mp_process_rss()

    ctypedef struct mp_class_stats:
        uint64_t block_size
        uint64_t slabs
        uint64_t blocks
        uint64_t live_blocks
        uint64_t live_bytes

    # The scalar figures (MP_STATS_LIST) are read through mp_stats_fields'
    # table, not declared here: the list in mempool.h is their one source.
    enum: MP_STATS_COUNT
    ctypedef struct mp_stats:
        uint64_t free_histogram_count[MP_FREE_BINS]
        uint64_t free_histogram_bytes[MP_FREE_BINS]
        uint64_t errors[MP_ERROR_COUNT]
        uint32_t class_count
        mp_class_stats classes[MP_MAX_CLASSES]

    ctypedef struct mp_stats_field:
        const char *name
        size_t offset
        const char *unit
        const char *doc

    const mp_stats_field *mp_stats_fields()

    int mp_stats_get(mp_pool *pool, mp_stats *out)

    size_t mp_trim(mp_pool *pool)
    size_t mp_purge_aged(mp_pool *pool)
    size_t mp_pool_check(mp_pool *pool)
    size_t mp_pool_check_named(mp_pool *pool, const char **what, size_t max, size_t *named)
    void mp_pool_config(const mp_pool *pool, mp_config *out)

    ctypedef uint64_t mp_buffer
    int mp_buffer_create(mp_pool *pool, size_t nbytes, mp_buffer *out)
    int mp_buffer_destroy(mp_pool *pool, mp_buffer buffer)
    int mp_buffer_pin(mp_pool *pool, mp_buffer buffer, void **out)
    int mp_buffer_unpin(mp_pool *pool, mp_buffer buffer)
    int mp_buffer_info(mp_pool *pool, mp_buffer buffer, size_t *out_nbytes,
                       uint32_t *out_pins)

    ctypedef struct mp_defrag_result:
        uint64_t moved_buffers
        uint64_t moved_bytes
        uint64_t pinned_skipped
        uint64_t released_bytes

    int mp_defragment(mp_pool *pool, mp_defrag_result *out)

    unsigned mp_size_class_count(size_t small_max)
    unsigned mp_size_class_of(size_t size)
    size_t mp_size_class_block(unsigned cls)
