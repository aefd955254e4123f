/* Metrics export (Prometheus text and JSON), both from KVBM_MANAGER_METRICS_LIST. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/prometheus.h"
#include "internal.h"

kvbm_status_t kvbm_manager_metrics_prometheus(kvbm_manager_t *manager, FILE *out)
{
    KVBM_REQUIRE_ARG(manager != NULL && out != NULL);
    kvbm_manager_metrics_t m;
    kvbm_manager_metrics(manager, &m);
    char labels[96];
    snprintf(labels, sizeof(labels), "manager=\"%s\"", manager->name);
    int rc = 0;
#define KVBM_PROM_LINE(field, type, help)                                                          \
    if (rc >= 0)                                                                                   \
        rc = kvbm__prometheus_write(out, #field, #type, help, labels, m.field);
    KVBM_MANAGER_METRICS_LIST(KVBM_PROM_LINE)
#undef KVBM_PROM_LINE
    if (rc < 0)
        return kvbm__fail(KVBM_ERR_IO, "writing the metrics of manager %s: %s", manager->name,
                          strerror(errno));
    return KVBM_OK;
}

kvbm_status_t kvbm_manager_metrics_json(kvbm_manager_t *manager, FILE *out)
{
    KVBM_REQUIRE_ARG(manager != NULL && out != NULL);
    kvbm_manager_metrics_t m;
    kvbm_manager_metrics(manager, &m);
    int rc = fprintf(out, "{\"manager\": \"%s\"", manager->name);
#define KVBM_JSON_FIELD(field, type, help)                                                         \
    if (rc >= 0)                                                                                   \
        rc = fprintf(out, ", \"" #field "\": %" PRIu64, m.field);
    KVBM_MANAGER_METRICS_LIST(KVBM_JSON_FIELD)
#undef KVBM_JSON_FIELD
    if (rc >= 0)
        rc = fprintf(out, "}\n");
    if (rc < 0)
        return kvbm__fail(KVBM_ERR_IO, "writing the metrics of manager %s: %s", manager->name,
                          strerror(errno));
    return KVBM_OK;
}
