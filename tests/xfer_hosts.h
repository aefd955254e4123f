/*
 * "Hosts" on one machine for the transfer tests and benchmark: network
 * namespaces, each with a veth whose other end sits on a bridge in a switch
 * namespace of its own, so every host reaches every other over a real
 * (virtual) Ethernet link, IPv4 10.88.0.<i+1>/24 and IPv6 fd88::<i+1>/64.
 * Only the namespaces' own addresses are used; nothing is added to the
 * machine's own namespace. Names carry the creating process's id, so runs at
 * the same time do not meet; namespaces left behind by a run that was killed
 * are removed by the next one (their process is gone).
 *
 * Needs root and `ip netns` (iproute2): xr_hosts_up returns XR_HOSTS_SKIP
 * without them, which a test turns into ctest's skip code.
 */
#ifndef KVBM_TESTS_XFER_HOSTS_H
#define KVBM_TESTS_XFER_HOSTS_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define XR_HOSTS_MAX  8
#define XR_HOSTS_SKIP 77 /* ctest's SKIP_RETURN_CODE for these tests */
#define XR_NS_PREFIX  "kvbmt"

typedef struct xr_hosts {
    int n;
    char sw[32];               /* the switch namespace */
    char ns[XR_HOSTS_MAX][32]; /* host i's namespace */
    char v4[XR_HOSTS_MAX][16]; /* host i's IPv4 address */
    char v6[XR_HOSTS_MAX][24]; /* host i's IPv6 address */
    char why_skipped[160];
} xr_hosts_t;

/* Runs `ip ARGS...` (no shell); returns its exit status, -1 if it could not
 * run. Output goes to /dev/null unless @p show. */
static inline int xr_ip(bool show, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    char *argv[40];
    int argc = 0;
    argv[argc++] = "ip";
    for (char *tok = strtok(line, " "); tok != NULL && argc < 39; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (!show) {
            FILE *null = freopen("/dev/null", "w", stdout);
            FILE *err = freopen("/dev/null", "w", stderr);
            (void)null;
            (void)err;
        }
        execvp("ip", argv);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* Removes namespaces of earlier runs whose process no longer exists. */
static inline void xr_hosts_reap_stale(void)
{
    DIR *dir = opendir("/run/netns");
    if (dir == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, XR_NS_PREFIX, strlen(XR_NS_PREFIX)) != 0)
            continue;
        long pid = strtol(e->d_name + strlen(XR_NS_PREFIX), NULL, 10);
        if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
            (void)xr_ip(false, "netns del %s", e->d_name);
    }
    closedir(dir);
}

static inline void xr_hosts_down(xr_hosts_t *h)
{
    for (int i = 0; i < h->n; i++)
        (void)xr_ip(false, "netns del %s", h->ns[i]);
    if (h->sw[0] != '\0')
        (void)xr_ip(false, "netns del %s", h->sw);
    h->n = 0;
    h->sw[0] = '\0';
}

/* Creates @p n hosts on one bridge. Returns 0, XR_HOSTS_SKIP (not root, no
 * `ip netns`; why in h->why_skipped), or -1 (a command failed; whatever was
 * created is removed again). */
static inline int xr_hosts_up(xr_hosts_t *h, int n)
{
    memset(h, 0, sizeof(*h));
    if (n < 1 || n > XR_HOSTS_MAX)
        return -1;
    if (geteuid() != 0) {
        snprintf(h->why_skipped, sizeof(h->why_skipped), "needs root to create network namespaces");
        return XR_HOSTS_SKIP;
    }
    if (xr_ip(false, "netns list") != 0) {
        snprintf(h->why_skipped, sizeof(h->why_skipped), "`ip netns` is not available");
        return XR_HOSTS_SKIP;
    }
    xr_hosts_reap_stale();
    int pid = (int)getpid();
    snprintf(h->sw, sizeof(h->sw), XR_NS_PREFIX "%dsw", pid);
    if (xr_ip(false, "netns add %s", h->sw) != 0) {
        snprintf(h->why_skipped, sizeof(h->why_skipped), "cannot create a network namespace");
        h->sw[0] = '\0';
        return XR_HOSTS_SKIP;
    }
    int rc = xr_ip(false, "-n %s link add br0 type bridge", h->sw);
    if (rc == 0)
        rc = xr_ip(false, "-n %s link set br0 up", h->sw);
    for (int i = 0; i < n && rc == 0; i++) {
        snprintf(h->ns[i], sizeof(h->ns[i]), XR_NS_PREFIX "%dh%d", pid, i);
        snprintf(h->v4[i], sizeof(h->v4[i]), "10.88.0.%d", i + 1);
        snprintf(h->v6[i], sizeof(h->v6[i]), "fd88::%d", i + 1);
        rc = xr_ip(false, "netns add %s", h->ns[i]);
        if (rc != 0)
            break;
        h->n = i + 1;
        rc = xr_ip(false, "link add eth0 netns %s type veth peer name p%d netns %s", h->ns[i], i,
                   h->sw);
        if (rc == 0)
            rc = xr_ip(false, "-n %s link set p%d master br0", h->sw, i);
        if (rc == 0)
            rc = xr_ip(false, "-n %s link set p%d up", h->sw, i);
        if (rc == 0)
            rc = xr_ip(false, "-n %s addr add %s/24 dev eth0", h->ns[i], h->v4[i]);
        if (rc == 0)
            rc = xr_ip(false, "-n %s addr add %s/64 dev eth0 nodad", h->ns[i], h->v6[i]);
        if (rc == 0)
            rc = xr_ip(false, "-n %s link set eth0 up", h->ns[i]);
        if (rc == 0)
            rc = xr_ip(false, "-n %s link set lo up", h->ns[i]);
    }
    if (rc != 0) {
        fprintf(stderr, "setting up network namespaces failed\n");
        xr_hosts_down(h);
        return -1;
    }
    return 0;
}

#endif /* KVBM_TESTS_XFER_HOSTS_H */
