/* Sending, receiving and checking the control messages of wire.h. */
#include <stdbool.h>
#include <string.h>
#include <sys/uio.h>

#include "core/log.h"
#include "socket_io.h"
#include "wire.h"

void kvbm__wire_hdr_init(kvbm__wire_hdr_t *hdr, uint16_t type, int32_t status, uint32_t count)
{
    memset(hdr, 0, sizeof(*hdr));
    hdr->magic = KVBM__WIRE_MAGIC;
    hdr->version = KVBM__WIRE_VERSION;
    hdr->type = type;
    hdr->status = status;
    hdr->count = count;
}

kvbm_status_t kvbm__wire_send(int fd, uint64_t deadline_us, const kvbm__wire_hdr_t *hdr,
                              const void *a, size_t a_len, const void *b, size_t b_len)
{
    struct iovec iov[3] = {
        {.iov_base = (void *)hdr, .iov_len = sizeof(*hdr)},
        {.iov_base = (void *)a, .iov_len = a_len},
        {.iov_base = (void *)b, .iov_len = b_len},
    };
    return kvbm__sock_writev(fd, iov, 3, deadline_us);
}

bool kvbm__wire_status_known(int32_t status)
{
    switch (status) {
#define KVBM__STATUS_CASE(name, value, text) case (value):
        KVBM_STATUS_LIST(KVBM__STATUS_CASE)
#undef KVBM__STATUS_CASE
        return true;
    default:
        return false;
    }
}

static uint32_t flags_allowed(uint16_t type)
{
    switch (type) {
    case KVBM__MSG_PUSH:
        return KVBM__PUSH_FLAGS_MASK;
    case KVBM__MSG_AUTH_HELLO:
        return KVBM__AUTH_FLAG_KEYED;
    default:
        return 0;
    }
}

kvbm_status_t kvbm__wire_check_hdr(const kvbm__wire_hdr_t *hdr, uint16_t type)
{
    if (hdr->magic != KVBM__WIRE_MAGIC || hdr->version != KVBM__WIRE_VERSION || hdr->type == 0 ||
        hdr->type >= KVBM__MSG_TYPE_END || (type != 0 && hdr->type != type) ||
        hdr->count > KVBM_XFER_MAX_BLOCKS || hdr->reserved != 0 ||
        (hdr->flags & ~flags_allowed(hdr->type)) != 0 || !kvbm__wire_status_known(hdr->status)) {
        kvbm__log(KVBM_LOG_ERROR,
                  "malformed control message (type %u, expected %u, count %u, status %d)",
                  (unsigned)hdr->type, (unsigned)type, hdr->count, hdr->status);
        return KVBM_ERR_PARSE;
    }
    return KVBM_OK;
}

kvbm_status_t kvbm__wire_recv_hdr(int fd, uint64_t deadline_us, uint16_t type,
                                  kvbm__wire_hdr_t *hdr_out)
{
    kvbm__wire_hdr_t hdr;
    kvbm_status_t status = kvbm__sock_read(fd, &hdr, sizeof(hdr), deadline_us);
    if (status == KVBM_OK)
        status = kvbm__wire_check_hdr(&hdr, type);
    if (status == KVBM_OK)
        *hdr_out = hdr;
    return status;
}
