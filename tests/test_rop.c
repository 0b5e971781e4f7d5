/* test_rop.c: the R-operator (fw_r_forward / fw_r_backward, second-order MAML) against naive
 * double-precision dual-number references (tests/ref_r.c).
 *
 * Per layer: a small chain input -> [conv producer] -> layer -> ..., so that each layer sees the
 * layouts the framework really produces (nhwc after a one-channel conv, nChw16c / nChw8c with
 * padded channel blocks for C = 20, 12, 6, plain (B, F) vectors) and a non-zero R{x}.
 *  - R-forward: every node's R{y} (fw_exec_read_r) is compared with the reference applied to the
 *    framework's own (y, R{y}) of the node before, so each comparison isolates one layer.
 *  - R-backward: a random dy (through fw_backward) and a random R{dy} on the last node are pulled
 *    back through the reference backward of every node on duals, fed with the framework's
 *    (y, R{y}) of each node's input (same ReLU masks and max-pool argmaxes), and compared with
 *    fw_r_backward's R{dx} and with each node's slice of H v.
 * Whole network: H v of the strided conv4-like net (8 filters, batch 5 and 25) and of the real
 * 64-filter strided conv4 on digit-like input, under softmax cross-entropy, against the same net
 * run entirely in double on duals (no framework values fed in); the symmetry <u, H v> = <v, H u>;
 * and a central-difference check, in double, of the reference's own H v.
 * Determinism: repeated runs, a fresh exec and two task threads give bitwise identical H v.
 *
 * Tolerances. The R passes are sums of the same fp32 primitives as forward and backward (conv,
 * inner product) plus double-accumulated loops (batchnorm, pooling), so their rounding is that of
 * the first-order passes, about 1e-7 .. 1e-6 relative. A single layer is held to 1e-5 relative L2
 * (the brief's bound, ~10x the measured worst case); a quantity that passes through several
 * backward steps gets 1e-5 per step. The whole-network H v is held to 1e-5 as well (measured
 * 2e-6 and below), the symmetry <u, H v> = <v, H u> to 1e-4 relative (measured <= 4e-6). Measured
 * values are logged with cr_log_info (run with --verbose).
 */
#include "framework/graph.h"
#include "framework/loss.h"
#include "tests/helpers.h"
#include "tests/ref_r.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define TOL_STEP 1e-5 /* relative L2 per layer step */
#define MAXL 16

#define CONV(o, k, s, p, b) {REF_R_CONV, (o), (k), (s), (p), (b), 0.0}
#define BNORM {REF_R_BN, 0, 0, 0, 0, 0, 0.0}
#define RELU {REF_R_RELU, 0, 0, 0, 0, 0, 0.0}
#define LRELU(a) {REF_R_RELU, 0, 0, 0, 0, 0, (a)}
#define MAXPOOL {REF_R_MAXPOOL, 0, 0, 0, 0, 0, 0.0}
#define AVGPOOL {REF_R_AVGPOOL, 0, 0, 0, 0, 0, 0.0}
#define FLATTEN {REF_R_FLATTEN, 0, 0, 0, 0, 0, 0.0}
#define LINEAR(o) {REF_R_LINEAR, (o), 0, 0, 0, 0, 0.0}

typedef struct rdef {
    const char *name;
    ref_r_shape in;
    ref_r_layer l[MAXL]; /* terminated by kind 0 */
} rdef;

/* A built network: node i + 1 is layer i, node 0 the input. */
typedef struct rnet {
    const rdef *d;
    int nl, nn, batch;
    fw_graph *g;
    fw_exec *e;
    ref_r_shape sh[MAXL + 1];
    size_t len[MAXL + 1], off[MAXL + 1], cnt[MAXL + 1];
    size_t np;
    float *theta, *v, *x;
} rnet;

static const char *kind_name(ref_r_kind k) {
    static const char *const names[] = {"?",       "conv2d",  "batchnorm", "relu",
                                        "maxpool2", "avgpool", "flatten",   "linear"};
    return names[k];
}

