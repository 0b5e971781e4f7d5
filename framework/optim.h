/* optim.h: SGD and Adam on flat vectors. Inner-loop SGD needs no state (fw_sgd_step); Adam
 * owns its two moment vectors. */
#ifndef FW_OPTIM_H
#define FW_OPTIM_H

#include "framework/base.h"

void fw_sgd_step(float *theta, const float *grad, size_t n, float lr);

typedef struct fw_adam {
    size_t n;
    float lr, beta1, beta2, eps;
    int64_t t;     /* steps taken                 */
    float *m, *v;  /* owned; first and second moments */
} fw_adam;

fw_status fw_adam_init(fw_adam *o, size_t n, float lr, float beta1, float beta2);
/* One bias-corrected Adam step (Kingma & Ba, Algorithm 1; eps 1e-8). */
void fw_adam_step(fw_adam *o, float *theta, const float *grad);
void fw_adam_free(fw_adam *o);

#endif
