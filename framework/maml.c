/* maml.c: MAML's inner loop and its second-order meta-gradient, and the plain MAML task.
 * Finite differences of gradients are never used for the Hessian-vector products: they were
 * measured at 29 % error on this very setting (docs/second-order-notes.md). */
#include "framework/maml.h"
#include "framework/params.h"

fw_status fw_maml_state_init(fw_maml_state *s, size_t P, int max_steps, bool second_order) {
    *s = (fw_maml_state){.P = P, .max_steps = max_steps > 0 ? max_steps : 1};
    s->fast = fw_alloc(P * sizeof(float));
    s->grad = fw_alloc(P * sizeof(float));
    s->v = fw_alloc(P * sizeof(float));
    s->hv = fw_alloc(P * sizeof(float));
    s->trajectory = fw_alloc((second_order ? (size_t)s->max_steps * P : 1) * sizeof(float));
    if (!s->fast || !s->grad || !s->v || !s->hv || !s->trajectory) {
        fw_maml_state_free(s);
        return fw_errorf(FW_ERR_NOMEM, "out of memory for MAML fast weights");
    }
    return FW_OK;
}

void fw_maml_state_free(fw_maml_state *s) {
    float *bufs[] = {s->fast, s->grad, s->trajectory, s->v, s->hv};
    for (size_t i = 0; i < FW_COUNTOF(bufs); i++)
        fw_free(bufs[i]);
    *s = (fw_maml_state){0};
}

double fw_maml_pass(fw_maml_batch *b, int nb, int ways, const float *th, float *dtheta,
                    int *correct) {
    double loss = 0;
    for (int i = 0; i < nb; i++) {
        int c = 0;
        b[i].logits = fw_forward(b[i].exec, th, b[i].x);
        loss += fw_dloss(b[i].logits, b[i].labels, b[i].n, ways, b[i].w, b[i].dlogits, &c);
        if (dtheta || b[i].r_dlogits) /* a later R-pass needs the backward state */
            fw_backward(b[i].exec, th, b[i].dlogits, dtheta, NULL);
        if (correct)
            *correct += c;
    }
    return loss;
}

void fw_maml_adapt(fw_maml_state *s, fw_maml_batch *b, int nb, int ways, const float *theta,
                   int steps, float lr, bool remember) {
    FW_ASSERT(!remember || steps <= s->max_steps, "%d steps, room for %d", steps, s->max_steps);
    /* Step k reads theta_k (theta itself for k = 0, so it needs no copy) and writes
     * theta_{k+1} = theta_k - lr g_k into s->fast in the same pass. */
    const float *cur = theta;
    if (steps == 0)
        fw_vec_copy(s->fast, theta, s->P);
    for (int k = 0; k < steps; k++) {
        if (remember)
            fw_vec_copy(s->trajectory + (size_t)k * s->P, cur, s->P);
        fw_vec_zero(s->grad, s->P);
        fw_maml_pass(b, nb, ways, cur, s->grad, NULL);
#pragma omp simd /* element-wise: the scalar loop's bits */
        for (size_t i = 0; i < s->P; i++)
            s->fast[i] = cur[i] - lr * s->grad[i];
        cur = s->fast;
    }
}

/* hv = H(th) v for the batches' summed loss; the execs hold their passes at th. */
static void hessian_vector(fw_maml_state *s, fw_maml_batch *b, int nb, int ways, const float *th) {
    fw_vec_zero(s->hv, s->P);
    for (int i = 0; i < nb; i++) {
        const float *r_logits = fw_r_forward(b[i].exec, th, s->v);
        fw_dloss_r(b[i].logits, r_logits, b[i].labels, b[i].n, ways, b[i].w, b[i].r_dlogits);
        fw_r_backward(b[i].exec, th, s->v, b[i].r_dlogits, s->hv, NULL);
    }
}

