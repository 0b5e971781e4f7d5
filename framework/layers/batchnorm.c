/* batchnorm.c: batch normalisation with transductive batch statistics (as MAML uses it: the
 * statistics of the current batch, in training and at test; no running averages).
 * Parameters: scale (C) then shift (C). oneDNN forward_training + backward, in the layout of the
 * producing layer. eps = 1e-5, as PyTorch's default, so reference checks use the same formula. */
#include "framework/internal.h"

#include <math.h>
#include <stdlib.h>

#define BN_EPS 1e-5f

typedef struct bn_state {
    fwi_prim *fwd, *bwd;
    fwi_buf scale, shift;          /* views of theta                        */
    fwi_buf mean, var;             /* batch statistics of the last forward  */
    fwi_buf dscale, dshift;
    /* R-operator: the layout as a view, and per-channel double accumulators (allocated once). */
    fwi_view view;
    double *acc;                   /* (BN_R_ACC, C)                          */
} bn_state;

enum { BN_R_ACC = 9 }; /* rows of bn_state.acc, see bn_r_stats */

/* The layout as (outer, H*W, inner) with outer = N * CB (as fwi_view); a (B, C) vector is nhwc
 * with H = W = 1. */
static fwi_view bn_view(const dnnl_memory_desc_t *md) {
    if (md->ndims == 2) {
        dnnl_memory_desc_t t;
        fwi_md_tag(&t, 2, md->dims, dnnl_nc);
        FW_ASSERT(dnnl_memory_desc_equal(&t, md), "batchnorm: unsupported 2-D layout");
        return (fwi_view){.n = (int)md->dims[0], .c = (int)md->dims[1], .h = 1, .w = 1,
                          .inner = (int)md->dims[1], .cb = 1, .tag = dnnl_nhwc};
    }
    return fwi_view_of(md);
}

static fw_status bn_build(fw_exec *e, int id, bn_state *st) {
    const dnnl_memory_desc_t *data = &fwi_in(e, id)->y.md;
    unsigned flags = dnnl_use_scale | dnnl_use_shift;
    dnnl_batch_normalization_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    fwi_dnnl_must(dnnl_batch_normalization_forward_desc_init(&fd, dnnl_forward_training, data,
                                                             BN_EPS, flags), "bn fwd desc");
    fwi_dnnl_must(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, data, data,
                                                              BN_EPS, flags), "bn bwd desc");
    fw_status r;
    if ((r = fwi_pd_new(e, &fpd, &fd, NULL, "batchnorm fwd")) != FW_OK ||
        (r = fwi_pd_new(e, &bpd, &bd, fpd, "batchnorm bwd")) != FW_OK ||
        (r = fwi_prim_new(e, &st->fwd, fpd, "batchnorm fwd", false)) != FW_OK ||
        (r = fwi_prim_new(e, &st->bwd, bpd, "batchnorm bwd", false)) != FW_OK)
        goto done;
    e->nodes[id].y.md = *fwi_pd_md(fpd, DNNL_ARG_DST);
    st->view = bn_view(data);
    st->acc = calloc((size_t)BN_R_ACC * (size_t)st->view.c, sizeof *st->acc);
    if (!st->acc) {
        r = fw_errorf(FW_ERR_NOMEM, "out of memory");
        goto done;
    }
    const dnnl_memory_desc_t *c_md = fwi_pd_md(fpd, DNNL_ARG_SCALE);
    if ((r = fwi_buf_wrap(e, &st->scale, c_md, NULL)) != FW_OK ||
        (r = fwi_buf_wrap(e, &st->shift, c_md, NULL)) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->mean, fwi_pd_md(fpd, DNNL_ARG_MEAN))) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->var, fwi_pd_md(fpd, DNNL_ARG_VARIANCE))) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->dscale, c_md)) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->dshift, c_md)) != FW_OK)
        goto done;
done:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    return r;
}

static void bn_exec_free(void *state) {
    bn_state *st = state;
    fwi_buf *bufs[] = {&st->scale, &st->shift, &st->mean, &st->var, &st->dscale, &st->dshift};
    for (size_t i = 0; i < FW_COUNTOF(bufs); i++)
        fwi_buf_free(bufs[i]);
    free(st->acc);
    free(st);
}

static fw_status bn_exec_new(fw_exec *e, int id) {
    bn_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    return bn_build(e, id, st);
}

static void point_params(bn_state *st, const fwi_node *n, const float *theta) {
    fwi_buf_point(&st->scale, theta + n->param_off);
    fwi_buf_point(&st->shift, theta + n->param_off + (size_t)n->out.c);
}

static void bn_forward(fw_exec *e, int id, const float *theta) {
    bn_state *st = e->nodes[id].state;
    point_params(st, fwi_node_of(e, id), theta);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, fwi_in(e, id)->y.mem}, {DNNL_ARG_SCALE, st->scale.mem},
                              {DNNL_ARG_SHIFT, st->shift.mem}, {DNNL_ARG_DST, e->nodes[id].y.mem},
                              {DNNL_ARG_MEAN, st->mean.mem}, {DNNL_ARG_VARIANCE, st->var.mem}};
    fwi_run(e, st->fwd, 6, args);
}