static void rnet_open(rnet *m, const rdef *d, int batch, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->d = d;
    m->batch = batch;
    m->g = fw_graph_new();
    int x = fw_input(m->g, d->in.c, d->in.h, d->in.w);
    for (m->nl = 0; m->nl < MAXL && d->l[m->nl].kind; m->nl++) {
        const ref_r_layer *l = &d->l[m->nl];
        switch (l->kind) {
        case REF_R_CONV: x = fw_conv2d(m->g, x, l->out, l->k, l->stride, l->pad, l->bias); break;
        case REF_R_BN: x = fw_batchnorm(m->g, x); break;
        case REF_R_RELU:
            x = l->slope == 0.0 ? fw_relu(m->g, x) : fw_leaky_relu(m->g, x, (float)l->slope);
            break;
        case REF_R_MAXPOOL: x = fw_maxpool2(m->g, x); break;
        case REF_R_AVGPOOL: x = fw_global_avgpool(m->g, x); break;
        case REF_R_FLATTEN: x = fw_flatten(m->g, x); break;
        case REF_R_LINEAR: x = fw_linear(m->g, x, l->out); break;
        }
    }
    m->nn = m->nl + 1;
    m->sh[0] = d->in;
    for (int i = 0; i < m->nn; i++) {
        if (i > 0)
            m->sh[i] = ref_r_out_shape(&d->l[i - 1], m->sh[i - 1]);
        fw_shape s = fw_graph_shape(m->g, i);
        cr_assert(s.c == m->sh[i].c && s.h == m->sh[i].h && s.w == m->sh[i].w,
                  "%s: node %d shape %dx%dx%d, reference %dx%dx%d", d->name, i, s.c, s.h, s.w,
                  m->sh[i].c, m->sh[i].h, m->sh[i].w);
        m->len[i] = (size_t)batch * (size_t)s.c * (size_t)s.h * (size_t)s.w;
        m->off[i] = fw_graph_param_offset(m->g, i);
        m->cnt[i] = fw_graph_param_count(m->g, i);
        if (i > 0)
            cr_assert_eq(m->cnt[i], ref_r_n_params(&d->l[i - 1], m->sh[i - 1]),
                         "%s: node %d has %zu parameters, reference %zu", d->name, i, m->cnt[i],
                         ref_r_n_params(&d->l[i - 1], m->sh[i - 1]));
    }
    m->np = fw_graph_n_params(m->g);
    fw_status s = fw_exec_new(&m->e, m->g, batch);
    cr_assert_eq(s, FW_OK, "%s: fw_exec_new(batch %d) failed: %s", d->name, batch, fw_last_error());

    /* Parameters: the framework's initialisation, then non-trivial batchnorm scale / shift and
     * biases. Direction v: standard normal everywhere. Input: standard normal. */
    m->theta = fwt_falloc(m->np);
    m->v = fwt_falloc(m->np);
    m->x = fwt_falloc(m->len[0]);
    fw_graph_init_params(m->g, m->theta, seed);
    for (int i = 1; i < m->nn; i++) {
        const ref_r_layer *l = &d->l[i - 1];
        float *p = m->theta + m->off[i];
        if (l->kind == REF_R_BN) {
            size_t c = m->cnt[i] / 2;
            fwt_fill_uniform(p, c, seed, 1000 + (uint64_t)i, 0.5f, 1.5f);
            fwt_fill_uniform(p + c, c, seed, 2000 + (uint64_t)i, -0.5f, 0.5f);
        } else if ((l->kind == REF_R_CONV && l->bias) || l->kind == REF_R_LINEAR) {
            size_t nb = (size_t)l->out;
            fwt_fill_uniform(p + m->cnt[i] - nb, nb, seed, 3000 + (uint64_t)i, -0.5f, 0.5f);
        }
    }
    fwt_fill_normal(m->v, m->np, seed, 5, 1.0f);
    fwt_fill_normal(m->x, m->len[0], seed, 1, 1.0f);
}

static void rnet_close(rnet *m) {
    fw_exec_free(m->e);
    fw_graph_free(m->g);
    free(m->theta);
    free(m->v);
    free(m->x);
    memset(m, 0, sizeof *m);
}

static ref_r_dual *duals(const float *v, const float *r, size_t n) {
    ref_r_dual *d = calloc(n ? n : 1, sizeof *d);
    cr_assert(d, "out of memory");
    for (size_t i = 0; i < n; i++)
        d[i] = (ref_r_dual){v[i], r ? r[i] : 0.0};
    return d;
}

