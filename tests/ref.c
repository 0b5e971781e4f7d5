/* ref.c: naive double-precision reference layers. See ref.h. */
#include "tests/ref.h"

#include <math.h>
#include <string.h>

/* ---- conv2d ---- */

int ref_conv_oh(const ref_conv *p) {
    return (p->h + 2 * p->pad - p->k) / p->stride + 1;
}

int ref_conv_ow(const ref_conv *p) {
    return (p->w + 2 * p->pad - p->k) / p->stride + 1;
}

/* Index helpers for the four tensors of a convolution. */
static size_t x_at(const ref_conv *p, int n, int c, int h, int w) {
    return (((size_t)n * (size_t)p->c + (size_t)c) * (size_t)p->h + (size_t)h) * (size_t)p->w +
           (size_t)w;
}
static size_t y_at(const ref_conv *p, int n, int o, int oh, int ow) {
    return (((size_t)n * (size_t)p->o + (size_t)o) * (size_t)ref_conv_oh(p) + (size_t)oh) *
               (size_t)ref_conv_ow(p) + (size_t)ow;
}
static size_t w_at(const ref_conv *p, int o, int c, int kh, int kw) {
    return (((size_t)o * (size_t)p->c + (size_t)c) * (size_t)p->k + (size_t)kh) * (size_t)p->k +
           (size_t)kw;
}

void ref_conv2d_fwd(const ref_conv *p, const double *x, const double *w, const double *b,
                    double *y) {
    int OH = ref_conv_oh(p), OW = ref_conv_ow(p);
    for (int n = 0; n < p->n; n++)
        for (int o = 0; o < p->o; o++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double s = b ? b[o] : 0.0;
                    for (int c = 0; c < p->c; c++)
                        for (int kh = 0; kh < p->k; kh++)
                            for (int kw = 0; kw < p->k; kw++) {
                                int ih = oh * p->stride - p->pad + kh;
                                int iw = ow * p->stride - p->pad + kw;
                                if (ih < 0 || ih >= p->h || iw < 0 || iw >= p->w)
                                    continue; /* zero padding */
                                s += w[w_at(p, o, c, kh, kw)] * x[x_at(p, n, c, ih, iw)];
                            }
                    y[y_at(p, n, o, oh, ow)] = s;
                }
}

void ref_conv2d_bwd(const ref_conv *p, const double *x, const double *w, const double *dy,
                    double *dx, double *dw, double *db) {
    int OH = ref_conv_oh(p), OW = ref_conv_ow(p);
    if (dx)
        memset(dx, 0, (size_t)p->n * (size_t)p->c * (size_t)p->h * (size_t)p->w * sizeof *dx);
    if (dw)
        memset(dw, 0, (size_t)p->o * (size_t)p->c * (size_t)p->k * (size_t)p->k * sizeof *dw);
    if (db)
        memset(db, 0, (size_t)p->o * sizeof *db);
    /* The transpose of the forward loop nest: every product x * w in the forward pass sends
     * dy * w to dx and dy * x to dw. */
    for (int n = 0; n < p->n; n++)
        for (int o = 0; o < p->o; o++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double g = dy[y_at(p, n, o, oh, ow)];
                    if (db)
                        db[o] += g;
                    for (int c = 0; c < p->c; c++)
                        for (int kh = 0; kh < p->k; kh++)
                            for (int kw = 0; kw < p->k; kw++) {
                                int ih = oh * p->stride - p->pad + kh;
                                int iw = ow * p->stride - p->pad + kw;
                                if (ih < 0 || ih >= p->h || iw < 0 || iw >= p->w)
                                    continue;
                                if (dx)
                                    dx[x_at(p, n, c, ih, iw)] += g * w[w_at(p, o, c, kh, kw)];
                                if (dw)
                                    dw[w_at(p, o, c, kh, kw)] += g * x[x_at(p, n, c, ih, iw)];
                            }
                }
}

/* ---- batchnorm ---- */

