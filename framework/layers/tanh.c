/* tanh.c: y = tanh(x), element-wise; d(y) = 1 - y^2, dd(y) = -2y.
 * The loops and the R-operator passes are shared with sigmoid in pointwise.c. */
#include "framework/internal.h"

#include <math.h>

static float tanh_f(float x) {
    return tanhf(x);
}
static float tanh_d(float y) {
    return 1.0f - y * y;
}
static float tanh_dd(float y) {
    return -2.0f * y;
}

static const fwi_pointwise tanh_fn = {tanh_f, tanh_d, tanh_dd};

static fw_status tanh_exec_new(fw_exec *e, int id) {
    return fwi_pointwise_exec_new(e, id, &tanh_fn);
}

const fwi_layer_ops fwi_tanh_ops = {
    .name = "tanh",
    .exec_new = tanh_exec_new,
    .forward = fwi_pointwise_forward,
    .backward = fwi_pointwise_backward,
    .exec_free = free,
    .r_forward = fwi_pointwise_r_forward,
    .r_backward = fwi_pointwise_r_backward,
};