/* Relative L2 error of a against the R parts of ref; logs and checks it. */
static double check_r(const char *net, const char *what, int node, const char *kind,
                      const float *a, const ref_r_dual *ref, size_t n, double tol) {
    double num = 0, den = 0, mad = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i].r;
        num += d * d;
        den += ref[i].r * ref[i].r;
        if (fabs(d) > mad) {
            mad = fabs(d);
            at = i;
        }
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    cr_log_info("%s: node %d %s %s rel L2 %.3g (tol %.3g)", net, node, kind, what, err, tol);
    cr_expect(den > 0, "%s: node %d (%s) %s: the reference is all zeros, the check is vacuous",
              net, node, kind, what);
    cr_expect(err <= tol,
              "%s: node %d (%s) %s rel L2 error %.3g > tol %.3g; max|diff| %.3g at %zu of %zu "
              "(got %.8g, want %.8g)",
              net, node, kind, what, err, tol, mad, at, n, n ? (double)a[at] : 0.0,
              n ? ref[at].r : 0.0);
    return err;
}

/* The per-layer check described at the top. */
static void check_rop(const rdef *d, int batch, uint64_t seed) {
    rnet m;
    rnet_open(&m, d, batch, seed);
    int last = m.nn - 1;
    float *act[MAXL + 1], *ract[MAXL + 1];
    float *dy = fwt_falloc(m.len[last]), *rdy = fwt_falloc(m.len[last]);
    fwt_fill_normal(dy, m.len[last], seed, 7, 1.0f);
    fwt_fill_normal(rdy, m.len[last], seed, 8, 1.0f);
    float *dth = fwt_falloc(m.np), *hv = fwt_falloc(m.np), *rdx = fwt_falloc(m.len[0]);

    fw_forward(m.e, m.theta, m.x);
    fw_backward(m.e, m.theta, dy, dth, NULL);
    const float *rout = fw_r_forward(m.e, m.theta, m.v);
    for (int i = 0; i < m.nn; i++) {
        act[i] = fwt_falloc(m.len[i]);
        ract[i] = fwt_falloc(m.len[i]);
        fw_exec_read(m.e, i, act[i]);
        fw_exec_read_r(m.e, i, ract[i]);
    }
    size_t at;
    cr_expect_eq(fwt_bit_diffs(rout, ract[last], m.len[last], &at), 0,
                 "%s: fw_r_forward's plain output differs from fw_exec_read_r(last) at %zu",
                 d->name, at);
    cr_expect(fwt_norm(ract[0], m.len[0]) == 0.0, "%s: the input node's R{y} is not 0", d->name);

    /* R-forward, node by node. */
    ref_r_dual *p = duals(m.theta, m.v, m.np);
    for (int i = 1; i < m.nn; i++) {
        ref_r_dual *in = duals(act[i - 1], ract[i - 1], m.len[i - 1]);
        ref_r_dual *out = calloc(m.len[i], sizeof *out);
        ref_r_layer_fwd(&d->l[i - 1], m.sh[i - 1], batch, p + m.off[i], in, out);
        check_r(d->name, "R-forward R{y}", i, kind_name(d->l[i - 1].kind), ract[i], out, m.len[i],
                TOL_STEP);
        free(in);
        free(out);
    }

    /* R-backward: the whole chain on duals, fed with the framework's (y, R y). */
    fw_r_backward(m.e, m.theta, m.v, rdy, hv, rdx);
    ref_r_dual *g = duals(dy, rdy, m.len[last]);
    ref_r_dual *dp = calloc(m.np ? m.np : 1, sizeof *dp);
    for (int i = last; i >= 1; i--) {
        ref_r_dual *in = duals(act[i - 1], ract[i - 1], m.len[i - 1]);
        ref_r_dual *gin = calloc(m.len[i - 1], sizeof *gin);
        ref_r_layer_bwd(&d->l[i - 1], m.sh[i - 1], batch, p + m.off[i], in, g, gin, dp + m.off[i]);
        free(in);
        free(g);
        g = gin;
    }
    check_r(d->name, "R-backward R{dx}", 0, "input", rdx, g, m.len[0], TOL_STEP * last);
    for (int i = 1; i < m.nn; i++)
        if (m.cnt[i])
            check_r(d->name, "R-backward H v slice", i, kind_name(d->l[i - 1].kind),
                    hv + m.off[i], dp + m.off[i], m.cnt[i], TOL_STEP * (last - i + 1));

    free(g);
    free(dp);
    free(p);
    for (int i = 0; i < m.nn; i++) {
        free(act[i]);
        free(ract[i]);
    }
    free(dy);
    free(rdy);
    free(dth);
    free(hv);
    free(rdx);
    rnet_close(&m);
}

static void check_all(const rdef *defs, size_t n, int batch) {
    for (size_t i = 0; i < n; i++)
        check_rop(&defs[i], batch, 200 + i);
}

/* ---- per layer ---- */

