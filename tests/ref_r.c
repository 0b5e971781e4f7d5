/* ref_r.c: see ref_r.h. Dual arithmetic, then each layer as its plain loops. */
#include "tests/ref_r.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dual numbers: (a + a' e)(b + b' e) = ab + (a'b + ab') e, e^2 = 0 ---- */

typedef ref_r_dual dual;

static inline dual d_c(double v) {
    return (dual){v, 0.0};
}
static inline dual d_add(dual a, dual b) {
    return (dual){a.v + b.v, a.r + b.r};
}
static inline dual d_sub(dual a, dual b) {
    return (dual){a.v - b.v, a.r - b.r};
}
static inline dual d_mul(dual a, dual b) {
    return (dual){a.v * b.v, a.r * b.v + a.v * b.r};
}
static inline dual d_scale(dual a, double s) {
    return (dual){a.v * s, a.r * s};
}
static inline dual d_div(dual a, dual b) {
    return (dual){a.v / b.v, (a.r * b.v - a.v * b.r) / (b.v * b.v)};
}
static inline dual d_sqrt(dual a) {
    double s = sqrt(a.v);
    return (dual){s, a.r / (2.0 * s)};
}
static inline dual d_exp(dual a) {
    double e = exp(a.v);
    return (dual){e, a.r * e};
}
static inline dual d_log(dual a) {
    return (dual){log(a.v), a.r / a.v};
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "ref_r: out of memory\n");
        abort();
    }
    return p;
}

static void d_zero(dual *x, size_t n) {
    if (x)
        memset(x, 0, n * sizeof *x);
}

/* ---- shapes ---- */

ref_r_shape ref_r_out_shape(const ref_r_layer *l, ref_r_shape in) {
    switch (l->kind) {
    case REF_R_CONV:
        return (ref_r_shape){l->out, (in.h + 2 * l->pad - l->k) / l->stride + 1,
                             (in.w + 2 * l->pad - l->k) / l->stride + 1};
    case REF_R_MAXPOOL: return (ref_r_shape){in.c, in.h / 2, in.w / 2};
    case REF_R_AVGPOOL: return (ref_r_shape){in.c, 1, 1};
    case REF_R_FLATTEN: return (ref_r_shape){in.c * in.h * in.w, 1, 1};
    case REF_R_LINEAR: return (ref_r_shape){l->out, 1, 1};
    default: return in;
    }
}

size_t ref_r_n_params(const ref_r_layer *l, ref_r_shape in) {
    switch (l->kind) {
    case REF_R_CONV:
        return (size_t)l->out * (size_t)in.c * (size_t)(l->k * l->k) + (l->bias ? (size_t)l->out : 0);
    case REF_R_BN: return 2 * (size_t)in.c;
    case REF_R_LINEAR: return (size_t)l->out * (size_t)(in.c * in.h * in.w) + (size_t)l->out;
    default: return 0;
    }
}

/* ---- conv: y[n,o,i,j] = b[o] + sum_{c,a,b} x[n,c,i*s-p+a,j*s-p+b] w[o,c,a,b] ---- */

static void conv_fwd(const ref_r_layer *l, ref_r_shape in, int n, const dual *p, const dual *x,
                     dual *y) {
    ref_r_shape o = ref_r_out_shape(l, in);
    int k = l->k;
    const dual *b = l->bias ? p + (size_t)o.c * (size_t)in.c * (size_t)(k * k) : NULL;
    for (int bn = 0; bn < n; bn++)
        for (int oc = 0; oc < o.c; oc++)
            for (int i = 0; i < o.h; i++)
                for (int j = 0; j < o.w; j++) {
                    dual s = b ? b[oc] : d_c(0.0);
                    for (int c = 0; c < in.c; c++)
                        for (int a = 0; a < k; a++)
                            for (int q = 0; q < k; q++) {
                                int ih = i * l->stride - l->pad + a, iw = j * l->stride - l->pad + q;
                                if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w)
                                    continue;
                                s = d_add(s, d_mul(x[(((size_t)bn * in.c + c) * in.h + ih) * in.w + iw],
                                                   p[(((size_t)oc * in.c + c) * k + a) * k + q]));
                            }
                    y[(((size_t)bn * o.c + oc) * o.h + i) * o.w + j] = s;
                }
}

