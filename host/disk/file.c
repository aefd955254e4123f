/*
 * The G3 file: opened and locked (one process at a time), its alignment
 * found, its superblock read to decide whether it comes back warm, emptied
 * when it does not (another namespace or geometry, or no valid superblock),
 * sized and preallocated, and its table mapped.
 *
 * Emptying is ordered so that a crash at any point leaves either the old
 * state or a file whose superblock is invalid, which the next open empties
 * again: the superblock is cleared and synced first, the file truncated to
 * nothing (old slots and table entries are gone, not merely unindexed),
 * resized, and only then is the new superblock written and synced.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "store_internal.h"

#define MAX_FS_ALIGN ((uint64_t)64 * 1024) /* larger "block sizes" are transfer hints */

static bool power_of_two(uint64_t value)
{
    return value != 0 && (value & (value - 1)) == 0;
}

static kvbm_status_t open_locked(kvbm__disk_store_t *store, struct stat *st)
{
    store->fd = open(store->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (store->fd < 0)
        return KVBM_SYS_ERROR(store->path);
    kvbm_status_t status = KVBM_OK;
    if (fstat(store->fd, st) != 0) {
        status = KVBM_SYS_ERROR("fstat");
        goto err_close;
    }
    if (!S_ISREG(st->st_mode)) {
        kvbm__log(KVBM_LOG_ERROR, "g3: %s is not a regular file", store->path);
        status = kvbm__fail(KVBM_ERR_INVALID_ARG, "g3: %s is not a regular file", store->path);
        goto err_close;
    }
    /* A second opener (another process, or this one twice) would overwrite
     * slots the first one indexes. */
    if (flock(store->fd, LOCK_EX | LOCK_NB) != 0) {
        status = errno == EWOULDBLOCK ? KVBM_ERR_BUSY : KVBM_SYS_ERROR("flock");
        goto err_close;
    }
    return KVBM_OK;

err_close:
    close(store->fd);
    store->fd = -1;
    return status;
}

/* The slot alignment: the filesystem's block (so direct writes never share
 * one and never need read-modify-write) and the direct-I/O offset alignment,
 * at least KVBM__DISK_MIN_ALIGN. */
static uint64_t file_alignment(int fd)
{
    uint64_t align = KVBM__DISK_MIN_ALIGN;
    struct statvfs vfs;
    if (fstatvfs(fd, &vfs) == 0 && power_of_two(vfs.f_bsize) && vfs.f_bsize > align &&
        vfs.f_bsize <= MAX_FS_ALIGN)
        align = vfs.f_bsize;
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
        power_of_two(sx.stx_dio_offset_align) && sx.stx_dio_offset_align > align &&
        sx.stx_dio_offset_align <= MAX_FS_ALIGN)
        align = sx.stx_dio_offset_align;
#endif
    return align;
}

static kvbm_status_t compute_geometry(kvbm__disk_store_t *store, uint64_t align)
{
    uint64_t slots = store->config.slots;
    if (slots == 0)
        slots = kvbm__disk_geometry_slots_for_bytes(store->config.payload_bytes, align,
                                                    store->config.file_bytes);
    if (slots == 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "g3: not even one block of %llu bytes fits in %llu bytes",
                          (unsigned long long)store->config.payload_bytes,
                          (unsigned long long)store->config.file_bytes);
    return kvbm__disk_geometry_init(store->config.payload_bytes, align, slots, &store->geometry);
}

static kvbm__disk_open_kind_t classify(const kvbm__disk_store_t *store, const struct stat *st)
{
    if (st->st_size == 0)
        return KVBM__DISK_OPENED_NEW;
    uint8_t raw[KVBM__DISK_SUPERBLOCK_BYTES];
    kvbm__disk_superblock_t sb;
    if (pread(store->fd, raw, sizeof(raw), 0) != (ssize_t)sizeof(raw) ||
        kvbm__disk_superblock_decode(raw, &sb) != KVBM_OK)
        return KVBM__DISK_OPENED_INVALID;
    if (sb.fingerprint != store->config.fingerprint)
        return KVBM__DISK_OPENED_NAMESPACE;
    const kvbm__disk_geometry_t *g = &store->geometry;
    if (sb.slots != g->slots || sb.payload_bytes != g->payload_bytes || sb.align != g->align)
        return KVBM__DISK_OPENED_GEOMETRY;
    if ((uint64_t)st->st_size < g->file_bytes)
        return KVBM__DISK_OPENED_INVALID; /* truncated behind our back */
    return KVBM__DISK_OPENED_WARM;
}

