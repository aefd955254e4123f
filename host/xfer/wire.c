/* Sending and receiving the control messages of wire.h. */
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

kvbm_status_t kvbm__wire_send(int fd, uint32_t timeout_ms, const kvbm__wire_hdr_t *hdr,
                              const void *a, size_t a_len, const void *b, size_t b_len)
{
    struct iovec iov[3] = {
        {.iov_base = (void *)hdr, .iov_len = sizeof(*hdr)},
        {.iov_base = (void *)a, .iov_len = a_len},
        {.iov_base = (void *)b, .iov_len = b_len},
    };
    return kvbm__sock_writev(fd, iov, 3, timeout_ms);
}

kvbm_status_t kvbm__wire_recv_hdr(int fd, uint32_t timeout_ms, uint16_t type,
                                  kvbm__wire_hdr_t *hdr_out)
{
    kvbm__wire_hdr_t hdr;
    kvbm_status_t status = kvbm__sock_read(fd, &hdr, sizeof(hdr), timeout_ms);
    if (status != KVBM_OK)
        return status;
    if (hdr.magic != KVBM__WIRE_MAGIC || hdr.version != KVBM__WIRE_VERSION ||
        (type != 0 && hdr.type != type) || hdr.count > KVBM_XFER_MAX_BLOCKS) {
        kvbm__log(KVBM_LOG_ERROR, "malformed control message (type %u, expected %u)", hdr.type,
                  type);
        return KVBM_ERR_PARSE;
    }
    *hdr_out = hdr;
    return KVBM_OK;
}
