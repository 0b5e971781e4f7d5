/* maml.c: the MAML task: adapt on the support set, evaluate and differentiate on the query set.
 *
 * Second order (Finn et al. 2017, eq. 1, differentiated through the inner loop): with
 * theta_{i+1} = theta_i - a grad L_s(theta_i), the meta-gradient is
 *   v <- grad L_q(theta_k);  for i = k-1 .. 0:  v <- v - a H_s(theta_i) v
 * and each Hessian-vector product is exact, from the R-operator (fw_r_forward / fw_r_backward),
 * never from finite differences (docs/second-order-notes.md measured those at 29 % error). */
#include "framework/maml.h"
#include "framework/loss.h"
#include "framework/optim.h"
#include "framework/params.h"

typedef struct maml_worker {
    fw_exec *support, *query; /* owned; batch ways*shots and ways*query          */
    float *fast;              /* owned; (P,) adapted weights                      */
    float *grad;              /* owned; (P,) inner-loop gradient                  */
    float *trajectory;        /* owned; (inner_steps, P) theta_0 .. theta_{k-1}    */
    float *v, *hv;            /* owned; (P,) back-propagated meta-gradient, H v    */
    float *dlogits, *r_dlogits; /* owned; (ways*max(shots, query), ways)           */
    const float *support_logits; /* borrowed from the support exec: its last forward   */
} maml_worker;

static void maml_worker_free(void *p) {
    maml_worker *w = p;
    if (!w)
        return;
    fw_exec_free(w->support);
    fw_exec_free(w->query);
    float *bufs[] = {w->fast, w->grad, w->trajectory, w->v, w->hv, w->dlogits, w->r_dlogits};
    for (size_t i = 0; i < FW_COUNTOF(bufs); i++)
        fw_free(bufs[i]);
    free(w);
}

static fw_status maml_worker_new(const void *model, void **out) {
    const fw_maml *mm = model;
    fw_shape o = fw_graph_shape(mm->g, fw_graph_n_nodes(mm->g) - 1);
    FW_ASSERT(o.c == mm->ways && o.h == 1 && o.w == 1,
              "the graph must end in %d logits, it ends in (%d, %d, %d)", mm->ways, o.c, o.h, o.w);
    size_t P = fw_graph_n_params(mm->g);
    maml_worker *w = calloc(1, sizeof *w);
    if (!w)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    *out = w;
    size_t big = (size_t)(mm->ways * (mm->query > mm->shots ? mm->query : mm->shots) * mm->ways);
    size_t steps = mm->inner_steps > 0 ? (size_t)mm->inner_steps : 1;
    w->fast = fw_alloc(P * sizeof(float));
    w->grad = fw_alloc(P * sizeof(float));
    w->v = fw_alloc(P * sizeof(float));
    w->hv = fw_alloc(P * sizeof(float));
    w->trajectory = mm->first_order ? fw_alloc(1) : fw_alloc(steps * P * sizeof(float));
    w->dlogits = fw_alloc(big * sizeof(float));
    w->r_dlogits = fw_alloc(big * sizeof(float));
    if (!w->fast || !w->grad || !w->v || !w->hv || !w->trajectory || !w->dlogits || !w->r_dlogits)
        return fw_errorf(FW_ERR_NOMEM, "out of memory for MAML fast weights");
    FW_TRY(fw_exec_new(&w->support, mm->g, mm->ways * mm->shots));
    return fw_exec_new(&w->query, mm->g, mm->ways * mm->query);
}

/* Forward and backward of the support loss at weights th; leaves the exec ready for R-passes.
 * Adds the gradient into dtheta when it is not NULL. */
static void support_pass(maml_worker *w, const fw_episode *ep, const float *th,
                                 float *dtheta) {
    int ns = ep->ways * ep->shots;
    w->support_logits = fw_forward(w->support, th, ep->xs);
    fw_softmax_xent(w->support_logits, ep->ys, ns, ep->ways, w->dlogits, NULL);
    fw_backward(w->support, th, w->dlogits, dtheta, NULL);
}

/* k SGD steps on the support loss from theta; remembers theta_0 .. theta_{k-1} when asked. */
static void adapt(const fw_maml *mm, maml_worker *w, const fw_episode *ep, const float *theta,
                  int steps, bool remember) {
    size_t P = fw_graph_n_params(mm->g);
    fw_vec_copy(w->fast, theta, P);
    for (int k = 0; k < steps; k++) {
        if (remember)
            fw_vec_copy(w->trajectory + (size_t)k * P, w->fast, P);
        fw_vec_zero(w->grad, P);
        support_pass(w, ep, w->fast, w->grad);
        fw_sgd_step(w->fast, w->grad, P, mm->inner_lr);
    }
}

/* v <- v - a H_s(theta_i) v for i = k-1 .. 0. The support exec still holds the passes at
 * theta_{k-1} from the last inner step, so only earlier steps run forward/backward again. */
static void backprop_inner_steps(const fw_maml *mm, maml_worker *w, const fw_episode *ep) {
    size_t P = fw_graph_n_params(mm->g);
    int ns = ep->ways * ep->shots;
    for (int i = mm->inner_steps - 1; i >= 0; i--) {
        const float *th = w->trajectory + (size_t)i * P;
        if (i < mm->inner_steps - 1)
            support_pass(w, ep, th, NULL);
        const float *r_logits = fw_r_forward(w->support, th, w->v);
        fw_softmax_xent_r(w->support_logits, r_logits, ns, ep->ways, w->r_dlogits);
        fw_vec_zero(w->hv, P);
        fw_r_backward(w->support, th, w->v, w->r_dlogits, w->hv, NULL);
        fw_vec_axpy(w->v, -mm->inner_lr, w->hv, P);
    }
}

static void maml_task(const void *model, void *worker, const fw_episode *ep, const float *theta,
                      float *grad, fw_task_out *out) {
    const fw_maml *mm = model;
    maml_worker *w = worker;
    bool second = grad && !mm->first_order && mm->inner_steps > 0;
    adapt(mm, w, ep, theta, grad ? mm->inner_steps : mm->test_inner_steps, second);
    int nq = ep->ways * ep->query, correct = 0;
    const float *logits = fw_forward(w->query, w->fast, ep->xq);
    out->loss = fw_softmax_xent(logits, ep->yq, nq, ep->ways, grad ? w->dlogits : NULL, &correct);
    out->acc = (double)correct / nq;
    if (!grad)
        return;
    size_t P = fw_graph_n_params(mm->g);
    if (!second) { /* first order: d(query loss)/d(fast weights), taken as the meta-gradient */
        fw_backward(w->query, w->fast, w->dlogits, grad, NULL);
        return;
    }
    fw_vec_zero(w->v, P);
    fw_backward(w->query, w->fast, w->dlogits, w->v, NULL);
    backprop_inner_steps(mm, w, ep);
    fw_vec_axpy(grad, 1.0f, w->v, P);
}

const fw_meta_ops fw_maml_ops = {
    .worker_new = maml_worker_new,
    .task = maml_task,
    .worker_free = maml_worker_free,
};
