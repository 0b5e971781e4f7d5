/* params.c: flat vector operations. */
#include "framework/params.h"

#include <math.h>
#include <string.h>

void fw_vec_zero(float *x, size_t n) {
    memset(x, 0, n * sizeof *x);
}

void fw_vec_copy(float *dst, const float *src, size_t n) {
    memcpy(dst, src, n * sizeof *dst);
}

/* The element-wise loops carry `omp simd`: GCC's -O2 cost model leaves loops of unknown length
 * scalar, and vector lanes give the same bits as the scalar code (no reduction, no contraction). */
void fw_vec_axpy(float *y, float a, const float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

void fw_vec_scale(float *x, float a, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        x[i] *= a;
}

bool fw_vec_all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

double fw_vec_norm(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}
