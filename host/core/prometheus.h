/*
 * One metric in the Prometheus text exposition format. The manager and the
 * cache both export their X-macro metric lists through it.
 */
#ifndef KVBM_HOST_PROMETHEUS_H
#define KVBM_HOST_PROMETHEUS_H

#include <stdint.h>
#include <stdio.h>

/*
 * Writes HELP, TYPE and the sample of metric `kvbm_<name>`; counters get the
 * conventional `_total` suffix. @p labels is NULL or the text inside the
 * braces (`manager="g1"`). Returns a negative value on a write error.
 */
int kvbm__prometheus_write(FILE *out, const char *name, const char *type, const char *help,
                           const char *labels, uint64_t value);

#endif /* KVBM_HOST_PROMETHEUS_H */
