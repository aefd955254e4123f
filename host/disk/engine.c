/*
 * Choosing the I/O engine at open: O_DIRECT when the filesystem takes it
 * (probed with one aligned read, since some accept the flag at open and
 * refuse the I/O), then io_uring when the kernel allows it (containers often
 * forbid it), else the thread pool. The choice is reported as
 * "<engine>+<direct|buffered>". Every engine runs behind the fault layer,
 * which passes requests through untouched until a test installs a hook.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "store_internal.h"

static kvbm_disk_io_kind_t kind_from_env(kvbm_disk_io_kind_t asked)
{
    if (asked != KVBM_DISK_IO_AUTO)
        return asked;
    const char *env = getenv("KVBM_DISK_IO");
    if (env != NULL && strcmp(env, "uring") == 0)
        return KVBM_DISK_IO_URING;
    if (env != NULL && strcmp(env, "threads") == 0)
        return KVBM_DISK_IO_THREADS;
    return KVBM_DISK_IO_AUTO;
}

/* Whether one aligned direct read of slot 0 works (the file is sized, so the
 * read is within it; a sparse slot reads as zeros). */
static bool direct_read_works(const kvbm__disk_store_t *store, int fd)
{
    size_t bytes = store->geometry.align;
    void *buf = kvbm__alloc_aligned(KVBM__DISK_MIN_ALIGN, bytes, 1);
    if (buf == NULL)
        return false;
    ssize_t rc = pread(fd, buf, bytes, (off_t)store->geometry.data_offset);
    kvbm__free(buf);
    return rc == (ssize_t)bytes;
}

static void open_data_fd(kvbm__disk_store_t *store)
{
    store->data_fd = store->fd;
    store->direct = false;
    if (!store->config.direct)
        return;
    int fd = open(store->path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        return; /* EINVAL: the filesystem has no direct I/O */
    if (!direct_read_works(store, fd)) {
        close(fd);
        return;
    }
    store->data_fd = fd;
    store->direct = true;
}

static kvbm_status_t start(kvbm__disk_store_t *store, const kvbm__disk_io_ops_t *ops)
{
    if (ops->version != KVBM__DISK_IO_OPS_VERSION)
        return KVBM_ERR_VERSION;
    kvbm__disk_io_config_t config = {
        .fd = store->data_fd,
        .queue_depth = store->config.queue_depth > 0 ? store->config.queue_depth : 1,
        .threads = store->config.io_threads > 0 ? store->config.io_threads : 1,
        .complete = kvbm__disk_store_complete,
        .complete_ctx = store,
    };
    kvbm_status_t status = kvbm__disk_io_fault_open(ops, &config, kvbm__disk_store_fault, store,
                                                    &store->engine, &store->engine_state);
    if (status == KVBM_OK)
        snprintf(store->engine_name, sizeof(store->engine_name), "%s+%s", ops->name,
                 store->direct ? "direct" : "buffered");
    return status;
}

kvbm_status_t kvbm__disk_engine_start(kvbm__disk_store_t *store)
{
    kvbm_disk_io_kind_t kind = kind_from_env(store->config.io);
    if (kind != KVBM_DISK_IO_AUTO && kind != KVBM_DISK_IO_URING && kind != KVBM_DISK_IO_THREADS &&
        kind != KVBM__DISK_IO_NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "g3 config: unknown io engine %d", (int)kind);
    open_data_fd(store);
    kvbm_status_t status = KVBM_ERR_UNSUPPORTED;
    if (kind == KVBM__DISK_IO_NULL)
        status = start(store, kvbm__disk_io_null_ops());
    if (kind == KVBM_DISK_IO_AUTO || kind == KVBM_DISK_IO_URING)
        status = start(store, kvbm__disk_io_uring_ops());
    if (kind == KVBM_DISK_IO_THREADS || (kind == KVBM_DISK_IO_AUTO && status != KVBM_OK))
        status = start(store, kvbm__disk_io_threads_ops());
    if (status != KVBM_OK && store->data_fd != store->fd) {
        close(store->data_fd);
        store->data_fd = store->fd;
    }
    return status;
}

void kvbm__disk_engine_stop(kvbm__disk_store_t *store)
{
    if (store->engine != NULL)
        store->engine->close(store->engine_state);
    store->engine = NULL;
    if (store->data_fd >= 0 && store->data_fd != store->fd)
        close(store->data_fd);
    store->data_fd = store->fd;
}
