/* The logger behind kvbm_log_set; see core/log.h. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static void log_to_stderr(void *user, kvbm_log_level_t level, const char *message)
{
    (void)user;
    (void)level;
    fprintf(stderr, "kvbm: %s\n", message);
}

/* The target, read and written as a pair under target_lock (a leaf lock:
 * nothing is called with it held). */
static pthread_mutex_t target_lock = PTHREAD_MUTEX_INITIALIZER;
static kvbm_log_fn target_fn = log_to_stderr;
static void *target_user = NULL;

void kvbm_log_set(kvbm_log_fn fn, void *user)
{
    /* A statically initialised mutex cannot fail to lock. */
    (void)pthread_mutex_lock(&target_lock);
    target_fn = fn != NULL ? fn : log_to_stderr;
    target_user = fn != NULL ? user : NULL;
    (void)pthread_mutex_unlock(&target_lock);
}

void kvbm__log(kvbm_log_level_t level, const char *fmt, ...)
{
    char line[KVBM__LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    /* The analyzer misses va_start above (clang-analyzer false positive). */
    vsnprintf(line, sizeof(line), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
    va_end(ap);
    (void)pthread_mutex_lock(&target_lock);
    kvbm_log_fn fn = target_fn;
    void *user = target_user;
    (void)pthread_mutex_unlock(&target_lock);
    fn(user, level, line);
}
