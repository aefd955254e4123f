/*
 * The free-space floor: before writing, the store asks the filesystem
 * (fstatvfs, the bytes available to this process) whether the writes keep
 * it above config.min_free_bytes. A preallocated file needs no new space
 * for its writes, but still stops writing while the filesystem is below the
 * floor, so that G3 never adds to the pressure on a disk others filled.
 */
#include <sys/statvfs.h>

#include "store_internal.h"

bool kvbm__disk_store_reserve_space(kvbm__disk_store_t *store, uint64_t blocks)
{
    struct statvfs vfs;
    if (blocks == 0)
        return true;
    if (fstatvfs(store->fd, &vfs) == 0) {
        uint64_t available = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        uint64_t needed = store->preallocated ? 0 : blocks * store->geometry.slot_bytes;
        uint64_t floor = store->config.min_free_bytes;
        if (available >= floor && available - floor >= needed)
            return true;
    }
    kvbm__disk_count(store, KVBM__DISK_COUNTER_stores_skipped_space, blocks);
    return false;
}
