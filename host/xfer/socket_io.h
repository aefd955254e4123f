/*
 * Socket helpers of the transfer layer (socket_io.c): addresses of either
 * family parsed from numeric literals, listen, connect and accept, and reads
 * and writes on non-blocking sockets that give up at an absolute deadline
 * (kvbm__now_us() microseconds), so a peer that sends one byte now and then
 * cannot stretch a message forever.
 */
#ifndef KVBM_XFER_SOCKET_IO_H
#define KVBM_XFER_SOCKET_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "kvbm/status.h"

/* No deadline: wait as long as it takes (only for idle waits between
 * requests, never inside one). */
#define KVBM__NO_DEADLINE UINT64_MAX

/* An IPv4 or IPv6 socket address. */
typedef struct kvbm__addr {
    struct sockaddr_storage ss;
    socklen_t len;
} kvbm__addr_t;

/* The deadline @p timeout_ms from now. */
uint64_t kvbm__deadline_ms(uint32_t timeout_ms);
/* Milliseconds left until @p deadline_us, for poll(): 0 when past, -1 for
 * KVBM__NO_DEADLINE, rounded up so a wait never ends early. */
int kvbm__ms_left(uint64_t deadline_us);

/* Parses a numeric IPv4 or IPv6 literal (an IPv6 link-local address may
 * carry its interface: "fe80::1%eth0"; NULL means "127.0.0.1"). Host names
 * are refused: resolving one may wait without bound. */
kvbm_status_t kvbm__addr_parse(const char *host, uint16_t port, kvbm__addr_t *addr_out);
bool kvbm__addr_is_loopback(const kvbm__addr_t *addr);
bool kvbm__addr_is_wildcard(const kvbm__addr_t *addr);
uint16_t kvbm__addr_port(const kvbm__addr_t *addr);
void kvbm__addr_set_port(kvbm__addr_t *addr, uint16_t port);
/* "1.2.3.4:5" or "[::1]:5", for log lines. */
void kvbm__addr_str(const kvbm__addr_t *addr, char *buf, size_t len);
kvbm_status_t kvbm__sock_local_addr(int fd, kvbm__addr_t *addr_out);
kvbm_status_t kvbm__sock_peer_addr(int fd, kvbm__addr_t *addr_out);

/* A non-blocking listener (accept with kvbm__sock_accept_now after poll). */
kvbm_status_t kvbm__sock_listen(const kvbm__addr_t *addr, int backlog, int *fd_out,
                                uint16_t *port_out);
/* Connects by @p deadline_us. @p retry_refused: keep trying while nothing
 * listens yet (creation, when peers start in any order); otherwise a refused
 * connection is KVBM_ERR_PEER at once (a peer that died). */
kvbm_status_t kvbm__sock_connect(const kvbm__addr_t *addr, uint64_t deadline_us, bool retry_refused,
                                 int *fd_out);
/* One pending connection of a non-blocking listener: KVBM_OK, or
 * KVBM_ERR_BUSY when none is waiting. The socket comes back non-blocking. */
kvbm_status_t kvbm__sock_accept_now(int listen_fd, int *fd_out);
/* Waits for @p events on @p fd until the deadline. */
kvbm_status_t kvbm__sock_wait(int fd, short events, uint64_t deadline_us);
/* Non-blocking sockets; each call gives up at @p deadline_us. */
kvbm_status_t kvbm__sock_writev(int fd, struct iovec *iov, size_t iovcnt, uint64_t deadline_us);
kvbm_status_t kvbm__sock_readv(int fd, struct iovec *iov, size_t iovcnt, uint64_t deadline_us);
kvbm_status_t kvbm__sock_read(int fd, void *buf, size_t len, uint64_t deadline_us);
kvbm_status_t kvbm__sock_write(int fd, const void *buf, size_t len, uint64_t deadline_us);
/* Reads and drops @p len bytes (a refused request's payload), through a
 * small buffer: no allocation sized by the peer. */
kvbm_status_t kvbm__sock_discard(int fd, uint64_t len, uint64_t deadline_us);

#endif /* KVBM_XFER_SOCKET_IO_H */
