/* The publisher's metrics: snapshot and Prometheus text, from one list. */
#include <stdio.h>

#include "core/check.h"
#include "core/error.h"
#include "core/prometheus.h"
#include "publisher_internal.h"

void kvbm_publisher_metrics(kvbm_publisher_t *publisher, kvbm_publisher_metrics_t *metrics_out)
{
    if (metrics_out == NULL)
        return;
    if (publisher == NULL) {
        *metrics_out = (kvbm_publisher_metrics_t){0};
        return;
    }
    kvbm__mutex_lock(&publisher->lock);
    *metrics_out = publisher->metrics;
    metrics_out->queued_batches = publisher->queue.count;
    metrics_out->next_seq = publisher->next_seq;
    kvbm__mutex_unlock(&publisher->lock);
}

kvbm_status_t kvbm_publisher_metrics_prometheus(kvbm_publisher_t *publisher, FILE *out)
{
    KVBM_REQUIRE_ARG(publisher != NULL);
    KVBM_REQUIRE_ARG(out != NULL);
    kvbm_publisher_metrics_t m;
    kvbm_publisher_metrics(publisher, &m);
    int rc = 0;
#define KVBM_PUBLISHER_PROM_LINE(field, type, help)                                                \
    if (rc >= 0)                                                                                   \
        rc = kvbm__prometheus_write(out, "events_" #field, #type, help, NULL, m.field);
    KVBM_PUBLISHER_METRICS_LIST(KVBM_PUBLISHER_PROM_LINE)
#undef KVBM_PUBLISHER_PROM_LINE
    return rc < 0 ? KVBM_ERR_IO : KVBM_OK;
}
