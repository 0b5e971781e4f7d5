/* linear.c: fully connected layer y = W x + b through oneDNN inner product.
 * Parameters: W as (out, in) row-major, then b (out). Input and output are plain (B, F). */
#include "framework/internal.h"

#include <math.h>

typedef struct linear_state {
    fwi_prim *fwd, *bwd_data, *bwd_w;
    fwi_buf w, b;     /* views of theta */
    fwi_buf dw, db;   /* gradients of the last backward, added into dtheta */
    /* R-operator: views of the direction V, v_b; a zero bias; output- and input-sized temporaries. */
    fwi_buf v, vb, zero_b, ty, tx;
} linear_state;

static fw_status linear_build(fw_exec *e, int id, linear_state *st) {
    const fwi_node *n = fwi_node_of(e, id);
    const dnnl_memory_desc_t *src = &fwi_in(e, id)->y.md;
    FW_ASSERT(src->ndims == 2, "linear needs a (B, F) input");
    dnnl_dims_t w_d = {n->out.c, src->dims[1]}, b_d = {n->out.c}, y_d = {e->batch, n->out.c};
    dnnl_memory_desc_t wmd, bmd, ymd;
    fwi_md_tag(&wmd, 2, w_d, dnnl_oi);
    fwi_md_tag(&bmd, 1, b_d, dnnl_x);
    fwi_md_tag(&ymd, 2, y_d, dnnl_nc);
    dnnl_inner_product_desc_t fd, dd, wd;
    fwi_dnnl_must(dnnl_inner_product_forward_desc_init(&fd, dnnl_forward_training, src, &wmd, &bmd,
                                                       &ymd), "linear fwd desc");
    fwi_dnnl_must(dnnl_inner_product_backward_data_desc_init(&dd, src, &wmd, &ymd),
                  "linear bwd data desc");
    fwi_dnnl_must(dnnl_inner_product_backward_weights_desc_init(&wd, src, &wmd, &bmd, &ymd),
                  "linear bwd weights desc");
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    fw_status r;
    if ((r = fwi_pd_new(e, &fpd, &fd, NULL, "linear fwd")) == FW_OK &&
        (r = fwi_pd_new(e, &dpd, &dd, fpd, "linear bwd_data")) == FW_OK &&
        (r = fwi_pd_new(e, &wpd, &wd, fpd, "linear bwd_weights")) == FW_OK &&
        (r = fwi_prim_new(e, &st->fwd, fpd, "linear fwd", false)) == FW_OK &&
        (r = fwi_prim_new(e, &st->bwd_data, dpd, "linear bwd_data", false)) == FW_OK &&
        (r = fwi_prim_new(e, &st->bwd_w, wpd, "linear bwd_weights", false)) == FW_OK &&
        (r = fwi_buf_wrap(e, &st->w, &wmd, NULL)) == FW_OK &&
        (r = fwi_buf_wrap(e, &st->b, &bmd, NULL)) == FW_OK &&
        (r = fwi_buf_alloc(e, &st->dw, &wmd)) == FW_OK &&
        (r = fwi_buf_alloc(e, &st->db, &bmd)) == FW_OK &&
        (r = fwi_buf_wrap(e, &st->v, &wmd, NULL)) == FW_OK &&
        (r = fwi_buf_wrap(e, &st->vb, &bmd, NULL)) == FW_OK &&
        (r = fwi_buf_alloc(e, &st->zero_b, &bmd)) == FW_OK &&
        (r = fwi_buf_alloc(e, &st->ty, &ymd)) == FW_OK &&
        (r = fwi_buf_alloc(e, &st->tx, src)) == FW_OK)
        e->nodes[id].y.md = ymd;
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    return r;
}

static fw_status linear_exec_new(fw_exec *e, int id) {
    linear_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    return linear_build(e, id, st);
}

static void linear_exec_free(void *state) {
    linear_state *st = state;
    fwi_buf_free(&st->w);
    fwi_buf_free(&st->b);
    fwi_buf_free(&st->dw);
    fwi_buf_free(&st->db);
    fwi_buf *rbufs[] = {&st->v, &st->vb, &st->zero_b, &st->ty, &st->tx};
    for (size_t i = 0; i < FW_COUNTOF(rbufs); i++)
        fwi_buf_free(rbufs[i]);
    free(st);
}

static void point_params(linear_state *st, const fwi_node *n, const float *theta) {
    fwi_buf_point(&st->w, theta + n->param_off);
    fwi_buf_point(&st->b, theta + n->param_off + fwi_buf_len(&st->dw));
}

static void linear_forward(fw_exec *e, int id, const float *theta) {
    linear_state *st = e->nodes[id].state;
    point_params(st, fwi_node_of(e, id), theta);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, fwi_in(e, id)->y.mem}, {DNNL_ARG_WEIGHTS, st->w.mem},
                              {DNNL_ARG_BIAS, st->b.mem}, {DNNL_ARG_DST, e->nodes[id].y.mem}};
    fwi_run(e, st->fwd, 4, args);
}

