/*
 * Fault injection for tests, in one place (fault.c) and called by every
 * transport and by the protocol code: a sender that dies, hangs or drips
 * after some bytes, a data path that reports busy, and a rank that lies on
 * the wire the way a hostile peer would. Process-wide; set before creating
 * transfer objects (the tests' ranks are processes of their own).
 */
#ifndef KVBM_XFER_FAULT_H
#define KVBM_XFER_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* After this many bytes of block data sent by this process, the sender
 * kills itself (KVBM__FAULT_DIE) or stops forever (KVBM__FAULT_HANG). */
typedef enum kvbm__xfer_fault {
    KVBM__FAULT_NONE = 0,
    KVBM__FAULT_DIE = 1,
    KVBM__FAULT_HANG = 2,
} kvbm__xfer_fault_t;
void kvbm__xfer_fault_set(kvbm__xfer_fault_t fault, size_t after_bytes);
/* The next @p count non-waiting data_begin calls in this process report
 * KVBM_ERR_BUSY, as a busy data path would. */
void kvbm__xfer_fault_busy(uint32_t count);
/* Called by every transport's send with the bytes it is about to send: how
 * many it may send before the fault fires (all of them without a fault). */
size_t kvbm__xfer_fault_clip(size_t len);
/* Called by a transport's send after sending the clipped bytes; does not
 * return with KVBM__FAULT_DIE or KVBM__FAULT_HANG. */
void kvbm__xfer_fault_fire(void);
/* Called by every transport's data_begin when it would not wait: whether to
 * report KVBM_ERR_BUSY for a kvbm__xfer_fault_busy count. */
bool kvbm__xfer_fault_take_busy(void);

/* The next data send of this process goes out one byte every @p interval_ms
 * (a peer that drips), until it fails. */
void kvbm__xfer_fault_drip(uint32_t interval_ms);
/* The socket transport's send asks: the drip interval to use for this send
 * (taken once), or 0. */
uint32_t kvbm__xfer_fault_take_drip(void);

/* Lies a rank tells, each for its next @p count occasions. */
typedef enum kvbm__xfer_lie {
    KVBM__LIE_STATUS = 0,    /* service replies (ACCEPT, OFFER, RAW_READY) carry @p value */
    KVBM__LIE_RAW_BYTES = 1, /* a raw request announces @p value bytes, whatever it sends */
    KVBM__LIE_REGIONS = 2,   /* the rendezvous description claims regions of @p value bytes
                                (as many as keep the block size) */
    KVBM__LIE_COUNT
} kvbm__xfer_lie_t;
void kvbm__xfer_fault_lie(kvbm__xfer_lie_t lie, int64_t value, uint32_t count);
/* Whether to tell @p lie now (consumes one occasion); its value in *value_out. */
bool kvbm__xfer_fault_lie_take(kvbm__xfer_lie_t lie, int64_t *value_out);

#endif /* KVBM_XFER_FAULT_H */
