/* batchnorm.c: batch normalisation with transductive batch statistics (as MAML uses it: the
 * statistics of the current batch, in training and at test; no running averages).
 * Parameters: scale (C) then shift (C). oneDNN forward_training + backward, in the layout of the
 * producing layer. eps = 1e-5, as PyTorch's default, so reference checks use the same formula. */
#include "framework/internal.h"

#define BN_EPS 1e-5f

typedef struct bn_state {
    fwi_prim *fwd, *bwd;
    fwi_buf scale, shift;          /* views of theta                        */
    fwi_buf mean, var;             /* batch statistics of the last forward  */
    fwi_buf dscale, dshift;
} bn_state;

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
};
