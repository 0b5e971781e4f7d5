/* test_gen_layers.c: the generator layers (deconv2d, sigmoid, tanh, reshape) against naive
 * double-precision references on dual numbers (tests/ref_gen.c), adjoint identities, the
 * deconv weight layout, and a whole generator-like chain by finite differences.
 *
 * How a net of these layers is checked (suite genlayers): with theta, a direction v, an input x,
 * a random dy and a random R{dy}, the framework runs fw_forward, fw_backward, fw_r_forward and
 * fw_r_backward. Forward: every node's output y and R{y} (fw_exec_read, fw_exec_read_r) is
 * compared with the reference applied to the framework's own (y, R y) of the node before, so each
 * comparison isolates one layer. Backward: the dual seed (dy, R dy) is pulled back through the
 * reference backward of every node, fed with the framework's forward duals, and compared with
 * fw_backward's dx and dtheta (the value parts) and fw_r_backward's R{dx} and H v (the r parts).
 *
 * Tolerances (style-notes §3.10, as tests/test_layers.c): relative L2 error <= FLT_EPSILON *
 * ln(max(2, K)) * SLACK, K the reduction length of what is compared: deconv forward C k^2,
 * backward-data O k^2, backward-weights B H W (input pixels); an R quantity of deconv sums two such
 * reductions (K doubled). Sigmoid and tanh reduce nothing but chain a few roundings (expf or
 * tanhf, 1 - y, the products), and 1 - y for y near 1 cancels: K_ACT stands for them. Reshape is
 * a copy: exact. Backward errors add along the chain. Measured errors are logged with
 * cr_log_info: run with --verbose to see them.
 */
#include "framework/graph.h"
#include "tests/helpers.h"
#include "tests/ref_gen.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLACK 4.0
#define K_ACT 16.0
#define MAX_LAYERS 8

/* ---- net descriptions shared by the framework graph and the reference ---- */

enum gkind { G_END = 0, G_DECONV, G_SIGMOID, G_TANH, G_RESHAPE };

typedef struct glayer {
    enum gkind kind;
    int out, k, stride, pad; /* deconv */
    bool bias;
    int c, h, w;             /* reshape target */
} glayer;

#define DECONV(o, k, s, p, b) {G_DECONV, (o), (k), (s), (p), (b), 0, 0, 0}
#define SIGMOID {G_SIGMOID, 0, 0, 0, 0, false, 0, 0, 0}
#define TANH {G_TANH, 0, 0, 0, 0, false, 0, 0, 0}
#define RESHAPE(c, h, w) {G_RESHAPE, 0, 0, 0, 0, false, (c), (h), (w)}

typedef struct gdef {
    const char *name;
    int c, h, w;             /* input, per example */
    glayer l[MAX_LAYERS];    /* terminated by G_END (zero) */
} gdef;

/* A built net: node i + 1 is layer i, node 0 the input. */
typedef struct gnet {
    const gdef *d;
    int nn, batch;
    fw_graph *g;
    fw_exec *e;
    fw_shape sh[MAX_LAYERS + 1];
    size_t len[MAX_LAYERS + 1]; /* batch * c * h * w per node */
    size_t np;
    float *theta, *v, *x;
} gnet;

static const char *kind_name(enum gkind k) {
    static const char *const names[] = {"end", "deconv2d", "sigmoid", "tanh", "reshape"};
    return names[k];
}

static void gnet_open(gnet *m, const gdef *d, int batch, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->d = d;
    m->batch = batch;
    m->g = fw_graph_new();
    int x = fw_input(m->g, d->c, d->h, d->w);
    for (int i = 0; i < MAX_LAYERS && d->l[i].kind != G_END; i++) {
        const glayer *l = &d->l[i];
        switch (l->kind) {
        case G_DECONV: x = fw_deconv2d(m->g, x, l->out, l->k, l->stride, l->pad, l->bias); break;
        case G_SIGMOID: x = fw_sigmoid(m->g, x); break;
        case G_TANH: x = fw_tanh(m->g, x); break;
        case G_RESHAPE: x = fw_reshape(m->g, x, l->c, l->h, l->w); break;
        case G_END: break;
        }
    }
    m->nn = fw_graph_n_nodes(m->g);
    for (int i = 0; i < m->nn; i++) {
        m->sh[i] = fw_graph_shape(m->g, i);
        m->len[i] = (size_t)batch * (size_t)m->sh[i].c * (size_t)m->sh[i].h * (size_t)m->sh[i].w;
    }
    m->np = fw_graph_n_params(m->g);
    fw_status s = fw_exec_new(&m->e, m->g, batch);
    cr_assert_eq(s, FW_OK, "%s: fw_exec_new(batch %d) failed: %s", d->name, batch,
                 fw_last_error());
    /* The framework's initialisation, then non-zero biases so that none sits at a special
     * value; a standard normal direction and input. */
    m->theta = fwt_falloc(m->np);
    m->v = fwt_falloc(m->np);
    m->x = fwt_falloc(m->len[0]);
    fw_graph_init_params(m->g, m->theta, seed);
    for (int i = 1; i < m->nn; i++) {
        const glayer *l = &d->l[i - 1];
        if (l->kind == G_DECONV && l->bias) {
            size_t off = fw_graph_param_offset(m->g, i), cnt = fw_graph_param_count(m->g, i);
            fwt_fill_uniform(m->theta + off + cnt - (size_t)l->out, (size_t)l->out, seed,
                             3000 + (uint64_t)i, -0.5f, 0.5f);
        }
    }
    fwt_fill_normal(m->v, m->np, seed, 2, 1.0f);
    fwt_fill_normal(m->x, m->len[0], seed, 1, 1.0f);
}

static void gnet_close(gnet *m) {
    fw_exec_free(m->e);
    fw_graph_free(m->g);
    free(m->theta);
    free(m->v);
    free(m->x);
    memset(m, 0, sizeof *m);
}

/* ---- duals ---- */

