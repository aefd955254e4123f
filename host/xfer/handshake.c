/* Both ends of the connection handshake (handshake.h, auth.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/check.h"
#include "core/clock.h"
#include "core/log.h"
#include "handshake.h"

/* ------------------------------------------------------------ client */

kvbm_status_t kvbm__hs_client(int fd, const kvbm__auth_t *auth, uint32_t purpose,
                              uint64_t deadline_us)
{
    uint8_t nonce_c[KVBM__NONCE_BYTES], nonce_s[KVBM__NONCE_BYTES];
    uint8_t tag_s[KVBM__TAG_BYTES], tag_c[KVBM__TAG_BYTES];
    kvbm__auth_random(nonce_c, sizeof(nonce_c));
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_AUTH_HELLO, KVBM_OK, purpose);
    hdr.flags = auth->keyed ? KVBM__AUTH_FLAG_KEYED : 0u;
    kvbm_status_t status =
        kvbm__wire_send(fd, deadline_us, &hdr, nonce_c, sizeof(nonce_c), NULL, 0);
    if (status == KVBM_OK)
        status = kvbm__wire_recv_hdr(fd, deadline_us, KVBM__MSG_AUTH_CHALLENGE, &hdr);
    if (status != KVBM_OK)
        return status;
    struct iovec iov[2] = {{.iov_base = nonce_s, .iov_len = sizeof(nonce_s)},
                           {.iov_base = tag_s, .iov_len = sizeof(tag_s)}};
    status = kvbm__sock_readv(fd, iov, 2, deadline_us);
    if (status != KVBM_OK)
        return status;
    /* The proof goes out even when the server's tag is wrong, so the server
     * sees (and counts) the mismatch too; it proves nothing to a server
     * holding another key. */
    kvbm__auth_tag(auth, 'c', purpose, nonce_c, nonce_s, tag_c);
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_AUTH_PROOF, KVBM_OK, 0);
    status = kvbm__wire_send(fd, deadline_us, &hdr, tag_c, sizeof(tag_c), NULL, 0);
    if (!kvbm__auth_check(auth, 's', purpose, nonce_c, nonce_s, tag_s)) {
        kvbm__log(KVBM_LOG_ERROR, "peer failed authentication: %s",
                  auth->keyed ? "it does not hold this secret" : "it expects a secret");
        return KVBM_ERR_AUTH;
    }
    return status;
}

/* ------------------------------------------------------------ server */

enum hs_stage {
    HS_HELLO,         /* AUTH_HELLO header + client nonce */
    HS_PROOF,         /* AUTH_PROOF header + client tag */
    HS_FIRST_HDR,     /* the first message's header */
    HS_FIRST_PAYLOAD, /* and its payload */
    HS_DONE,
};

typedef enum hs_result {
    HS_MORE,
    HS_COMPLETE,
    HS_FAILED,
} hs_result_t;

void kvbm__hs_pool_init(kvbm__hs_pool_t *pool, const kvbm__auth_t *auth,
                        kvbm__xfer_counters_t *counters, uint32_t purpose, uint16_t first_type,
                        size_t first_payload, uint32_t timeout_ms, int listen_fd, int wake_fd)
{
    memset(pool, 0, sizeof(*pool));
    pool->auth = auth;
    pool->counters = counters;
    pool->purpose = purpose;
    pool->first_type = first_type;
    pool->first_payload = first_payload;
    pool->timeout_ms = timeout_ms;
    pool->listen_fd = listen_fd;
    pool->wake_fd = wake_fd;
}

static void hs_refuse(kvbm__hs_pool_t *pool, kvbm__hs_t *hs, bool auth_failure, const char *why)
{
    char where[80];
    kvbm__addr_str(&hs->peer, where, sizeof(where));
    kvbm__log(KVBM_LOG_WARN, "connection from %s refused: %s", where, why);
    kvbm__count(auth_failure ? &pool->counters->auth_failures
                             : &pool->counters->connections_refused);
}

static void hs_expect(kvbm__hs_t *hs, int stage, size_t need)
{
    hs->stage = stage;
    hs->have = 0;
    hs->need = need;
}

