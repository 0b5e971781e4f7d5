/* maml.c: the MAML task: adapt on the support set, evaluate and differentiate on the query set. */
#include "framework/maml.h"
#include "framework/loss.h"
#include "framework/optim.h"
#include "framework/params.h"

typedef struct maml_worker {
    fw_exec *support, *query; /* owned; batch ways*shots and ways*query */
    float *fast;              /* owned; (P,) adapted weights             */
    float *grad;              /* owned; (P,) inner-loop gradient         */
    float *dlogits;           /* owned; (ways*query, ways)               */
} maml_worker;

static void maml_worker_free(void *p) {
    maml_worker *w = p;
    if (!w)
        return;
    fw_exec_free(w->support);
    fw_exec_free(w->query);
    fw_free(w->fast);
    fw_free(w->grad);
    fw_free(w->dlogits);
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
    w->fast = fw_alloc(P * sizeof(float));
    w->grad = fw_alloc(P * sizeof(float));
    int big = mm->query > mm->shots ? mm->query : mm->shots;
    w->dlogits = fw_alloc((size_t)(mm->ways * big * mm->ways) * sizeof(float));
    if (!w->fast || !w->grad || !w->dlogits)
        return fw_errorf(FW_ERR_NOMEM, "out of memory for MAML fast weights");
    FW_TRY(fw_exec_new(&w->support, mm->g, mm->ways * mm->shots));
    return fw_exec_new(&w->query, mm->g, mm->ways * mm->query);
}

/* k SGD steps on the support loss, starting from theta. */
static void adapt(const fw_maml *mm, maml_worker *w, const fw_episode *ep, const float *theta,
                  int steps) {
    size_t P = fw_graph_n_params(mm->g);
    int ns = ep->ways * ep->shots;
    fw_vec_copy(w->fast, theta, P);
    for (int k = 0; k < steps; k++) {
        const float *logits = fw_forward(w->support, w->fast, ep->xs);
        fw_softmax_xent(logits, ep->ys, ns, ep->ways, w->dlogits, NULL);
        fw_vec_zero(w->grad, P);
        fw_backward(w->support, w->fast, w->dlogits, w->grad, NULL);
        fw_sgd_step(w->fast, w->grad, P, mm->inner_lr);
    }
}

static void maml_task(const void *model, void *worker, const fw_episode *ep, const float *theta,
                      float *grad, fw_task_out *out) {
    const fw_maml *mm = model;
    maml_worker *w = worker;
    adapt(mm, w, ep, theta, grad ? mm->inner_steps : mm->test_inner_steps);
    int nq = ep->ways * ep->query, correct = 0;
    const float *logits = fw_forward(w->query, w->fast, ep->xq);
    out->loss = fw_softmax_xent(logits, ep->yq, nq, ep->ways, grad ? w->dlogits : NULL, &correct);
    out->acc = (double)correct / nq;
    if (grad) /* first order: d(query loss)/d(fast weights), taken as the meta-gradient */
        fw_backward(w->query, w->fast, w->dlogits, grad, NULL);
}

const fw_meta_ops fw_maml_ops = {
    .worker_new = maml_worker_new,
    .task = maml_task,
    .worker_free = maml_worker_free,
};