static ref_gen_dual *duals(const float *v, const float *r, size_t n) {
    ref_gen_dual *d = calloc(n ? n : 1, sizeof *d);
    cr_assert(d, "out of memory");
    for (size_t i = 0; i < n; i++)
        d[i] = (ref_gen_dual){v ? (double)v[i] : 0.0, r ? (double)r[i] : 0.0};
    return d;
}

/* The value (r_part false) or r part of n duals, as doubles. */
static double *part(const ref_gen_dual *d, size_t n, bool r_part) {
    double *p = fwt_dalloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = r_part ? d[i].r : d[i].v;
    return p;
}

/* ---- the reference, node by node ---- */

static ref_gen_deconv deconv_geom(const gnet *m, int i) {
    const glayer *l = &m->d->l[i - 1];
    fw_shape in = m->sh[i - 1];
    return (ref_gen_deconv){m->batch, in.c, in.h, in.w, l->out, l->k, l->stride, l->pad};
}

static size_t deconv_nw(const gnet *m, int i) {
    const glayer *l = &m->d->l[i - 1];
    return (size_t)m->sh[i - 1].c * (size_t)l->out * (size_t)(l->k * l->k);
}

/* out = node i applied to in (node i - 1's output); p = all parameters as (theta, v) duals. */
static void ref_node_fwd(const gnet *m, int i, const ref_gen_dual *p, const ref_gen_dual *in,
                         ref_gen_dual *out) {
    const glayer *l = &m->d->l[i - 1];
    const ref_gen_dual *w = p + fw_graph_param_offset(m->g, i);
    switch (l->kind) {
    case G_DECONV: {
        ref_gen_deconv q = deconv_geom(m, i);
        ref_gen_deconv_fwd(&q, in, w, l->bias ? w + deconv_nw(m, i) : NULL, out);
        break;
    }
    case G_SIGMOID: ref_gen_sigmoid_fwd(m->len[i], in, out); break;
    case G_TANH: ref_gen_tanh_fwd(m->len[i], in, out); break;
    case G_RESHAPE: ref_gen_reshape(m->len[i], in, out); break;
    case G_END: break;
    }
}

/* din = gradient w.r.t. node i's input; writes node i's slice of dp. */
static void ref_node_bwd(const gnet *m, int i, const ref_gen_dual *p, const ref_gen_dual *in,
                         const ref_gen_dual *dout, ref_gen_dual *din, ref_gen_dual *dp) {
    const glayer *l = &m->d->l[i - 1];
    size_t off = fw_graph_param_offset(m->g, i);
    switch (l->kind) {
    case G_DECONV: {
        ref_gen_deconv q = deconv_geom(m, i);
        size_t nw = deconv_nw(m, i);
        ref_gen_deconv_bwd(&q, in, p + off, dout, din, dp + off, l->bias ? dp + off + nw : NULL);
        break;
    }
    case G_SIGMOID: ref_gen_sigmoid_bwd(m->len[i], in, dout, din); break;
    case G_TANH: ref_gen_tanh_bwd(m->len[i], in, dout, din); break;
    case G_RESHAPE: ref_gen_reshape(m->len[i - 1], dout, din); break;
    case G_END: break;
    }
}

/* ---- tolerances (see the file comment); r doubles the reduction of deconv's R terms ---- */

static double tol_k(const gnet *m, int i, double K, bool r) {
    switch (m->d->l[i - 1].kind) {
    case G_DECONV: return fwt_tol(r ? 2.0 * K : K, SLACK);
    case G_SIGMOID:
    case G_TANH: return fwt_tol(K_ACT, SLACK);
    default: return 0.0; /* reshape: a copy */
    }
}

static double tol_fwd(const gnet *m, int i, bool r) {
    const glayer *l = &m->d->l[i - 1];
    return tol_k(m, i, (double)m->sh[i - 1].c * l->k * l->k, r);
}

static double tol_bwd_data(const gnet *m, int i, bool r) {
    const glayer *l = &m->d->l[i - 1];
    return tol_k(m, i, (double)l->out * l->k * l->k, r);
}

static double tol_bwd_params(const gnet *m, int i, bool r) {
    fw_shape s = m->sh[i - 1];
    return tol_k(m, i, (double)m->batch * s.h * s.w, r);
}

/* Bound for a gradient that passes through the backward steps of nodes last .. from + 1. */
static double tol_chain(const gnet *m, int from, bool r) {
    double t = 0.0;
    for (int j = m->nn - 1; j > from; j--)
        t += tol_bwd_data(m, j, r);
    return t;
}

/* ---- the checks ---- */

/* Compares got (float) with the value or r part of ref; logs and reports. */
static void expect_close(const gnet *m, const char *what, int node, const float *got,
                         const ref_gen_dual *ref, size_t n, bool r_part, double tol) {
    double *want = part(ref, n, r_part);
    size_t at;
    double err = fwt_rel_l2(got, want, n), mad = fwt_max_abs_diff(got, want, n, &at);
    const char *kind = node > 0 ? kind_name(m->d->l[node - 1].kind) : "input";
    cr_log_info("%s (batch %d): node %d %s %s rel L2 %.3g (tol %.3g)", m->d->name, m->batch, node,
                kind, what, err, tol);
    cr_expect(err <= tol && !isnan(err),
              "%s (batch %d): node %d (%s) %s: rel L2 error %.3g > tol %.3g; max|diff| %.3g at "
              "%zu of %zu (got %.8g, want %.8g)",
              m->d->name, m->batch, node, kind, what, err, tol, mad, at, n, (double)got[at],
              want[at]);
    free(want);
}

/* Runs the four passes and checks them all against the reference. fill (may be NULL) may change
 * the random parameters or input first. */
