/* input.c: the graph's input node. Its output is the caller's batch, plain: (B, C, H, W), or
 * (B, F) for a (F, 1, 1) input so that it can feed a linear layer directly. */
#include "framework/internal.h"

static fw_status input_exec_new(fw_exec *e, int id) {
    fw_shape s = fwi_node_of(e, id)->out;
    dnnl_dims_t d = {e->batch, s.c, s.h, s.w};
    if (s.h == 1 && s.w == 1)
        fwi_md_tag(&e->nodes[id].y.md, 2, d, dnnl_nc);
    else
        fwi_md_tag(&e->nodes[id].y.md, 4, d, dnnl_nchw);
    return FW_OK;
}

static void input_forward(fw_exec *e, int id, const float *theta) {
    (void)e, (void)id, (void)theta; /* fw_forward copies the batch in */
}

static void input_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    (void)e, (void)id, (void)theta, (void)dtheta, (void)need_dx;
}

/* Data does not depend on theta: R{x} stays 0 (the exec never runs these; they say so). */
static void input_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    (void)e, (void)id, (void)theta, (void)v;
}

static void input_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                             bool need_dx) {
    (void)e, (void)id, (void)theta, (void)v, (void)hv, (void)need_dx;
}

const fwi_layer_ops fwi_input_ops = {
    .name = "input",
    .exec_new = input_exec_new,
    .forward = input_forward,
    .backward = input_backward,
    .r_forward = input_r_forward,
    .r_backward = input_r_backward,
};