static void linear_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    linear_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *in = fwi_in(e, id);
    dnnl_memory_t dy = e->nodes[id].dy.mem;
    if (dtheta) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, in->y.mem}, {DNNL_ARG_DIFF_DST, dy},
                                  {DNNL_ARG_DIFF_WEIGHTS, st->dw.mem},
                                  {DNNL_ARG_DIFF_BIAS, st->db.mem}};
        fwi_run(e, st->bwd_w, 4, args);
        fwi_add(dtheta + n->param_off, st->dw.data, fwi_buf_len(&st->dw));
        fwi_add(dtheta + n->param_off + fwi_buf_len(&st->dw), st->db.data, fwi_buf_len(&st->db));
    }
    if (need_dx) {
        point_params(st, n, theta);
        dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, st->w.mem},
                                  {DNNL_ARG_DIFF_SRC, in->dy.mem}};
        fwi_run(e, st->bwd_data, 3, args);
    }
}

/* ---- R-operator (docs/second-order-notes.md): the same primitives with other memories ---- */

static void point_direction(linear_state *st, const fwi_node *n, const float *v) {
    fwi_buf_point(&st->v, v + n->param_off);
    fwi_buf_point(&st->vb, v + n->param_off + fwi_buf_len(&st->dw));
}

/* R y = W R x + V x + v_b; R x = 0 when the input is the data. */
static void linear_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    linear_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *in = fwi_in(e, id);
    fwi_buf *ry = &e->nodes[id].ry;
    bool first = n->in == 0;
    point_direction(st, n, v);
    dnnl_exec_arg_t vx[] = {{DNNL_ARG_SRC, in->y.mem}, {DNNL_ARG_WEIGHTS, st->v.mem},
                            {DNNL_ARG_BIAS, st->vb.mem}, {DNNL_ARG_DST, first ? ry->mem : st->ty.mem}};
    fwi_run(e, st->fwd, 4, vx);
    if (first)
        return;
    point_params(st, n, theta);
    dnnl_exec_arg_t wrx[] = {{DNNL_ARG_SRC, in->ry.mem}, {DNNL_ARG_WEIGHTS, st->w.mem},
                             {DNNL_ARG_BIAS, st->zero_b.mem}, {DNNL_ARG_DST, ry->mem}};
    fwi_run(e, st->fwd, 4, wrx);
    fwi_add(ry->data, st->ty.data, fwi_buf_len(ry));
}

/* R g_W = bwd_w(x, R g_y) + bwd_w(R x, g_y), R g_b = sum R g_y;
 * R g_x = bwd_data(R g_y, W) + bwd_data(g_y, V). */
static void linear_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                              bool need_dx) {
    linear_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *in = fwi_in(e, id), *me = &e->nodes[id];
    size_t nw = fwi_buf_len(&st->dw);
    if (hv) {
        dnnl_exec_arg_t a1[] = {{DNNL_ARG_SRC, in->y.mem}, {DNNL_ARG_DIFF_DST, me->rdy.mem},
                                {DNNL_ARG_DIFF_WEIGHTS, st->dw.mem},
                                {DNNL_ARG_DIFF_BIAS, st->db.mem}};
        fwi_run(e, st->bwd_w, 4, a1);
        fwi_add(hv + n->param_off, st->dw.data, nw);
        fwi_add(hv + n->param_off + nw, st->db.data, fwi_buf_len(&st->db));
        if (n->in != 0) {
            dnnl_exec_arg_t a2[] = {{DNNL_ARG_SRC, in->ry.mem}, {DNNL_ARG_DIFF_DST, me->dy.mem},
                                    {DNNL_ARG_DIFF_WEIGHTS, st->dw.mem},
                                    {DNNL_ARG_DIFF_BIAS, st->db.mem}};
            fwi_run(e, st->bwd_w, 4, a2);
            fwi_add(hv + n->param_off, st->dw.data, nw);
        }
    }
    if (!need_dx)
        return;
    point_params(st, n, theta);
    point_direction(st, n, v);
    dnnl_exec_arg_t d1[] = {{DNNL_ARG_DIFF_DST, me->rdy.mem}, {DNNL_ARG_WEIGHTS, st->w.mem},
                            {DNNL_ARG_DIFF_SRC, in->rdy.mem}};
    fwi_run(e, st->bwd_data, 3, d1);
    dnnl_exec_arg_t d2[] = {{DNNL_ARG_DIFF_DST, me->dy.mem}, {DNNL_ARG_WEIGHTS, st->v.mem},
                            {DNNL_ARG_DIFF_SRC, st->tx.mem}};
    fwi_run(e, st->bwd_data, 3, d2);
    fwi_add(in->rdy.data, st->tx.data, fwi_buf_len(&st->tx));
}

/* Xavier uniform weights, zero bias. */
static void linear_init(const fwi_node *n, fw_shape in, float *w, fw_rng *r) {
    size_t nw = (size_t)n->linear.out * (size_t)in.c;
    float a = (float)sqrt(6.0 / (double)(in.c + n->linear.out));
    for (size_t i = 0; i < nw; i++)
        w[i] = a * (2.0f * fw_rng_uniform(r) - 1.0f);
    for (size_t i = nw; i < n->n_params; i++)
        w[i] = 0.0f;
}

const fwi_layer_ops fwi_linear_ops = {
    .name = "linear",
    .exec_new = linear_exec_new,
    .forward = linear_forward,
    .backward = linear_backward,
    .exec_free = linear_exec_free,
    .init_params = linear_init,
    .r_forward = linear_r_forward,
    .r_backward = linear_r_backward,
};
