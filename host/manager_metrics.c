/* Metrics export (Prometheus text and JSON), both from KVBM_MANAGER_METRICS_LIST. */
#include <inttypes.h>
#include <stdio.h>

#include "manager_internal.h"

kvbm_status_t kvbm_manager_metrics_prometheus(kvbm_manager_t *manager, FILE *out)
{
    if (manager == NULL || out == NULL)
        return KVBM_ERR_INVALID_ARG;
    kvbm_manager_metrics_t m;
    kvbm_manager_metrics(manager, &m);
    int rc = 0;
    /* Counters carry the conventional _total suffix. */
#define KVBM_PROM_SUFFIX_counter "_total"
#define KVBM_PROM_SUFFIX_gauge   ""
#define KVBM_PROM_LINE(field, type, help)                                                          \
    if (rc >= 0)                                                                                   \
        rc = fprintf(out,                                                                          \
                     "# HELP kvbm_" #field KVBM_PROM_SUFFIX_##type                                 \
                     " " help "\n"                                                                 \
                     "# TYPE kvbm_" #field KVBM_PROM_SUFFIX_##type                                 \
                     " " #type "\n"                                                                \
                     "kvbm_" #field KVBM_PROM_SUFFIX_##type "{manager=\"%s\"} %" PRIu64 "\n",      \
                     manager->name, m.field);
    KVBM_MANAGER_METRICS_LIST(KVBM_PROM_LINE)
#undef KVBM_PROM_LINE
    return rc < 0 ? KVBM_ERR_IO : KVBM_OK;
}

kvbm_status_t kvbm_manager_metrics_json(kvbm_manager_t *manager, FILE *out)
{
    if (manager == NULL || out == NULL)
        return KVBM_ERR_INVALID_ARG;
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
    return rc < 0 ? KVBM_ERR_IO : KVBM_OK;
}