static void conv_bwd(const ref_r_layer *l, ref_r_shape in, int n, const dual *p, const dual *x,
                     const dual *dy, dual *dx, dual *dp) {
    ref_r_shape o = ref_r_out_shape(l, in);
    int k = l->k;
    size_t nw = (size_t)o.c * (size_t)in.c * (size_t)(k * k);
    d_zero(dx, (size_t)n * in.c * in.h * in.w);
    d_zero(dp, ref_r_n_params(l, in));
    for (int bn = 0; bn < n; bn++)
        for (int oc = 0; oc < o.c; oc++)
            for (int i = 0; i < o.h; i++)
                for (int j = 0; j < o.w; j++) {
                    dual g = dy[(((size_t)bn * o.c + oc) * o.h + i) * o.w + j];
                    if (l->bias)
                        dp[nw + oc] = d_add(dp[nw + oc], g);
                    for (int c = 0; c < in.c; c++)
                        for (int a = 0; a < k; a++)
                            for (int q = 0; q < k; q++) {
                                int ih = i * l->stride - l->pad + a, iw = j * l->stride - l->pad + q;
                                if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w)
                                    continue;
                                size_t xi = (((size_t)bn * in.c + c) * in.h + ih) * in.w + iw;
                                size_t wi = (((size_t)oc * in.c + c) * k + a) * k + q;
                                dp[wi] = d_add(dp[wi], d_mul(g, x[xi]));
                                if (dx)
                                    dx[xi] = d_add(dx[xi], d_mul(g, p[wi]));
                            }
                }
}

/* ---- batchnorm (training): per channel over (n, h, w), biased variance ---- */

/* Mean and sigma = sqrt(var + eps) of channel c. */
static void bn_stats(ref_r_shape in, int n, const dual *x, int c, dual *mu, dual *sigma) {
    size_t hw = (size_t)in.h * in.w;
    double m = (double)n * (double)hw;
    dual s = d_c(0.0);
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < hw; i++)
            s = d_add(s, x[((size_t)b * in.c + c) * hw + i]);
    *mu = d_scale(s, 1.0 / m);
    dual q = d_c(0.0);
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < hw; i++) {
            dual t = d_sub(x[((size_t)b * in.c + c) * hw + i], *mu);
            q = d_add(q, d_mul(t, t));
        }
    *sigma = d_sqrt(d_add(d_scale(q, 1.0 / m), d_c(REF_R_BN_EPS)));
}

static void bn_fwd(ref_r_shape in, int n, const dual *p, const dual *x, dual *y) {
    size_t hw = (size_t)in.h * in.w;
    for (int c = 0; c < in.c; c++) {
        dual mu, sigma;
        bn_stats(in, n, x, c, &mu, &sigma);
        for (int b = 0; b < n; b++)
            for (size_t i = 0; i < hw; i++) {
                size_t at = ((size_t)b * in.c + c) * hw + i;
                dual xh = d_div(d_sub(x[at], mu), sigma);
                y[at] = d_add(d_mul(p[c], xh), p[in.c + c]);
            }
    }
}

