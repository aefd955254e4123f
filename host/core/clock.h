/* The library's one clock for deadlines and back-off: monotonic time. */
#ifndef KVBM_CORE_CLOCK_H
#define KVBM_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Microseconds of CLOCK_MONOTONIC (never goes back, unaffected by clock
 * changes; its origin is arbitrary, so only differences mean anything). */
static inline uint64_t kvbm__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif /* KVBM_CORE_CLOCK_H */
