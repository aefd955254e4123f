/* Endpoint conventions of vLLM's ZmqEventPublisher; see endpoint.h. */
#include "endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

#define MAX_PORT 65535

static bool starts_with(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

bool kvbm__endpoint_binds(const char *endpoint)
{
    return strchr(endpoint, '*') != NULL || strstr(endpoint, "::") != NULL ||
           starts_with(endpoint, "ipc://") || starts_with(endpoint, "inproc://");
}

static kvbm_status_t format_new(char **out, const char *fmt, int len_hint, const char *a, long b)
{
    int len = snprintf(NULL, 0, fmt, len_hint, a, b);
    if (len < 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "publisher endpoint: cannot be formatted");
    char *text = kvbm__alloc(1, (size_t)len + 1);
    if (text == NULL)
        return KVBM_ERR_NO_MEMORY;
    snprintf(text, (size_t)len + 1, fmt, len_hint, a, b);
    *out = text;
    return KVBM_OK;
}

kvbm_status_t kvbm__endpoint_for_rank(const char *endpoint, int32_t rank, char **out)
{
    size_t len = strlen(endpoint);
    if (len > 4096)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "publisher endpoint of %zu bytes (at most 4096)",
                          len);
    if (rank <= 0) {
        char *copy = kvbm__strdup(endpoint);
        if (copy == NULL)
            return KVBM_ERR_NO_MEMORY;
        *out = copy;
        return KVBM_OK;
    }
    if (starts_with(endpoint, "inproc://") || starts_with(endpoint, "ipc://"))
        return format_new(out, "%.*s_dp%ld", (int)len, endpoint, rank);
    if (!starts_with(endpoint, "tcp://"))
        return kvbm__fail(
            KVBM_ERR_INVALID_ARG,
            "publisher endpoint '%s': offset by rank needs tcp://, ipc:// or inproc://", endpoint);
    const char *colon = strrchr(endpoint, ':');
    if (colon == NULL || colon < endpoint + strlen("tcp://"))
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "publisher endpoint '%s' has no port", endpoint);
    const char *port_text = colon + 1;
    if (strcmp(port_text, "*") == 0)
        return kvbm__endpoint_for_rank(endpoint, 0, out);
    char *end = NULL;
    long port = strtol(port_text, &end, 10);
    if (end == port_text || *end != '\0' || port_text[0] == '-' || port_text[0] == '+' ||
        port > MAX_PORT || port + rank > MAX_PORT)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "publisher endpoint '%s': port plus rank %ld is not a port", endpoint,
                          (long)rank);
    return format_new(out, "%.*s:%ld", (int)(colon - endpoint), endpoint, port + rank);
}
