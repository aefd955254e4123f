/*
 * Socket helpers of the transfer layer (socket_io.c): loopback listen,
 * connect and accept, and reads and writes on non-blocking sockets that wait
 * at most a timeout for each bit of progress.
 */
#ifndef KVBM_XFER_SOCKET_IO_H
#define KVBM_XFER_SOCKET_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kvbm/status.h"

kvbm_status_t kvbm__sock_parse_loopback(const char *host, uint32_t *addr_out);
kvbm_status_t kvbm__sock_listen(uint32_t addr, uint16_t port, int backlog, int *fd_out,
                                uint16_t *port_out);
kvbm_status_t kvbm__sock_connect(uint32_t addr, uint16_t port, uint32_t timeout_ms, int *fd_out);
kvbm_status_t kvbm__sock_accept(int listen_fd, uint32_t timeout_ms, int *fd_out);
/* Non-blocking sockets; each step waits at most timeout_ms for progress. */
kvbm_status_t kvbm__sock_writev(int fd, struct iovec *iov, size_t iovcnt, uint32_t timeout_ms);
kvbm_status_t kvbm__sock_readv(int fd, struct iovec *iov, size_t iovcnt, uint32_t timeout_ms);
kvbm_status_t kvbm__sock_read(int fd, void *buf, size_t len, uint32_t timeout_ms);

#endif /* KVBM_XFER_SOCKET_IO_H */
