/* helpers.h: small helpers shared by the tests (prefix fwt_).
 *
 * Random data comes from fw_rng streams (framework/rng.h) with purpose FW_RNG_USER, so every test
 * input is a pure function of (seed, stream). Error measures are computed in double.
 */
#ifndef FWT_HELPERS_H
#define FWT_HELPERS_H

#include <stddef.h>
#include <stdint.h>

/* Allocation that aborts on failure; zero-filled. Free with free(). */
float *fwt_falloc(size_t n);
double *fwt_dalloc(size_t n);

/* x[i] = uniform in [lo, hi), from stream (seed, stream). */
void fwt_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t stream, float lo, float hi);
/* x[i] = scale * standard normal, from stream (seed, stream). */
void fwt_fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, float scale);
/* x[i] = a uniform integer in [0, levels): many exact ties, for max-pool tie rules. */
void fwt_fill_levels(float *x, size_t n, uint64_t seed, uint64_t stream, int levels);

/* A double copy of x (malloc'd). */
double *fwt_to_double(const float *x, size_t n);
void fwt_copy_to_double(double *dst, const float *src, size_t n);

/* ||a - ref||_2 / ||ref||_2, in double; ||a - ref||_2 when ref is all zeros. */
double fwt_rel_l2(const float *a, const double *ref, size_t n);
/* Same for two float arrays. */
double fwt_rel_l2_ff(const float *a, const float *ref, size_t n);
/* max |a - ref| and its index (where may be NULL). */
double fwt_max_abs_diff(const float *a, const double *ref, size_t n, size_t *where);

/* Dot products and norms accumulated in double. */
double fwt_dot(const float *a, const float *b, size_t n);
double fwt_dot_fd(const float *a, const double *b, size_t n);
double fwt_norm(const float *a, size_t n);
double fwt_dnorm(const double *a, size_t n);

/* The forward-check tolerance of style-notes §3.10: FLT_EPSILON * ln(max(2, K)) * slack, with K
 * the reduction length (fan-in) of what is compared. */
double fwt_tol(double K, double slack);

/* Number of elements whose bit patterns differ; *first (may be NULL) gets the first such index,
 * or n when they are all equal. */
size_t fwt_bit_diffs(const float *a, const float *b, size_t n, size_t *first);

#endif
