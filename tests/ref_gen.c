/* ref_gen.c: see ref_gen.h. */
#include "tests/ref_gen.h"

#include <math.h>
#include <string.h>

static ref_gen_dual dmul(ref_gen_dual a, ref_gen_dual b) {
    return (ref_gen_dual){a.v * b.v, a.v * b.r + a.r * b.v};
}

static void dacc(ref_gen_dual *acc, ref_gen_dual a) {
    acc->v += a.v;
    acc->r += a.r;
}

int ref_gen_deconv_oh(const ref_gen_deconv *p) {
    return (p->h - 1) * p->stride - 2 * p->pad + p->k;
}

int ref_gen_deconv_ow(const ref_gen_deconv *p) {
    return (p->w - 1) * p->stride - 2 * p->pad + p->k;
}

static size_t x_at(const ref_gen_deconv *p, int n, int i, int ih, int iw) {
    return (((size_t)n * (size_t)p->c + (size_t)i) * (size_t)p->h + (size_t)ih) * (size_t)p->w +
           (size_t)iw;
}

static size_t y_at(const ref_gen_deconv *p, int n, int o, int oh, int ow) {
    return (((size_t)n * (size_t)p->o + (size_t)o) * (size_t)ref_gen_deconv_oh(p) + (size_t)oh) *
               (size_t)ref_gen_deconv_ow(p) +
           (size_t)ow;
}

/* PyTorch's (in, out, k, k) */
static size_t w_at(const ref_gen_deconv *p, int i, int o, int kh, int kw) {
    return (((size_t)i * (size_t)p->o + (size_t)o) * (size_t)p->k + (size_t)kh) * (size_t)p->k +
           (size_t)kw;
}

void ref_gen_deconv_fwd(const ref_gen_deconv *p, const ref_gen_dual *x, const ref_gen_dual *w,
                        const ref_gen_dual *b, ref_gen_dual *y) {
    int OH = ref_gen_deconv_oh(p), OW = ref_gen_deconv_ow(p);
    for (int n = 0; n < p->n; n++)
        for (int o = 0; o < p->o; o++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++)
                    y[y_at(p, n, o, oh, ow)] = b ? b[o] : (ref_gen_dual){0.0, 0.0};
    for (int n = 0; n < p->n; n++)
        for (int i = 0; i < p->c; i++)
            for (int ih = 0; ih < p->h; ih++)
                for (int iw = 0; iw < p->w; iw++)
                    for (int o = 0; o < p->o; o++)
                        for (int kh = 0; kh < p->k; kh++)
                            for (int kw = 0; kw < p->k; kw++) {
                                int oh = ih * p->stride - p->pad + kh;
                                int ow = iw * p->stride - p->pad + kw;
                                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW)
                                    continue;
                                dacc(&y[y_at(p, n, o, oh, ow)],
                                     dmul(x[x_at(p, n, i, ih, iw)], w[w_at(p, i, o, kh, kw)]));
                            }
}

void ref_gen_deconv_bwd(const ref_gen_deconv *p, const ref_gen_dual *x, const ref_gen_dual *w,
                        const ref_gen_dual *dy, ref_gen_dual *dx, ref_gen_dual *dw,
                        ref_gen_dual *db) {
    int OH = ref_gen_deconv_oh(p), OW = ref_gen_deconv_ow(p);
    if (dx)
        memset(dx, 0, (size_t)p->n * (size_t)p->c * (size_t)p->h * (size_t)p->w * sizeof *dx);
    if (dw)
        memset(dw, 0, (size_t)p->c * (size_t)p->o * (size_t)(p->k * p->k) * sizeof *dw);
    if (db) {
        memset(db, 0, (size_t)p->o * sizeof *db);
        for (int n = 0; n < p->n; n++)
            for (int o = 0; o < p->o; o++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++)
                        dacc(&db[o], dy[y_at(p, n, o, oh, ow)]);
    }
    /* The forward's loop nest, each multiply-add turned around. */
    for (int n = 0; n < p->n; n++)
        for (int i = 0; i < p->c; i++)
            for (int ih = 0; ih < p->h; ih++)
                for (int iw = 0; iw < p->w; iw++)
                    for (int o = 0; o < p->o; o++)
                        for (int kh = 0; kh < p->k; kh++)
                            for (int kw = 0; kw < p->k; kw++) {
                                int oh = ih * p->stride - p->pad + kh;
                                int ow = iw * p->stride - p->pad + kw;
                                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW)
                                    continue;
                                ref_gen_dual g = dy[y_at(p, n, o, oh, ow)];
                                if (dx)
                                    dacc(&dx[x_at(p, n, i, ih, iw)],
                                         dmul(g, w[w_at(p, i, o, kh, kw)]));
                                if (dw)
                                    dacc(&dw[w_at(p, i, o, kh, kw)],
                                         dmul(g, x[x_at(p, n, i, ih, iw)]));
                            }
}

/* s(x) and s'(x) as duals: s' = s (1 - s), s'' = s' (1 - 2 s). */
static void sigmoid_duals(ref_gen_dual x, ref_gen_dual *s, ref_gen_dual *ds) {
    double v = 1.0 / (1.0 + exp(-x.v)), d1 = v * (1.0 - v), d2 = d1 * (1.0 - 2.0 * v);
    *s = (ref_gen_dual){v, d1 * x.r};
    *ds = (ref_gen_dual){d1, d2 * x.r};
}

/* t' = 1 - t^2, t'' = -2 t (1 - t^2). */
static void tanh_duals(ref_gen_dual x, ref_gen_dual *t, ref_gen_dual *dt) {
    double v = tanh(x.v), d1 = 1.0 - v * v, d2 = -2.0 * v * d1;
    *t = (ref_gen_dual){v, d1 * x.r};
    *dt = (ref_gen_dual){d1, d2 * x.r};
}

void ref_gen_sigmoid_fwd(size_t len, const ref_gen_dual *x, ref_gen_dual *y) {
    ref_gen_dual d;
    for (size_t i = 0; i < len; i++)
        sigmoid_duals(x[i], &y[i], &d);
}

void ref_gen_sigmoid_bwd(size_t len, const ref_gen_dual *x, const ref_gen_dual *dy,
                         ref_gen_dual *dx) {
    ref_gen_dual s, d;
    for (size_t i = 0; i < len; i++) {
        sigmoid_duals(x[i], &s, &d);
        dx[i] = dmul(dy[i], d);
    }
}

void ref_gen_tanh_fwd(size_t len, const ref_gen_dual *x, ref_gen_dual *y) {
    ref_gen_dual d;
    for (size_t i = 0; i < len; i++)
        tanh_duals(x[i], &y[i], &d);
}

void ref_gen_tanh_bwd(size_t len, const ref_gen_dual *x, const ref_gen_dual *dy, ref_gen_dual *dx) {
    ref_gen_dual t, d;
    for (size_t i = 0; i < len; i++) {
        tanh_duals(x[i], &t, &d);
        dx[i] = dmul(dy[i], d);
    }
}

void ref_gen_reshape(size_t len, const ref_gen_dual *x, ref_gen_dual *y) {
    memcpy(y, x, len * sizeof *y);
}
