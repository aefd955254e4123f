/*
 * Socket helpers of the transfer layer: addresses, listen/connect/accept,
 * and reads and writes that give up at an absolute deadline. All connected
 * sockets are non-blocking; waiting happens in poll().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "socket_io.h"

/* Large socket buffers let the kernel move block data in big pieces. */
#define SOCK_BUFFER_BYTES (4 << 20)
#define CONNECT_RETRY_MS  10

uint64_t kvbm__deadline_ms(uint32_t timeout_ms)
{
    return kvbm__now_us() + (uint64_t)timeout_ms * 1000u;
}

int kvbm__ms_left(uint64_t deadline_us)
{
    if (deadline_us == KVBM__NO_DEADLINE)
        return -1;
    uint64_t now = kvbm__now_us();
    if (now >= deadline_us)
        return 0;
    uint64_t ms = (deadline_us - now + 999u) / 1000u;
    return ms > (uint64_t)INT32_MAX ? INT32_MAX : (int)ms;
}

/* ------------------------------------------------------------ addresses */

kvbm_status_t kvbm__addr_parse(const char *host, uint16_t port, kvbm__addr_t *addr_out)
{
    if (host == NULL)
        host = "127.0.0.1";
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    if (getaddrinfo(host, service, &hints, &res) != 0 || res == NULL) {
        kvbm__log(KVBM_LOG_ERROR, "'%s' is not a numeric IPv4 or IPv6 address", host);
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "'%s' is not a numeric IPv4 or IPv6 address", host);
    }
    bool usable = (res->ai_family == AF_INET || res->ai_family == AF_INET6) &&
                  res->ai_addrlen <= sizeof(addr_out->ss);
    if (usable) {
        memset(addr_out, 0, sizeof(*addr_out));
        memcpy(&addr_out->ss, res->ai_addr, res->ai_addrlen);
        addr_out->len = res->ai_addrlen;
    }
    freeaddrinfo(res);
    if (!usable)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "'%s' is not an IPv4 or IPv6 address", host);
    return KVBM_OK;
}

bool kvbm__addr_is_loopback(const kvbm__addr_t *addr)
{
    if (addr->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&addr->ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (addr->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&addr->ss;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        /* ::ffff:127.x.y.z, as a dual-stack listener sees IPv4 loopback. */
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

bool kvbm__addr_is_wildcard(const kvbm__addr_t *addr)
{
    if (addr->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&addr->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (addr->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&addr->ss)->sin6_addr);
    return false;
}

uint16_t kvbm__addr_port(const kvbm__addr_t *addr)
{
    if (addr->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&addr->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&addr->ss)->sin6_port);
}

void kvbm__addr_set_port(kvbm__addr_t *addr, uint16_t port)
{
    if (addr->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&addr->ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&addr->ss)->sin6_port = htons(port);
}

void kvbm__addr_str(const kvbm__addr_t *addr, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = "?";
    if (addr->ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&addr->ss)->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, (unsigned)kvbm__addr_port(addr));
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&addr->ss)->sin6_addr, host,
                  sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, (unsigned)kvbm__addr_port(addr));
    }
}

static kvbm_status_t sock_name(int fd, bool peer, kvbm__addr_t *addr_out)
{
    kvbm__addr_t addr;
    memset(&addr, 0, sizeof(addr));
    addr.len = sizeof(addr.ss);
    int rc = peer ? getpeername(fd, (struct sockaddr *)&addr.ss, &addr.len)
                  : getsockname(fd, (struct sockaddr *)&addr.ss, &addr.len);
    if (rc != 0)
        return KVBM_SYS_ERROR(peer ? "getpeername" : "getsockname");
    if (addr.ss.ss_family != AF_INET && addr.ss.ss_family != AF_INET6)
        return KVBM_ERR_IO;
    *addr_out = addr;
    return KVBM_OK;
}

kvbm_status_t kvbm__sock_local_addr(int fd, kvbm__addr_t *addr_out)
{
    return sock_name(fd, false, addr_out);
}

kvbm_status_t kvbm__sock_peer_addr(int fd, kvbm__addr_t *addr_out)
{
    return sock_name(fd, true, addr_out);
}

/* ------------------------------------------------------------ connections */

static kvbm_status_t set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return KVBM_SYS_ERROR("fcntl(O_NONBLOCK)");
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
    return set_nonblocking(fd);
}

kvbm_status_t kvbm__sock_listen(const kvbm__addr_t *addr, int backlog, int *fd_out,
                                uint16_t *port_out)
{
    kvbm_status_t status;
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return KVBM_SYS_ERROR("socket");
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
        char where[80];
        kvbm__addr_str(addr, where, sizeof(where));
        kvbm__log(KVBM_LOG_ERROR, "cannot listen on %s: %s", where, strerror(errno));
        status = errno == EADDRINUSE ? KVBM_ERR_BUSY : KVBM_ERR_IO;
        goto err_close;
    }
    if (listen(fd, backlog) != 0) {
        status = KVBM_SYS_ERROR("listen");
        goto err_close;
    }
    kvbm__addr_t bound = {.len = 0};
    status = kvbm__sock_local_addr(fd, &bound);
    if (status != KVBM_OK)
        goto err_close;
    *fd_out = fd;
    *port_out = kvbm__addr_port(&bound);
    return KVBM_OK;
