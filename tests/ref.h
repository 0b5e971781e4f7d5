/* ref.h: naive double-precision reference layers for the tests (llm.c's *_naive idea).
 *
 * Plain row-major NCHW tensors, simple loops, no blocking, no cleverness: each function is meant
 * to be checked by reading it. Shapes are passed explicitly; `n` is the batch size.
 * Backward functions OVERWRITE their outputs (dx, dw, db, ...). Those of conv2d, batchnorm and
 * linear accept NULL for any gradient that is not wanted.
 */
#ifndef FWT_REF_H
#define FWT_REF_H

#include <stddef.h>

/* ---- conv2d: k x k, square stride and padding; weights (o, c, k, k), bias (o) or NULL ---- */

typedef struct ref_conv {
    int n, c, h, w;   /* input                 */
    int o, k, stride, pad;
} ref_conv;

int ref_conv_oh(const ref_conv *p); /* (h + 2 pad - k) / stride + 1 */
int ref_conv_ow(const ref_conv *p);
/* x (n, c, h, w) -> y (n, o, oh, ow) */
void ref_conv2d_fwd(const ref_conv *p, const double *x, const double *w, const double *b,
                    double *y);
/* dy (n, o, oh, ow) -> dx (n, c, h, w), dw (o, c, k, k), db (o) */
void ref_conv2d_bwd(const ref_conv *p, const double *x, const double *w, const double *dy,
                    double *dx, double *dw, double *db);

/* ---- batchnorm, training mode: per channel, mean and biased variance over (n, h, w) ---- */

/* x, y (n, c, hw) with hw = h * w; scale, shift (c) */
void ref_bn_fwd(int n, int c, int hw, double eps, const double *x, const double *scale,
                const double *shift, double *y);
void ref_bn_bwd(int n, int c, int hw, double eps, const double *x, const double *scale,
                const double *dy, double *dx, double *dscale, double *dshift);

/* ---- leaky relu (slope 0: relu): y = x if x > 0 else slope * x; the derivative at 0 is slope */

void ref_leaky_relu_fwd(size_t len, double slope, const double *x, double *y);
void ref_leaky_relu_bwd(size_t len, double slope, const double *x, const double *dy, double *dx);

/* ---- 2x2 max-pool, stride 2, floor; a tie goes to the first maximum in row-major window order */

/* x (n, c, h, w) -> y (n, c, h / 2, w / 2) */
void ref_maxpool2_fwd(int n, int c, int h, int w, const double *x, double *y);
/* Routes each dy to its window's argmax; everything else (and odd last rows/columns) gets 0. */
void ref_maxpool2_bwd(int n, int c, int h, int w, const double *x, const double *dy, double *dx);

/* ---- global average pool: (n, c, h, w) -> (n, c) ---- */

void ref_avgpool_fwd(int n, int c, int hw, const double *x, double *y);
void ref_avgpool_bwd(int n, int c, int hw, const double *dy, double *dx);

/* ---- flatten: (n, c, h, w) -> (n, c * h * w) in CHW order: the identity on NCHW memory ---- */

void ref_flatten_fwd(size_t len, const double *x, double *y);
void ref_flatten_bwd(size_t len, const double *dy, double *dx);

/* ---- linear: y = x W^T + b; x (n, in), W (out, in), b (out), y (n, out) ---- */

void ref_linear_fwd(int n, int in, int out, const double *x, const double *W, const double *b,
                    double *y);
void ref_linear_bwd(int n, int in, int out, const double *x, const double *W, const double *dy,
                    double *dx, double *dW, double *db);

#endif
