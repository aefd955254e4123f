/*
 * The transfer layer's wire format: the control messages ranks exchange on
 * their sockets (header, message types, a rank's description at the
 * rendezvous), and the helpers that send and receive them (wire.c). Both
 * ends run the same kvbm on the same byte order (loopback).
 */
#ifndef KVBM_XFER_WIRE_H
#define KVBM_XFER_WIRE_H

#include <stdint.h>

#include "kvbm/xfer.h"

#define KVBM__WIRE_MAGIC   0x5842564bu /* "KVBX" little endian */
#define KVBM__WIRE_VERSION 1u
#define KVBM__BLOB_MAX     256u /* transport bootstrap blob (NCCL unique id: 128) */

typedef enum kvbm__wire_type {
    KVBM__MSG_HELLO = 1,   /* rank -> rank 0: desc */
    KVBM__MSG_TABLE = 2,   /* rank 0 -> rank: status, descs[size], blob */
    KVBM__MSG_CONNECT = 3, /* client -> server: my rank (count) */
    KVBM__MSG_PUSH = 4,    /* hashes[count], src ids[count]; arg parent, flags */
    KVBM__MSG_ACCEPT = 5,  /* status, dst ids[count] */
    KVBM__MSG_DONE = 6,    /* status, final ids[count] */
    KVBM__MSG_PULL = 7,    /* hashes[count] */
    KVBM__MSG_OFFER = 8,   /* status, src ids[count] (matched prefix) */
    KVBM__MSG_GO = 9,      /* status, dst ids[count] */
    KVBM__MSG_RAW = 10,    /* arg bytes */
    KVBM__MSG_RAW_READY = 11,
    KVBM__MSG_RAW_DONE = 12,
    KVBM__MSG_BARRIER = 13,
} kvbm__wire_type_t;

/* Every control message starts with this 32-byte header. */
typedef struct kvbm__wire_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    int32_t status;
    uint32_t count;
    uint64_t arg;
    uint32_t flags; /* push: bit 0 has_parent, bits 8..15 priority */
    uint32_t reserved;
} kvbm__wire_hdr_t;

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
    uint16_t listen_port;
    uint16_t pad16;
    uint32_t pad32;
} kvbm__wire_desc_t;

/* Largest raw message (sanity bound for a peer's RAW header). */
#define KVBM__XFER_RAW_MAX_BYTES ((uint64_t)1 << 36)

/* Header helpers: send a header plus up to two payload arrays in one writev. */
kvbm_status_t kvbm__wire_send(int fd, uint32_t timeout_ms, const kvbm__wire_hdr_t *hdr,
                              const void *a, size_t a_len, const void *b, size_t b_len);
/* Reads a header and checks magic, version and (unless 0) the type. */
kvbm_status_t kvbm__wire_recv_hdr(int fd, uint32_t timeout_ms, uint16_t type,
                                  kvbm__wire_hdr_t *hdr_out);
void kvbm__wire_hdr_init(kvbm__wire_hdr_t *hdr, uint16_t type, int32_t status, uint32_t count);

#endif /* KVBM_XFER_WIRE_H */