void fw_maml_backprop(fw_maml_state *s, fw_maml_batch *b, int nb, int ways, int steps, float lr) {
    for (int i = steps - 1; i >= 0; i--) {
        const float *th = s->trajectory + (size_t)i * s->P;
        /* The last inner step left its passes at theta_{k-1} in the execs; earlier ones rerun. */
        if (i < steps - 1)
            fw_maml_pass(b, nb, ways, th, NULL, NULL);
        hessian_vector(s, b, nb, ways, th);
        fw_vec_axpy(s->v, -lr, s->hv, s->P);
    }
}

/* ---- plain MAML ---- */

typedef struct maml_worker {
    fw_exec *support, *query; /* owned; batch ways*shots and ways*query */
    fw_maml_state st;
    float *dlogits, *r_dlogits; /* owned; (ways * max(shots, query), ways) */
} maml_worker;

static void maml_worker_free(void *p) {
    maml_worker *w = p;
    if (!w)
        return;
    fw_exec_free(w->support);
    fw_exec_free(w->query);
    fw_maml_state_free(&w->st);
    fw_free(w->dlogits);
    fw_free(w->r_dlogits);
    free(w);
}

static fw_status maml_worker_new(const void *model, void **out) {
    const fw_maml *mm = model;
    fw_shape o = fw_graph_shape(mm->g, fw_graph_n_nodes(mm->g) - 1);
    FW_ASSERT(o.c == mm->ways && o.h == 1 && o.w == 1,
              "the graph must end in %d logits, it ends in (%d, %d, %d)", mm->ways, o.c, o.h, o.w);
    maml_worker *w = calloc(1, sizeof *w);
    if (!w)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    *out = w;
    size_t big = (size_t)(mm->ways * (mm->query > mm->shots ? mm->query : mm->shots) * mm->ways);
    w->dlogits = fw_alloc(big * sizeof(float));
    w->r_dlogits = fw_alloc(big * sizeof(float));
    if (!w->dlogits || !w->r_dlogits)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    FW_TRY(fw_maml_state_init(&w->st, fw_graph_n_params(mm->g), mm->inner_steps, !mm->first_order));
    FW_TRY(fw_exec_new(&w->support, mm->g, mm->ways * mm->shots));
    return fw_exec_new(&w->query, mm->g, mm->ways * mm->query);
}

static void maml_task(const void *model, void *worker, const fw_episode *ep, const float *theta,
                      float *grad, fw_task_out *out) {
    const fw_maml *mm = model;
    maml_worker *w = worker;
    int ns = ep->ways * ep->shots, nq = ep->ways * ep->query, correct = 0;
    fw_maml_batch support = {w->support, ep->xs, ep->ys, ns, {.sup = 1.0 / ns},
                             w->dlogits, w->r_dlogits, NULL};
    fw_maml_batch query = {w->query, ep->xq, ep->yq, nq, {.sup = 1.0 / nq}, w->dlogits, NULL, NULL};
    bool second = grad && !mm->first_order;
    int steps = grad ? mm->inner_steps : mm->test_inner_steps;
    fw_maml_adapt(&w->st, &support, 1, ep->ways, theta, steps, mm->inner_lr, second);
    /* First order: the query gradient at the fast weights is the meta-gradient, added straight
     * into grad; second order back-propagates it through the inner steps first. */
    if (second)
        fw_vec_zero(w->st.v, w->st.P);
    out->loss = fw_maml_pass(&query, 1, ep->ways, w->st.fast, second ? w->st.v : grad, &correct);
    out->acc = (double)correct / nq;
    out->g_loss = 0;
    if (!second)
        return;
    fw_maml_backprop(&w->st, &support, 1, ep->ways, steps, mm->inner_lr);
    fw_vec_axpy(grad, 1.0f, w->st.v, w->st.P);
}

const fw_meta_ops fw_maml_ops = {
    .worker_new = maml_worker_new,
    .task = maml_task,
    .worker_free = maml_worker_free,
};