static void bn_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    (void)need_dx; /* one primitive computes both; its input gradient is simply unused */
    bn_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    point_params(st, n, theta);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, fwi_in(e, id)->y.mem},    {DNNL_ARG_MEAN, st->mean.mem},
        {DNNL_ARG_VARIANCE, st->var.mem},        {DNNL_ARG_SCALE, st->scale.mem},
        {DNNL_ARG_SHIFT, st->shift.mem}, /* oneDNN 2.6 asks for it, though unused */
        {DNNL_ARG_DIFF_DST, e->nodes[id].dy.mem}, {DNNL_ARG_DIFF_SRC, fwi_in(e, id)->dy.mem},
        {DNNL_ARG_DIFF_SCALE, st->dscale.mem},   {DNNL_ARG_DIFF_SHIFT, st->dshift.mem}};
    fwi_run(e, st->bwd, 9, args);
    if (dtheta) {
        fwi_add(dtheta + n->param_off, st->dscale.data, (size_t)n->out.c);
        fwi_add(dtheta + n->param_off + (size_t)n->out.c, st->dshift.data, (size_t)n->out.c);
    }
}

/* ---- R-operator (docs/second-order-notes.md), hand-written over the layout in double ----
 *
 * Per channel c over its M = N*H*W entries, with x^ = (x - mu) / s, s = sqrt(var + eps) from the
 * forward pass's batch statistics:
 *   R s = mean(x^ Rx), R x^ = (Rx - mean(Rx) - x^ mean(x^ Rx)) / s, R y = g R x^ + v_g x^ + v_b
 * (g, v_g, v_b: scale, and the direction's scale and shift).
 * BN_LOOP visits every real element of the layout as (outer block o, spatial p, lane i) with
 * channel c = (o mod CB) * inner + i and index `at`; lanes of padded channels (c >= C) are skipped
 * and stay 0. Sums per channel are in double, always in the same order (deterministic). */
