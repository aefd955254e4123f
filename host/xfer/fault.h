/*
 * Fault injection for tests, in one place (fault.c) and called by every
 * transport: a sender that dies or hangs after some bytes, a data path that
 * reports busy. Process-wide; set before creating transfer objects.
 */
#ifndef KVBM_XFER_FAULT_H
#define KVBM_XFER_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fault injection for tests: after this many bytes of block data sent by
 * this process, the sender kills itself (KVBM__FAULT_DIE) or stops forever
 * (KVBM__FAULT_HANG). Process-wide; set before creating threads. */
typedef enum kvbm__xfer_fault {
    KVBM__FAULT_NONE = 0,
    KVBM__FAULT_DIE = 1,
    KVBM__FAULT_HANG = 2,
} kvbm__xfer_fault_t;
void kvbm__xfer_fault_set(kvbm__xfer_fault_t fault, size_t after_bytes);
/* Fault injection for tests: the next @p count non-waiting data_begin calls
 * in this process report KVBM_ERR_BUSY, as a busy data path would. Process-wide; set before
 * creating threads. */
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

#endif /* KVBM_XFER_FAULT_H */
