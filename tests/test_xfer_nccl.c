/*
 * The NCCL transport. Without NCCL built in, or without a GPU, it must say so
 * (KVBM_ERR_UNSUPPORTED / KVBM_ERR_NO_DEVICE) from the probe and from create,
 * at once and without contacting any peer; the end-to-end tests then skip
 * with a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "kvbm_test.h"
#include "xfer_ranks.h"

static kvbm_status_t nccl_probe(void)
{
    return kvbm_xfer_transport_probe(KVBM_XFER_NCCL);
}

static void probe_answers_and_create_agrees(void **state)
{
    kvbm_status_t probe = nccl_probe();
    assert_true(probe == KVBM_OK || probe == KVBM_ERR_UNSUPPORTED || probe == KVBM_ERR_NO_DEVICE);
    print_message("NCCL transport: %s (%s)\n", kvbm_status_name(probe), kvbm_status_str(probe));
    if (probe == KVBM_OK)
        return; /* covered by the end-to-end test */

    kvbm_manager_t *manager = test_manager_new(4, KVBM_DUPLICATION_REJECT, NULL);
    static unsigned char slab[4 * 64];
    void *bases[1] = {slab};
    kvbm_xfer_config_t config = KVBM_XFER_CONFIG_INIT;
    config.transport = KVBM_XFER_NCCL;
    config.rank = 1;
    config.size = 2;
    config.rendezvous_port = 9; /* nobody listens: create must fail before trying */
    config.timeout_ms = 60000;
    config.manager = manager;
    config.memory.kind = KVBM_XFER_MEM_DEVICE;
    config.memory.num_blocks = 4;
    config.memory.region_count = 1;
    config.memory.region_bytes = 64;
    config.memory.block_stride = 64;
    config.memory.region_base = bases;
    kvbm_xfer_t *xfer = NULL;
    double t0 = xr_now();
    assert_kvbm_status(kvbm_xfer_create(&config, &xfer), probe);
    assert_true(xr_now() - t0 < 5.0);
    assert_null(xfer);
    kvbm_manager_destroy(manager);
}

static void push_and_pull_on_gpus(void **state)
{
    kvbm_status_t probe = nccl_probe();
    if (probe != KVBM_OK) {
        print_message("skipped: NCCL transport not usable here (%s)\n", kvbm_status_str(probe));
        skip();
    }
    /* Device pools come from kvbm/backend.h; see docs/TRANSFER.md. */
    print_message("skipped: the GPU end-to-end test needs device pools (kvbm/backend.h)\n");
    skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probe_answers_and_create_agrees),
        cmocka_unit_test(push_and_pull_on_gpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
