/**
 * @file xfer.h
 * @brief Blocks across ranks: push blocks to a peer, pull blocks by hash.
 *
 * A transfer object joins N ranks (processes, on one host or several) over
 * one transport:
 *
 *  - KVBM_XFER_SOCKET: TCP for the control messages and the block bytes.
 *    Always built; host memory only.
 *  - KVBM_XFER_NCCL: TCP for the control messages, NCCL send/recv (batched
 *    in one ncclGroupStart/End per transfer, on a private communicator and
 *    the object's own CUDA stream) for the block bytes. Device memory. Built
 *    only with NCCL.
 *
 * Ranks meet at rank 0's rendezvous address and then talk over TCP on any
 * interface, IPv4 or IPv6, each rank listening on an address it is given
 * (or the one it reached rank 0 from). Every connection proves knowledge of
 * a shared secret (kvbm_xfer_config_t.secret or .secret_file) by a mutual
 * challenge-response (HMAC-SHA-512-256 over nonces from both sides, from
 * libsodium) before anything else is served; a peer that fails is refused
 * and counted (kvbm_xfer_stats). Without a secret every address must be
 * loopback. docs/TRANSFER.md states the threat model and the limits no peer
 * can push a rank past.
 *
 * Every rank describes the memory its blocks live in (kvbm_xfer_memory_t) and
 * hands in its block manager. Ranks whose block geometry disagrees are refused
 * at creation with KVBM_ERR_INCOMPATIBLE, on every rank.
 *
 * Push: the caller names local blocks and their sequence hashes; the peer
 * acquires the blocks whose hashes it already holds (their bytes are not sent
 * again), allocates blocks in its manager for the others, receives every byte
 * into them, then registers the hashes, calls its on_arrival and releases
 * its references (the blocks stay cached in its inactive pool, ready for
 * kvbm_manager_match). Only then does the caller's request complete, with the
 * peer's block ids. (If the peer fails after registering, the push may have
 * landed although the caller sees an error; it never shows success for blocks
 * that did not land.)
 *
 * Pull: the caller names hashes; the peer matches the longest registered
 * prefix, sends those blocks, and the caller gets them allocated, filled and
 * registered locally, holding one reference on each.
 *
 * A block is registered only after all of its bytes arrived. A transfer that
 * fails (peer died, timed out, no room) registers nothing and gives every
 * block it allocated back to the reset pool. Every request has a deadline:
 * one timeout per control message, and for its data one timeout plus one per
 * 64 MiB; a request that misses it fails alone, and the connection it used
 * is reopened for the next request.
 *
 * Requests to one peer run in submission order on that peer's worker
 * thread; requests to different peers run side by side. Requests from each
 * peer are served on a thread of their own, so a slow or hostile peer holds
 * up no other. Any thread may submit requests; kvbm_xfer_destroy and
 * kvbm_xfer_barrier are for one thread.
 *
 * The wire format is little-endian (kvbm builds only on little-endian
 * hosts); every rank runs the same kvbm version.
 */
#ifndef KVBM_XFER_H
#define KVBM_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvbm/backend.h"
#include "kvbm/config_init.h"
#include "kvbm/export.h"
#include "kvbm/layout.h"
#include "kvbm/manager.h"
#include "kvbm/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVBM_XFER_CONFIG_VERSION 2u
/** Most regions a block may be split into in kvbm_xfer_memory_t. */
#define KVBM_XFER_MAX_REGIONS 1024u
/** Most blocks in one push or pull. */
#define KVBM_XFER_MAX_BLOCKS 65536u
/** Most ranks in one transfer object. */
#define KVBM_XFER_MAX_RANKS 256
/** Smallest region a rank may describe (its own, or a peer's at creation). */
#define KVBM_XFER_MIN_REGION_BYTES 64u

typedef struct kvbm_xfer kvbm_xfer_t;
typedef struct kvbm_xfer_req kvbm_xfer_req_t;
typedef struct kvbm_xfer_rendezvous kvbm_xfer_rendezvous_t;

