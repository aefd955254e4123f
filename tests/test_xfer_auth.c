/*
 * Authentication of transfer connections (host/xfer/auth.h, handshake.h),
 * in one process: the key and the challenge-response tags (a tag verifies
 * only for its key, role, purpose and both nonces), the secret file's rules,
 * and the server's handshake pool with real sockets on loopback: the right
 * secret gets through with its first message, a wrong one or a secret on
 * one side only is refused on both ends and counted, and silent, slow,
 * garbage or flooding connections delay no legitimate one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "kvbm_test.h"
#include "xfer/handshake.h"

static const char SECRET[] = "correct horse battery staple, kvbm";
static const char OTHER[] = "another secret of some length....";

static kvbm__auth_t keyed(const char *secret)
{
    kvbm__auth_t auth;
    assert_kvbm_ok(kvbm__auth_init(secret, strlen(secret), NULL, &auth));
    assert_true(auth.keyed);
    return auth;
}

static void tags_verify_only_for_their_key_role_purpose_and_nonces(void **state)
{
    kvbm__auth_t a = keyed(SECRET), b = keyed(SECRET), c = keyed(OTHER);
    assert_memory_equal(a.key, b.key, sizeof(a.key));
    assert_memory_not_equal(a.key, c.key, sizeof(a.key));
    uint8_t nc[KVBM__NONCE_BYTES], ns[KVBM__NONCE_BYTES], tag[KVBM__TAG_BYTES];
    kvbm__auth_random(nc, sizeof(nc));
    kvbm__auth_random(ns, sizeof(ns));
    kvbm__auth_tag(&a, 's', KVBM__PURPOSE_MESH, nc, ns, tag);
    assert_true(kvbm__auth_check(&b, 's', KVBM__PURPOSE_MESH, nc, ns, tag));
    assert_false(kvbm__auth_check(&c, 's', KVBM__PURPOSE_MESH, nc, ns, tag));
    assert_false(kvbm__auth_check(&b, 'c', KVBM__PURPOSE_MESH, nc, ns, tag)); /* reflected */
    assert_false(kvbm__auth_check(&b, 's', KVBM__PURPOSE_RENDEZVOUS, nc, ns, tag));
    assert_false(kvbm__auth_check(&b, 's', KVBM__PURPOSE_MESH, ns, nc, tag)); /* swapped */
    uint8_t replayed[KVBM__NONCE_BYTES];
    kvbm__auth_random(replayed, sizeof(replayed));
    assert_false(kvbm__auth_check(&b, 's', KVBM__PURPOSE_MESH, nc, replayed, tag));
    tag[7] ^= 1;
    assert_false(kvbm__auth_check(&a, 's', KVBM__PURPOSE_MESH, nc, ns, tag));

    kvbm__auth_t out = {.keyed = true};
    assert_kvbm_ok(kvbm__auth_init(NULL, 0, NULL, &out));
    assert_false(out.keyed);
    assert_kvbm_status(kvbm__auth_init("short", 5, NULL, &out), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__auth_init(SECRET, strlen(SECRET), "/nonexistent", &out),
                       KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__auth_init(NULL, 4, NULL, &out), KVBM_ERR_INVALID_ARG);
    assert_false(out.keyed); /* untouched by the refusals */
    kvbm__auth_wipe(&a);
    assert_false(a.keyed);
}

static void write_file(const char *path, const void *bytes, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void secret_file_must_be_private_regular_and_long_enough(void **state)
{
    char dir[] = "/tmp/kvbm-auth-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], link_path[128];
    snprintf(path, sizeof(path), "%s/secret", dir);
    snprintf(link_path, sizeof(link_path), "%s/link", dir);
    kvbm__auth_t from_file, from_config = keyed(SECRET);

    write_file(path, SECRET, strlen(SECRET), 0600);
    assert_kvbm_ok(kvbm__auth_init(NULL, 0, path, &from_file));
    assert_true(from_file.keyed);
    assert_memory_equal(from_file.key, from_config.key, sizeof(from_file.key));
    assert_kvbm_ok(kvbm__auth_init(NULL, 0, path, &from_file)); /* 0400 is fine too */
    assert_int_equal(chmod(path, 0400), 0);
    assert_kvbm_ok(kvbm__auth_init(NULL, 0, path, &from_file));

    static const mode_t open_modes[] = {0644, 0640, 0604, 0660, 0602};
    for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        assert_int_equal(chmod(path, open_modes[i]), 0);
        assert_kvbm_status(kvbm__auth_init(NULL, 0, path, &from_file), KVBM_ERR_INVALID_ARG);
    }
    /* A trailing newline is part of the secret: another key. */
    char with_newline[64];
    snprintf(with_newline, sizeof(with_newline), "%s\n", SECRET);
    write_file(path, with_newline, strlen(with_newline), 0600);
    assert_kvbm_ok(kvbm__auth_init(NULL, 0, path, &from_file));
    assert_memory_not_equal(from_file.key, from_config.key, sizeof(from_file.key));

    write_file(path, "too short", 9, 0600);
    assert_kvbm_status(kvbm__auth_init(NULL, 0, path, &from_file), KVBM_ERR_INVALID_ARG);
    write_file(path, SECRET, strlen(SECRET), 0600);
    assert_int_equal(symlink(path, link_path), 0);
    assert_kvbm_status(kvbm__auth_init(NULL, 0, link_path, &from_file), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__auth_init(NULL, 0, dir, &from_file), KVBM_ERR_INVALID_ARG);
    unlink(link_path);
    unlink(path);
    rmdir(dir);
}

