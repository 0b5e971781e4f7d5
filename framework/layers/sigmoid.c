/* sigmoid.c: y = 1 / (1 + exp(-x)), element-wise; d(y) = y (1 - y), dd(y) = 1 - 2y.
 * The loops and the R-operator passes are shared with tanh in pointwise.c. */
#include "framework/internal.h"

#include <math.h>

static float sigmoid_f(float x) {
    return 1.0f / (1.0f + expf(-x));
}
static float sigmoid_d(float y) {
    return y * (1.0f - y);
}
static float sigmoid_dd(float y) {
    return 1.0f - 2.0f * y;
}

static const fwi_pointwise sigmoid_fn = {sigmoid_f, sigmoid_d, sigmoid_dd};

static fw_status sigmoid_exec_new(fw_exec *e, int id) {
    return fwi_pointwise_exec_new(e, id, &sigmoid_fn);
}

const fwi_layer_ops fwi_sigmoid_ops = {
    .name = "sigmoid",
    .exec_new = sigmoid_exec_new,
    .forward = fwi_pointwise_forward,
    .backward = fwi_pointwise_backward,
    .exec_free = free,
    .r_forward = fwi_pointwise_r_forward,
    .r_backward = fwi_pointwise_r_backward,
};