typedef enum kvbm_xfer_transport {
    KVBM_XFER_SOCKET = 1, /**< TCP, host memory */
    KVBM_XFER_NCCL = 2,   /**< NCCL data path, device memory */
} kvbm_xfer_transport_t;

typedef enum kvbm_xfer_mem_kind {
    KVBM_XFER_MEM_HOST = 1,   /**< host memory (pageable or pinned) */
    KVBM_XFER_MEM_DEVICE = 2, /**< device memory of the object's CUDA device */
} kvbm_xfer_mem_kind_t;

/**
 * Where the bytes of a block live. Block @c b is @c region_count contiguous
 * regions of @c region_bytes (at least KVBM_XFER_MIN_REGION_BYTES) each, which concatenated in
 * order are the block's bytes in canonical (layer, outer, token, inner) order; region @c r of block
 * @c b starts at `region_base[r] + b * block_stride`.
 *
 * This covers a fully contiguous slab (one region, stride = padded block
 * size) and a layer-separate one (one region per layer or per (layer, outer)
 * plane, base = that plane, stride = its per-block size). Two ranks are
 * compatible when layout_key and the bytes per block are equal and one
 * region size divides the other, so blocks move between the two
 * arrangements unit for unit. On the wire the finer region size is the
 * unit and the bytes go unit-major (unit 0 of every block, then unit 1, ...),
 * so a run of consecutive block ids in a layer-separate slab is one piece.
 */
typedef struct kvbm_xfer_memory {
    kvbm_xfer_mem_kind_t kind;
    uint32_t num_blocks;      /**< blocks in the slab; >= the manager's count */
    uint32_t region_count;    /**< 1..KVBM_XFER_MAX_REGIONS */
    size_t region_bytes;      /**< > 0 */
    size_t block_stride;      /**< >= region_bytes */
    void *const *region_base; /**< region_count pointers; copied at create */
    /**
     * Compatibility key of the block geometry (layers, outer dim, tokens per
     * block, inner size, element size), e.g. a hash of them; equal keys mean
     * equal geometry. 0 is allowed: then only the sizes are compared.
     */
    uint64_t layout_key;
} kvbm_xfer_memory_t;

/** What a rank learns about each push it received (success or failure). */
typedef struct kvbm_xfer_arrival {
    int peer;               /**< rank that pushed */
    kvbm_status_t status;   /**< KVBM_OK, or why nothing was registered */
    size_t count;           /**< blocks in the push (0 on failures before the header) */
    const uint64_t *hashes; /**< count hashes, or NULL on failure */
    const uint32_t *ids;    /**< count local block ids now holding them, or NULL */
} kvbm_xfer_arrival_t;

/**
 * Called on the pusher's service thread once per incoming push; calls are
 * serialised (never two at once, whichever peers pushed). On success the ids
 * are registered and referenced for the duration of the call (acquire them
 * with kvbm_manager_acquire to keep them); the references are released after
 * it returns, and only then does the pusher's request complete. While it
 * runs, other arrivals wait for it, so keep it short; it must not call
 * kvbm_xfer_destroy or wait on requests to the pusher. Pointers are valid
 * only during the call.
 */
typedef void (*kvbm_xfer_arrival_fn)(void *ctx, const kvbm_xfer_arrival_t *arrival);

