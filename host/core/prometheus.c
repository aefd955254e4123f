/* Prometheus text exposition of one metric; see prometheus.h. */
#include "prometheus.h"

#include <inttypes.h>
#include <string.h>

int kvbm__prometheus_write(FILE *out, const char *name, const char *type, const char *help,
                           const char *labels, uint64_t value)
{
    const char *suffix = strcmp(type, "counter") == 0 ? "_total" : "";
    return fprintf(out, "# HELP kvbm_%s%s %s\n# TYPE kvbm_%s%s %s\nkvbm_%s%s%s%s%s %" PRIu64 "\n",
                   name, suffix, help, name, suffix, type, name, suffix, labels ? "{" : "",
                   labels ? labels : "", labels ? "}" : "", value);
}