static void check_gnet(const gdef *d, int batch, uint64_t seed, void (*fill)(gnet *)) {
    gnet m;
    gnet_open(&m, d, batch, seed);
    if (fill)
        fill(&m);
    int last = m.nn - 1;
    cr_expect_eq(fw_exec_count_impls(m.e, "ref"), 0, "%s: a reference kernel was chosen",
                 d->name);

    float *dy = fwt_falloc(m.len[last]), *rdy = fwt_falloc(m.len[last]);
    fwt_fill_normal(dy, m.len[last], seed, 7, 1.0f);
    fwt_fill_normal(rdy, m.len[last], seed, 8, 1.0f);
    float *dth = fwt_falloc(m.np), *hv = fwt_falloc(m.np);
    float *dx = fwt_falloc(m.len[0]), *rdx = fwt_falloc(m.len[0]);
    float *act[MAX_LAYERS + 1], *ract[MAX_LAYERS + 1];

    const float *y = fw_forward(m.e, m.theta, m.x);
    for (int i = 0; i < m.nn; i++) {
        act[i] = fwt_falloc(m.len[i]);
        ract[i] = fwt_falloc(m.len[i]);
        fw_exec_read(m.e, i, act[i]);
    }
    size_t at;
    cr_expect_eq(fwt_bit_diffs(y, act[last], m.len[last], &at), 0,
                 "%s: fw_forward's plain output differs from fw_exec_read(last) at %zu", d->name,
                 at);
    fw_backward(m.e, m.theta, dy, dth, dx);
    const float *ry = fw_r_forward(m.e, m.theta, m.v);
    for (int i = 0; i < m.nn; i++)
        fw_exec_read_r(m.e, i, ract[i]);
    cr_expect_eq(fwt_bit_diffs(ry, ract[last], m.len[last], &at), 0,
                 "%s: fw_r_forward's plain output differs from fw_exec_read_r(last) at %zu",
                 d->name, at);
    fw_r_backward(m.e, m.theta, m.v, rdy, hv, rdx);

    ref_gen_dual *p = duals(m.theta, m.v, m.np);
    /* Forward and R-forward, node by node. */
    for (int i = 1; i < m.nn; i++) {
        ref_gen_dual *in = duals(act[i - 1], ract[i - 1], m.len[i - 1]);
        ref_gen_dual *out = duals(NULL, NULL, m.len[i]);
        ref_node_fwd(&m, i, p, in, out);
        expect_close(&m, "forward y", i, act[i], out, m.len[i], false, tol_fwd(&m, i, false));
        expect_close(&m, "R-forward R{y}", i, ract[i], out, m.len[i], true, tol_fwd(&m, i, true));
        free(in);
        free(out);
    }
    /* Backward and R-backward, down the chain. */
    ref_gen_dual *dp = duals(NULL, NULL, m.np);
    ref_gen_dual *g = duals(dy, rdy, m.len[last]);
    for (int i = last; i >= 1; i--) {
        ref_gen_dual *in = duals(act[i - 1], ract[i - 1], m.len[i - 1]);
        ref_gen_dual *gin = duals(NULL, NULL, m.len[i - 1]);
        ref_node_bwd(&m, i, p, in, g, gin, dp);
        free(in);
        free(g);
        g = gin;
    }
    expect_close(&m, "backward dx", 0, dx, g, m.len[0], false, tol_chain(&m, 0, false));
    expect_close(&m, "R-backward R{dx}", 0, rdx, g, m.len[0], true, tol_chain(&m, 0, true));
    for (int i = 1; i < m.nn; i++) {
        size_t off = fw_graph_param_offset(m.g, i), cnt = fw_graph_param_count(m.g, i);
        if (!cnt)
            continue;
        expect_close(&m, "backward dtheta", i, dth + off, dp + off, cnt, false,
                     tol_bwd_params(&m, i, false) + tol_chain(&m, i, false));
        expect_close(&m, "R-backward H v", i, hv + off, dp + off, cnt, true,
                     tol_bwd_params(&m, i, true) + tol_chain(&m, i, true));
    }
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
    free(dx);
    free(rdx);
    gnet_close(&m);
}

static void check_all(const gdef *defs, size_t n, int batch) {
    for (size_t i = 0; i < n; i++)
        check_gnet(&defs[i], batch, 200 + i, NULL);
}

/* ---- shapes and parameter layout ---- */

Test(genlayers, shapes_and_param_layout) {
    fw_graph *g = fw_graph_new();
    int x = fw_input(g, 16, 1, 1);
    int r1 = fw_reshape(g, x, 4, 2, 2);
    int d1 = fw_deconv2d(g, r1, 3, 4, 2, 1, false); /* (2 - 1) 2 - 2 + 4 = 4   */
    int d2 = fw_deconv2d(g, d1, 5, 3, 1, 0, true);  /* (4 - 1) 1 - 0 + 3 = 6   */
    int d3 = fw_deconv2d(g, d2, 2, 5, 3, 2, true);  /* (6 - 1) 3 - 4 + 5 = 16  */
    int sg = fw_sigmoid(g, d3);
    int th = fw_tanh(g, sg);
    int r2 = fw_reshape(g, th, 2 * 16 * 16, 1, 1);
    struct { int node; const char *kind; fw_shape s; size_t count; } want[] = {
        {r1, "reshape", {4, 2, 2}, 0},      {d1, "deconv2d", {3, 4, 4}, 4 * 3 * 16},
        {d2, "deconv2d", {5, 6, 6}, 3 * 5 * 9 + 5}, {d3, "deconv2d", {2, 16, 16}, 5 * 2 * 25 + 2},
        {sg, "sigmoid", {2, 16, 16}, 0},    {th, "tanh", {2, 16, 16}, 0},
        {r2, "reshape", {512, 1, 1}, 0}};
    size_t off = 0;
    for (size_t i = 0; i < FW_COUNTOF(want); i++) {
        fw_shape s = fw_graph_shape(g, want[i].node);
        cr_expect(s.c == want[i].s.c && s.h == want[i].s.h && s.w == want[i].s.w,
                  "node %d (%s): shape %dx%dx%d, want %dx%dx%d", want[i].node, want[i].kind, s.c,
                  s.h, s.w, want[i].s.c, want[i].s.h, want[i].s.w);
        cr_expect_str_eq(fw_graph_node_kind(g, want[i].node), want[i].kind, "node %d kind",
                         want[i].node);
        cr_expect_eq(fw_graph_param_count(g, want[i].node), want[i].count,
                     "node %d (%s): %zu parameters, want %zu", want[i].node, want[i].kind,
                     fw_graph_param_count(g, want[i].node), want[i].count);
        if (want[i].count) {
            cr_expect_eq(fw_graph_param_offset(g, want[i].node), off, "node %d offset",
                         want[i].node);
            off += want[i].count;
        }
    }
    cr_expect_eq(fw_graph_n_params(g), off, "total parameters %zu, want %zu",
                 fw_graph_n_params(g), off);

    /* Xavier uniform over fan_in + fan_out = (I + O) k^2 and zero biases. */
    float *th0 = fwt_falloc(fw_graph_n_params(g));
    fw_graph_init_params(g, th0, 5);
    size_t o2 = fw_graph_param_offset(g, d2), nw2 = 3 * 5 * 9;
    double a = sqrt(6.0 / ((3.0 + 5.0) * 9.0)), mx = 0.0;
    for (size_t i = 0; i < nw2; i++)
        mx = fmax(mx, fabs((double)th0[o2 + i]));
    cr_expect(mx <= a && mx > 0.8 * a, "deconv weights: max |w| %.4g, want in (0.8, 1] x %.4g",
              mx, a);
    for (size_t i = 0; i < 5; i++)
        cr_expect_eq(th0[o2 + nw2 + i], 0.0f, "deconv bias %zu initialised to %g", i,
                     (double)th0[o2 + nw2 + i]);
    free(th0);
    fw_graph_free(g);
}