typedef struct kvbm_xfer_config {
    uint32_t struct_size; /**< sizeof(kvbm_xfer_config_t) */
    uint32_t version;     /**< KVBM_XFER_CONFIG_VERSION */
    kvbm_xfer_transport_t transport;
    int rank; /**< 0..size-1 */
    int size; /**< 1..KVBM_XFER_MAX_RANKS */
    /**
     * Rendezvous: rank 0 listens on rendezvous_host:rendezvous_port (or on
     * @c rendezvous, if set, which then overrides both), the others connect
     * there. A numeric IPv4 or IPv6 address (host names are not resolved);
     * NULL means "127.0.0.1". Anything but loopback needs a secret.
     */
    const char *rendezvous_host;
    uint16_t rendezvous_port;
    kvbm_xfer_rendezvous_t *rendezvous; /**< rank 0 only, optional; used during create */
    /**
     * Deadline of each step: a connection and its handshake, a control
     * message, and a transfer's data (one timeout plus one per 64 MiB).
     */
    uint32_t timeout_ms;
    kvbm_manager_t *manager; /**< required; borrowed, must outlive the object */
    /**
     * Where this rank's blocks live, either as a layout (kvbm/layout.h) over
     * a pool at layout_base (e.g. kvbm_pool_ptr of a backend pool: device
     * memory for NCCL, host memory for sockets), or, when layout is NULL, as
     * an explicit memory description. The layout's geometry gives the
     * compatibility key; ranks may use different arrangements.
     */
    const kvbm_layout_t *layout; /**< borrowed for the call only */
    void *layout_base;
    kvbm_xfer_memory_t memory;       /**< used when layout is NULL */
    kvbm_xfer_arrival_fn on_arrival; /**< optional */
    void *arrival_ctx;
    /**
     * NCCL only: an existing communicator (ncclComm_t) of exactly these rank
     * and size, borrowed (it must outlive the object). kvbm never issues
     * work on it: create splits a private communicator from it
     * (ncclCommSplit, so create is collective over it: every rank must call
     * create where it would call a collective), takes the device from it
     * (ncclCommCuDevice), and only ever aborts or destroys its own. NULL:
     * kvbm creates one from a unique id that rank 0 publishes at the
     * rendezvous. Either way the control messages meet at the rendezvous.
     */
    void *nccl_comm;
    /** NCCL only, without nccl_comm: device to use; -1: the calling thread's current device. */
    int cuda_device;

    /* ---- version 2 ---- */
    /**
     * Address this rank's mesh listener binds to and peers connect to (a
     * numeric IPv4 or IPv6 address; a wildcard "0.0.0.0" or "::" binds
     * everywhere and peers use the address rank 0 saw this rank connect
     * from). NULL: rank 0 uses the rendezvous address; the others the local
     * address of their connection to rank 0.
     */
    const char *listen_host;
    uint16_t listen_port; /**< mesh listener port; 0: any free one */
    /**
     * The shared secret every rank holds, @c secret_len bytes (at least 16),
     * borrowed for the call only; or NULL. Never pass it on a command line:
     * other users can read those.
     */
    const void *secret;
    size_t secret_len;
    /**
     * Or a file holding the secret: its bytes, exactly (16..4096), in a
     * regular file that neither the group nor others may access (mode 600).
     * At most one of secret and secret_file.
     */
    const char *secret_file;
    /**
     * NCCL only, optional, borrowed: the engine's stream (a CUDA stream
     * wrapped with kvbm_stream_wrap). Each NCCL group first waits for all
     * work enqueued on it so far (a push never reads KV the engine is still
     * writing, a receive never overwrites blocks the engine still reads),
     * and the engine stream then waits for the group (a fence recorded after
     * it), so later engine work sees the bytes that arrived.
     */
    kvbm_stream_t *engine_stream;
    /**
     * The most memory a peer's raw message (kvbm_xfer_send_raw) may land in
     * on this rank, per peer connection, allocated at its first raw message
     * and reused (the bytes are discarded): rounded down to a multiple of
     * 4 MiB; 0 or less than 4 MiB: 4 MiB. A peer's raw header never sizes
     * memory beyond it.
     */
    size_t raw_scratch_bytes;
} kvbm_xfer_config_t;

/** The defaults: X(P, field, value) entries (kvbm/config_init.h). */
#define KVBM_XFER_CONFIG_DEFAULTS(X, P)                                                            \
    X(P, struct_size, sizeof(kvbm_xfer_config_t))                                                  \
    X(P, version, KVBM_XFER_CONFIG_VERSION)                                                        \
    X(P, transport, KVBM_XFER_SOCKET)                                                              \
    X(P, size, 1)                                                                                  \
    X(P, timeout_ms, 10000)                                                                        \
    X(P, memory.kind, KVBM_XFER_MEM_HOST)                                                          \
    X(P, cuda_device, -1)

