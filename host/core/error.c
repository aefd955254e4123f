/* The per-thread failure reason behind kvbm_last_error; see core/error.h. */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

/* One buffer per thread, written only by its own thread: no lock. */
static _Thread_local char last_error[KVBM__ERROR_MAX];

void kvbm__error_record(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* The analyzer misses va_start above (clang-analyzer false positive). */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}

void kvbm__error_clear(void)
{
    last_error[0] = '\0';
}

const char *kvbm_last_error(void)
{
    return last_error;
}