/* dgamma = sum dy xh, dbeta = sum dy, dx = gamma / sigma (dy - dbeta / M - xh dgamma / M). */
static void bn_bwd(ref_r_shape in, int n, const dual *p, const dual *x, const dual *dy, dual *dx,
                   dual *dp) {
    size_t hw = (size_t)in.h * in.w;
    double m = (double)n * (double)hw;
    for (int c = 0; c < in.c; c++) {
        dual mu, sigma;
        bn_stats(in, n, x, c, &mu, &sigma);
        dual dg = d_c(0.0), db = d_c(0.0);
        for (int b = 0; b < n; b++)
            for (size_t i = 0; i < hw; i++) {
                size_t at = ((size_t)b * in.c + c) * hw + i;
                dual xh = d_div(d_sub(x[at], mu), sigma);
                dg = d_add(dg, d_mul(dy[at], xh));
                db = d_add(db, dy[at]);
            }
        dp[c] = dg;
        dp[in.c + c] = db;
        if (!dx)
            continue;
        dual k = d_div(p[c], sigma);
        for (int b = 0; b < n; b++)
            for (size_t i = 0; i < hw; i++) {
                size_t at = ((size_t)b * in.c + c) * hw + i;
                dual xh = d_div(d_sub(x[at], mu), sigma);
                dual t = d_sub(d_sub(dy[at], d_scale(db, 1.0 / m)), d_scale(d_mul(xh, dg), 1.0 / m));
                dx[at] = d_mul(k, t);
            }
    }
}

/* ---- leaky relu: y = x for x > 0, else slope x (the branch of the value part) ---- */

static void relu_fwd(size_t len, double slope, const dual *x, dual *y) {
    for (size_t i = 0; i < len; i++)
        y[i] = x[i].v > 0 ? x[i] : d_scale(x[i], slope);
}

static void relu_bwd(size_t len, double slope, const dual *x, const dual *dy, dual *dx) {
    for (size_t i = 0; i < len; i++)
        dx[i] = x[i].v > 0 ? dy[i] : d_scale(dy[i], slope);
}

/* ---- 2x2 max-pool, stride 2, floor; argmax on the value part, first maximum wins ---- */

static size_t pool_arg(ref_r_shape in, const dual *x, int b, int c, int i, int j) {
    size_t best = (((size_t)b * in.c + c) * in.h + 2 * i) * in.w + 2 * j;
    for (int a = 0; a < 2; a++)
        for (int q = 0; q < 2; q++) {
            size_t at = (((size_t)b * in.c + c) * in.h + 2 * i + a) * in.w + 2 * j + q;
            if (x[at].v > x[best].v)
                best = at;
        }
    return best;
}

