/* base.c: error messages, assertions, allocation, clock. */
#define _POSIX_C_SOURCE 200809L
#include "framework/base.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[1024];

fw_status fw_errorf(fw_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

const char *fw_last_error(void) {
    return last_error;
}

const char *fw_status_str(fw_status s) {
    switch (s) {
    case FW_OK: return "ok";
    case FW_ERR_ARG: return "invalid argument";
    case FW_ERR_NOMEM: return "out of memory";
    case FW_ERR_IO: return "i/o error";
    case FW_ERR_FORMAT: return "bad file format";
    case FW_ERR_DNNL: return "oneDNN error";
    case FW_ERR_HDF5: return "HDF5 error";
    case FW_ERR_NUMERIC: return "non-finite number";
    }
    return "unknown status";
}

void fw_assert_fail(const char *file, int line, const char *func, const char *cond,
                    const char *fmt, ...) {
    fprintf(stderr, "%s:%d: %s: FW_ASSERT(%s) failed: ", file, line, func, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *fw_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p)
        memset(p, 0, rounded ? rounded : 64);
    return p;
}

void fw_free(void *p) {
    free(p);
}

double fw_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
