/* flatten.c: (C, H, W) -> (C*H*W) per example in CHW order, whatever layout the producer chose:
 * a oneDNN reorder into plain nchw, which is the same bytes as the (B, C*H*W) output. */
#include "framework/internal.h"

#include <string.h>

typedef struct flat_state {
    fwi_prim *fwd, *bwd; /* NULL when the producer is already nchw */
    fwi_buf y4, dy4;     /* 4-D nchw views of this node's y and dy   */
} flat_state;

static fw_status flat_exec_new(fw_exec *e, int id) {
    flat_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    const dnnl_memory_desc_t *x = &fwi_in(e, id)->y.md;
    FW_ASSERT(x->ndims == 4 || x->ndims == 2, "flatten of a %d-D tensor", x->ndims);
    /* A (B, F) input is already flat: the reorders below come out NULL and flatten copies. */
    dnnl_memory_desc_t plain4;
    fwi_md_tag(&plain4, x->ndims, x->dims, x->ndims == 4 ? dnnl_nchw : dnnl_nc);
    dnnl_dims_t d = {e->batch, fwi_node_of(e, id)->out.c};
    fwi_md_tag(&e->nodes[id].y.md, 2, d, dnnl_nc);
    FW_TRY(fwi_buf_wrap(e, &st->y4, &plain4, NULL));
    FW_TRY(fwi_buf_wrap(e, &st->dy4, &plain4, NULL));
    FW_TRY(fwi_reorder_new(e, &st->fwd, x, &plain4, "flatten fwd"));
    return fwi_reorder_new(e, &st->bwd, &plain4, x, "flatten bwd");
}

static void flat_exec_free(void *state) {
    flat_state *st = state;
    fwi_buf_free(&st->y4);
    fwi_buf_free(&st->dy4);
    free(st);
}

static void flat_forward(fw_exec *e, int id, const float *theta) {
    (void)theta;
    flat_state *st = e->nodes[id].state;
    fwi_xnode *in = fwi_in(e, id);
    if (!st->fwd) {
        memcpy(e->nodes[id].y.data, in->y.data, e->nodes[id].y.bytes);
        return;
    }
    fwi_buf_point(&st->y4, e->nodes[id].y.data);
    fwi_reorder(e, st->fwd, in->y.mem, st->y4.mem);
}

static void flat_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    (void)theta, (void)dtheta;
    if (!need_dx)
        return;
    flat_state *st = e->nodes[id].state;
    fwi_xnode *in = fwi_in(e, id);
    if (!st->bwd) {
        memcpy(in->dy.data, e->nodes[id].dy.data, e->nodes[id].dy.bytes);
        return;
    }
    fwi_buf_point(&st->dy4, e->nodes[id].dy.data);
    fwi_reorder(e, st->bwd, st->dy4.mem, in->dy.mem);
}

/* R-operator: the same reorders (or copies) applied to R x and R g_y. */
static void flat_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    (void)theta, (void)v;
    flat_state *st = e->nodes[id].state;
    fwi_xnode *in = fwi_in(e, id);
    if (!st->fwd) {
        memcpy(e->nodes[id].ry.data, in->ry.data, e->nodes[id].ry.bytes);
        return;
    }
    fwi_buf_point(&st->y4, e->nodes[id].ry.data);
    fwi_reorder(e, st->fwd, in->ry.mem, st->y4.mem);
}

static void flat_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                            bool need_dx) {
    (void)theta, (void)v, (void)hv;
    if (!need_dx)
        return;
    flat_state *st = e->nodes[id].state;
    fwi_xnode *in = fwi_in(e, id);
    if (!st->bwd) {
        memcpy(in->rdy.data, e->nodes[id].rdy.data, e->nodes[id].rdy.bytes);
        return;
    }
    fwi_buf_point(&st->dy4, e->nodes[id].rdy.data);
    fwi_reorder(e, st->bwd, st->dy4.mem, in->rdy.mem);
}

const fwi_layer_ops fwi_flatten_ops = {
    .name = "flatten",
    .exec_new = flat_exec_new,
    .forward = flat_forward,
    .backward = flat_backward,
    .exec_free = flat_exec_free,
    .r_forward = flat_r_forward,
    .r_backward = flat_r_backward,
};
