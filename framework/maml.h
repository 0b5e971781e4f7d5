/* maml.h: MAML (Finn et al. 2017) for any classifier graph whose last node outputs `ways` logits.
 *
 * Inner loop: inner_steps SGD steps of lr inner_lr on the support loss, from the meta-parameters
 * (all parameters adapt, batchnorm's scale and shift included). Outer gradient: the query-loss
 * gradient at the adapted weights, i.e. first-order MAML (FOMAML). The exact second-order
 * gradient (R-operator Hessian-vector products through the inner steps) is the next step; the
 * layer interface and the runner already leave room for it.
 * Use with the runner: fw_meta_new(&m, &fw_maml_ops, &maml, n_params, ...).
 */
#ifndef FW_MAML_H
#define FW_MAML_H

#include "framework/graph.h"
#include "framework/meta.h"

typedef struct fw_maml {
    const fw_graph *g;  /* borrowed */
    int ways, shots, query;
    int inner_steps;       /* during meta-training */
    int test_inner_steps;  /* during evaluation    */
    float inner_lr;
    bool first_order;      /* true: FOMAML; false: exact second order (R-operator HVPs) */
} fw_maml;

extern const fw_meta_ops fw_maml_ops;

#endif