/* ---- the deconv weight layout: PyTorch's (I, O, KH, KW), no spatial flip ---- */

Test(genlayers, deconv_weight_layout_one_hot, .timeout = 20) {
    enum { I = 3, O = 5, K = 4, H = 4 };
    fw_graph *g = fw_graph_new();
    fw_deconv2d(g, fw_input(g, I, H, H), O, K, 2, 1, false); /* 4x4 -> 8x8 */
    fw_exec *e;
    cr_assert_eq(fw_exec_new(&e, g, 2), FW_OK, "fw_exec_new: %s", fw_last_error());
    /* One weight W[i=2, o=1, kh=0, kw=3] and one input pixel x[n=1, i=2, ih=2, iw=1]: the only
     * output is y[1, 1, oh = 2*2 - 1 + 0, ow = 1*2 - 1 + 3] = y[1, 1, 3, 4] = 1. A flipped kernel
     * would put it at (oh, ow) = (6, 1); reading the block as (O, I, KH, KW) would make the weight
     * W'[o=3, i=2, 0, 3] (flat index 11 * 16 + 3) and put it in channel 3. */
    float th[I * O * K * K] = {0}, x[2 * I * H * H] = {0}, y[2 * O * 8 * 8];
    th[((2 * O + 1) * K + 0) * K + 3] = 1.0f;
    x[((1 * I + 2) * H + 2) * H + 1] = 1.0f;
    memcpy(y, fw_forward(e, th, x), sizeof y);
    int hits = 0;
    for (int n = 0; n < 2; n++)
        for (int o = 0; o < O; o++)
            for (int oh = 0; oh < 8; oh++)
                for (int ow = 0; ow < 8; ow++) {
                    float v = y[((n * O + o) * 8 + oh) * 8 + ow];
                    bool want = n == 1 && o == 1 && oh == 3 && ow == 4;
                    if (v != 0.0f)
                        hits++;
                    cr_expect_eq(v, want ? 1.0f : 0.0f,
                                 "y[%d, %d, %d, %d] = %g, want %g (the single 1 belongs at "
                                 "[1, 1, 3, 4])",
                                 n, o, oh, ow, (double)v, want ? 1.0 : 0.0);
                }
    cr_expect_eq(hits, 1, "%d non-zero outputs, want exactly 1", hits);
    fw_exec_free(e);
    fw_graph_free(g);
}

/* ---- adjoint identities of deconv (no bias: linear in x and in W) ---- */

Test(genlayers, deconv_adjoint, .timeout = 20) {
    static const gdef defs[] = {
        {"deconv 6->5 k4 s2 p1", 6, 5, 5, {DECONV(5, 4, 2, 1, false)}},
        {"deconv 20->16 k3 s1 p1", 20, 4, 4, {DECONV(16, 3, 1, 1, false)}},
        {"deconv 1->3 k5 s3 p2", 1, 4, 3, {DECONV(3, 5, 3, 2, false)}},
    };
    for (size_t t = 0; t < FW_COUNTOF(defs); t++) {
        gnet m;
        gnet_open(&m, &defs[t], 3, 40 + t);
        size_t ny = m.len[1], nx = m.len[0];
        float *y = fwt_falloc(ny), *dy = fwt_falloc(ny), *dx = fwt_falloc(nx);
        float *dth = fwt_falloc(m.np), *th2 = fwt_falloc(m.np), *y2 = fwt_falloc(ny);
        fwt_fill_normal(dy, ny, 40 + t, 7, 1.0f);
        fwt_fill_normal(th2, m.np, 40 + t, 9, 1.0f);
        memcpy(y, fw_forward(m.e, m.theta, m.x), ny * sizeof *y);
        fw_backward(m.e, m.theta, dy, dth, dx);
        memcpy(y2, fw_forward(m.e, th2, m.x), ny * sizeof *y2);
        /* |<a, b> - <c, d>| over the sum of |terms|: each side is a sum of rounded products. */
        double ax = fwt_dot(y, dy, ny), xa = fwt_dot(m.x, dx, nx);
        double aw = fwt_dot(y2, dy, ny), wa = fwt_dot(th2, dth, m.np);
        double sx = 0, sw = 0;
        for (size_t i = 0; i < ny; i++) {
            sx += fabs((double)y[i] * dy[i]);
            sw += fabs((double)y2[i] * dy[i]);
        }
        const glayer *l = &defs[t].l[0];
        double tol_x = fwt_tol((double)defs[t].c * l->k * l->k, SLACK) +
                       fwt_tol((double)l->out * l->k * l->k, SLACK);
        double tol_w = fwt_tol((double)defs[t].c * l->k * l->k, SLACK) +
                       fwt_tol((double)m.batch * defs[t].h * defs[t].w, SLACK);
        double ex = fabs(ax - xa) / sx, ew = fabs(aw - wa) / sw;
        cr_log_info("%s: <A x, dy> - <x, A^T dy> %.3g (tol %.3g); <A(W2) x, dy> - <W2, dW> %.3g "
                    "(tol %.3g)", defs[t].name, ex, tol_x, ew, tol_w);
        cr_expect(ex <= tol_x, "%s: <A x, dy> = %.10g but <x, A^T dy> = %.10g (rel %.3g > %.3g)",
                  defs[t].name, ax, xa, ex, tol_x);
        cr_expect(ew <= tol_w,
                  "%s: <A(W2) x, dy> = %.10g but <W2, dW> = %.10g (rel %.3g > %.3g): the weight "
                  "gradient is not the adjoint of the forward in W",
                  defs[t].name, aw, wa, ew, tol_w);
        free(y), free(dy), free(dx), free(dth), free(th2), free(y2);
        gnet_close(&m);
    }
}

