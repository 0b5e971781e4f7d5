/* base.h: status codes, error messages, assertions, aligned allocation and a clock.
 *
 * Programmer errors (broken invariants, misuse of an API) abort through FW_ASSERT.
 * Environment and data errors return an fw_status; the detail message is kept per thread
 * and read with fw_last_error(). The library never calls exit().
 */
#ifndef FW_BASE_H
#define FW_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum fw_status {
    FW_OK = 0,
    FW_ERR_ARG,    /* bad user input: a config value, an impossible episode shape      */
    FW_ERR_NOMEM,
    FW_ERR_IO,     /* a file could not be opened, read or written                      */
    FW_ERR_FORMAT, /* a data or checkpoint file has a bad header, size or content      */
    FW_ERR_DNNL,   /* oneDNN refused something; detail in fw_last_error()              */
    FW_ERR_HDF5,
    FW_ERR_NUMERIC /* a loss or gradient became NaN or infinite                        */
} fw_status;

/* Stores a formatted detail message for this thread and returns s. */
fw_status fw_errorf(fw_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* This thread's last detail message ("" if none). */
const char *fw_last_error(void);
const char *fw_status_str(fw_status s);

void fw_assert_fail(const char *file, int line, const char *func, const char *cond,
                    const char *fmt, ...) __attribute__((noreturn, format(printf, 5, 6)));

/* Always on, also in release builds: a failed check is a bug, and wrong numbers are worse than
 * a crash. Usage: FW_ASSERT(n > 0, "n=%d", n). */
#define FW_ASSERT(cond, ...)                                                                   \
    do {                                                                                       \
        if (!(cond))                                                                           \
            fw_assert_fail(__FILE__, __LINE__, __func__, #cond, __VA_ARGS__);                  \
    } while (0)

/* Framework code: propagate a non-OK status to the caller. */
#define FW_TRY(expr)                                                                           \
    do {                                                                                       \
        fw_status fw_try_s_ = (expr);                                                          \
        if (fw_try_s_ != FW_OK)                                                                \
            return fw_try_s_;                                                                  \
    } while (0)

/* Experiments and tests only: print the failure and exit(1). */
#define FW_CHECK(expr)                                                                         \
    do {                                                                                       \
        fw_status fw_chk_s_ = (expr);                                                          \
        if (fw_chk_s_ != FW_OK) {                                                              \
            fprintf(stderr, "error: %s\n", fw_last_error());                                   \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

#define FW_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))

/* 64-byte aligned, zero-filled allocation; NULL on failure. Free with fw_free. */
void *fw_alloc(size_t bytes);
void fw_free(void *p);

/* Seconds on a monotonic clock. */
double fw_now(void);

#endif