static kvbm_status_t write_synced(int fd, const void *bytes, size_t n, uint64_t offset)
{
    ssize_t written = pwrite(fd, bytes, n, (off_t)offset);
    if (written < 0)
        return KVBM_SYS_ERROR("pwrite");
    if (written != (ssize_t)n) {
        kvbm__log(KVBM_LOG_ERROR, "g3: short superblock write (%zd of %zu bytes)", written, n);
        return KVBM_ERR_IO;
    }
    return fdatasync(fd) == 0 ? KVBM_OK : KVBM_SYS_ERROR("fdatasync");
}

/* Reserves the whole file when asked and when that keeps the filesystem
 * above its floor; otherwise the file stays sparse and every write is
 * checked against the floor (space.c). */
static void preallocate(kvbm__disk_store_t *store)
{
    struct statvfs vfs;
    uint64_t file_bytes = store->geometry.file_bytes;
    if (!store->config.preallocate || fstatvfs(store->fd, &vfs) != 0 ||
        (uint64_t)vfs.f_bavail * vfs.f_frsize < file_bytes + store->config.min_free_bytes)
        return;
    store->preallocated = fallocate(store->fd, 0, 0, (off_t)file_bytes) == 0;
}

static kvbm_status_t empty_file(kvbm__disk_store_t *store, const struct stat *st)
{
    uint8_t raw[KVBM__DISK_SUPERBLOCK_BYTES] = {0};
    kvbm_status_t status = st->st_size > 0 ? write_synced(store->fd, raw, sizeof(raw), 0) : KVBM_OK;
    if (status != KVBM_OK)
        return status;
    if (ftruncate(store->fd, 0) != 0)
        return KVBM_SYS_ERROR("ftruncate");
    preallocate(store);
    if (ftruncate(store->fd, (off_t)store->geometry.file_bytes) != 0)
        return KVBM_SYS_ERROR("ftruncate");
    kvbm__disk_superblock_t sb = {.version = KVBM__DISK_FORMAT_VERSION,
                                  .fingerprint = store->config.fingerprint,
                                  .slots = store->geometry.slots,
                                  .payload_bytes = store->geometry.payload_bytes,
                                  .align = store->geometry.align};
    kvbm__disk_superblock_encode(&sb, raw);
    return write_synced(store->fd, raw, sizeof(raw), 0);
}

static kvbm_status_t map_table(kvbm__disk_store_t *store)
{
    void *table = mmap(NULL, store->geometry.table_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                       store->fd, (off_t)store->geometry.table_offset);
    if (table == MAP_FAILED)
        return KVBM_SYS_ERROR("mmap of the G3 table");
    store->table = table;
    return KVBM_OK;
}

kvbm_status_t kvbm__disk_file_open(kvbm__disk_store_t *store)
{
    struct stat st = {0};
    kvbm_status_t status = open_locked(store, &st);
    if (status != KVBM_OK)
        return status;
    status = compute_geometry(store, file_alignment(store->fd));
    if (status != KVBM_OK)
        goto err_close;
    store->open_kind = classify(store, &st);
    if (store->open_kind != KVBM__DISK_OPENED_WARM) {
        status = empty_file(store, &st);
        if (status != KVBM_OK)
            goto err_close;
    } else {
        store->preallocated = (uint64_t)st.st_blocks * 512 >= store->geometry.file_bytes;
    }
    status = map_table(store);
    if (status != KVBM_OK)
        goto err_close;
    return KVBM_OK;

err_close:
    close(store->fd);
    store->fd = -1;
    return status;
}

void kvbm__disk_file_close(kvbm__disk_store_t *store)
{
    if (store->table != NULL)
        munmap(store->table, store->geometry.table_bytes);
    store->table = NULL;
    if (store->fd >= 0)
        close(store->fd); /* also releases the flock */
    store->fd = -1;
}

void kvbm__disk_table_sync(const kvbm__disk_store_t *store, uint64_t slot)
{
    /* The table is mapped page-aligned, so the entry's page is found by
     * rounding its offset in the table down. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t offset = (size_t)slot * KVBM__DISK_HEADER_BYTES;
    msync(store->table + (offset & ~(page - 1)), page, MS_SYNC);
}
