/* linear.c: fully connected layer y = W x + b through oneDNN inner product.
 * Parameters: W as (out, in) row-major, then b (out). Input and output are plain (B, F). */
#include "framework/internal.h"

#include <math.h>

typedef struct linear_state {
    fwi_prim *fwd, *bwd_data, *bwd_w;
    fwi_buf w, b;     /* views of theta */
    fwi_buf dw, db;   /* gradients of the last backward, added into dtheta */
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
        (r = fwi_buf_alloc(e, &st->db, &bmd)) == FW_OK)
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
};