Test(rop, conv2d_blocked_strided, .timeout = 30) {
    static const rdef defs[] = {
        {"input 3x9x9 | conv 20 k3 s1 p1 bias | conv 12 k3 s2 p1 bias | conv 10 k1 s1 p0",
         {3, 9, 9},
         {CONV(20, 3, 1, 1, 1), CONV(12, 3, 2, 1, 1), CONV(10, 1, 1, 0, 0)}},
        {"input 3x8x8 | conv 16 k3 s2 p1 | conv 16 k3 s1 p0 bias", {3, 8, 8},
         {CONV(16, 3, 2, 1, 0), CONV(16, 3, 1, 0, 1)}},
    };
    check_all(defs, FW_COUNTOF(defs), 4);
}

Test(rop, conv2d_one_channel_nhwc_and_src_reorder, .timeout = 30) {
    static const rdef defs[] = {
        /* nhwc first layer (aliased source), then an nhwc -> blocked source reorder */
        {"input 1x12x12 | conv 8 k3 s2 p1 | conv 12 k3 s1 p1 bias", {1, 12, 12},
         {CONV(8, 3, 2, 1, 0), CONV(12, 3, 1, 1, 1)}},
        {"input 1x9x9 | conv 6 k3 s1 p1 bias | conv 8 k3 s2 p0", {1, 9, 9},
         {CONV(6, 3, 1, 1, 1), CONV(8, 3, 2, 0, 0)}},
    };
    check_all(defs, FW_COUNTOF(defs), 3);
}

Test(rop, batchnorm_batch5, .timeout = 30) {
    static const rdef defs[] = {
        {"input 3x8x8 | conv 20 k3 s1 p1 | bn (blocked, padded)", {3, 8, 8},
         {CONV(20, 3, 1, 1, 0), BNORM}},
        {"input 1x10x10 | conv 6 k3 s1 p1 | bn (nhwc)", {1, 10, 10}, {CONV(6, 3, 1, 1, 0), BNORM}},
        {"input 1x14x14 | conv 8 k3 s2 p1 | bn | conv 12 k3 s2 p1 | bn | relu", {1, 14, 14},
         {CONV(8, 3, 2, 1, 0), BNORM, CONV(12, 3, 2, 1, 0), BNORM, RELU}},
        {"input 3x4x4 | conv 16 k3 s2 p1 | bn (2x2 spatial)", {3, 4, 4},
         {CONV(16, 3, 2, 1, 0), BNORM}},
    };
    check_all(defs, FW_COUNTOF(defs), 5);
}

Test(rop, relu_and_leaky_relu, .timeout = 30) {
    static const rdef defs[] = {
        {"input 3x7x7 | conv 20 k3 s1 p1 bias | relu", {3, 7, 7}, {CONV(20, 3, 1, 1, 1), RELU}},
        {"input 3x7x7 | conv 20 k3 s1 p1 bias | leaky 0.2", {3, 7, 7},
         {CONV(20, 3, 1, 1, 1), LRELU(0.2)}},
        {"input 1x8x8 | conv 6 k3 s1 p1 bias | leaky 0.2 | conv 8 k3 s1 p1", {1, 8, 8},
         {CONV(6, 3, 1, 1, 1), LRELU(0.2), CONV(8, 3, 1, 1, 0)}},
    };
    check_all(defs, FW_COUNTOF(defs), 4);
}

Test(rop, maxpool_odd_sizes, .timeout = 30) {
    static const rdef defs[] = {
        {"input 3x9x9 | conv 20 k3 s1 p1 bias | maxpool (9 -> 4) | conv 8 k3 s1 p1",
         {3, 9, 9}, {CONV(20, 3, 1, 1, 1), MAXPOOL, CONV(8, 3, 1, 1, 0)}},
        {"input 1x7x7 | conv 8 k3 s1 p1 bias | maxpool nhwc (7 -> 3)", {1, 7, 7},
         {CONV(8, 3, 1, 1, 1), MAXPOOL}},
        {"input 1x11x10 | conv 6 k3 s1 p1 | bn | relu | maxpool (ties after relu)", {1, 11, 10},
         {CONV(6, 3, 1, 1, 0), BNORM, RELU, MAXPOOL}},
    };
    check_all(defs, FW_COUNTOF(defs), 3);
}

