/*
 * vLLM's endpoint conventions: which endpoints a PUB socket binds and which
 * it connects to, and the per-data-parallel-rank port offset.
 */
#ifndef KVBM_HOST_EVENTS_ENDPOINT_H
#define KVBM_HOST_EVENTS_ENDPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "kvbm/status.h"

/* Bind when the endpoint has a wildcard ("*" or "::") or is ipc:// or
 * inproc://; connect otherwise ("tcp://router-host:5557"). */
bool kvbm__endpoint_binds(const char *endpoint);

/*
 * The endpoint for data-parallel rank @p rank, in a new string the caller
 * frees: unchanged for rank <= 0; tcp:// gets its port increased by the rank
 * (a "*" port stays: the system picks one anyway); inproc:// and ipc:// get
 * "_dp<rank>" appended.
 * @return KVBM_OK; KVBM_ERR_INVALID_ARG (unknown transport, a tcp:// endpoint
 *         without a numeric port, a port past 65535); KVBM_ERR_NO_MEMORY.
 */
kvbm_status_t kvbm__endpoint_for_rank(const char *endpoint, int32_t rank, char **out);

#endif /* KVBM_HOST_EVENTS_ENDPOINT_H */
