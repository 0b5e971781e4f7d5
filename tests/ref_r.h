/* ref_r.h: naive double-precision references for the R-operator tests (prefix ref_r_).
 *
 * Every value is a dual number (v, r): v is the value and r its directional derivative R{v}
 * along the parameter direction. Each layer is written once, as the plain forward or backward
 * loop of its textbook definition, over dual arithmetic. Running the forward on duals gives
 * (y, R y); running the backward on duals gives (g_x, R g_x) and (g_theta, R g_theta), and
 * R g_theta is H v (Pearlmutter 1994: the R-operator is forward-mode differentiation of the
 * forward and backward passes). No R formula is written by hand here, so these references are
 * independent of the ones in framework/layers/ and docs/second-order-notes.md.
 *
 * Tensors are plain row-major NCHW (vectors (N, F)); `n` is the batch size. Parameter layout is
 * the framework's: conv (O, I, K, K) then an optional bias (O); batchnorm scale (C) then shift (C);
 * linear (OUT, IN) then bias (OUT). Backward functions OVERWRITE dx and dp; dx may be NULL.
 * Non-smooth points (ReLU at 0, max-pool ties) take the branch of the value part, with the
 * framework's rules: ReLU derivative 1 for x > 0 else the slope; max-pool ties to the first
 * maximum in row-major window order.
 */
#ifndef FWT_REF_R_H
#define FWT_REF_R_H

#include <stddef.h>

typedef struct ref_r_dual {
    double v, r;
} ref_r_dual;

typedef struct ref_r_shape {
    int c, h, w; /* per example; vectors are (F, 1, 1) */
} ref_r_shape;

typedef enum ref_r_kind {
    REF_R_CONV = 1,
    REF_R_BN,
    REF_R_RELU,     /* leaky with slope; slope 0 is ReLU */
    REF_R_MAXPOOL,  /* 2x2, stride 2, floor */
    REF_R_AVGPOOL,  /* global: (C, H, W) -> (C, 1, 1) */
    REF_R_FLATTEN,
    REF_R_LINEAR
} ref_r_kind;

typedef struct ref_r_layer {
    ref_r_kind kind;
    int out, k, stride, pad; /* conv: out channels, kernel, stride, padding; linear: out */
    int bias;                /* conv only; linear always has a bias */
    double slope;            /* relu */
} ref_r_layer;

/* Batchnorm epsilon as the framework uses it (1e-5f widened to double). */
#define REF_R_BN_EPS ((double)1e-5f)

ref_r_shape ref_r_out_shape(const ref_r_layer *l, ref_r_shape in);
size_t ref_r_n_params(const ref_r_layer *l, ref_r_shape in);

/* y = layer(x; p) for n examples of shape `in`. */
void ref_r_layer_fwd(const ref_r_layer *l, ref_r_shape in, int n, const ref_r_dual *p,
                     const ref_r_dual *x, ref_r_dual *y);
/* Given dy = dL/dy: dx = dL/dx (if dx), dp = dL/dp (overwritten, n_params entries). */
void ref_r_layer_bwd(const ref_r_layer *l, ref_r_shape in, int n, const ref_r_dual *p,
                     const ref_r_dual *x, const ref_r_dual *dy, ref_r_dual *dx, ref_r_dual *dp);

/* Mean softmax cross-entropy of (B, N) logits; dz = dL/dz. Returns the loss. */
ref_r_dual ref_r_softmax_xent(int B, int N, const ref_r_dual *z, const int *labels,
                              ref_r_dual *dz);

/* A whole chain input -> layers[0] -> ... -> layers[nl - 1] -> softmax cross-entropy, in double.
 * theta and v have the chain's parameter count (ref_r_net_n_params). grad gets the gradient of the
 * loss and hv the Hessian-vector product H v (either may be NULL); r_logits (may be NULL) gets
 * R{logits}, (n, ways). Returns the loss. */
size_t ref_r_net_n_params(const ref_r_layer *layers, int nl, ref_r_shape in);
double ref_r_net(const ref_r_layer *layers, int nl, ref_r_shape in, int n, const double *x,
                 const int *labels, const double *theta, const double *v, double *grad,
                 double *hv, double *r_logits);

#endif
