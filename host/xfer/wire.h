/*
 * The transfer layer's wire format: the control messages ranks exchange on
 * their sockets (header, message types, a rank's description at the
 * rendezvous, the handshake), and the helpers that send, receive and check
 * them (wire.c). Every field is little-endian with a fixed width and
 * explicit padding, so ranks on different hosts agree; kvbm refuses to
 * build on a big-endian host rather than swap every array.
 *
 * Nothing read from the wire is trusted: a header's magic, version, type,
 * count, flags, reserved field and status are checked on arrival
 * (kvbm__wire_recv_hdr), and every id, size and address a message carries is
 * checked against this rank's own configuration before use.
 */
#ifndef KVBM_XFER_WIRE_H
#define KVBM_XFER_WIRE_H

#include <stdbool.h>
#include <stdint.h>

#include "kvbm/xfer.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the transfer wire format is little-endian; this host is not");

#define KVBM__WIRE_MAGIC    0x5842564bu /* "KVBX" */
#define KVBM__WIRE_VERSION  2u
#define KVBM__BLOB_MAX      256u /* transport bootstrap blob (NCCL unique id: 128) */
#define KVBM__SESSION_BYTES 16u  /* random id of one mesh, drawn by rank 0 */
#define KVBM__NONCE_BYTES   32u
#define KVBM__TAG_BYTES     32u

typedef enum kvbm__wire_type {
    KVBM__MSG_HELLO = 1,   /* rank -> rank 0: desc */
    KVBM__MSG_TABLE = 2,   /* rank 0 -> rank: status, descs[size], session, blob */
    KVBM__MSG_CONNECT = 3, /* client -> server: my rank (count), session */
    KVBM__MSG_PUSH = 4,    /* hashes[count], src ids[count]; arg parent, flags */
    KVBM__MSG_ACCEPT = 5,  /* status, dst ids[count], need[count] */
    KVBM__MSG_DONE = 6,    /* status, final ids[count] */
    KVBM__MSG_PULL = 7,    /* hashes[count] */
    KVBM__MSG_OFFER = 8,   /* status, src ids[count] (matched prefix) */
    KVBM__MSG_GO = 9,      /* status, dst ids[count] */
    KVBM__MSG_RAW = 10,    /* arg bytes */
    KVBM__MSG_RAW_READY = 11,
    KVBM__MSG_RAW_DONE = 12,
    KVBM__MSG_BARRIER = 13,
    KVBM__MSG_AUTH_HELLO = 14,     /* client: purpose (count), flags keyed; nonce */
    KVBM__MSG_AUTH_CHALLENGE = 15, /* server: nonce, tag */
    KVBM__MSG_AUTH_PROOF = 16,     /* client: tag */
    KVBM__MSG_TYPE_END
} kvbm__wire_type_t;

/* Push flags: bit 0 has_parent, bits 8..15 priority; nothing else. */
#define KVBM__PUSH_FLAGS_MASK 0x0000ff01u
/* Auth hello flags: the client holds a secret. */
#define KVBM__AUTH_FLAG_KEYED 1u

/* Every control message starts with this 32-byte header. */
typedef struct kvbm__wire_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    int32_t status;
    uint32_t count;
    uint64_t arg;
    uint32_t flags;
    uint32_t reserved;
} kvbm__wire_hdr_t;
_Static_assert(sizeof(kvbm__wire_hdr_t) == 32, "wire header is 32 bytes");

/* Address families in a description. */
#define KVBM__WIRE_AF_RENDEZVOUS 0u /* reach this rank at the rendezvous address */
#define KVBM__WIRE_AF_INET       4u
#define KVBM__WIRE_AF_INET6      6u

/* One rank's description, sent at the rendezvous. */
typedef struct kvbm__wire_desc {
    int32_t rank;
    int32_t size;
    uint32_t transport;
    uint32_t mem_kind;
    uint32_t num_blocks;
    uint32_t region_count;
    uint64_t region_bytes;
    uint64_t block_stride;
    uint64_t layout_key;
    uint8_t addr[16];  /* mesh listener: IPv4 in the first 4 bytes, or IPv6 */
    uint32_t scope_id; /* IPv6 link-local interface (meaningful on its host only) */
    uint16_t family;   /* KVBM__WIRE_AF_* */
    uint16_t port;
} kvbm__wire_desc_t;
_Static_assert(sizeof(kvbm__wire_desc_t) == 72, "wire description is 72 bytes");

/* Largest raw message (the sender's own bound; the receiver never sizes
 * memory by it: raw bytes land in a fixed scratch, chunk by chunk). */
#define KVBM__XFER_RAW_MAX_BYTES ((uint64_t)1 << 36)
/* Raw messages move in pieces of this size, on both sides alike. */
#define KVBM__XFER_RAW_CHUNK_BYTES ((size_t)4 << 20)

/* Sends a header plus up to two payload arrays in one sendmsg. */
kvbm_status_t kvbm__wire_send(int fd, uint64_t deadline_us, const kvbm__wire_hdr_t *hdr,
                              const void *a, size_t a_len, const void *b, size_t b_len);
/*
 * Reads a header and checks it: magic, version, type (one of the known ones,
 * and @p type unless 0), count <= KVBM_XFER_MAX_BLOCKS, reserved 0, flags
 * allowed for the type, and a status that is KVBM_OK or one of kvbm's own
 * error codes (a reply's status becomes the caller's result, so an
 * arbitrary number must never pass). Anything else is KVBM_ERR_PARSE.
 */
kvbm_status_t kvbm__wire_recv_hdr(int fd, uint64_t deadline_us, uint16_t type,
                                  kvbm__wire_hdr_t *hdr_out);
/* The checks of kvbm__wire_recv_hdr on a header already read. */
kvbm_status_t kvbm__wire_check_hdr(const kvbm__wire_hdr_t *hdr, uint16_t type);
void kvbm__wire_hdr_init(kvbm__wire_hdr_t *hdr, uint16_t type, int32_t status, uint32_t count);
/* Whether @p status is KVBM_OK or a kvbm error code. */
bool kvbm__wire_status_known(int32_t status);

#endif /* KVBM_XFER_WIRE_H */