/* ---- every layer against the dual reference: forward, backward, R-forward, R-backward ---- */

/* Deconv geometries; one-channel inputs and outputs (nhwc or plain layouts), channel counts that
 * pad a blocked layout (20), bias on and off. Sigmoid / tanh follow so that the next R{x} is not
 * zero. */
static const gdef deconv_defs[] = {
    {"deconv 3->4 k4 s2 p1 bias | sigmoid", 3, 5, 5, {DECONV(4, 4, 2, 1, true), SIGMOID}},
    {"deconv 8->4 k4 s2 p1 | tanh | deconv 4->1 k4 s2 p1 bias | sigmoid", 8, 7, 7,
     {DECONV(4, 4, 2, 1, false), TANH, DECONV(1, 4, 2, 1, true), SIGMOID}},
    {"deconv 1->3 k5 s1 p2 | tanh | deconv 3->20 k3 s2 p0 bias", 1, 4, 4,
     {DECONV(3, 5, 1, 2, false), TANH, DECONV(20, 3, 2, 0, true)}},
    {"deconv 20->20 k4 s2 p1 bias | sigmoid | deconv 20->2 k2 s2 p0", 20, 3, 3,
     {DECONV(20, 4, 2, 1, true), SIGMOID, DECONV(2, 2, 2, 0, false)}},
    {"deconv 16->32 k4 s2 p1 | tanh | deconv 32->8 k3 s1 p1 bias", 16, 4, 4,
     {DECONV(32, 4, 2, 1, false), TANH, DECONV(8, 3, 1, 1, true)}},
    /* from (B, F) vectors: the DCGAN-style first layer, (F, 1, 1) -> (O, 4, 4) */
    {"deconv 12->6 k4 s1 p0 bias | tanh | reshape (96) | sigmoid | deconv 96->3 k3 s1 p0",
     12, 1, 1,
     {DECONV(6, 4, 1, 0, true), TANH, RESHAPE(96, 1, 1), SIGMOID, DECONV(3, 3, 1, 0, false)}},
    {"reshape (8) | deconv 8->1 k3 s2 p0 bias | sigmoid", 2, 2, 2,
     {RESHAPE(8, 1, 1), DECONV(1, 3, 2, 0, true), SIGMOID}},
};

Test(genlayers, deconv, .timeout = 60) {
    check_all(deconv_defs, FW_COUNTOF(deconv_defs), 5);
}

Test(genlayers, deconv_batch25, .timeout = 60) {
    check_all(deconv_defs, 2, 25);
}

/* Sigmoid and tanh on plain, nhwc, blocked and padded-blocked layouts (20 channels), and on
 * (B, F) vectors; large inputs reach the saturated ends. */
static const gdef act_defs[] = {
    {"sigmoid", 2, 3, 3, {SIGMOID}},
    {"tanh", 2, 3, 3, {TANH}},
    {"deconv 3->20 k3 s1 p1 | sigmoid | tanh", 3, 4, 4,
     {DECONV(20, 3, 1, 1, true), SIGMOID, TANH}},
    {"deconv 4->16 k4 s2 p1 | tanh | sigmoid", 4, 3, 3,
     {DECONV(16, 4, 2, 1, false), TANH, SIGMOID}},
    {"deconv 2->1 k3 s1 p1 bias | tanh | sigmoid", 2, 5, 5,
     {DECONV(1, 3, 1, 1, true), TANH, SIGMOID}},
    {"deconv 3->2 k2 s2 p0 | reshape (32) | sigmoid | tanh", 3, 2, 2,
     {DECONV(2, 2, 2, 0, false), RESHAPE(32, 1, 1), SIGMOID, TANH}},
};

Test(genlayers, sigmoid_tanh, .timeout = 60) {
    check_all(act_defs, FW_COUNTOF(act_defs), 5);
}

/* x ~ 4 N(0, 1) through weights x 4: many activations within 1e-3 of their limits, where
 * 1 - y and 1 - y^2 cancel. */
static void saturate(gnet *m) {
    for (size_t i = 0; i < m->len[0]; i++)
        m->x[i] *= 4.0f;
    size_t nw = fw_graph_param_count(m->g, 1);
    for (size_t i = 0; i < nw; i++)
        m->theta[i] *= 4.0f;
}

