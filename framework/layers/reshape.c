/* reshape.c: any (C', H', W') input -> (C, H, W) with C*H*W = C'*H'*W' per example, in CHW order
 * (the inverse of flatten; typically a (F) vector from a linear layer to an image). The output is
 * plain: nchw, or nc for a (C, 1, 1) vector; the next layer reorders it to the layout it prefers.
 * A producer in a blocked layout is reordered to plain first (the same bytes as the output).
 * Forward, backward and both R-operator passes are the same map, on y, dy, R{y} and R{dy}. */
#include "framework/internal.h"

#include <string.h>

typedef struct reshape_state {
    fwi_prim *fwd, *bwd; /* producer layout <-> plain; NULL when the producer is plain */
    fwi_buf view;        /* this node's buffers seen with the producer's dims, plain   */
} reshape_state;

static fw_status reshape_exec_new(fw_exec *e, int id) {
    reshape_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    const dnnl_memory_desc_t *x = &fwi_in(e, id)->y.md;
    FW_ASSERT(x->ndims == 2 || x->ndims == 4, "reshape of a %d-D tensor", x->ndims);
    dnnl_memory_desc_t plain_in;
    fwi_md_tag(&plain_in, x->ndims, x->dims, x->ndims == 2 ? dnnl_nc : dnnl_nchw);
    fw_shape s = fwi_node_of(e, id)->out;
    if (s.h == 1 && s.w == 1) {
        dnnl_dims_t d = {e->batch, s.c};
        fwi_md_tag(&e->nodes[id].y.md, 2, d, dnnl_nc);
    } else {
        dnnl_dims_t d = {e->batch, s.c, s.h, s.w};
        fwi_md_tag(&e->nodes[id].y.md, 4, d, dnnl_nchw);
    }
    FW_TRY(fwi_buf_wrap(e, &st->view, &plain_in, NULL));
    FW_TRY(fwi_reorder_new(e, &st->fwd, x, &plain_in, "reshape fwd"));
    return fwi_reorder_new(e, &st->bwd, &plain_in, x, "reshape bwd");
}

static void reshape_exec_free(void *state) {
    reshape_state *st = state;
    fwi_buf_free(&st->view);
    free(st);
}

/* out (this node's buffer) = the producer's `in`, plain. */
static void to_plain(fw_exec *e, reshape_state *st, const fwi_buf *in, fwi_buf *out) {
    if (!st->fwd) {
        memcpy(out->data, in->data, out->bytes);
        return;
    }
    fwi_buf_point(&st->view, out->data);
    fwi_reorder(e, st->fwd, in->mem, st->view.mem);
}

/* The producer's `out` = this node's plain `in`. */
static void from_plain(fw_exec *e, reshape_state *st, const fwi_buf *in, fwi_buf *out) {
    if (!st->bwd) {
        memcpy(out->data, in->data, in->bytes);
        return;
    }
    fwi_buf_point(&st->view, in->data);
    fwi_reorder(e, st->bwd, st->view.mem, out->mem);
}

static void reshape_forward(fw_exec *e, int id, const float *theta) {
    (void)theta;
    to_plain(e, e->nodes[id].state, &fwi_in(e, id)->y, &e->nodes[id].y);
}

static void reshape_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    (void)theta, (void)dtheta;
    if (need_dx)
        from_plain(e, e->nodes[id].state, &e->nodes[id].dy, &fwi_in(e, id)->dy);
}

static void reshape_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    (void)theta, (void)v;
    to_plain(e, e->nodes[id].state, &fwi_in(e, id)->ry, &e->nodes[id].ry);
}

static void reshape_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                               bool need_dx) {
    (void)theta, (void)v, (void)hv;
    if (need_dx)
        from_plain(e, e->nodes[id].state, &e->nodes[id].rdy, &fwi_in(e, id)->rdy);
}

const fwi_layer_ops fwi_reshape_ops = {
    .name = "reshape",
    .exec_new = reshape_exec_new,
    .forward = reshape_forward,
    .backward = reshape_backward,
    .exec_free = reshape_exec_free,
    .r_forward = reshape_r_forward,
    .r_backward = reshape_r_backward,
};
