/* helpers.c: see helpers.h. */
#include "tests/helpers.h"

#include "framework/rng.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "fwt: out of memory (%zu x %zu bytes)\n", n, size);
        abort();
    }
    return p;
}

float *fwt_falloc(size_t n) {
    return xcalloc(n, sizeof(float));
}

double *fwt_dalloc(size_t n) {
    return xcalloc(n, sizeof(double));
}

void fwt_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t stream, float lo, float hi) {
    fw_rng r = fw_rng_for(seed, FW_RNG_USER, 0, stream);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * fw_rng_uniform(&r);
}

void fwt_fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, float scale) {
    fw_rng r = fw_rng_for(seed, FW_RNG_USER, 0, stream);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * fw_rng_normal(&r);
}

void fwt_fill_levels(float *x, size_t n, uint64_t seed, uint64_t stream, int levels) {
    fw_rng r = fw_rng_for(seed, FW_RNG_USER, 0, stream);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)fw_rng_below(&r, (uint32_t)levels);
}

double *fwt_to_double(const float *x, size_t n) {
    double *d = fwt_dalloc(n);
    fwt_copy_to_double(d, x, n);
    return d;
}

void fwt_copy_to_double(double *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = (double)src[i];
}

double fwt_rel_l2(const float *a, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double fwt_rel_l2_ff(const float *a, const float *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double fwt_max_abs_diff(const float *a, const double *ref, size_t n, size_t *where) {
    double m = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d > m || isnan(d)) {
            m = d;
            at = i;
            if (isnan(d))
                break;
        }
    }
    if (where)
        *where = at;
    return m;
}

double fwt_dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

double fwt_dot_fd(const float *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

double fwt_norm(const float *a, size_t n) {
    return sqrt(fwt_dot(a, a, n));
}

double fwt_dnorm(const double *a, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * a[i];
    return sqrt(s);
}

double fwt_tol(double K, double slack) {
    return FLT_EPSILON * log(K > 2.0 ? K : 2.0) * slack;
}

size_t fwt_bit_diffs(const float *a, const float *b, size_t n, size_t *first) {
    size_t count = 0, at = n;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            if (count++ == 0)
                at = i;
        }
    if (first)
        *first = at;
    return count;
}
