/*
 * The handshake of auth.h on both ends (handshake.c).
 *
 * The client side is one blocking call with a deadline: the connecting
 * thread has nothing else to do meanwhile.
 *
 * The server side must not let one slow or silent connection hold up the
 * others, so it is a small state machine per connection, stepped by a poll
 * loop over a listener and every handshake in progress (kvbm__hs_pool_t),
 * each with its own deadline. The pool holds at most KVBM__HS_MAX_PENDING
 * connections; when a new one arrives on a full pool the oldest is dropped,
 * so a flood of silent connections cannot lock a legitimate peer out for
 * longer than its handshake takes. A connection leaves the pool
 * authenticated, with its first message read and handed to the caller, or
 * closed and counted (kvbm_xfer_stats_t: auth_failures for a tag that does
 * not verify or a secret on one side only, connections_refused for the
 * rest: not loopback without a secret, malformed, too slow, evicted).
 */
#ifndef KVBM_XFER_HANDSHAKE_H
#define KVBM_XFER_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "counters.h"
#include "socket_io.h"
#include "wire.h"

#define KVBM__HS_MAX_PENDING 64
#define KVBM__HS_PAYLOAD_MAX sizeof(kvbm__wire_desc_t)

/*
 * Client side: runs the handshake on a connected socket by @p deadline_us.
 * Returns KVBM_OK (the caller sends its first message next);
 * KVBM_ERR_AUTH (the server does not hold this secret, or only one side has
 * one); KVBM_ERR_PEER, KVBM_ERR_TIMEOUT, KVBM_ERR_PARSE, KVBM_ERR_IO.
 */
kvbm_status_t kvbm__hs_client(int fd, const kvbm__auth_t *auth, uint32_t purpose,
                              uint64_t deadline_us);

/* One server-side handshake in progress. */
typedef struct kvbm__hs {
    int fd;
    uint64_t deadline_us;
    uint64_t started_us;
    kvbm__addr_t peer;
    int stage;
    size_t have, need;
    uint8_t buf[128];
    uint8_t nonce_c[KVBM__NONCE_BYTES];
    uint8_t nonce_s[KVBM__NONCE_BYTES];
    /* Once done: the first message after the handshake. */
    kvbm__wire_hdr_t first;
    uint8_t payload[KVBM__HS_PAYLOAD_MAX];
} kvbm__hs_t;

typedef struct kvbm__hs_pool {
    /* Set by kvbm__hs_pool_init; borrowed. */
    const kvbm__auth_t *auth;
    kvbm__xfer_counters_t *counters;
    uint32_t purpose;
    uint16_t first_type;  /* the message expected after the handshake */
    size_t first_payload; /* its payload bytes (<= KVBM__HS_PAYLOAD_MAX) */
    uint32_t timeout_ms;  /* per handshake, from accept to first message */
    int listen_fd;
    int wake_fd; /* readable: stop (-1: none) */
    /* Owned: the connections in progress. */
    kvbm__hs_t pending[KVBM__HS_MAX_PENDING];
    size_t n_pending;
} kvbm__hs_pool_t;

void kvbm__hs_pool_init(kvbm__hs_pool_t *pool, const kvbm__auth_t *auth,
                        kvbm__xfer_counters_t *counters, uint32_t purpose, uint16_t first_type,
                        size_t first_payload, uint32_t timeout_ms, int listen_fd, int wake_fd);
/*
 * Accepts and steps handshakes until one completes: KVBM_OK, with its
 * socket, peer address, first header and payload in *done_out (the socket
 * is the caller's now). KVBM_ERR_TIMEOUT when @p deadline_us passes first;
 * KVBM_ERR_BAD_STATE when the wake fd became readable; KVBM_ERR_IO when
 * poll or the listener fails.
 */
kvbm_status_t kvbm__hs_pool_next(kvbm__hs_pool_t *pool, uint64_t deadline_us, kvbm__hs_t *done_out);
/* Closes every connection still in progress (not counted). */
void kvbm__hs_pool_close(kvbm__hs_pool_t *pool);

#endif /* KVBM_XFER_HANDSHAKE_H */
