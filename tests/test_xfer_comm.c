/*
 * The communicator rules of the NCCL transport (host/xfer/comm.h), on the
 * CPU with a fake communicator that records every call: kvbm aborts,
 * finalizes and destroys only communicators it owns; the caller's is split
 * from once and never touched again; teardown finalizes with a deadline and
 * aborts when a dead peer keeps finalize from finishing; the device comes
 * from the caller's communicator, never from the rank.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "kvbm_test.h"
#include "xfer/comm.h"

/* A fake communicator. */
typedef struct fake_comm {
    int polls_until_done; /* -1: never (a dead peer) */
    kvbm_status_t fail_with;
    kvbm_status_t finalize_result;
    int device;
    int splits, polls, finalizes, destroys, aborts;
    struct fake_comm *child; /* what split hands out */
} fake_comm_t;

static kvbm_status_t fake_split(void *parent, int key, void **child_out)
{
    fake_comm_t *p = parent;
    p->splits++;
    *child_out = p->child;
    return p->child != NULL ? KVBM_ERR_BUSY : KVBM_ERR_NCCL;
}

static kvbm_status_t fake_poll(void *comm)
{
    fake_comm_t *c = comm;
    c->polls++;
    if (c->fail_with != KVBM_OK)
        return c->fail_with;
    if (c->polls_until_done < 0)
        return KVBM_ERR_BUSY;
    if (c->polls_until_done > 0) {
        c->polls_until_done--;
        return KVBM_ERR_BUSY;
    }
    return KVBM_OK;
}

static kvbm_status_t fake_finalize(void *comm)
{
    fake_comm_t *c = comm;
    c->finalizes++;
    return c->finalize_result;
}

static kvbm_status_t fake_destroy(void *comm)
{
    ((fake_comm_t *)comm)->destroys++;
    return KVBM_OK;
}

static kvbm_status_t fake_abort(void *comm)
{
    ((fake_comm_t *)comm)->aborts++;
    return KVBM_OK;
}

static kvbm_status_t fake_device(void *comm, int *device_out)
{
    *device_out = ((fake_comm_t *)comm)->device;
    return KVBM_OK;
}

static const kvbm__comm_ops_t fake_ops = {
    .split = fake_split,
    .poll = fake_poll,
    .finalize = fake_finalize,
    .destroy = fake_destroy,
    .abort = fake_abort,
    .device = fake_device,
};

static uint64_t in_ms(unsigned ms)
{
    return kvbm__now_us() + (uint64_t)ms * 1000u;
}

static void borrowed_communicator_is_split_once_and_never_ended(void **state)
{
    fake_comm_t child = {.polls_until_done = 3, .finalize_result = KVBM_ERR_BUSY};
    fake_comm_t parent = {.child = &child, .device = 5};
    kvbm__comm_t comm;
    assert_kvbm_ok(kvbm__comm_split(&fake_ops, &parent, 1, in_ms(1000), &comm));
    assert_true(comm.owned);
    assert_ptr_equal(comm.handle, &child);
    assert_int_equal(parent.splits, 1);

    /* A failed transfer aborts the private communicator, not the caller's. */
    kvbm__comm_fail(&comm);
    assert_int_equal(child.aborts, 1);
    assert_null(comm.handle);
    assert_kvbm_ok(kvbm__comm_close(&comm, in_ms(100))); /* already aborted: nothing */
    assert_int_equal(child.aborts, 1);
    assert_int_equal(child.finalizes, 0);
    assert_int_equal(parent.aborts + parent.destroys + parent.finalizes + parent.polls, 0);

    /* A borrowed handle itself is never aborted or closed. */
    kvbm__comm_t borrowed = {.ops = &fake_ops, .handle = &parent, .owned = false};
    kvbm__comm_fail(&borrowed);
    assert_kvbm_ok(kvbm__comm_close(&borrowed, in_ms(100)));
    assert_int_equal(parent.aborts + parent.destroys + parent.finalizes, 0);
}