#ifdef __cplusplus
#define KVBM_XFER_CONFIG_INIT KVBM_CONFIG_INIT_CXX(kvbm_xfer_config_t, kvbm_xfer_config_init)
#else
#define KVBM_XFER_CONFIG_INIT                                                                      \
    {                                                                                              \
        KVBM_XFER_CONFIG_DEFAULTS(KVBM_CONFIG_DESIGNATE, )                                         \
    }
#endif

/**
 * @brief Set @p config to the defaults, as KVBM_XFER_CONFIG_INIT does; for
 *        C and C++ alike. Compiled into the caller (static inline).
 */
static inline void kvbm_xfer_config_init(kvbm_xfer_config_t *config)
{
    memset(config, 0, sizeof(*config));
    KVBM_XFER_CONFIG_DEFAULTS(KVBM_CONFIG_ASSIGN, )
}

/**
 * @brief Whether a transport can run here, without touching any peer.
 * @return KVBM_OK; KVBM_ERR_UNSUPPORTED (not built in); KVBM_ERR_NO_DEVICE
 *         (NCCL built but no usable GPU); KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_xfer_transport_probe(kvbm_xfer_transport_t transport);

/**
 * @brief Listen for the rendezvous on @p host : @p port (0: ephemeral) before
 *        the other ranks exist, e.g. before fork, so they can be told the port.
 * @param[in]  host numeric IPv4 or IPv6 address (NULL: "127.0.0.1"); create
 *             refuses anything but loopback unless the ranks hold a secret.
 * @param[out] rendezvous_out owned by the caller; kvbm_xfer_rendezvous_destroy.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (not a numeric address);
 *         KVBM_ERR_BUSY (address in use); KVBM_ERR_IO; KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_xfer_rendezvous_create(const char *host, uint16_t port,
                                                   kvbm_xfer_rendezvous_t **rendezvous_out);

/** @brief The port the rendezvous listens on. */
KVBM_API uint16_t kvbm_xfer_rendezvous_port(const kvbm_xfer_rendezvous_t *rendezvous);

/** @brief Close the listener. NULL is a no-op. Safe in a forked child that
 *         will not use it. */
KVBM_API void kvbm_xfer_rendezvous_destroy(kvbm_xfer_rendezvous_t *rendezvous);

/**
 * @brief Join the other ranks: rendezvous, compare layouts, connect the mesh,
 *        start the worker and service threads. Blocks until all @c size ranks
 *        have joined or the timeout passes without progress.
 * @param[in]  config  copied; the memory it describes and the manager are
 *                     borrowed and must outlive the object; the layout and
 *                     the rendezvous are used during the call only.
 * @param[out] xfer_out owned by the caller; kvbm_xfer_destroy.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (also: an address that is not
 *         loopback without a secret, a secret shorter than 16 bytes, a
 *         secret file others can read); KVBM_ERR_VERSION;
 *         KVBM_ERR_INCOMPATIBLE (some rank's memory geometry, size or
 *         transport differs: every rank gets this); KVBM_ERR_AUTH (rank 0
 *         or a peer does not hold this secret); KVBM_ERR_UNSUPPORTED;
 *         KVBM_ERR_NO_DEVICE; KVBM_ERR_TIMEOUT (a rank did not join in
 *         time; connections that fail authentication are refused, counted
 *         and do not count as joining); KVBM_ERR_PEER; KVBM_ERR_BUSY
 *         (listen address in use); KVBM_ERR_IO; KVBM_ERR_NCCL;
 *         KVBM_ERR_DEVICE; KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_xfer_create(const kvbm_xfer_config_t *config, kvbm_xfer_t **xfer_out);

/* X(field, prometheus type, help text) */
#define KVBM_XFER_STATS_LIST(X)                                                                    \
    X(auth_failures, counter,                                                                      \
      "connections refused because the peer failed the challenge-response (wrong secret, or a "    \
      "secret on one side only)")                                                                  \
    X(connections_refused, counter,                                                                \
      "connections closed before or right after the handshake for another reason: not loopback "   \
      "without a secret, malformed, too slow, too many pending, wrong session or rank")            \
    X(reconnects, counter, "client connections opened again after a failure broke the last one")   \
    X(requests_timed_out, counter, "requests, started or served here, that missed their deadline") \
    X(protocol_errors, counter,                                                                    \
      "requests failed by a malformed or out-of-range message from a peer")

