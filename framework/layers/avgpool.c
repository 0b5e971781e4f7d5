/* avgpool.c: global average pool, (C, H, W) -> (C) per example, own kernel. Reads any layout
 * the producer chose (nchw, nhwc, nChw8c: all are (outer, H*W, inner) with outer = N * CB) and
 * writes a plain (B, C) vector. */
#include "framework/internal.h"

#include <string.h>

typedef struct gap_state {
    fwi_view in;
    double *acc; /* owned; (B, C) sums in double, so blocking never changes the result */
} gap_state;

static fw_status gap_exec_new(fw_exec *e, int id) {
    gap_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    st->in = fwi_view_of(&fwi_in(e, id)->y.md);
    st->acc = calloc((size_t)e->batch * (size_t)st->in.c, sizeof *st->acc);
    dnnl_dims_t d = {e->batch, st->in.c};
    fwi_md_tag(&e->nodes[id].y.md, 2, d, dnnl_nc);
    return st->acc ? FW_OK : fw_errorf(FW_ERR_NOMEM, "out of memory");
}

static void gap_exec_free(void *state) {
    gap_state *st = state;
    free(st->acc);
    free(st);
}

/* y = mean over H*W of x; used for y and for R y (the map is linear). */
static void gap_apply(gap_state *st, const float *x, float *y) {
    const fwi_view *v = &st->in;
    size_t C = (size_t)v->c, hw = (size_t)(v->h * v->w), inner = (size_t)v->inner;
    memset(st->acc, 0, (size_t)v->n * C * sizeof *st->acc);
    for (size_t o = 0; o < (size_t)v->n * (size_t)v->cb; o++) {
        size_t n = o / (size_t)v->cb, c0 = (o % (size_t)v->cb) * inner;
        const float *xo = x + o * hw * inner;
        for (size_t s = 0; s < hw; s++)
            for (size_t ci = 0; ci < inner && c0 + ci < C; ci++)
                st->acc[n * C + c0 + ci] += xo[s * inner + ci];
    }
    for (size_t i = 0; i < (size_t)v->n * C; i++)
        y[i] = (float)(st->acc[i] / (double)hw);
}

/* dx = dy / (H*W) broadcast over H*W; used for the gradient and for R{gradient}. */
static void gap_spread(const gap_state *st, const float *dy, float *dx, size_t dx_bytes) {
    const fwi_view *v = &st->in;
    size_t C = (size_t)v->c, hw = (size_t)(v->h * v->w), inner = (size_t)v->inner;
    float inv = 1.0f / (float)hw;
    memset(dx, 0, dx_bytes); /* padded channels of blocked layouts stay 0 */
    for (size_t o = 0; o < (size_t)v->n * (size_t)v->cb; o++) {
        size_t n = o / (size_t)v->cb, c0 = (o % (size_t)v->cb) * inner;
        float *dxo = dx + o * hw * inner;
        for (size_t s = 0; s < hw; s++)
            for (size_t ci = 0; ci < inner && c0 + ci < C; ci++)
                dxo[s * inner + ci] = dy[n * C + c0 + ci] * inv;
    }
}

static void gap_forward(fw_exec *e, int id, const float *theta) {
    (void)theta;
    gap_apply(e->nodes[id].state, fwi_in(e, id)->y.data, e->nodes[id].y.data);
}

static void gap_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    (void)theta, (void)dtheta;
    if (!need_dx)
        return;
    fwi_xnode *in = fwi_in(e, id);
    gap_spread(e->nodes[id].state, e->nodes[id].dy.data, in->dy.data, in->dy.bytes);
}

/* R-operator: the same linear map applied to R x and to R g_y. */
static void gap_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    (void)theta, (void)v;
    gap_apply(e->nodes[id].state, fwi_in(e, id)->ry.data, e->nodes[id].ry.data);
}

static void gap_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                           bool need_dx) {
    (void)theta, (void)v, (void)hv;
    if (!need_dx)
        return;
    fwi_xnode *in = fwi_in(e, id);
    gap_spread(e->nodes[id].state, e->nodes[id].rdy.data, in->rdy.data, in->rdy.bytes);
}

const fwi_layer_ops fwi_avgpool_ops = {
    .name = "avgpool",
    .exec_new = gap_exec_new,
    .forward = gap_forward,
    .backward = gap_backward,
    .exec_free = gap_exec_free,
    .r_forward = gap_r_forward,
    .r_backward = gap_r_backward,
};