Test(rop, avgpool_flatten_linear, .timeout = 30) {
    static const rdef defs[] = {
        {"input 3x6x6 | conv 20 k3 s2 p1 bias | avgpool | linear 5 | linear 3", {3, 6, 6},
         {CONV(20, 3, 2, 1, 1), AVGPOOL, LINEAR(5), LINEAR(3)}},
        {"input 3x5x5 | conv 12 k3 s1 p1 | flatten (blocked) | linear 6", {3, 5, 5},
         {CONV(12, 3, 1, 1, 0), FLATTEN, LINEAR(6)}},
        {"input 1x6x6 | conv 6 k3 s2 p1 bias | flatten (nhwc) | linear 4 | relu | linear 5",
         {1, 6, 6}, {CONV(6, 3, 2, 1, 1), FLATTEN, LINEAR(4), RELU, LINEAR(5)}},
        {"input 1x8x8 | conv 7 k3 s1 p1 | avgpool (nhwc) | linear 5", {1, 8, 8},
         {CONV(7, 3, 1, 1, 0), AVGPOOL, LINEAR(5)}},
    };
    check_all(defs, FW_COUNTOF(defs), 5);
}

Test(rop, vector_input_and_batchnorm_on_vectors, .timeout = 30) {
    static const rdef defs[] = {
        /* the first layer is a linear on the data: R x = 0, R{dx} = bwd_data(R g_y, W) + bwd_data(g_y, V) */
        {"input 12x1x1 | linear 6 | bn (B, F) | relu | linear 3", {12, 1, 1},
         {LINEAR(6), BNORM, RELU, LINEAR(3)}},
        {"input 20x3x3 | conv 6 k3 s1 p0 bias (1x1 last node)", {20, 3, 3}, {CONV(6, 3, 1, 0, 1)}},
        {"input 3x5x5 | conv 20 k3 s1 p1 | avgpool | linear 7 | bn (B, F)", {3, 5, 5},
         {CONV(20, 3, 1, 1, 0), AVGPOOL, LINEAR(7), BNORM}},
    };
    check_all(defs, FW_COUNTOF(defs), 5);
}

Test(rop, conv4_pool_chain, .timeout = 60) {
    static const rdef defs[] = {
        {"conv4 pool, 8 filters, 1x28x28", {1, 28, 28},
         {CONV(8, 3, 1, 1, 0), BNORM, RELU, MAXPOOL, CONV(8, 3, 1, 1, 0), BNORM, RELU, MAXPOOL,
          CONV(8, 3, 1, 1, 0), BNORM, RELU, MAXPOOL, FLATTEN, LINEAR(5)}},
    };
    check_all(defs, FW_COUNTOF(defs), 5);
}

/* ---- whole network: H v under softmax cross-entropy ---- */

static const rdef conv4s = {
    "strided conv4-like: conv 1->8 s2 | bn | relu | conv 8->8 s2 bias | bn | relu | avgpool | linear 5",
    {1, 28, 28},
    {CONV(8, 3, 2, 1, 0), BNORM, RELU, CONV(8, 3, 2, 1, 1), BNORM, RELU, AVGPOOL, LINEAR(5)}};

/* Gradient, R{logits} and H v of the softmax cross-entropy at (theta, v) through the framework.
 * grad and hv are overwritten; r_logits may be NULL. */
static void fw_hvp(rnet *m, const int *labels, const float *v, float *grad, float *hv,
                   float *r_logits) {
    int B = m->batch, N = m->sh[m->nn - 1].c;
    float *dl = fwt_falloc((size_t)B * N), *rdl = fwt_falloc((size_t)B * N);
    const float *logits = fw_forward(m->e, m->theta, m->x);
    fw_softmax_xent(logits, labels, B, N, dl, NULL);
    memset(grad, 0, m->np * sizeof *grad);
    fw_backward(m->e, m->theta, dl, grad, NULL);
    const float *rl = fw_r_forward(m->e, m->theta, v);
    if (r_logits)
        memcpy(r_logits, rl, (size_t)B * N * sizeof *rl);
    fw_softmax_xent_r(logits, rl, B, N, rdl);
    memset(hv, 0, m->np * sizeof *hv);
    fw_r_backward(m->e, m->theta, v, rdl, hv, NULL);
    free(dl);
    free(rdl);
}