/** Counters of one transfer object, from KVBM_XFER_STATS_LIST. */
typedef struct kvbm_xfer_stats {
#define KVBM_XFER_STATS_FIELD(field, type, help) uint64_t field;
    KVBM_XFER_STATS_LIST(KVBM_XFER_STATS_FIELD)
#undef KVBM_XFER_STATS_FIELD
} kvbm_xfer_stats_t;

/**
 * @brief The object's counters so far. Any thread.
 * @param[out] stats_out each counter read once (relaxed: not a snapshot of
 *             one moment).
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG.
 */
KVBM_API kvbm_status_t kvbm_xfer_stats(const kvbm_xfer_t *xfer, kvbm_xfer_stats_t *stats_out);

/**
 * @brief The counters in the Prometheus text format (`kvbm_xfer_<name>_total`,
 *        labelled with the rank). Any thread.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG; KVBM_ERR_IO.
 */
KVBM_API kvbm_status_t kvbm_xfer_stats_prometheus(const kvbm_xfer_t *xfer, FILE *out);

/** @brief The counters as one JSON object on a line. Any thread. */
KVBM_API kvbm_status_t kvbm_xfer_stats_json(const kvbm_xfer_t *xfer, FILE *out);

/**
 * @brief Stop the threads, close the connections, free the object. Pending
 *        requests complete with KVBM_ERR_PEER; requests must still be freed
 *        by their owner. NULL is a no-op. Call kvbm_xfer_barrier first when
 *        peers may still send to this rank.
 */
KVBM_API void kvbm_xfer_destroy(kvbm_xfer_t *xfer);

/** @brief This rank (-1 for NULL). Any thread. */
KVBM_API int kvbm_xfer_rank(const kvbm_xfer_t *xfer);
/** @brief The number of ranks (0 for NULL). Any thread. */
KVBM_API int kvbm_xfer_size(const kvbm_xfer_t *xfer);

/**
 * @brief Wait until every rank called kvbm_xfer_barrier (through rank 0).
 * @return KVBM_OK; KVBM_ERR_PEER; KVBM_ERR_TIMEOUT.
 */
KVBM_API kvbm_status_t kvbm_xfer_barrier(kvbm_xfer_t *xfer);

/**
 * @brief Send local blocks with their sequence hashes to rank @p peer.
 *
 * The blocks' bytes must not change until the request completes (hold a
 * reference on them). hashes[0]'s parent is @p opts->parent_hash if set.
 *
 * @param[in]  block_ids  @p count local block ids; copied.
 * @param[in]  hashes     @p count sequence hashes; copied.
 * @param[in]  opts       optional registration options for the peer.
 * @param[out] req_out    the request, owned by the caller (kvbm_xfer_req_free).
 * @return KVBM_OK (submitted); KVBM_ERR_INVALID_ARG (peer is self or out of
 *         range, count 0 or > KVBM_XFER_MAX_BLOCKS, id out of the slab);
 *         KVBM_ERR_NO_MEMORY; KVBM_ERR_BAD_STATE (object being destroyed).
 *         The request's own status (kvbm_xfer_req_wait) adds KVBM_ERR_PEER,
 *         KVBM_ERR_TIMEOUT, KVBM_ERR_NO_BLOCKS (peer had no room), ...
 */