Test(genlayers, sigmoid_tanh_saturated, .timeout = 20) {
    static const gdef d = {"saturated: deconv 4->8 k3 s1 p1 bias | sigmoid | tanh", 4, 4, 4,
                           {DECONV(8, 3, 1, 1, true), SIGMOID, TANH}};
    check_gnet(&d, 4, 77, saturate);
    static const gdef d2 = {"saturated: deconv 4->8 k3 s1 p1 bias | tanh | sigmoid", 4, 4, 4,
                            {DECONV(8, 3, 1, 1, true), TANH, SIGMOID}};
    check_gnet(&d2, 4, 78, saturate);
}

/* Reshape from plain vectors, from blocked 4-D layouts and to vectors; exact copies. */
static const gdef reshape_defs[] = {
    {"reshape (16) -> (4, 2, 2) | deconv 4->2 k4 s2 p1 bias | tanh", 16, 1, 1,
     {RESHAPE(4, 2, 2), DECONV(2, 4, 2, 1, true), TANH}},
    {"deconv 8->8 k4 s2 p1 | tanh | reshape (2, 12, 12) | deconv 2->1 k4 s2 p1 bias | sigmoid", 8,
     3, 3, {DECONV(8, 4, 2, 1, false), TANH, RESHAPE(2, 12, 12), DECONV(1, 4, 2, 1, true), SIGMOID}},
    {"deconv 20->20 k3 s1 p1 | reshape (4, 5, 9) | sigmoid | reshape (180) | tanh", 20, 1, 9,
     {DECONV(20, 3, 1, 1, false), RESHAPE(4, 5, 9), SIGMOID, RESHAPE(180, 1, 1), TANH}},
};

Test(genlayers, reshape, .timeout = 60) {
    check_all(reshape_defs, FW_COUNTOF(reshape_defs), 5);
}

/* Gradients and H v accumulate (+=) like every layer's: two passes give twice one. */
Test(genlayers, deconv_accumulates, .timeout = 20) {
    gnet m;
    gnet_open(&m, &deconv_defs[1], 3, 9);
    size_t ny = m.len[m.nn - 1];
    float *dy = fwt_falloc(ny), *rdy = fwt_falloc(ny);
    fwt_fill_normal(dy, ny, 9, 7, 1.0f);
    fwt_fill_normal(rdy, ny, 9, 8, 1.0f);
    float *d1 = fwt_falloc(m.np), *d2 = fwt_falloc(m.np), *h1 = fwt_falloc(m.np),
          *h2 = fwt_falloc(m.np);
    for (int pass = 0; pass < 2; pass++) {
        fw_forward(m.e, m.theta, m.x);
        fw_backward(m.e, m.theta, dy, pass ? d2 : d1, NULL);
        if (pass)
            fw_backward(m.e, m.theta, dy, d2, NULL);
        fw_r_forward(m.e, m.theta, m.v);
        fw_r_backward(m.e, m.theta, m.v, rdy, pass ? h2 : h1, NULL);
        if (pass)
            fw_r_backward(m.e, m.theta, m.v, rdy, h2, NULL);
    }
    for (size_t i = 0; i < m.np; i++) {
        d1[i] *= 2.0f;
        h1[i] *= 2.0f;
    }
    size_t at;
    cr_expect_eq(fwt_bit_diffs(d1, d2, m.np, &at), 0, /* (0 + a) + a == 2 a exactly */
                 "two backward passes into one dtheta != 2 x one pass (first at %zu: %g vs %g)",
                 at, (double)d2[at], (double)d1[at]);
    /* Each R-backward adds two weight terms, so two passes round differently from 2 x one. */
    double e = fwt_rel_l2_ff(h2, h1, m.np);
    cr_expect(e <= 4.0 * FLT_EPSILON,
              "two R-backward passes into one hv != 2 x one pass: rel L2 %.3g > %.3g", e,
              4.0 * FLT_EPSILON);
    free(dy), free(rdy), free(d1), free(d2), free(h1), free(h2);
    gnet_close(&m);
}

/* ---- a generator-like chain, end to end ---- */

typedef struct gen {
    fw_graph *g;
    fw_exec *e;
    int batch, out;
    size_t np, nx, ny;
    float *theta, *x, *r; /* r: the fixed random weights of the loss L = sum r y */
} gen;

/* input (16) -> linear (8*7*7) -> reshape (8, 7, 7) -> deconv 8->4 k4 s2 p1 -> BN -> ReLU ->
 * deconv 4->1 k4 s2 p1 + bias -> sigmoid: (1, 28, 28); `smooth` puts tanh in place of the ReLU.
 * The input goes through a flatten because
 * fw_linear cannot take the (F, 1, 1) input node directly yet (tests/test_layers.c,
 * linear_on_vector_input); flattening a (16, 1, 1) node is a copy. */
static void gen_open(gen *m, int batch, bool smooth) {
    memset(m, 0, sizeof *m);
    m->batch = batch;
    m->g = fw_graph_new();
    int x = fw_flatten(m->g, fw_input(m->g, 16, 1, 1));
    x = fw_reshape(m->g, fw_linear(m->g, x, 8 * 7 * 7), 8, 7, 7);
    x = fw_batchnorm(m->g, fw_deconv2d(m->g, x, 4, 4, 2, 1, false));
    x = smooth ? fw_tanh(m->g, x) : fw_relu(m->g, x);
    m->out = fw_sigmoid(m->g, fw_deconv2d(m->g, x, 1, 4, 2, 1, true));
    fw_shape s = fw_graph_shape(m->g, m->out);
    cr_assert(s.c == 1 && s.h == 28 && s.w == 28, "generator output %dx%dx%d, want 1x28x28", s.c,
              s.h, s.w);
    fw_status st = fw_exec_new(&m->e, m->g, batch);
    cr_assert_eq(st, FW_OK, "generator chain, batch %d: fw_exec_new failed: %s", batch,
                 fw_last_error());
    m->np = fw_graph_n_params(m->g);
    m->nx = (size_t)batch * 16;
    m->ny = (size_t)batch * 28 * 28;
    m->theta = fwt_falloc(m->np);
    m->x = fwt_falloc(m->nx);
    m->r = fwt_falloc(m->ny);
    fw_graph_init_params(m->g, m->theta, 31);
    fwt_fill_normal(m->x, m->nx, 31, 1, 1.0f);
    fwt_fill_normal(m->r, m->ny, 31, 3, 1.0f);
}

