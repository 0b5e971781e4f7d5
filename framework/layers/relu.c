/* relu.c: ReLU and leaky ReLU (slope a for x < 0) through oneDNN eltwise, in the producer's
 * layout. The backward pass uses the forward input, so the mask at x = 0 is that of x > 0. */
#include "framework/internal.h"

typedef struct relu_state {
    fwi_prim *fwd, *bwd;
} relu_state;

static fw_status relu_build(fw_exec *e, int id, relu_state *st) {
    const dnnl_memory_desc_t *data = &fwi_in(e, id)->y.md;
    float slope = fwi_node_of(e, id)->relu.slope;
    dnnl_eltwise_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    fwi_dnnl_must(dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, dnnl_eltwise_relu,
                                                 data, slope, 0.0f), "relu fwd desc");
    fwi_dnnl_must(dnnl_eltwise_backward_desc_init(&bd, dnnl_eltwise_relu, data, data, slope, 0.0f),
                  "relu bwd desc");
    fw_status r;
    if ((r = fwi_pd_new(e, &fpd, &fd, NULL, "relu fwd")) == FW_OK &&
        (r = fwi_pd_new(e, &bpd, &bd, fpd, "relu bwd")) == FW_OK &&
        (r = fwi_prim_new(e, &st->fwd, fpd, "relu fwd", false)) == FW_OK &&
        (r = fwi_prim_new(e, &st->bwd, bpd, "relu bwd", false)) == FW_OK)
        e->nodes[id].y.md = *fwi_pd_md(fpd, DNNL_ARG_DST);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    return r;
}

static fw_status relu_exec_new(fw_exec *e, int id) {
    relu_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    return relu_build(e, id, st);
}

static void relu_forward(fw_exec *e, int id, const float *theta) {
    (void)theta;
    relu_state *st = e->nodes[id].state;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, fwi_in(e, id)->y.mem}, {DNNL_ARG_DST, e->nodes[id].y.mem}};
    fwi_run(e, st->fwd, 2, args);
}

static void relu_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    (void)theta, (void)dtheta;
    if (!need_dx)
        return;
    relu_state *st = e->nodes[id].state;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, fwi_in(e, id)->y.mem},
                              {DNNL_ARG_DIFF_DST, e->nodes[id].dy.mem},
                              {DNNL_ARG_DIFF_SRC, fwi_in(e, id)->dy.mem}};
    fwi_run(e, st->bwd, 3, args);
}

/* R-operator: the activation is piecewise linear, so R y = phi'(x) R x and R g_x = phi'(x) R g_y,
 * with phi' = 1 for x > 0, else the slope. That is the backward primitive (src = the forward
 * input x) applied to other memories, so the mask is exactly the backward pass's. */
static void relu_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    (void)theta, (void)v;
    relu_state *st = e->nodes[id].state;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, fwi_in(e, id)->y.mem},
                              {DNNL_ARG_DIFF_DST, fwi_in(e, id)->ry.mem},
                              {DNNL_ARG_DIFF_SRC, e->nodes[id].ry.mem}};
    fwi_run(e, st->bwd, 3, args);
}

static void relu_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                            bool need_dx) {
    (void)theta, (void)v, (void)hv;
    if (!need_dx)
        return;
    relu_state *st = e->nodes[id].state;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, fwi_in(e, id)->y.mem},
                              {DNNL_ARG_DIFF_DST, e->nodes[id].rdy.mem},
                              {DNNL_ARG_DIFF_SRC, fwi_in(e, id)->rdy.mem}};
    fwi_run(e, st->bwd, 3, args);
}

const fwi_layer_ops fwi_relu_ops = {
    .name = "relu",
    .exec_new = relu_exec_new,
    .forward = relu_forward,
    .backward = relu_backward,
    .exec_free = free,
    .r_forward = relu_r_forward,
    .r_backward = relu_r_backward,
};