KVBM_API kvbm_status_t kvbm_xfer_push(kvbm_xfer_t *xfer, int peer, const uint32_t *block_ids,
                                      const uint64_t *hashes, size_t count,
                                      const kvbm_register_opts_t *opts, kvbm_xfer_req_t **req_out);

/**
 * @brief Ask rank @p peer for the blocks of @p hashes (the longest prefix it
 *        holds); they are allocated, received and registered locally.
 * @param[in]  hashes  @p count sequence hashes, in sequence order; copied.
 * @param[out] req_out the request, owned by the caller.
 * @return as kvbm_xfer_push. The request completes KVBM_OK with 0 blocks when
 *         the peer holds none of them.
 */
KVBM_API kvbm_status_t kvbm_xfer_pull(kvbm_xfer_t *xfer, int peer, const uint64_t *hashes,
                                      size_t count, kvbm_xfer_req_t **req_out);

/**
 * @brief Send @p bytes from @p buf as one contiguous message to @p peer, which
 *        receives it into a scratch buffer of its own configured size
 *        (raw_scratch_bytes, 4 MiB by default; whatever the message's size)
 *        and discards it. For measuring the
 *        transport's raw bandwidth next to block transfers. @p buf is host
 *        memory for KVBM_XFER_SOCKET, device memory for KVBM_XFER_NCCL, and
 *        must stay valid until the request completes.
 */
KVBM_API kvbm_status_t kvbm_xfer_send_raw(kvbm_xfer_t *xfer, int peer, const void *buf,
                                          size_t bytes, kvbm_xfer_req_t **req_out);

/**
 * @brief Wait for a request to complete. Bounded: every step of a transfer
 *        either progresses within the timeout or fails.
 * @return the request's status: KVBM_OK; KVBM_ERR_PEER (peer died or
 *         closed); KVBM_ERR_TIMEOUT (the request missed its deadline; the
 *         next request to that peer opens a fresh connection);
 *         KVBM_ERR_AUTH (reconnecting, the peer failed authentication);
 *         KVBM_ERR_PARSE (the peer sent a malformed or out-of-range
 *         message, e.g. an unknown status code); KVBM_ERR_NO_BLOCKS
 *         (no room on the receiving side); KVBM_ERR_BUSY (the peer's data
 *         path stayed taken for the whole timeout); KVBM_ERR_NCCL;
 *         KVBM_ERR_DEVICE; KVBM_ERR_IO; KVBM_ERR_PARSE; KVBM_ERR_NO_MEMORY.
 */
KVBM_API kvbm_status_t kvbm_xfer_req_wait(kvbm_xfer_req_t *req);

/** @brief Whether the request completed (then kvbm_xfer_req_wait does not block). */
KVBM_API bool kvbm_xfer_req_done(kvbm_xfer_req_t *req);

/**
 * @brief The blocks of a completed, successful request: for a push, the
 *        peer's block ids now holding the hashes (informational: they sit in
 *        the peer's inactive pool); for a pull, the local block ids, each
 *        holding one reference.
 *
 * For a pull, copying the ids out (ids_out != NULL) hands those references
 * to the caller, who releases them with kvbm_manager_release. If the caller
 * never takes them, kvbm_xfer_req_free releases them.
 *
 * @param[out] ids_out  room for @p capacity ids; NULL only asks the count.
 * @param[out] count_out number of blocks (pull: how many arrived).
 * @return KVBM_OK; KVBM_ERR_BAD_STATE (not complete, or failed);
 *         KVBM_ERR_INVALID_ARG (capacity too small).
 */
KVBM_API kvbm_status_t kvbm_xfer_req_blocks(kvbm_xfer_req_t *req, uint32_t *ids_out,
                                            size_t capacity, size_t *count_out);

/**
 * @brief Free a request, waiting for it first if needed. NULL is a no-op.
 *        A pull's references the caller did not take are released here, so
 *        the manager must still exist. Any thread, once per request.
 */
KVBM_API void kvbm_xfer_req_free(kvbm_xfer_req_t *req);

#ifdef __cplusplus
}
#endif
#endif /* KVBM_XFER_H */