#define BN_LOOP(vw, ...)                                                                        \
    do {                                                                                       \
        size_t inner_ = (size_t)(vw)->inner, hw_ = (size_t)(vw)->h * (size_t)(vw)->w;          \
        size_t C_ = (size_t)(vw)->c, cb_ = (size_t)(vw)->cb;                                   \
        for (size_t o_ = 0; o_ < (size_t)(vw)->n * cb_; o_++) {                                \
            size_t c0_ = (o_ % cb_) * inner_;                                                  \
            size_t nl_ = C_ - c0_ < inner_ ? C_ - c0_ : inner_;                                \
            for (size_t p_ = 0; p_ < hw_; p_++) {                                              \
                size_t base_ = (o_ * hw_ + p_) * inner_;                                       \
                _Pragma("omp simd") /* lanes are distinct channels: no reordered sums */       \
                for (size_t i_ = 0; i_ < nl_; i_++) {                                          \
                    size_t c = c0_ + i_, at = base_ + i_;                                      \
                    __VA_ARGS__                                                                \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Row r of the accumulators. */
static inline double *bn_row(bn_state *st, int r) {
    return st->acc + (size_t)r * (size_t)st->view.c;
}
enum { A_MU, A_IS, A_RX, A_XRX, A_GY, A_GYX, A_RGY, A_RGYX, A_GYRXH };

/* Rows A_MU, A_IS: mean and 1 / sigma; A_RX, A_XRX: mean(Rx) and mean(x^ Rx) (= R sigma). */
static void bn_r_stats(bn_state *st, const float *x, const float *rx) {
    const fwi_view *vw = &st->view;
    size_t C = (size_t)vw->c;
    double *mu = bn_row(st, A_MU), *is = bn_row(st, A_IS);
    double *m_rx = bn_row(st, A_RX), *m_xrx = bn_row(st, A_XRX);
    for (size_t c = 0; c < C; c++) {
        mu[c] = st->mean.data[c];
        is[c] = 1.0 / sqrt((double)st->var.data[c] + (double)BN_EPS);
        m_rx[c] = m_xrx[c] = 0;
    }
    BN_LOOP(vw, {
        double xh = ((double)x[at] - mu[c]) * is[c];
        m_rx[c] += rx[at];
        m_xrx[c] += xh * rx[at];
    });
    double inv_m = 1.0 / ((double)vw->n * vw->h * vw->w);
    for (size_t c = 0; c < C; c++) {
        m_rx[c] *= inv_m;
        m_xrx[c] *= inv_m;
    }
}

static void bn_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    bn_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    size_t C = (size_t)n->out.c;
    const float *g = theta + n->param_off, *vg = v + n->param_off, *vb = vg + C;
    const float *x = fwi_in(e, id)->y.data, *rx = fwi_in(e, id)->ry.data;
    float *ry = e->nodes[id].ry.data;
    bn_r_stats(st, x, rx);
    const double *mu = bn_row(st, A_MU), *is = bn_row(st, A_IS);
    const double *m_rx = bn_row(st, A_RX), *m_xrx = bn_row(st, A_XRX);
    BN_LOOP(&st->view, {
        double xh = ((double)x[at] - mu[c]) * is[c];
        double rxh = ((double)rx[at] - m_rx[c] - xh * m_xrx[c]) * is[c];
        ry[at] = (float)((double)g[c] * rxh + (double)vg[c] * xh + (double)vb[c]);
    });
}

/* With g_x^ = g g_y, m = mean(g_x^ x^), g_x = (g_x^ - mean(g_x^) - x^ m) / s:
 *   R g_gamma = sum(R g_y x^ + g_y R x^), R g_beta = sum R g_y, R g_x^ = v_g g_y + g R g_y,
 *   R g_x = -(R s / s) g_x + (R g_x^ - mean(R g_x^) - R x^ m - x^ mean(R g_x^ x^ + g_x^ R x^)) / s. */
static void bn_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                          bool need_dx) {
    bn_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    const fwi_view *vw = &st->view;
    size_t C = (size_t)n->out.c;
    fwi_xnode *in = fwi_in(e, id), *me = &e->nodes[id];
    const float *g = theta + n->param_off, *vg = v + n->param_off;
    const float *x = in->y.data, *rx = in->ry.data, *gy = me->dy.data, *rgy = me->rdy.data;
    bn_r_stats(st, x, rx); /* the same values as in the R-forward: recomputed, not stored */
    const double *mu = bn_row(st, A_MU), *is = bn_row(st, A_IS);
    const double *m_rx = bn_row(st, A_RX), *m_xrx = bn_row(st, A_XRX);
    double *m_gy = bn_row(st, A_GY), *m_gyx = bn_row(st, A_GYX), *m_rgy = bn_row(st, A_RGY);
    double *m_rgyx = bn_row(st, A_RGYX), *m_gyrxh = bn_row(st, A_GYRXH);
    for (size_t c = 0; c < C; c++)
        m_gy[c] = m_gyx[c] = m_rgy[c] = m_rgyx[c] = m_gyrxh[c] = 0;
    BN_LOOP(vw, {
        double xh = ((double)x[at] - mu[c]) * is[c];
        double rxh = ((double)rx[at] - m_rx[c] - xh * m_xrx[c]) * is[c];
        m_gy[c] += gy[at];
        m_gyx[c] += (double)gy[at] * xh;
        m_rgy[c] += rgy[at];
        m_rgyx[c] += (double)rgy[at] * xh;
        m_gyrxh[c] += (double)gy[at] * rxh;
    });
    if (hv)
        for (size_t c = 0; c < C; c++) {
            hv[n->param_off + c] += (float)(m_rgyx[c] + m_gyrxh[c]);
            hv[n->param_off + C + c] += (float)m_rgy[c];
        }
    if (!need_dx)
        return;
    double inv_m = 1.0 / ((double)vw->n * vw->h * vw->w);
    for (size_t c = 0; c < C; c++) {
        m_gy[c] *= inv_m;
        m_gyx[c] *= inv_m;
        m_rgy[c] *= inv_m;
        m_rgyx[c] *= inv_m;
        m_gyrxh[c] *= inv_m;
    }
    float *rdx = in->rdy.data;
    BN_LOOP(vw, {
        double gc = g[c], vgc = vg[c], isc = is[c];
        double xh = ((double)x[at] - mu[c]) * isc;
        double rxh = ((double)rx[at] - m_rx[c] - xh * m_xrx[c]) * isc;
        double m = gc * m_gyx[c];                               /* mean(g_x^ x^)    */
        double gx = (gc * gy[at] - gc * m_gy[c] - xh * m) * isc; /* g_x              */
        double rgxh = vgc * gy[at] + gc * rgy[at];               /* R g_x^           */
        double m_rgxh = vgc * m_gy[c] + gc * m_rgy[c];           /* mean(R g_x^)     */
        double m_mix = vgc * m_gyx[c] + gc * m_rgyx[c] + gc * m_gyrxh[c];
        rdx[at] = (float)((rgxh - m_rgxh - rxh * m - xh * m_mix - m_xrx[c] * gx) * isc);
    });
}

static void bn_init(const fwi_node *n, fw_shape in, float *w, fw_rng *r) {
    (void)in, (void)r;
    for (int c = 0; c < n->out.c; c++) {
        w[c] = 1.0f;
        w[n->out.c + c] = 0.0f;
    }
}

const fwi_layer_ops fwi_batchnorm_ops = {
    .name = "batchnorm",
    .exec_new = bn_exec_new,
    .forward = bn_forward,
    .backward = bn_backward,
    .exec_free = bn_exec_free,
    .init_params = bn_init,
    .r_forward = bn_r_forward,
    .r_backward = bn_r_backward,
};
