/*
 * The library's one logger: every message of host/ and cuda/ goes through
 * kvbm__log, which hands it to the callback set with kvbm_log_set (default:
 * a line on stderr). Messages are formatted into a bounded buffer; longer
 * ones are cut.
 */
#ifndef KVBM_CORE_LOG_H
#define KVBM_CORE_LOG_H

#include "kvbm/log.h"

/* Longest message delivered, including the terminating NUL. */
#define KVBM__LOG_LINE_MAX 512

void kvbm__log(kvbm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* KVBM_CORE_LOG_H */