static void gen_close(gen *m) {
    fw_exec_free(m->e);
    fw_graph_free(m->g);
    free(m->theta), free(m->x), free(m->r);
    memset(m, 0, sizeof *m);
}

static double gen_loss(gen *m, const float *theta, const float *x) {
    return fwt_dot(fw_forward(m->e, theta, x), m->r, m->ny);
}

/* The implementation table, for failure messages (malloc'd). */
static char *impl_table(const fw_exec *e) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f, "open_memstream");
    fw_exec_print_impls(e, f);
    fclose(f);
    return buf;
}

/* Central difference of L along unit direction d (of x when on_x, else of theta). */
static double gen_fd(gen *m, const float *d, bool on_x, double eps) {
    size_t n = on_x ? m->nx : m->np;
    const float *base = on_x ? m->x : m->theta;
    float *p = fwt_falloc(n), *q = fwt_falloc(n);
    for (size_t i = 0; i < n; i++) {
        p[i] = base[i] + (float)eps * d[i];
        q[i] = base[i] - (float)eps * d[i];
    }
    double lp = on_x ? gen_loss(m, m->theta, p) : gen_loss(m, p, m->x);
    double lq = on_x ? gen_loss(m, m->theta, q) : gen_loss(m, q, m->x);
    free(p), free(q);
    return (lp - lq) / (2.0 * eps);
}

static void check_generator(int batch) {
    gen m;
    gen_open(&m, batch, false);
    int refs = fw_exec_count_impls(m.e, "ref");
    if (refs) {
        char *t = impl_table(m.e);
        cr_expect_eq(refs, 0, "generator chain, batch %d: %d reference kernels:\n%s", batch, refs,
                     t);
        free(t);
    }
    float *dx = fwt_falloc(m.nx), *dth = fwt_falloc(m.np);
    gen_loss(&m, m.theta, m.x);
    fw_backward(m.e, m.theta, m.r, dth, dx);
    const double eps = 3e-3, tol = 5e-3;
    for (int which = 0; which < 2; which++) {
        bool on_x = which == 0;
        size_t n = on_x ? m.nx : m.np;
        const float *gr = on_x ? dx : dth;
        double gn = fwt_norm(gr, n);
        float *d = fwt_falloc(n);
        for (size_t i = 0; i < n; i++)
            d[i] = (float)(gr[i] / gn);
        double an = fwt_dot(gr, d, n), fd = gen_fd(&m, d, on_x, eps);
        double err = fabs(fd - an) / fabs(an);
        cr_log_info("generator batch %d: d%s along the gradient: analytic %.8g, central FD %.8g, "
                    "rel %.3g", batch, on_x ? "x" : "theta", an, fd, err);
        cr_expect(err <= tol,
                  "generator chain, batch %d: directional derivative along d%s/|d%s|: backward "
                  "gives %.8g, central difference (eps %g) %.8g: rel error %.3g > %.3g",
                  batch, on_x ? "x" : "theta", on_x ? "x" : "theta", an, eps, fd, err, tol);
        free(d);
    }
    free(dx), free(dth);
    gen_close(&m);
}

Test(genlayers, generator_chain_batch5, .timeout = 60) {
    check_generator(5);
}

Test(genlayers, generator_chain_batch25, .timeout = 60) {
    check_generator(25);
}

/* R-operator of the whole chain (BN and linear included) by central differences along v:
 * R{y} against (y(theta + eps v) - y(theta - eps v)) / 2 eps, and, since L = sum r y has
 * R{dL/dy} = 0, H v against the central difference of the gradient. With tanh in place of the
 * ReLU: at eps 3e-3 some of the 5 x 4 x 14 x 14 ReLU inputs cross 0, the gradient jumps there,
 * and the difference of gradients is off by 100 % (measured; it agrees to 4e-3 at eps 3e-4, where
 * none cross). The ReLU's own R-ops are checked exactly in tests/test_layers.c. */
Test(genlayers, generator_chain_r_ops, .timeout = 60) {
    gen m;
    gen_open(&m, 5, true);
    float *v = fwt_falloc(m.np), *hv = fwt_falloc(m.np), *zero = fwt_falloc(m.ny);
    fwt_fill_normal(v, m.np, 31, 5, 1.0f);
    double vn = fwt_norm(v, m.np);
    for (size_t i = 0; i < m.np; i++)
        v[i] = (float)(v[i] / vn);
    gen_loss(&m, m.theta, m.x);
    fw_backward(m.e, m.theta, m.r, NULL, NULL);
    float *ry = fwt_falloc(m.ny);
    memcpy(ry, fw_r_forward(m.e, m.theta, v), m.ny * sizeof *ry);
    fw_r_backward(m.e, m.theta, v, zero, hv, NULL);

    const double eps = 3e-3;
    float *tp = fwt_falloc(m.np), *tq = fwt_falloc(m.np), *yp = fwt_falloc(m.ny);
    float *gp = fwt_falloc(m.np), *gq = fwt_falloc(m.np);
    double *fd = fwt_dalloc(m.ny);
    for (size_t i = 0; i < m.np; i++) {
        tp[i] = m.theta[i] + (float)eps * v[i];
        tq[i] = m.theta[i] - (float)eps * v[i];
    }
    memcpy(yp, fw_forward(m.e, tp, m.x), m.ny * sizeof *yp);
    fw_backward(m.e, tp, m.r, gp, NULL);
    const float *yq = fw_forward(m.e, tq, m.x);
    for (size_t i = 0; i < m.ny; i++)
        fd[i] = ((double)yp[i] - (double)yq[i]) / (2.0 * eps);
    fw_backward(m.e, tq, m.r, gq, NULL);
    double e_ry = fwt_rel_l2(ry, fd, m.ny);
    double an = fwt_dot(v, hv, m.np), fdv = (fwt_dot(v, gp, m.np) - fwt_dot(v, gq, m.np)) /
                                               (2.0 * eps);
    double e_hv = fabs(an - fdv) / fabs(fdv);
    double *fdg = fwt_dalloc(m.np);
    for (size_t i = 0; i < m.np; i++)
        fdg[i] = ((double)gp[i] - (double)gq[i]) / (2.0 * eps);
    double e_hvv = fwt_rel_l2(hv, fdg, m.np);
    size_t at;
    double mad = fwt_max_abs_diff(hv, fdg, m.np, &at);
    cr_log_info("generator (tanh) R{y} vs FD rel L2 %.3g; H v vs FD rel L2 %.3g; <v, H v> %.8g "
                "vs FD %.8g, rel %.3g", e_ry, e_hvv, an, fdv, e_hv);
    cr_expect(e_hvv <= 5e-3, "generator chain: H v differs from the central difference of the "
              "gradient along v by rel L2 %.3g > 5e-3; max|diff| %.3g at parameter %zu (%g vs %g)",
              e_hvv, mad, at, (double)hv[at], fdg[at]);
    free(fdg);
    cr_expect(e_ry <= 5e-3, "generator chain: R{y} differs from the central difference along v "
              "by rel L2 %.3g > 5e-3", e_ry);
    cr_expect(e_hv <= 5e-3, "generator chain: <v, H v> = %.8g but the central difference of "
              "<v, grad> along v gives %.8g (rel %.3g > 5e-3)", an, fdv, e_hv);
    free(v), free(hv), free(zero), free(ry), free(tp), free(tq), free(yp), free(gp), free(gq);
    free(fd);
    gen_close(&m);
}