/* Processes a stage whose bytes are all in hs->buf. */
static hs_result_t hs_advance(kvbm__hs_pool_t *pool, kvbm__hs_t *hs)
{
    const kvbm__auth_t *auth = pool->auth;
    kvbm__wire_hdr_t hdr;
    memcpy(&hdr, hs->buf, sizeof(hdr));
    switch (hs->stage) {
    case HS_HELLO: {
        if (kvbm__wire_check_hdr(&hdr, KVBM__MSG_AUTH_HELLO) != KVBM_OK ||
            hdr.count != pool->purpose) {
            hs_refuse(pool, hs, false, "not a kvbm handshake for this listener");
            return HS_FAILED;
        }
        memcpy(hs->nonce_c, hs->buf + sizeof(hdr), KVBM__NONCE_BYTES);
        kvbm__auth_random(hs->nonce_s, sizeof(hs->nonce_s));
        uint8_t reply[sizeof(kvbm__wire_hdr_t) + KVBM__NONCE_BYTES + KVBM__TAG_BYTES];
        kvbm__wire_hdr_t challenge;
        kvbm__wire_hdr_init(&challenge, KVBM__MSG_AUTH_CHALLENGE, KVBM_OK, 0);
        memcpy(reply, &challenge, sizeof(challenge));
        memcpy(reply + sizeof(challenge), hs->nonce_s, KVBM__NONCE_BYTES);
        kvbm__auth_tag(auth, 's', pool->purpose, hs->nonce_c, hs->nonce_s,
                       reply + sizeof(challenge) + KVBM__NONCE_BYTES);
        /* 96 bytes into a fresh socket's buffer: all or nothing. */
        ssize_t n = send(hs->fd, reply, sizeof(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n != (ssize_t)sizeof(reply)) {
            hs_refuse(pool, hs, false, "could not send the challenge");
            return HS_FAILED;
        }
        hs_expect(hs, HS_PROOF, sizeof(hdr) + KVBM__TAG_BYTES);
        return HS_MORE;
    }
    case HS_PROOF:
        if (kvbm__wire_check_hdr(&hdr, KVBM__MSG_AUTH_PROOF) != KVBM_OK) {
            hs_refuse(pool, hs, false, "malformed handshake");
            return HS_FAILED;
        }
        if (!kvbm__auth_check(auth, 'c', pool->purpose, hs->nonce_c, hs->nonce_s,
                              hs->buf + sizeof(hdr))) {
            hs_refuse(pool, hs, true,
                      auth->keyed ? "authentication failed (wrong secret or none)"
                                  : "authentication failed (the peer holds a secret, this rank "
                                    "none)");
            return HS_FAILED;
        }
        hs_expect(hs, HS_FIRST_HDR, sizeof(hdr));
        return HS_MORE;
    case HS_FIRST_HDR:
        if (kvbm__wire_check_hdr(&hdr, pool->first_type) != KVBM_OK) {
            hs_refuse(pool, hs, false, "unexpected first message");
            return HS_FAILED;
        }
        hs->first = hdr;
        if (pool->first_payload == 0) {
            hs->stage = HS_DONE;
            return HS_COMPLETE;
        }
        hs_expect(hs, HS_FIRST_PAYLOAD, pool->first_payload);
        return HS_MORE;
    case HS_FIRST_PAYLOAD:
        memcpy(hs->payload, hs->buf, pool->first_payload);
        hs->stage = HS_DONE;
        return HS_COMPLETE;
    default:
        return HS_COMPLETE;
    }
}

/* Reads what has arrived and advances; never blocks. */
static hs_result_t hs_step(kvbm__hs_pool_t *pool, kvbm__hs_t *hs)
{
    for (;;) {
        if (hs->stage == HS_DONE)
            return HS_COMPLETE;
        ssize_t n = recv(hs->fd, hs->buf + hs->have, hs->need - hs->have, MSG_DONTWAIT);
        if (n == 0) {
            hs_refuse(pool, hs, false, "closed during the handshake");
            return HS_FAILED;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return HS_MORE;
            hs_refuse(pool, hs, false, "connection failed during the handshake");
            return HS_FAILED;
        }
        hs->have += (size_t)n;
        if (hs->have < hs->need)
            continue;
        hs_result_t result = hs_advance(pool, hs);
        if (result != HS_MORE)
            return result;
    }
}

static void pool_drop(kvbm__hs_pool_t *pool, size_t i)
{
    close(pool->pending[i].fd);
    pool->pending[i] = pool->pending[--pool->n_pending];
}

/* Takes every connection waiting on the listener into the pool. */
static kvbm_status_t pool_accept(kvbm__hs_pool_t *pool)
{
    for (;;) {
        int fd;
        kvbm_status_t status = kvbm__sock_accept_now(pool->listen_fd, &fd);
        if (status == KVBM_ERR_BUSY)
            return KVBM_OK;
        if (status != KVBM_OK)
            return status;
        kvbm__hs_t hs;
        memset(&hs, 0, sizeof(hs));
        hs.fd = fd;
        hs.started_us = kvbm__now_us();
        hs.deadline_us = kvbm__deadline_ms(pool->timeout_ms);
        hs_expect(&hs, HS_HELLO, sizeof(kvbm__wire_hdr_t) + KVBM__NONCE_BYTES);
        if (kvbm__sock_peer_addr(fd, &hs.peer) != KVBM_OK) {
            close(fd);
            kvbm__count(&pool->counters->connections_refused);
            continue;
        }
        if (!pool->auth->keyed && !kvbm__addr_is_loopback(&hs.peer)) {
            hs_refuse(pool, &hs, false, "not loopback, and this rank has no secret");
            close(fd);
            continue;
        }
        if (pool->n_pending == KVBM__HS_MAX_PENDING) {
            /* Full: the oldest goes, so a flood of silent connections delays a
             * legitimate peer by no more than its own handshake. */
            size_t oldest = 0;
            for (size_t i = 1; i < pool->n_pending; i++)
                if (pool->pending[i].started_us < pool->pending[oldest].started_us)
                    oldest = i;
            hs_refuse(pool, &pool->pending[oldest], false, "too many handshakes in progress");
            pool_drop(pool, oldest);
        }
        pool->pending[pool->n_pending++] = hs;
    }
}

kvbm_status_t kvbm__hs_pool_next(kvbm__hs_pool_t *pool, uint64_t deadline_us, kvbm__hs_t *done_out)
{
    struct pollfd pfds[KVBM__HS_MAX_PENDING + 2];
    for (;;) {
        /* Hand out a finished one, drop the expired. */
        uint64_t now = kvbm__now_us();
        uint64_t wake_at = deadline_us;
        for (size_t i = 0; i < pool->n_pending;) {
            kvbm__hs_t *hs = &pool->pending[i];
            if (hs->stage == HS_DONE) {
                *done_out = *hs;
                pool->pending[i] = pool->pending[--pool->n_pending];
                return KVBM_OK;
            }
            if (now >= hs->deadline_us) {
                hs_refuse(pool, hs, false, "handshake too slow");
                pool_drop(pool, i);
                continue;
            }
            if (hs->deadline_us < wake_at)
                wake_at = hs->deadline_us;
            i++;
        }
        if (deadline_us != KVBM__NO_DEADLINE && now >= deadline_us)
            return KVBM_ERR_TIMEOUT;

        nfds_t n = 0;
        pfds[n++] = (struct pollfd){.fd = pool->listen_fd, .events = POLLIN};
        pfds[n++] = (struct pollfd){.fd = pool->wake_fd, .events = POLLIN}; /* -1: ignored */
        for (size_t i = 0; i < pool->n_pending; i++)
            pfds[n++] = (struct pollfd){.fd = pool->pending[i].fd, .events = POLLIN};
        int rc = poll(pfds, n, kvbm__ms_left(wake_at));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return KVBM_SYS_ERROR("poll");
        }
        if (pool->wake_fd >= 0 && pfds[1].revents != 0)
            return KVBM_ERR_BAD_STATE;
        /* Step the ready ones first (indexes match pfds before any change). */
        size_t n_before = pool->n_pending;
        bool ready[KVBM__HS_MAX_PENDING] = {false};
        for (size_t i = 0; i < n_before; i++)
            ready[i] = pfds[2 + i].revents != 0;
        for (size_t i = n_before; i-- > 0;) {
            if (!ready[i])
                continue;
            if (hs_step(pool, &pool->pending[i]) == HS_FAILED)
                pool_drop(pool, i);
        }
        if (pfds[0].revents != 0) {
            kvbm_status_t status = pool_accept(pool);
            if (status != KVBM_OK)
                return status;
        }
    }
}

void kvbm__hs_pool_close(kvbm__hs_pool_t *pool)
{
    while (pool->n_pending > 0)
        close(pool->pending[--pool->n_pending].fd);
}