static double rel_l2_dd(const double *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* The real MAML backbone: 4 strided blocks of 64 filters (blocked nChw16c kernels). */
static const rdef conv4s64 = {
    "strided conv4, 64 filters: 4 x [conv 3x3 s2 | bn | relu] | avgpool | linear 5",
    {1, 28, 28},
    {CONV(64, 3, 2, 1, 0), BNORM, RELU, CONV(64, 3, 2, 1, 0), BNORM, RELU, CONV(64, 3, 2, 1, 0),
     BNORM, RELU, CONV(64, 3, 2, 1, 0), BNORM, RELU, AVGPOOL, LINEAR(5)}};

/* An MNIST-like batch: a 16x12 "digit" of |normal| values on an exactly-zero background (the first
 * conv then gives exact zeros, and batchnorm many equal values, as on real digits). */
static void mnist_like(rnet *m) {
    ref_r_shape s = m->sh[0];
    for (size_t i = 0; i < m->len[0]; i++) {
        int r = (int)((i / (size_t)s.w) % (size_t)s.h), c = (int)(i % (size_t)s.w);
        m->x[i] = (r < 6 || r > 21 || c < 8 || c > 19) ? 0.0f : fabsf(m->x[i]);
    }
}

static void check_whole_net(const rdef *net, int batch, uint64_t seed, bool digits) {
    rnet m;
    rnet_open(&m, net, batch, seed);
    if (digits)
        mnist_like(&m);
    int N = m.sh[m.nn - 1].c;
    int *labels = calloc((size_t)batch, sizeof *labels);
    for (int b = 0; b < batch; b++)
        labels[b] = b % N;
    float *grad = fwt_falloc(m.np), *hv = fwt_falloc(m.np), *rl = fwt_falloc((size_t)batch * N);
    fw_hvp(&m, labels, m.v, grad, hv, rl);

    double *th = fwt_to_double(m.theta, m.np), *vd = fwt_to_double(m.v, m.np);
    double *x = fwt_to_double(m.x, m.len[0]);
    double *grad_ref = fwt_dalloc(m.np), *hv_ref = fwt_dalloc(m.np);
    double *rl_ref = fwt_dalloc((size_t)batch * N);
    ref_r_net(net->l, m.nl, net->in, batch, x, labels, th, vd, grad_ref, hv_ref, rl_ref);

    double e_g = fwt_rel_l2(grad, grad_ref, m.np);
    double e_rl = fwt_rel_l2(rl, rl_ref, (size_t)batch * N);
    double e_hv = fwt_rel_l2(hv, hv_ref, m.np);
    size_t at;
    double mad = fwt_max_abs_diff(hv, hv_ref, m.np, &at);
    cr_log_info("%s, batch %d: gradient rel L2 %.3g, R{logits} %.3g, H v %.3g (|Hv| %.3g)",
                net->name, batch, e_g, e_rl, e_hv, fwt_dnorm(hv_ref, m.np));
    cr_expect(e_g <= TOL_STEP, "%s, batch %d: gradient rel L2 error %.3g > %.3g", net->name, batch,
              e_g, TOL_STEP);
    cr_expect(e_rl <= TOL_STEP, "%s, batch %d: R{logits} rel L2 error %.3g > %.3g", net->name, batch,
              e_rl, TOL_STEP);
    cr_expect(e_hv <= TOL_STEP,
              "%s, batch %d: H v rel L2 error %.3g > %.3g; max|diff| %.3g at param %zu "
              "(got %.8g, want %.8g)",
              net->name, batch, e_hv, TOL_STEP, mad, at, (double)hv[at], hv_ref[at]);
    for (int i = 1; i < m.nn; i++) {
        if (!m.cnt[i])
            continue;
        double e = fwt_rel_l2(hv + m.off[i], hv_ref + m.off[i], m.cnt[i]);
        double nrm = fwt_dnorm(hv_ref + m.off[i], m.cnt[i]);
        cr_log_info("%s, batch %d: node %d %s H v slice rel L2 %.3g (norm %.3g)", net->name, batch, i,
                    kind_name(net->l[i - 1].kind), e, nrm);
    }

    /* The double reference itself: H v against a central difference of its own gradients in
     * double. The step keeps every ReLU on its side for these data; the error is O(eps^2). */
    double eps = 1e-5 / fwt_dnorm(vd, m.np) * fwt_dnorm(th, m.np) * 1e-2;
    double *tp = fwt_dalloc(m.np), *gp = fwt_dalloc(m.np), *gm = fwt_dalloc(m.np);
    double *fd = fwt_dalloc(m.np);
    for (size_t i = 0; i < m.np; i++)
        tp[i] = th[i] + eps * vd[i];
    ref_r_net(net->l, m.nl, net->in, batch, x, labels, tp, NULL, gp, NULL, NULL);
    for (size_t i = 0; i < m.np; i++)
        tp[i] = th[i] - eps * vd[i];
    ref_r_net(net->l, m.nl, net->in, batch, x, labels, tp, NULL, gm, NULL, NULL);
    for (size_t i = 0; i < m.np; i++)
        fd[i] = (gp[i] - gm[i]) / (2 * eps);
    double e_fd = rel_l2_dd(hv_ref, fd, m.np);
    cr_log_info("%s, batch %d: double reference H v vs central difference (eps %.3g): %.3g",
                net->name, batch, eps, e_fd);
    cr_expect(e_fd <= 1e-6,
              "%s, batch %d: the double reference's H v disagrees with a central difference "
              "of its gradients: rel L2 %.3g (eps %.3g)",
              net->name, batch, e_fd, eps);

    free(tp);
    free(gp);
    free(gm);
    free(fd);
    free(th);
    free(vd);
    free(x);
    free(grad_ref);
    free(hv_ref);
    free(rl_ref);
    free(grad);
    free(hv);
    free(rl);
    free(labels);
    rnet_close(&m);
}

Test(rop, whole_net_hvp_vs_double_reference_1shot, .timeout = 60) {
    check_whole_net(&conv4s, 5, 31, false);
}

Test(rop, whole_net_hvp_vs_double_reference_5shot, .timeout = 60) {
    check_whole_net(&conv4s, 25, 32, false);
}

Test(rop, whole_net_hvp_conv4_64_filters_digits, .timeout = 120) {
    check_whole_net(&conv4s64, 5, 33, true);
}

/* <u, H v> = <v, H u>: H is symmetric. In fp32 both sides carry the rounding of H v (~1e-6 of
 * ||u|| ||H v||), so the difference is measured against that scale, and against |<u, H v>|. */
Test(rop, whole_net_hessian_symmetry, .timeout = 60) {
    for (int trial = 0; trial < 3; trial++) {
        rnet m;
        rnet_open(&m, &conv4s, 5, 40 + (uint64_t)trial);
        int N = m.sh[m.nn - 1].c;
        int labels[5];
        for (int b = 0; b < 5; b++)
            labels[b] = b % N;
        float *u = fwt_falloc(m.np), *grad = fwt_falloc(m.np);
        float *hv = fwt_falloc(m.np), *hu = fwt_falloc(m.np);
        fwt_fill_normal(u, m.np, 40 + (uint64_t)trial, 9, 1.0f);
        fw_hvp(&m, labels, m.v, grad, hv, NULL);
        fw_hvp(&m, labels, u, grad, hu, NULL);
        double uhv = fwt_dot(u, hv, m.np), vhu = fwt_dot(m.v, hu, m.np);
        double scale = fmax(fabs(uhv), fabs(vhu));
        double rel = fabs(uhv - vhu) / scale;
        double cs = fwt_norm(u, m.np) * fwt_norm(hv, m.np);
        cr_log_info("symmetry trial %d: <u,Hv> %.9g, <v,Hu> %.9g, rel diff %.3g, "
                    "|diff| / (|u| |Hv|) %.3g",
                    trial, uhv, vhu, rel, fabs(uhv - vhu) / cs);
        cr_expect(rel <= 1e-4, "trial %d: <u, H v> = %.9g but <v, H u> = %.9g: rel diff %.3g > 1e-4",
                  trial, uhv, vhu, rel);
        /* The double reference is symmetric to rounding. */
        double *th = fwt_to_double(m.theta, m.np), *x = fwt_to_double(m.x, m.len[0]);
        double *vd = fwt_to_double(m.v, m.np), *ud = fwt_to_double(u, m.np);
        double *hv_ref = fwt_dalloc(m.np), *hu_ref = fwt_dalloc(m.np);
        ref_r_net(conv4s.l, m.nl, conv4s.in, 5, x, labels, th, vd, NULL, hv_ref, NULL);
        ref_r_net(conv4s.l, m.nl, conv4s.in, 5, x, labels, th, ud, NULL, hu_ref, NULL);
        double a = 0, b = 0;
        for (size_t i = 0; i < m.np; i++) {
            a += ud[i] * hv_ref[i];
            b += vd[i] * hu_ref[i];
        }
        cr_log_info("symmetry trial %d, double reference: rel diff %.3g; fp32 <u,Hv> vs double "
                    "%.3g",
                    trial, fabs(a - b) / fmax(fabs(a), fabs(b)), fabs(uhv - a) / fabs(a));
        cr_expect(fabs(a - b) <= 1e-10 * fmax(fabs(a), fabs(b)),
                  "trial %d: the double reference is not symmetric: %.15g vs %.15g", trial, a, b);
        free(th);
        free(x);
        free(vd);
        free(ud);
        free(hv_ref);
        free(hu_ref);
        free(u);
        free(grad);
        free(hv);
        free(hu);
        rnet_close(&m);
    }
}

/* ---- determinism and accumulation ---- */

Test(rop, hv_bitwise_deterministic, .timeout = 60) {
    rnet m;
    rnet_open(&m, &conv4s, 5, 50);
    int labels[5] = {0, 1, 2, 3, 4};
    float *grad = fwt_falloc(m.np), *hv1 = fwt_falloc(m.np), *hv2 = fwt_falloc(m.np);
    float *hv3 = fwt_falloc(m.np);
    fw_hvp(&m, labels, m.v, grad, hv1, NULL);
    fw_hvp(&m, labels, m.v, grad, hv2, NULL);
    size_t at, nd = fwt_bit_diffs(hv1, hv2, m.np, &at);
    cr_expect_eq(nd, 0, "two runs on the same exec: %zu of %zu H v entries differ, first at %zu "
                        "(%.9g vs %.9g)",
                 nd, m.np, at, at < m.np ? hv1[at] : 0.0, at < m.np ? hv2[at] : 0.0);

    /* A fresh exec on the same thread. */
    fw_exec *e2;
    cr_assert_eq(fw_exec_new(&e2, m.g, 5), FW_OK, "%s", fw_last_error());
    fw_exec *e1 = m.e;
    m.e = e2;
    fw_hvp(&m, labels, m.v, grad, hv3, NULL);
    m.e = e1;
    fw_exec_free(e2);
    nd = fwt_bit_diffs(hv1, hv3, m.np, &at);
    cr_expect_eq(nd, 0, "a fresh exec: %zu of %zu H v entries differ, first at %zu", nd, m.np, at);

    /* fw_r_backward adds into hv. */
    float *h0 = fwt_falloc(m.np), *acc = fwt_falloc(m.np), *r_dl = fwt_falloc(25);
    fwt_fill_normal(h0, m.np, 50, 10, 1.0f);
    memcpy(acc, h0, m.np * sizeof *acc);
    const float *logits = fw_forward(m.e, m.theta, m.x);
    float dl[25];
    fw_softmax_xent(logits, labels, 5, 5, dl, NULL);
    fw_backward(m.e, m.theta, dl, NULL, NULL);
    fw_softmax_xent_r(logits, fw_r_forward(m.e, m.theta, m.v), 5, 5, r_dl);
    fw_r_backward(m.e, m.theta, m.v, r_dl, acc, NULL);
    double num = 0, den = 0;
    for (size_t i = 0; i < m.np; i++) {
        double d = ((double)acc[i] - h0[i]) - hv1[i];
        num += d * d;
        den += (double)hv1[i] * hv1[i];
    }
    cr_log_info("accumulation: rel L2 of (hv after - hv before) vs H v: %.3g", sqrt(num / den));
    cr_expect(sqrt(num / den) <= 1e-6,
              "fw_r_backward does not add into hv: rel L2 of the increment vs H v %.3g",
              sqrt(num / den));

    /* Two task threads, each with its own exec (omp_set_num_threads(1) first, as the meta
     * runner does): bitwise equal to each other. */
    float *hvt[2] = {fwt_falloc(m.np), fwt_falloc(m.np)};
    int ok[2] = {0, 0};
#pragma omp parallel num_threads(2)
    {
        int t = omp_get_thread_num();
        omp_set_num_threads(1);
        rnet mt = m;
        if (fw_exec_new(&mt.e, m.g, 5) == FW_OK) {
            float *gt = fwt_falloc(m.np);
            fw_hvp(&mt, labels, m.v, gt, hvt[t], NULL);
            fw_exec_free(mt.e);
            free(gt);
            ok[t] = 1;
        }
    }
    cr_assert(ok[0] && ok[1], "fw_exec_new failed in a task thread");
    nd = fwt_bit_diffs(hvt[0], hvt[1], m.np, &at);
    cr_expect_eq(nd, 0, "two task threads: %zu of %zu H v entries differ, first at %zu", nd,
                 m.np, at);
    double e = fwt_rel_l2_ff(hvt[0], hv1, m.np);
    cr_log_info("task thread vs main thread (different oneDNN thread counts): rel L2 %.3g", e);
    cr_expect(e <= TOL_STEP, "task-thread H v differs from the main thread's by %.3g", e);

    free(hvt[0]);
    free(hvt[1]);
    free(h0);
    free(acc);
    free(r_dl);
    free(grad);
    free(hv1);
    free(hv2);
    free(hv3);
    rnet_close(&m);
}