static size_t bn_at(int c, int hw, int n, int ch, int s) {
    return ((size_t)n * (size_t)c + (size_t)ch) * (size_t)hw + (size_t)s;
}

/* Mean and biased variance of channel ch over (n, hw), two passes. */
static void bn_stats(int n, int c, int hw, const double *x, int ch, double *mean, double *var) {
    double m = 0.0, v = 0.0, cnt = (double)n * (double)hw;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < hw; s++)
            m += x[bn_at(c, hw, i, ch, s)];
    m /= cnt;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < hw; s++) {
            double d = x[bn_at(c, hw, i, ch, s)] - m;
            v += d * d;
        }
    *mean = m;
    *var = v / cnt;
}

void ref_bn_fwd(int n, int c, int hw, double eps, const double *x, const double *scale,
                const double *shift, double *y) {
    for (int ch = 0; ch < c; ch++) {
        double m, v;
        bn_stats(n, c, hw, x, ch, &m, &v);
        double inv = 1.0 / sqrt(v + eps);
        for (int i = 0; i < n; i++)
            for (int s = 0; s < hw; s++) {
                size_t j = bn_at(c, hw, i, ch, s);
                y[j] = scale[ch] * (x[j] - m) * inv + shift[ch];
            }
    }
}

/* With xhat = (x - mean) / sqrt(var + eps) and M = n * hw:
 *   dshift = sum dy, dscale = sum dy * xhat,
 *   dx = scale / sqrt(var + eps) * (dy - dshift / M - xhat * dscale / M). */
void ref_bn_bwd(int n, int c, int hw, double eps, const double *x, const double *scale,
                const double *dy, double *dx, double *dscale, double *dshift) {
    double cnt = (double)n * (double)hw;
    for (int ch = 0; ch < c; ch++) {
        double m, v;
        bn_stats(n, c, hw, x, ch, &m, &v);
        double inv = 1.0 / sqrt(v + eps);
        double sdy = 0.0, sdyx = 0.0;
        for (int i = 0; i < n; i++)
            for (int s = 0; s < hw; s++) {
                size_t j = bn_at(c, hw, i, ch, s);
                sdy += dy[j];
                sdyx += dy[j] * (x[j] - m) * inv;
            }
        if (dscale)
            dscale[ch] = sdyx;
        if (dshift)
            dshift[ch] = sdy;
        if (dx)
            for (int i = 0; i < n; i++)
                for (int s = 0; s < hw; s++) {
                    size_t j = bn_at(c, hw, i, ch, s);
                    double xh = (x[j] - m) * inv;
                    dx[j] = scale[ch] * inv * (dy[j] - sdy / cnt - xh * sdyx / cnt);
                }
    }
}

/* ---- leaky relu ---- */

void ref_leaky_relu_fwd(size_t len, double slope, const double *x, double *y) {
    for (size_t i = 0; i < len; i++)
        y[i] = x[i] > 0.0 ? x[i] : slope * x[i];
}

void ref_leaky_relu_bwd(size_t len, double slope, const double *x, const double *dy, double *dx) {
    for (size_t i = 0; i < len; i++)
        dx[i] = x[i] > 0.0 ? dy[i] : slope * dy[i];
}

/* ---- 2x2 max-pool ---- */

/* Window position (0..3, row-major) of the first maximum of window (oh, ow) of plane xp. */
static int pool_argmax(int w, const double *xp, int oh, int ow) {
    int best = 0;
    double bv = xp[(size_t)(2 * oh) * (size_t)w + (size_t)(2 * ow)];
    for (int k = 1; k < 4; k++) {
        double v = xp[(size_t)(2 * oh + k / 2) * (size_t)w + (size_t)(2 * ow + k % 2)];
        if (v > bv) { /* strictly greater: a tie keeps the earlier position */
            bv = v;
            best = k;
        }
    }
    return best;
}

