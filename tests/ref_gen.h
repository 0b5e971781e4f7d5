/* ref_gen.h: naive double-precision references for the generator layers (deconv2d, sigmoid,
 * tanh, reshape), on dual numbers (prefix ref_gen_).
 *
 * A dual (v, r) carries a value and its directional derivative R{v} along a parameter direction.
 * Each layer is written once, as the textbook loop of its forward or backward pass, over dual
 * arithmetic: with r = 0 everywhere it is the plain forward / backward; with the direction in the
 * parameters' r parts and R{x} in the input's, the forward gives (y, R y) and the backward gives
 * (g_x, R g_x) and (g_theta, R g_theta = H v). No R formula is written by hand, so these
 * references do not share the framework's formulas (docs/second-order-notes.md).
 *
 * Tensors are plain row-major NCHW; `n` is the batch size. Backward functions OVERWRITE their
 * outputs; any output pointer may be NULL when that gradient is not wanted.
 */
#ifndef FWT_REF_GEN_H
#define FWT_REF_GEN_H

#include <stddef.h>

typedef struct ref_gen_dual {
    double v, r;
} ref_gen_dual;

/* ---- transposed convolution, PyTorch's ConvTranspose2d ----
 * W (c, o, k, k), bias (o) or NULL; square stride and padding; no output padding:
 *   y[n, o, ih*s - p + kh, iw*s - p + kw] += x[n, i, ih, iw] * W[i, o, kh, kw]  (in range),
 * i.e. every input pixel scatters a k x k copy of its kernel slice, weighted, onto the output. */
typedef struct ref_gen_deconv {
    int n, c, h, w; /* input */
    int o, k, stride, pad;
} ref_gen_deconv;

int ref_gen_deconv_oh(const ref_gen_deconv *p); /* (h - 1) stride - 2 pad + k */
int ref_gen_deconv_ow(const ref_gen_deconv *p);
/* x (n, c, h, w) -> y (n, o, oh, ow) */
void ref_gen_deconv_fwd(const ref_gen_deconv *p, const ref_gen_dual *x, const ref_gen_dual *w,
                        const ref_gen_dual *b, ref_gen_dual *y);
/* dy (n, o, oh, ow) -> dx (n, c, h, w), dw (c, o, k, k), db (o): the adjoint of the scatter. */
void ref_gen_deconv_bwd(const ref_gen_deconv *p, const ref_gen_dual *x, const ref_gen_dual *w,
                        const ref_gen_dual *dy, ref_gen_dual *dx, ref_gen_dual *dw,
                        ref_gen_dual *db);

/* ---- element-wise: sigmoid 1 / (1 + exp(-x)) and tanh, from x ---- */

void ref_gen_sigmoid_fwd(size_t len, const ref_gen_dual *x, ref_gen_dual *y);
void ref_gen_sigmoid_bwd(size_t len, const ref_gen_dual *x, const ref_gen_dual *dy,
                         ref_gen_dual *dx);
void ref_gen_tanh_fwd(size_t len, const ref_gen_dual *x, ref_gen_dual *y);
void ref_gen_tanh_bwd(size_t len, const ref_gen_dual *x, const ref_gen_dual *dy, ref_gen_dual *dx);

/* ---- reshape in CHW order: the identity on NCHW memory, both ways ---- */

void ref_gen_reshape(size_t len, const ref_gen_dual *x, ref_gen_dual *y);

#endif