err_close:
    close(fd);
    return status;
}

/* One non-blocking connect attempt, waited for until the deadline. Returns
 * the socket's error (0 when connected) in *err. */
static kvbm_status_t connect_once(const kvbm__addr_t *addr, uint64_t deadline_us, int *fd_out,
                                  int *err)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return KVBM_SYS_ERROR("socket");
    *err = 0;
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
        *err = errno;
        if (*err == EINPROGRESS) {
            kvbm_status_t status = kvbm__sock_wait(fd, POLLOUT, deadline_us);
            if (status != KVBM_OK) {
                close(fd);
                return status;
            }
            socklen_t len = sizeof(*err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &len) != 0)
                *err = errno;
        }
    }
    if (*err != 0) {
        close(fd);
        return KVBM_OK;
    }
    *fd_out = fd;
    return KVBM_OK;
}

kvbm_status_t kvbm__sock_connect(const kvbm__addr_t *addr, uint64_t deadline_us, bool retry_refused,
                                 int *fd_out)
{
    for (;;) {
        int fd = -1, err = 0;
        kvbm_status_t status = connect_once(addr, deadline_us, &fd, &err);
        if (status != KVBM_OK)
            return status;
        if (err == 0) {
            status = sock_tune(fd);
            if (status != KVBM_OK) {
                close(fd);
                return status;
            }
            *fd_out = fd;
            return KVBM_OK;
        }
        bool not_yet = err == ECONNREFUSED || err == EINTR || err == EAGAIN;
        if (not_yet && !retry_refused)
            return KVBM_ERR_PEER; /* nobody listens there any more */
        if (!not_yet && err != ETIMEDOUT && err != EHOSTUNREACH && err != ENETUNREACH)
            return kvbm__sys_error("connect", err, __FILE__, __LINE__);
        if (kvbm__ms_left(deadline_us) == 0)
            return KVBM_ERR_TIMEOUT;
        /* The listener may not be up yet: retry until the deadline. */
        struct timespec ts = {.tv_sec = 0, .tv_nsec = CONNECT_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

kvbm_status_t kvbm__sock_accept_now(int listen_fd, int *fd_out)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return KVBM_ERR_BUSY;
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

/* ------------------------------------------------------------ data */

kvbm_status_t kvbm__sock_wait(int fd, short events, uint64_t deadline_us)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int rc = poll(&pfd, 1, kvbm__ms_left(deadline_us));
        if (rc > 0)
            return KVBM_OK; /* ready, or an error the next call reports */
        if (rc == 0) {
            if (kvbm__ms_left(deadline_us) == 0)
                return KVBM_ERR_TIMEOUT;
            continue; /* woke a little early */
        }
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

kvbm_status_t kvbm__sock_writev(int fd, struct iovec *iov, size_t iovcnt, uint64_t deadline_us)
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
            kvbm_status_t status = kvbm__sock_wait(fd, POLLOUT, deadline_us);
            if (status != KVBM_OK)
                return status;
            continue;
        }
        if (n == 0)
            continue; /* only with zero-length entries, skipped by iov_advance */
        if (errno == EPIPE || errno == ECONNRESET)
            return KVBM_ERR_PEER; /* the peer closed or died: expected, not logged */
        return KVBM_SYS_ERROR("sendmsg");
    }
    return KVBM_OK;
}

kvbm_status_t kvbm__sock_readv(int fd, struct iovec *iov, size_t iovcnt, uint64_t deadline_us)
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
            kvbm_status_t status = kvbm__sock_wait(fd, POLLIN, deadline_us);
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

kvbm_status_t kvbm__sock_read(int fd, void *buf, size_t len, uint64_t deadline_us)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    return kvbm__sock_readv(fd, &iov, 1, deadline_us);
}

kvbm_status_t kvbm__sock_write(int fd, const void *buf, size_t len, uint64_t deadline_us)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return kvbm__sock_writev(fd, &iov, 1, deadline_us);
}

kvbm_status_t kvbm__sock_discard(int fd, uint64_t len, uint64_t deadline_us)
{
    unsigned char sink[4096];
    while (len > 0) {
        size_t step = len < sizeof(sink) ? (size_t)len : sizeof(sink);
        kvbm_status_t status = kvbm__sock_read(fd, sink, step, deadline_us);
        if (status != KVBM_OK)
            return status;
        len -= step;
    }
    return KVBM_OK;
}