static void maxpool_fwd(ref_r_shape in, int n, const dual *x, dual *y) {
    int oh = in.h / 2, ow = in.w / 2;
    for (int b = 0; b < n; b++)
        for (int c = 0; c < in.c; c++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    y[(((size_t)b * in.c + c) * oh + i) * ow + j] = x[pool_arg(in, x, b, c, i, j)];
}

static void maxpool_bwd(ref_r_shape in, int n, const dual *x, const dual *dy, dual *dx) {
    int oh = in.h / 2, ow = in.w / 2;
    d_zero(dx, (size_t)n * in.c * in.h * in.w);
    for (int b = 0; b < n; b++)
        for (int c = 0; c < in.c; c++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    dx[pool_arg(in, x, b, c, i, j)] = dy[(((size_t)b * in.c + c) * oh + i) * ow + j];
}

/* ---- global average pool, flatten ---- */

static void avgpool_fwd(ref_r_shape in, int n, const dual *x, dual *y) {
    size_t hw = (size_t)in.h * in.w;
    for (size_t bc = 0; bc < (size_t)n * in.c; bc++) {
        dual s = d_c(0.0);
        for (size_t i = 0; i < hw; i++)
            s = d_add(s, x[bc * hw + i]);
        y[bc] = d_scale(s, 1.0 / (double)hw);
    }
}

static void avgpool_bwd(ref_r_shape in, int n, const dual *dy, dual *dx) {
    size_t hw = (size_t)in.h * in.w;
    for (size_t bc = 0; bc < (size_t)n * in.c; bc++)
        for (size_t i = 0; i < hw; i++)
            dx[bc * hw + i] = d_scale(dy[bc], 1.0 / (double)hw);
}

/* ---- linear: y[n,o] = b[o] + sum_i x[n,i] W[o,i] ---- */

static void linear_fwd(int n, int fin, int fout, const dual *p, const dual *x, dual *y) {
    const dual *b = p + (size_t)fout * fin;
    for (int bn = 0; bn < n; bn++)
        for (int o = 0; o < fout; o++) {
            dual s = b[o];
            for (int i = 0; i < fin; i++)
                s = d_add(s, d_mul(x[(size_t)bn * fin + i], p[(size_t)o * fin + i]));
            y[(size_t)bn * fout + o] = s;
        }
}

static void linear_bwd(int n, int fin, int fout, const dual *p, const dual *x, const dual *dy,
                       dual *dx, dual *dp) {
    size_t nw = (size_t)fout * fin;
    d_zero(dx, (size_t)n * fin);
    d_zero(dp, nw + (size_t)fout);
    for (int bn = 0; bn < n; bn++)
        for (int o = 0; o < fout; o++) {
            dual g = dy[(size_t)bn * fout + o];
            dp[nw + o] = d_add(dp[nw + o], g);
            for (int i = 0; i < fin; i++) {
                dp[(size_t)o * fin + i] = d_add(dp[(size_t)o * fin + i], d_mul(g, x[(size_t)bn * fin + i]));
                if (dx)
                    dx[(size_t)bn * fin + i] = d_add(dx[(size_t)bn * fin + i], d_mul(g, p[(size_t)o * fin + i]));
            }
        }
}

/* ---- dispatch ---- */

void ref_r_layer_fwd(const ref_r_layer *l, ref_r_shape in, int n, const ref_r_dual *p,
                     const ref_r_dual *x, ref_r_dual *y) {
    size_t len = (size_t)n * in.c * in.h * in.w;
    switch (l->kind) {
    case REF_R_CONV: conv_fwd(l, in, n, p, x, y); break;
    case REF_R_BN: bn_fwd(in, n, p, x, y); break;
    case REF_R_RELU: relu_fwd(len, l->slope, x, y); break;
    case REF_R_MAXPOOL: maxpool_fwd(in, n, x, y); break;
    case REF_R_AVGPOOL: avgpool_fwd(in, n, x, y); break;
    case REF_R_FLATTEN: memcpy(y, x, len * sizeof *y); break;
    case REF_R_LINEAR: linear_fwd(n, in.c * in.h * in.w, l->out, p, x, y); break;
    }
}

void ref_r_layer_bwd(const ref_r_layer *l, ref_r_shape in, int n, const ref_r_dual *p,
                     const ref_r_dual *x, const ref_r_dual *dy, ref_r_dual *dx, ref_r_dual *dp) {
    size_t len = (size_t)n * in.c * in.h * in.w;
    switch (l->kind) {
    case REF_R_CONV: conv_bwd(l, in, n, p, x, dy, dx, dp); break;
    case REF_R_BN: bn_bwd(in, n, p, x, dy, dx, dp); break;
    case REF_R_RELU:
        if (dx)
            relu_bwd(len, l->slope, x, dy, dx);
        break;
    case REF_R_MAXPOOL:
        if (dx)
            maxpool_bwd(in, n, x, dy, dx);
        break;
    case REF_R_AVGPOOL:
        if (dx)
            avgpool_bwd(in, n, dy, dx);
        break;
    case REF_R_FLATTEN:
        if (dx)
            memcpy(dx, dy, len * sizeof *dx);
        break;
    case REF_R_LINEAR: linear_bwd(n, in.c * in.h * in.w, l->out, p, x, dy, dx, dp); break;
    }
}

/* ---- softmax cross-entropy: L = mean_b (log sum_j exp z_bj - z_b,y), dz = (s - onehot) / B ---- */

ref_r_dual ref_r_softmax_xent(int B, int N, const ref_r_dual *z, const int *labels,
                              ref_r_dual *dz) {
    dual loss = d_c(0.0);
    for (int b = 0; b < B; b++) {
        const dual *zb = z + (size_t)b * N;
        double mx = zb[0].v;
        for (int j = 1; j < N; j++)
            mx = zb[j].v > mx ? zb[j].v : mx;
        dual sum = d_c(0.0);
        for (int j = 0; j < N; j++)
            sum = d_add(sum, d_exp(d_sub(zb[j], d_c(mx))));
        dual lse = d_add(d_log(sum), d_c(mx));
        loss = d_add(loss, d_sub(lse, zb[labels[b]]));
        for (int j = 0; j < N; j++) {
            dual s = d_exp(d_sub(zb[j], lse));
            dz[(size_t)b * N + j] = d_scale(d_sub(s, d_c(j == labels[b] ? 1.0 : 0.0)), 1.0 / B);
        }
    }
    return d_scale(loss, 1.0 / B);
}

/* ---- a whole chain ---- */

size_t ref_r_net_n_params(const ref_r_layer *layers, int nl, ref_r_shape in) {
    size_t np = 0;
    for (int i = 0; i < nl; i++) {
        np += ref_r_n_params(&layers[i], in);
        in = ref_r_out_shape(&layers[i], in);
    }
    return np;
}

double ref_r_net(const ref_r_layer *layers, int nl, ref_r_shape in, int n, const double *x,
                 const int *labels, const double *theta, const double *v, double *grad,
                 double *hv, double *r_logits) {
    size_t np = ref_r_net_n_params(layers, nl, in);
    ref_r_shape *sh = xcalloc((size_t)nl + 1, sizeof *sh);
    size_t *off = xcalloc((size_t)nl + 1, sizeof *off);
    dual **act = xcalloc((size_t)nl + 1, sizeof *act);
    sh[0] = in;
    for (int i = 0; i < nl; i++) {
        sh[i + 1] = ref_r_out_shape(&layers[i], sh[i]);
        off[i + 1] = off[i] + ref_r_n_params(&layers[i], sh[i]);
    }
    dual *p = xcalloc(np, sizeof *p), *dp = xcalloc(np, sizeof *dp);
    for (size_t i = 0; i < np; i++)
        p[i] = (dual){theta[i], v ? v[i] : 0.0};
    for (int i = 0; i <= nl; i++)
        act[i] = xcalloc((size_t)n * sh[i].c * sh[i].h * sh[i].w, sizeof **act);
    for (size_t i = 0; i < (size_t)n * in.c * in.h * in.w; i++)
        act[0][i] = d_c(x[i]); /* data: R x = 0 */
    for (int i = 0; i < nl; i++)
        ref_r_layer_fwd(&layers[i], sh[i], n, p + off[i], act[i], act[i + 1]);
    int ways = sh[nl].c;
    size_t nlast = (size_t)n * ways;
    dual *d = xcalloc(nlast, sizeof *d);
    dual loss = ref_r_softmax_xent(n, ways, act[nl], labels, d);
    if (r_logits)
        for (size_t i = 0; i < nlast; i++)
            r_logits[i] = act[nl][i].r;
    for (int i = nl - 1; i >= 0; i--) {
        dual *din = i > 0 ? xcalloc((size_t)n * sh[i].c * sh[i].h * sh[i].w, sizeof *din) : NULL;
        ref_r_layer_bwd(&layers[i], sh[i], n, p + off[i], act[i], d, din, dp + off[i]);
        free(d);
        d = din;
    }
    for (size_t i = 0; i < np; i++) {
        if (grad)
            grad[i] = dp[i].v;
        if (hv)
            hv[i] = dp[i].r;
    }
    for (int i = 0; i <= nl; i++)
        free(act[i]);
    free(act);
    free(sh);
    free(off);
    free(p);
    free(dp);
    return loss.v;
}