/* ------------------------------------------------------------ handshakes */

typedef struct client_arg {
    kvbm__addr_t addr;
    kvbm__auth_t auth;
    uint32_t rank;
    kvbm_status_t status;
} client_arg_t;

static const uint8_t SESSION[KVBM__SESSION_BYTES] = "kvbm-test-sessn";

static void *client_main(void *arg)
{
    client_arg_t *c = arg;
    uint64_t deadline = kvbm__now_us() + 3000000u;
    int fd = -1;
    c->status = kvbm__sock_connect(&c->addr, deadline, false, &fd);
    if (c->status == KVBM_OK)
        c->status = kvbm__hs_client(fd, &c->auth, KVBM__PURPOSE_MESH, deadline);
    if (c->status == KVBM_OK) {
        kvbm__wire_hdr_t hdr;
        kvbm__wire_hdr_init(&hdr, KVBM__MSG_CONNECT, KVBM_OK, c->rank);
        c->status = kvbm__wire_send(fd, deadline, &hdr, SESSION, sizeof(SESSION), NULL, 0);
    }
    if (c->status == KVBM_OK) {
        /* Hold the connection until the server is done with it. */
        char byte;
        (void)kvbm__sock_read(fd, &byte, 1, deadline);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

typedef struct server {
    int listen_fd;
    kvbm__addr_t addr;
    kvbm__auth_t auth;
    kvbm__xfer_counters_t counters;
    kvbm__hs_pool_t pool;
} server_t;

static void server_open(server_t *s, const kvbm__auth_t *auth, uint32_t timeout_ms)
{
    memset(s, 0, sizeof(*s));
    s->auth = *auth;
    assert_kvbm_ok(kvbm__addr_parse("127.0.0.1", 0, &s->addr));
    uint16_t port;
    assert_kvbm_ok(kvbm__sock_listen(&s->addr, 128, &s->listen_fd, &port));
    kvbm__addr_set_port(&s->addr, port);
    kvbm__hs_pool_init(&s->pool, &s->auth, &s->counters, KVBM__PURPOSE_MESH, KVBM__MSG_CONNECT,
                       KVBM__SESSION_BYTES, timeout_ms, s->listen_fd, -1);
}

static void server_close(server_t *s)
{
    kvbm__hs_pool_close(&s->pool);
    close(s->listen_fd);
}

static uint64_t counted(_Atomic uint64_t *counter)
{
    return atomic_load(counter);
}

static void start_client(pthread_t *thread, client_arg_t *c, const server_t *s,
                         const kvbm__auth_t *auth, uint32_t rank)
{
    c->addr = s->addr;
    c->auth = *auth;
    c->rank = rank;
    c->status = KVBM_ERR_INTERNAL;
    assert_int_equal(pthread_create(thread, NULL, client_main, c), 0);
}

static void right_secret_gets_through_with_its_first_message(void **state)
{
    server_t s;
    kvbm__auth_t auth = keyed(SECRET);
    server_open(&s, &auth, 2000);
    pthread_t thread;
    client_arg_t c;
    start_client(&thread, &c, &s, &auth, 3);
    kvbm__hs_t done;
    assert_kvbm_ok(kvbm__hs_pool_next(&s.pool, kvbm__now_us() + 3000000u, &done));
    assert_int_equal(done.first.type, KVBM__MSG_CONNECT);
    assert_int_equal(done.first.count, 3);
    assert_memory_equal(done.payload, SESSION, sizeof(SESSION));
    assert_true(kvbm__addr_is_loopback(&done.peer));
    close(done.fd);
    pthread_join(thread, NULL);
    assert_kvbm_ok(c.status);
    assert_int_equal(counted(&s.counters.auth_failures), 0);
    assert_int_equal(counted(&s.counters.connections_refused), 0);

    /* Without a secret on either side (loopback): through as well. */
    kvbm__auth_t none;
    assert_kvbm_ok(kvbm__auth_init(NULL, 0, NULL, &none));
    server_close(&s);
    server_open(&s, &none, 2000);
    start_client(&thread, &c, &s, &none, 1);
    assert_kvbm_ok(kvbm__hs_pool_next(&s.pool, kvbm__now_us() + 3000000u, &done));
    close(done.fd);
    pthread_join(thread, NULL);
    assert_kvbm_ok(c.status);
    server_close(&s);
}

/* The client runs with @p client_auth against a server with @p server_auth:
 * both ends refuse, and the server counts one authentication failure. */
static void expect_refused(const kvbm__auth_t *server_auth, const kvbm__auth_t *client_auth)
{
    server_t s;
    server_open(&s, server_auth, 2000);
    pthread_t thread;
    client_arg_t c;
    start_client(&thread, &c, &s, client_auth, 1);
    kvbm__hs_t done;
    assert_kvbm_status(kvbm__hs_pool_next(&s.pool, kvbm__now_us() + 700000u, &done),
                       KVBM_ERR_TIMEOUT);
    pthread_join(thread, NULL);
    assert_kvbm_status(c.status, KVBM_ERR_AUTH);
    assert_int_equal(counted(&s.counters.auth_failures), 1);
    assert_int_equal(s.pool.n_pending, 0);
    server_close(&s);
}

static void wrong_secret_refused_on_both_ends_and_counted(void **state)
{
    kvbm__auth_t a = keyed(SECRET), b = keyed(OTHER), none;
    assert_kvbm_ok(kvbm__auth_init(NULL, 0, NULL, &none));
    expect_refused(&a, &b);
    expect_refused(&a, &none); /* a secret on one side only */
    expect_refused(&none, &a);
}

/* Connects and sends @p bytes of @p len, then leaves the socket open. */
static int rogue_connect(const server_t *s, const void *bytes, size_t len)
{
    int fd = -1;
    assert_kvbm_ok(kvbm__sock_connect(&s->addr, kvbm__now_us() + 1000000u, false, &fd));
    if (len > 0)
        assert_kvbm_ok(kvbm__sock_write(fd, bytes, len, kvbm__now_us() + 1000000u));
    return fd;
}

static void silent_slow_and_garbage_connections_delay_no_one(void **state)
{
    server_t s;
    kvbm__auth_t auth = keyed(SECRET);
    server_open(&s, &auth, 2000);
    /* A silent one, one that sent a third of a hello, and one of garbage. */
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_AUTH_HELLO, KVBM_OK, KVBM__PURPOSE_MESH);
    char junk[64];
    memset(junk, 0xa5, sizeof(junk));
    int rogue[3] = {rogue_connect(&s, NULL, 0), rogue_connect(&s, &hdr, 20),
                    rogue_connect(&s, junk, sizeof(junk))};
    pthread_t thread;
    client_arg_t c;
    start_client(&thread, &c, &s, &auth, 2);
    kvbm__hs_t done;
    assert_kvbm_ok(kvbm__hs_pool_next(&s.pool, kvbm__now_us() + 5000000u, &done));
    assert_int_equal(done.first.count, 2);
    /* Served while the silent and the slow one still wait for their 2 s
     * deadline: had they been served in turn, they would be gone by now. */
    assert_int_equal(s.pool.n_pending, 2);
    assert_int_equal(counted(&s.counters.connections_refused), 1); /* the garbage, at once */
    close(done.fd);
    pthread_join(thread, NULL);
    assert_kvbm_ok(c.status);
    /* The other two are refused at their deadline. */
    assert_kvbm_status(kvbm__hs_pool_next(&s.pool, kvbm__now_us() + 3000000u, &done),
                       KVBM_ERR_TIMEOUT);
    assert_int_equal(counted(&s.counters.connections_refused), 3);
    assert_int_equal(counted(&s.counters.auth_failures), 0);
    assert_int_equal(s.pool.n_pending, 0);
    for (int i = 0; i < 3; i++)
        close(rogue[i]);
    server_close(&s);
}

static void flood_of_connections_evicts_the_oldest_not_the_newcomer(void **state)
{
    server_t s;
    kvbm__auth_t auth = keyed(SECRET);
    server_open(&s, &auth, 5000);
    enum { FLOOD = KVBM__HS_MAX_PENDING + 6 };
    int rogue[FLOOD];
    for (int i = 0; i < FLOOD; i++)
        rogue[i] = rogue_connect(&s, NULL, 0);
    /* Let the pool take the flood in before the legitimate client comes. */
    kvbm__hs_t done;
    assert_kvbm_status(kvbm__hs_pool_next(&s.pool, kvbm__now_us() + 200000u, &done),
                       KVBM_ERR_TIMEOUT);
    assert_int_equal(s.pool.n_pending, KVBM__HS_MAX_PENDING);
    assert_int_equal(counted(&s.counters.connections_refused), FLOOD - KVBM__HS_MAX_PENDING);
    pthread_t thread;
    client_arg_t c;
    start_client(&thread, &c, &s, &auth, 1);
    assert_kvbm_ok(kvbm__hs_pool_next(&s.pool, kvbm__now_us() + 3000000u, &done));
    assert_int_equal(done.first.count, 1);
    close(done.fd);
    pthread_join(thread, NULL);
    assert_kvbm_ok(c.status);
    for (int i = 0; i < FLOOD; i++)
        close(rogue[i]);
    server_close(&s);
}

static void addresses_parse_both_families_and_refuse_names(void **state)
{
    kvbm__addr_t a;
    assert_kvbm_ok(kvbm__addr_parse("10.1.2.3", 80, &a));
    assert_false(kvbm__addr_is_loopback(&a));
    assert_int_equal(kvbm__addr_port(&a), 80);
    assert_kvbm_ok(kvbm__addr_parse("127.8.9.10", 0, &a));
    assert_true(kvbm__addr_is_loopback(&a));
    assert_kvbm_ok(kvbm__addr_parse("::1", 1, &a));
    assert_true(kvbm__addr_is_loopback(&a));
    assert_kvbm_ok(kvbm__addr_parse("::ffff:127.0.0.1", 1, &a));
    assert_true(kvbm__addr_is_loopback(&a));
    assert_kvbm_ok(kvbm__addr_parse("fd00::5", 1, &a));
    assert_false(kvbm__addr_is_loopback(&a));
    assert_kvbm_ok(kvbm__addr_parse("::", 1, &a));
    assert_true(kvbm__addr_is_wildcard(&a));
    assert_kvbm_ok(kvbm__addr_parse("0.0.0.0", 1, &a));
    assert_true(kvbm__addr_is_wildcard(&a));
    char text[80];
    assert_kvbm_ok(kvbm__addr_parse("fd00::5", 4242, &a));
    kvbm__addr_str(&a, text, sizeof(text));
    assert_string_equal(text, "[fd00::5]:4242");
    assert_kvbm_status(kvbm__addr_parse("localhost", 1, &a), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__addr_parse("256.1.1.1", 1, &a), KVBM_ERR_INVALID_ARG);
    assert_kvbm_status(kvbm__addr_parse("", 1, &a), KVBM_ERR_INVALID_ARG);
}

static void wire_headers_with_unknown_status_or_fields_are_refused(void **state)
{
    kvbm__wire_hdr_t hdr;
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_ACCEPT, KVBM_ERR_NO_BLOCKS, 0);
    assert_kvbm_ok(kvbm__wire_check_hdr(&hdr, KVBM__MSG_ACCEPT));
    hdr.status = 12345;
    assert_kvbm_status(kvbm__wire_check_hdr(&hdr, KVBM__MSG_ACCEPT), KVBM_ERR_PARSE);
    hdr.status = -999;
    assert_kvbm_status(kvbm__wire_check_hdr(&hdr, KVBM__MSG_ACCEPT), KVBM_ERR_PARSE);
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_PUSH, KVBM_OK, 3);
    hdr.flags = 1u | (50u << 8);
    assert_kvbm_ok(kvbm__wire_check_hdr(&hdr, 0));
    hdr.flags |= 1u << 20;
    assert_kvbm_status(kvbm__wire_check_hdr(&hdr, 0), KVBM_ERR_PARSE);
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_PULL, KVBM_OK, KVBM_XFER_MAX_BLOCKS + 1);
    assert_kvbm_status(kvbm__wire_check_hdr(&hdr, 0), KVBM_ERR_PARSE);
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_PULL, KVBM_OK, 1);
    hdr.reserved = 1;
    assert_kvbm_status(kvbm__wire_check_hdr(&hdr, 0), KVBM_ERR_PARSE);
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_TYPE_END, KVBM_OK, 1);
    assert_kvbm_status(kvbm__wire_check_hdr(&hdr, 0), KVBM_ERR_PARSE);
    kvbm__wire_hdr_init(&hdr, KVBM__MSG_PULL, KVBM_OK, 1);
    hdr.version = 1;
    assert_kvbm_status(kvbm__wire_check_hdr(&hdr, 0), KVBM_ERR_PARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tags_verify_only_for_their_key_role_purpose_and_nonces),
        cmocka_unit_test(secret_file_must_be_private_regular_and_long_enough),
        cmocka_unit_test(addresses_parse_both_families_and_refuse_names),
        cmocka_unit_test(wire_headers_with_unknown_status_or_fields_are_refused),
        cmocka_unit_test(right_secret_gets_through_with_its_first_message),
        cmocka_unit_test(wrong_secret_refused_on_both_ends_and_counted),
        cmocka_unit_test(silent_slow_and_garbage_connections_delay_no_one),
        cmocka_unit_test(flood_of_connections_evicts_the_oldest_not_the_newcomer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