static void split_that_fails_aborts_only_the_child(void **state)
{
    fake_comm_t child = {.fail_with = KVBM_ERR_PEER};
    fake_comm_t parent = {.child = &child};
    kvbm__comm_t comm = {.handle = (void *)1};
    assert_kvbm_status(kvbm__comm_split(&fake_ops, &parent, 0, in_ms(1000), &comm), KVBM_ERR_PEER);
    assert_int_equal(child.aborts, 1);
    assert_int_equal(parent.aborts, 0);
    assert_ptr_equal(comm.handle, (void *)1); /* output untouched on failure */

    fake_comm_t lonely = {.child = NULL};
    assert_kvbm_status(kvbm__comm_split(&fake_ops, &lonely, 0, in_ms(100), &comm), KVBM_ERR_NCCL);
    assert_int_equal(lonely.aborts, 0);
}

static void split_that_never_settles_times_out(void **state)
{
    fake_comm_t child = {.polls_until_done = -1};
    fake_comm_t parent = {.child = &child};
    kvbm__comm_t comm;
    uint64_t t0 = kvbm__now_us();
    assert_kvbm_status(kvbm__comm_split(&fake_ops, &parent, 0, in_ms(50), &comm), KVBM_ERR_TIMEOUT);
    assert_true(kvbm__now_us() - t0 < 2000000u);
    assert_int_equal(child.aborts, 1);
}

static void teardown_finalizes_then_destroys(void **state)
{
    fake_comm_t c = {.polls_until_done = 4, .finalize_result = KVBM_ERR_BUSY};
    kvbm__comm_t comm = {.ops = &fake_ops, .handle = &c, .owned = true};
    assert_kvbm_ok(kvbm__comm_close(&comm, in_ms(1000)));
    assert_int_equal(c.finalizes, 1);
    assert_int_equal(c.destroys, 1);
    assert_int_equal(c.aborts, 0);
    assert_true(c.polls >= 5);
    assert_null(comm.handle);
}

static void teardown_with_a_dead_peer_aborts_at_the_deadline(void **state)
{
    fake_comm_t c = {.polls_until_done = -1, .finalize_result = KVBM_ERR_BUSY};
    kvbm__comm_t comm = {.ops = &fake_ops, .handle = &c, .owned = true};
    uint64_t t0 = kvbm__now_us();
    assert_kvbm_status(kvbm__comm_close(&comm, in_ms(100)), KVBM_ERR_TIMEOUT);
    uint64_t took = kvbm__now_us() - t0;
    assert_true(took >= 90000u && took < 2000000u);
    assert_int_equal(c.finalizes, 1);
    assert_int_equal(c.destroys, 0);
    assert_int_equal(c.aborts, 1);
    assert_null(comm.handle);

    /* Finalize refused outright: abort at once. */
    fake_comm_t d = {.finalize_result = KVBM_ERR_NCCL};
    comm = (kvbm__comm_t){.ops = &fake_ops, .handle = &d, .owned = true};
    assert_kvbm_status(kvbm__comm_close(&comm, in_ms(1000)), KVBM_ERR_NCCL);
    assert_int_equal(d.aborts, 1);
    assert_int_equal(d.destroys, 0);
}

static void device_comes_from_the_callers_communicator(void **state)
{
    /* Borrowed: the communicator's device, whatever the config or rank. */
    assert_int_equal(kvbm__comm_pick_device(true, 3, 0, 1), 3);
    assert_int_equal(kvbm__comm_pick_device(true, 0, 7, 1), 0);
    /* Own: the configured device, else the current one. */
    assert_int_equal(kvbm__comm_pick_device(false, -1, 2, 1), 2);
    assert_int_equal(kvbm__comm_pick_device(false, -1, -1, 1), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(borrowed_communicator_is_split_once_and_never_ended),
        cmocka_unit_test(split_that_fails_aborts_only_the_child),
        cmocka_unit_test(split_that_never_settles_times_out),
        cmocka_unit_test(teardown_finalizes_then_destroys),
        cmocka_unit_test(teardown_with_a_dead_peer_aborts_at_the_deadline),
        cmocka_unit_test(device_comes_from_the_callers_communicator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
