/* maxpool.c: 2x2 max-pool, stride 2 (floor), with our own kernel: oneDNN's AVX2 pooling is about
 * 5x slower on these machines (docs/onednn-2.6-notes.md, trap 3). Works in the producer's layout
 * (nchw, nhwc or nChw8c) and keeps it. Ties go to the first maximum in row-major window order. */
#include "framework/internal.h"

#include <string.h>

typedef struct pool_state {
    fwi_view in, out;
    uint8_t *argmax; /* owned; per output element, window position 0..3 */
} pool_state;

static fw_status pool_exec_new(fw_exec *e, int id) {
    pool_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    const dnnl_memory_desc_t *x = &fwi_in(e, id)->y.md;
    st->in = fwi_view_of(x);
    fw_shape o = fwi_node_of(e, id)->out;
    dnnl_dims_t d = {e->batch, o.c, o.h, o.w};
    fwi_md_tag(&e->nodes[id].y.md, 4, d, st->in.tag);
    st->out = fwi_view_of(&e->nodes[id].y.md);
    st->argmax = fw_alloc(dnnl_memory_desc_get_size(&e->nodes[id].y.md) / sizeof(float));
    return st->argmax ? FW_OK : fw_errorf(FW_ERR_NOMEM, "out of memory");
}

static void pool_exec_free(void *state) {
    pool_state *st = state;
    fw_free(st->argmax);
    free(st);
}

/* Both layouts are (outer, H, W, inner) with outer = N * CB; only H and W differ. */
static void pool_forward(fw_exec *e, int id, const float *theta) {
    (void)theta;
    pool_state *st = e->nodes[id].state;
    const float *x = fwi_in(e, id)->y.data;
    float *y = e->nodes[id].y.data;
    const fwi_view *vi = &st->in, *vo = &st->out;
    size_t inner = (size_t)vi->inner, n_outer = (size_t)vi->n * (size_t)vi->cb;
    for (size_t o = 0; o < n_outer; o++)
        for (int oh = 0; oh < vo->h; oh++)
            for (int ow = 0; ow < vo->w; ow++) {
                size_t yi = ((o * (size_t)vo->h + (size_t)oh) * (size_t)vo->w + (size_t)ow) * inner;
                size_t x0 = ((o * (size_t)vi->h + 2 * (size_t)oh) * (size_t)vi->w + 2 * (size_t)ow) * inner;
                size_t offs[4] = {0, inner, (size_t)vi->w * inner, ((size_t)vi->w + 1) * inner};
                for (size_t c = 0; c < inner; c++) {
                    float best = x[x0 + c];
                    uint8_t arg = 0;
                    for (uint8_t k = 1; k < 4; k++)
                        if (x[x0 + offs[k] + c] > best) {
                            best = x[x0 + offs[k] + c];
                            arg = k;
                        }
                    y[yi + c] = best;
                    st->argmax[yi + c] = arg;
                }
            }
}

/* dx = dy scattered to the forward argmax of each window, 0 elsewhere (gradient and R{gradient}). */
static void pool_scatter(const pool_state *st, const float *dy, float *dx, size_t dx_bytes) {
    memset(dx, 0, dx_bytes); /* odd rows/columns and non-maxima get no gradient */
    const fwi_view *vi = &st->in, *vo = &st->out;
    size_t inner = (size_t)vi->inner, n_outer = (size_t)vi->n * (size_t)vi->cb;
    for (size_t o = 0; o < n_outer; o++)
        for (int oh = 0; oh < vo->h; oh++)
            for (int ow = 0; ow < vo->w; ow++) {
                size_t yi = ((o * (size_t)vo->h + (size_t)oh) * (size_t)vo->w + (size_t)ow) * inner;
                size_t x0 = ((o * (size_t)vi->h + 2 * (size_t)oh) * (size_t)vi->w + 2 * (size_t)ow) * inner;
                size_t offs[4] = {0, inner, (size_t)vi->w * inner, ((size_t)vi->w + 1) * inner};
                for (size_t c = 0; c < inner; c++)
                    dx[x0 + offs[st->argmax[yi + c]] + c] = dy[yi + c];
            }
}

static void pool_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    (void)theta, (void)dtheta;
    if (!need_dx)
        return;
    fwi_xnode *in = fwi_in(e, id);
    pool_scatter(e->nodes[id].state, e->nodes[id].dy.data, in->dy.data, in->dy.bytes);
}

/* R-operator: R y = R x at the forward argmax; R g_x = R g_y scattered like g_y. */
static void pool_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    (void)theta, (void)v;
    pool_state *st = e->nodes[id].state;
    const float *rx = fwi_in(e, id)->ry.data;
    float *ry = e->nodes[id].ry.data;
    const fwi_view *vi = &st->in, *vo = &st->out;
    size_t inner = (size_t)vi->inner, n_outer = (size_t)vi->n * (size_t)vi->cb;
    for (size_t o = 0; o < n_outer; o++)
        for (int oh = 0; oh < vo->h; oh++)
            for (int ow = 0; ow < vo->w; ow++) {
                size_t yi = ((o * (size_t)vo->h + (size_t)oh) * (size_t)vo->w + (size_t)ow) * inner;
                size_t x0 = ((o * (size_t)vi->h + 2 * (size_t)oh) * (size_t)vi->w + 2 * (size_t)ow) * inner;
                size_t offs[4] = {0, inner, (size_t)vi->w * inner, ((size_t)vi->w + 1) * inner};
                for (size_t c = 0; c < inner; c++)
                    ry[yi + c] = rx[x0 + offs[st->argmax[yi + c]] + c];
            }
}

static void pool_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                            bool need_dx) {
    (void)theta, (void)v, (void)hv;
    if (!need_dx)
        return;
    fwi_xnode *in = fwi_in(e, id);
    pool_scatter(e->nodes[id].state, e->nodes[id].rdy.data, in->rdy.data, in->rdy.bytes);
}

const fwi_layer_ops fwi_maxpool_ops = {
    .name = "maxpool2",
    .exec_new = pool_exec_new,
    .forward = pool_forward,
    .backward = pool_backward,
    .exec_free = pool_exec_free,
    .r_forward = pool_r_forward,
    .r_backward = pool_r_backward,
};