void ref_maxpool2_fwd(int n, int c, int h, int w, const double *x, double *y) {
    int OH = h / 2, OW = w / 2;
    for (size_t pl = 0; pl < (size_t)n * (size_t)c; pl++) {
        const double *xp = x + pl * (size_t)h * (size_t)w;
        double *yp = y + pl * (size_t)OH * (size_t)OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int k = pool_argmax(w, xp, oh, ow);
                size_t at = (size_t)(2 * oh + k / 2) * (size_t)w + (size_t)(2 * ow + k % 2);
                yp[oh * OW + ow] = xp[at];
            }
    }
}

void ref_maxpool2_bwd(int n, int c, int h, int w, const double *x, const double *dy, double *dx) {
    int OH = h / 2, OW = w / 2;
    memset(dx, 0, (size_t)n * (size_t)c * (size_t)h * (size_t)w * sizeof *dx);
    for (size_t pl = 0; pl < (size_t)n * (size_t)c; pl++) {
        const double *xp = x + pl * (size_t)h * (size_t)w;
        const double *dyp = dy + pl * (size_t)OH * (size_t)OW;
        double *dxp = dx + pl * (size_t)h * (size_t)w;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int k = pool_argmax(w, xp, oh, ow);
                dxp[(size_t)(2 * oh + k / 2) * (size_t)w + (size_t)(2 * ow + k % 2)] +=
                    dyp[oh * OW + ow];
            }
    }
}

/* ---- global average pool ---- */

void ref_avgpool_fwd(int n, int c, int hw, const double *x, double *y) {
    for (size_t pl = 0; pl < (size_t)n * (size_t)c; pl++) {
        double s = 0.0;
        for (int i = 0; i < hw; i++)
            s += x[pl * (size_t)hw + (size_t)i];
        y[pl] = s / hw;
    }
}

void ref_avgpool_bwd(int n, int c, int hw, const double *dy, double *dx) {
    for (size_t pl = 0; pl < (size_t)n * (size_t)c; pl++)
        for (int i = 0; i < hw; i++)
            dx[pl * (size_t)hw + (size_t)i] = dy[pl] / hw;
}

/* ---- flatten ---- */

void ref_flatten_fwd(size_t len, const double *x, double *y) {
    memcpy(y, x, len * sizeof *y);
}

void ref_flatten_bwd(size_t len, const double *dy, double *dx) {
    memcpy(dx, dy, len * sizeof *dx);
}

/* ---- linear ---- */

void ref_linear_fwd(int n, int in, int out, const double *x, const double *W, const double *b,
                    double *y) {
    size_t ni = (size_t)in, no = (size_t)out;
    for (size_t i = 0; i < (size_t)n; i++)
        for (size_t o = 0; o < no; o++) {
            double s = b ? b[o] : 0.0;
            for (size_t j = 0; j < ni; j++)
                s += W[o * ni + j] * x[i * ni + j];
            y[i * no + o] = s;
        }
}

void ref_linear_bwd(int n, int in, int out, const double *x, const double *W, const double *dy,
                    double *dx, double *dW, double *db) {
    size_t ni = (size_t)in, no = (size_t)out;
    if (dx)
        for (size_t i = 0; i < (size_t)n; i++)
            for (size_t j = 0; j < ni; j++) {
                double s = 0.0;
                for (size_t o = 0; o < no; o++)
                    s += dy[i * no + o] * W[o * ni + j];
                dx[i * ni + j] = s;
            }
    if (dW)
        for (size_t o = 0; o < no; o++)
            for (size_t j = 0; j < ni; j++) {
                double s = 0.0;
                for (size_t i = 0; i < (size_t)n; i++)
                    s += dy[i * no + o] * x[i * ni + j];
                dW[o * ni + j] = s;
            }
    if (db)
        for (size_t o = 0; o < no; o++) {
            double s = 0.0;
            for (size_t i = 0; i < (size_t)n; i++)
                s += dy[i * no + o];
            db[o] = s;
        }
}
