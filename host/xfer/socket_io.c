/*
 * Socket helpers of the transfer layer: loopback listen/connect/accept, and
 * reads and writes that wait at most a timeout for each bit of progress.
 * All connected sockets are non-blocking; waiting happens in poll().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "core/clock.h"
#include "core/log.h"
#include "socket_io.h"

/* Large socket buffers let the kernel move block data in big pieces. */
#define SOCK_BUFFER_BYTES (4 << 20)
#define CONNECT_RETRY_MS  10

kvbm_status_t kvbm__sock_parse_loopback(const char *host, uint32_t *addr_out)
{
    struct in_addr in;
    if (host == NULL)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &in) != 1)
        return KVBM_ERR_INVALID_ARG;
    /* Loopback only: this transport has no authentication or encryption. */
    if ((ntohl(in.s_addr) >> 24) != 127)
        return KVBM_ERR_INVALID_ARG;
    *addr_out = in.s_addr;
    return KVBM_OK;
}

static kvbm_status_t sock_tune(int fd)
{
    int one = 1, bytes = SOCK_BUFFER_BYTES;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        return KVBM_SYS_ERROR("setsockopt(TCP_NODELAY)");
    /* Buffer sizes are hints; the kernel may clamp them. */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return KVBM_SYS_ERROR("fcntl(O_NONBLOCK)");
    return KVBM_OK;
}

kvbm_status_t kvbm__sock_listen(uint32_t addr, uint16_t port, int backlog, int *fd_out,
                                uint16_t *port_out)
{
    kvbm_status_t status;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return KVBM_SYS_ERROR("socket");
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = addr};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        status = KVBM_SYS_ERROR("bind");
        goto err_close;
    }
    if (listen(fd, backlog) != 0) {
        status = KVBM_SYS_ERROR("listen");
        goto err_close;
    }
    socklen_t len = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        status = KVBM_SYS_ERROR("getsockname");
        goto err_close;
    }
    *fd_out = fd;
    *port_out = ntohs(sa.sin_port);
    return KVBM_OK;
err_close:
    close(fd);
    return status;
}

kvbm_status_t kvbm__sock_connect(uint32_t addr, uint16_t port, uint32_t timeout_ms, int *fd_out)
{
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = addr};
    uint64_t deadline = kvbm__now_us() / 1000u + timeout_ms;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return KVBM_SYS_ERROR("socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            kvbm_status_t status = sock_tune(fd);
            if (status != KVBM_OK) {
                close(fd);
                return status;
            }
            *fd_out = fd;
            return KVBM_OK;
        }
        int err = errno;
        close(fd);
        /* The listener may not be up yet: retry until the deadline. */
        if (err != ECONNREFUSED && err != EINTR && err != EAGAIN)
            return kvbm__sys_error("connect", err, __FILE__, __LINE__);
        if (kvbm__now_us() / 1000u >= deadline)
            return KVBM_ERR_TIMEOUT;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = CONNECT_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

kvbm_status_t kvbm__sock_accept(int listen_fd, uint32_t timeout_ms, int *fd_out)
{
    struct pollfd pfd = {.fd = listen_fd, .events = POLLIN};
    for (;;) {
        int rc = poll(&pfd, 1, (int)timeout_ms);
        if (rc == 0)
            return KVBM_ERR_TIMEOUT;
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return KVBM_SYS_ERROR("poll");
        }
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
                continue;
            return KVBM_SYS_ERROR("accept");
        }
        kvbm_status_t status = sock_tune(fd);
        if (status != KVBM_OK) {
            close(fd);
            return status;
        }
        *fd_out = fd;
        return KVBM_OK;
    }
}

static kvbm_status_t sock_wait(int fd, short events, uint32_t timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int rc = poll(&pfd, 1, (int)timeout_ms);
        if (rc > 0)
            return KVBM_OK; /* readable, writable, or an error the next call reports */
        if (rc == 0)
            return KVBM_ERR_TIMEOUT;
        if (errno != EINTR)
            return KVBM_SYS_ERROR("poll");
    }
}

/* Advances an iovec array past @p done bytes. */
static void iov_advance(struct iovec **iov, size_t *iovcnt, size_t done)
{
    while (*iovcnt > 0 && done >= (*iov)->iov_len) {
        done -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0 && done > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + done;
        (*iov)->iov_len -= done;
    }
}

/* At most IOV_MAX (1024) entries per call. */
#define IOV_BATCH 1024

kvbm_status_t kvbm__sock_writev(int fd, struct iovec *iov, size_t iovcnt, uint32_t timeout_ms)
{
    iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = iovcnt < IOV_BATCH ? iovcnt : IOV_BATCH};
        /* sendmsg rather than writev: MSG_NOSIGNAL turns a dead peer into EPIPE. */
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            iov_advance(&iov, &iovcnt, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            kvbm_status_t status = sock_wait(fd, POLLOUT, timeout_ms);
            if (status != KVBM_OK)
                return status;
            continue;
        }
        if (n == 0)
            continue; /* only with zero-length entries, skipped by iov_advance */
        return KVBM_SYS_ERROR("sendmsg");
    }
    return KVBM_OK;
}

kvbm_status_t kvbm__sock_readv(int fd, struct iovec *iov, size_t iovcnt, uint32_t timeout_ms)
{
    iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = iovcnt < IOV_BATCH ? iovcnt : IOV_BATCH};
        ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
        if (n > 0) {
            iov_advance(&iov, &iovcnt, (size_t)n);
            continue;
        }
        if (n == 0)
            return KVBM_ERR_PEER; /* orderly shutdown in the middle of a message */
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            kvbm_status_t status = sock_wait(fd, POLLIN, timeout_ms);
            if (status != KVBM_OK)
                return status;
            continue;
        }
        if (errno == ECONNRESET)
            return KVBM_ERR_PEER; /* a killed peer: expected, not logged */
        return KVBM_SYS_ERROR("recvmsg");
    }
    return KVBM_OK;
}

kvbm_status_t kvbm__sock_read(int fd, void *buf, size_t len, uint32_t timeout_ms)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    return kvbm__sock_readv(fd, &iov, 1, timeout_ms);
}