/* ---- thread isolation: the generator's full pass set on two OpenMP task threads ---- */

typedef struct gen_task {
    fw_status status;
    char err[256];
    float *out; /* y, dtheta, dx, R y, H v, R dx of the last of 3 rounds, concatenated */
    int unstable; /* rounds whose results differ from the first round's */
} gen_task;

/* Builds an exec on the calling thread and runs 3 rounds of forward, backward, R-forward and
 * R-backward. No Criterion assertions: this runs on OpenMP threads. */
static void gen_task_run(const gen *m, const float *x, const float *v, gen_task *o) {
    fw_exec *e = NULL;
    o->status = fw_exec_new(&e, m->g, m->batch);
    if (o->status != FW_OK) {
        snprintf(o->err, sizeof o->err, "%s", fw_last_error());
        return;
    }
    size_t n = 2 * (m->ny + m->np + m->nx);
    float *first = fwt_falloc(n);
    for (int round = 0; round < 3; round++) {
        float *y = o->out, *dth = y + m->ny, *dx = dth + m->np, *ry = dx + m->nx;
        float *hv = ry + m->ny, *rdx = hv + m->np;
        memset(o->out, 0, n * sizeof *o->out);
        memcpy(y, fw_forward(e, m->theta, x), m->ny * sizeof *y);
        fw_backward(e, m->theta, m->r, dth, dx);
        memcpy(ry, fw_r_forward(e, m->theta, v), m->ny * sizeof *ry);
        fw_r_backward(e, m->theta, v, m->r, hv, rdx); /* any R{dy} will do: r */
        if (round == 0)
            memcpy(first, o->out, n * sizeof *first);
        else
            o->unstable += fwt_bit_diffs(first, o->out, n, NULL) != 0;
    }
    free(first);
    fw_exec_free(e);
}

Test(genlayers, generator_thread_isolation, .timeout = 60) {
    gen m;
    gen_open(&m, 5, false);
    size_t n = 2 * (m.ny + m.np + m.nx);
    float *x[2], *v = fwt_falloc(m.np);
    fwt_fill_normal(v, m.np, 31, 5, 1.0f);
    gen_task ser[2] = {0}, par[2] = {0};
    for (int t = 0; t < 2; t++) {
        x[t] = fwt_falloc(m.nx);
        fwt_fill_normal(x[t], m.nx, 900 + (uint64_t)t, 1, 1.0f);
        ser[t].out = fwt_falloc(n);
        par[t].out = fwt_falloc(n);
        snprintf(par[t].err, sizeof par[t].err, "did not run");
        par[t].status = FW_ERR_ARG;
    }
    omp_set_num_threads(1); /* the serial reference: single-threaded primitives */
    for (int t = 0; t < 2; t++) {
        gen_task_run(&m, x[t], v, &ser[t]);
        cr_assert_eq(ser[t].status, FW_OK, "serial task %d: %s", t, ser[t].err);
    }
    int team = 0;
#pragma omp parallel num_threads(2)
    {
        omp_set_num_threads(1); /* before any primitive is created on this thread */
        int t = omp_get_thread_num();
        if (t == 0)
            team = omp_get_num_threads();
        if (t < 2)
            gen_task_run(&m, x[t], v, &par[t]);
    }
    cr_assert_eq(team, 2, "the parallel region ran with %d threads, want 2", team);
    for (int t = 0; t < 2; t++) {
        cr_assert_eq(par[t].status, FW_OK, "thread %d: fw_exec_new failed: %s", t, par[t].err);
        cr_expect_eq(ser[t].unstable + par[t].unstable, 0,
                     "task %d: repeated rounds on one exec differ (%d serial, %d threaded)", t,
                     ser[t].unstable, par[t].unstable);
        size_t at, d = fwt_bit_diffs(par[t].out, ser[t].out, n, &at);
        cr_expect_eq(d, 0,
                     "task %d: %zu of %zu results (y, dtheta, dx, R y, H v, R dx) differ between "
                     "the threaded and the serial run; first at %zu: %.9g vs %.9g",
                     t, d, n, at, (double)par[t].out[at], (double)ser[t].out[at]);
        free(ser[t].out), free(par[t].out), free(x[t]);
    }
    free(v);
    gen_close(&m);
}
