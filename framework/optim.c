/* optim.c: SGD and Adam. */
#include "framework/optim.h"

#include <math.h>
#include <string.h>

/* `omp simd`: element-wise, so vector lanes give the scalar loop's bits (params.c). */
void fw_sgd_step(float *theta, const float *grad, size_t n, float lr) {
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        theta[i] -= lr * grad[i];
}

fw_status fw_adam_init(fw_adam *o, size_t n, float lr, float beta1, float beta2) {
    memset(o, 0, sizeof *o);
    FW_ASSERT(lr > 0 && beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
              "adam lr %g beta1 %g beta2 %g", lr, beta1, beta2);
    o->n = n;
    o->lr = lr;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = 1e-8f;
    o->m = fw_alloc(n * sizeof(float));
    o->v = fw_alloc(n * sizeof(float));
    if (!o->m || !o->v) {
        fw_adam_free(o);
        return fw_errorf(FW_ERR_NOMEM, "out of memory for Adam state (%zu parameters)", n);
    }
    return FW_OK;
}

void fw_adam_step(fw_adam *o, float *theta, const float *grad) {
    o->t++;
    /* Bias corrections in double: beta^t underflows gracefully and stays exact for small t. */
    float c1 = (float)(1.0 - pow(o->beta1, (double)o->t));
    float c2 = (float)(1.0 - pow(o->beta2, (double)o->t));
#pragma omp simd
    for (size_t i = 0; i < o->n; i++) {
        o->m[i] = o->beta1 * o->m[i] + (1 - o->beta1) * grad[i];
        o->v[i] = o->beta2 * o->v[i] + (1 - o->beta2) * grad[i] * grad[i];
        theta[i] -= o->lr * (o->m[i] / c1) / (sqrtf(o->v[i] / c2) + o->eps);
    }
}

void fw_adam_free(fw_adam *o) {
    fw_free(o->m);
    fw_free(o->v);
    o->m = o->v = NULL;
}
