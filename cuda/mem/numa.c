/*
 * Host NUMA placement of pinned pools. libnuma (Debian's libnuma1) is loaded
 * at run time, like NCCL, so a kvbm built here still starts on a machine
 * without it; there the first-touch threads simply run unbound. Only the
 * header is needed to build (libnuma-dev).
 */
#include <dlfcn.h>
#include <numa.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"

/* The libnuma calls kvbm makes; all set, or the table is unusable. */
typedef struct numa_api {
    bool usable;
    __typeof__(&numa_available) available;
    __typeof__(&numa_max_node) max_node;
    __typeof__(&numa_run_on_node) run_on_node;
    __typeof__(&numa_allocate_cpumask) allocate_cpumask;
    __typeof__(&numa_node_to_cpus) node_to_cpus;
    __typeof__(&numa_bitmask_weight) bitmask_weight;
    __typeof__(&numa_bitmask_free) bitmask_free;
} numa_api_t;

static numa_api_t numa_api; /* written once under numa_once */
static pthread_once_t numa_once = PTHREAD_ONCE_INIT;

static void numa_load(void)
{
    /* Never closed: the process keeps it, as it would a linked library. */
    void *lib = dlopen("libnuma.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return;
    numa_api_t api = {.usable = false};
    /* dlsym gives an object pointer; POSIX guarantees it converts to the
     * function pointer (memcpy avoids the cast ISO C does not define). */
#define NUMA_LOAD(field, symbol)                                                                   \
    do {                                                                                           \
        void *sym_ = dlsym(lib, symbol);                                                           \
        memcpy(&api.field, &sym_, sizeof(sym_));                                                   \
    } while (0)
    NUMA_LOAD(available, "numa_available");
    NUMA_LOAD(max_node, "numa_max_node");
    NUMA_LOAD(run_on_node, "numa_run_on_node");
    NUMA_LOAD(allocate_cpumask, "numa_allocate_cpumask");
    NUMA_LOAD(node_to_cpus, "numa_node_to_cpus");
    NUMA_LOAD(bitmask_weight, "numa_bitmask_weight");
    NUMA_LOAD(bitmask_free, "numa_bitmask_free");
#undef NUMA_LOAD
    if (api.available == NULL || api.max_node == NULL || api.run_on_node == NULL ||
        api.allocate_cpumask == NULL || api.node_to_cpus == NULL || api.bitmask_weight == NULL ||
        api.bitmask_free == NULL || api.available() < 0)
        return; /* no NUMA here: pinned pools are touched by unbound threads */
    api.usable = true;
    numa_api = api;
}

/* libnuma for @p node, or NULL: an unknown node (-1) never loads it. */
static const numa_api_t *numa(int node)
{
    if (node < 0)
        return NULL;
    (void)pthread_once(&numa_once, numa_load);
    if (!numa_api.usable || node > numa_api.max_node())
        return NULL;
    return &numa_api;
}

uint32_t kvbm__numa_node_cpus(int node)
{
    const numa_api_t *api = numa(node);
    if (api == NULL)
        return 0;
    struct bitmask *cpus = api->allocate_cpumask();
    if (cpus == NULL)
        return 0;
    uint32_t n = api->node_to_cpus(node, cpus) == 0 ? api->bitmask_weight(cpus) : 0;
    api->bitmask_free(cpus);
    return n;
}

void kvbm__numa_bind_thread(int node)
{
    const numa_api_t *api = numa(node);
    /* Best effort: an unbound thread still touches the pages, elsewhere. */
    if (api != NULL)
        (void)api->run_on_node(node);
}
