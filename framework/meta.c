/* meta.c: the OpenMP meta-batch runner, evaluation and the nearest-neighbour baseline. */
#include "framework/meta.h"
#include "framework/params.h"

#include <math.h>
#include <omp.h>
#include <string.h>

struct fw_meta {
    const fw_meta_ops *ops;
    const void *model;     /* borrowed, read-only during steps        */
    size_t n_params;
    int meta_batch, n_threads;
    fw_sampler train;
    void **workers;        /* owned; one per thread                    */
    fw_episode *episodes;  /* owned; one per thread                    */
    float *slots;          /* owned; (meta_batch, n_params) task grads  */
};

fw_task_out fw_task_mean(const fw_task_out *outs, int n) {
    fw_task_out m = {0, 0, 0};
    for (int t = 0; t < n; t++) {
        m.loss += outs[t].loss / n;
        m.acc += outs[t].acc / n;
        m.g_loss += outs[t].g_loss / n;
    }
    return m;
}

fw_status fw_meta_new(fw_meta **out, const fw_meta_ops *ops, const void *model, size_t n_params,
                      int meta_batch, int n_threads, const fw_sampler *train) {
    FW_ASSERT(!omp_in_parallel(), "fw_meta_new inside a parallel region");
    FW_ASSERT(meta_batch > 0, "meta_batch %d", meta_batch);
    *out = NULL;
    FW_TRY(fw_sampler_check(train));
    fw_meta *m = calloc(1, sizeof *m);
    if (!m)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    m->ops = ops;
    m->model = model;
    m->n_params = n_params;
    m->meta_batch = meta_batch;
    m->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    m->train = *train;
    m->workers = calloc((size_t)m->n_threads, sizeof *m->workers);
    m->episodes = calloc((size_t)m->n_threads, sizeof *m->episodes);
    m->slots = fw_alloc((size_t)meta_batch * n_params * sizeof(float));
    if (!m->workers || !m->episodes || !m->slots) {
        fw_meta_free(m);
        return fw_errorf(FW_ERR_NOMEM, "out of memory for %d task gradient slots", meta_batch);
    }
    fw_status st[m->n_threads];
    char msg[m->n_threads][256];
#pragma omp parallel num_threads(m->n_threads)
    {
        /* Before any primitive exists on this thread: oneDNN fixes its work split at creation. */
        omp_set_num_threads(1);
        int t = omp_get_thread_num();
        st[t] = fw_episode_init(&m->episodes[t], train);
        if (st[t] == FW_OK)
            st[t] = ops->worker_new(model, &m->workers[t]);
        snprintf(msg[t], sizeof msg[t], "%s", fw_last_error()); /* errors are per thread */
    }
    for (int t = 0; t < m->n_threads; t++)
        if (st[t] != FW_OK) {
            fw_status s = fw_errorf(st[t], "%s", msg[t]);
            fw_meta_free(m);
            return s;
        }
    *out = m;
    return FW_OK;
}

void fw_meta_free(fw_meta *m) {
    if (!m)
        return;
    for (int t = 0; t < m->n_threads; t++) {
        if (m->workers && m->workers[t])
            m->ops->worker_free(m->workers[t]);
        if (m->episodes)
            fw_episode_free(&m->episodes[t]);
    }
    free(m->workers);
    free(m->episodes);
    fw_free(m->slots);
    free(m);
}

int fw_meta_threads(const fw_meta *m) {
    return m->n_threads;
}

fw_status fw_meta_step(fw_meta *m, uint64_t step, const float *theta, float *meta_grad,
                       fw_task_out *outs) {
    FW_ASSERT(!omp_in_parallel(), "fw_meta_step inside a parallel region");
    size_t P = m->n_params;
#pragma omp parallel num_threads(m->n_threads)
    {
        omp_set_num_threads(1);
        int t = omp_get_thread_num();
#pragma omp for schedule(static)
        for (int task = 0; task < m->meta_batch; task++) {
            float *slot = m->slots + (size_t)task * P;
            fw_sample(&m->train, step, task, &m->episodes[t]);
            fw_vec_zero(slot, P);
            m->ops->task(m->model, m->workers[t], &m->episodes[t], theta, slot, &outs[task]);
        }
    }
    for (int task = 0; task < m->meta_batch; task++)
        if (!isfinite(outs[task].loss) || !isfinite(outs[task].g_loss))
            return fw_errorf(FW_ERR_NUMERIC,
                             "iteration %llu: task %d has query loss %g, generator loss %g",
                             (unsigned long long)step, task, outs[task].loss, outs[task].g_loss);
    /* The mean over the slots, each parameter summed in task order: the result does not depend
     * on which thread ran which task, nor on how the parameter range is split below (the
     * threads share the reduction by disjoint blocks of parameters). */
    enum { BLOCK = 4096 };
    long n_blocks = (long)((P + BLOCK - 1) / BLOCK);
    float inv = 1.0f / (float)m->meta_batch;
#pragma omp parallel for num_threads(m->n_threads) schedule(static)
    for (long b = 0; b < n_blocks; b++) {
        size_t lo = (size_t)b * BLOCK, len = P - lo < BLOCK ? P - lo : BLOCK;
        fw_vec_zero(meta_grad + lo, len);
        for (int task = 0; task < m->meta_batch; task++)
            fw_vec_axpy(meta_grad + lo, inv, m->slots + (size_t)task * P + lo, len);
    }
    if (!fw_vec_all_finite(meta_grad, P))
        return fw_errorf(FW_ERR_NUMERIC, "iteration %llu: the meta-gradient is not finite",
                         (unsigned long long)step);
    return FW_OK;
}

static bool same_shape(const fw_sampler *a, const fw_sampler *b) {
    return a->ways == b->ways && a->shots == b->shots && a->query == b->query &&
           a->unlabeled == b->unlabeled &&
           a->ds->c == b->ds->c && a->ds->h == b->ds->h && a->ds->w == b->ds->w;
}

fw_status fw_meta_eval(fw_meta *m, const fw_sampler *s, int n, const float *theta, float *acc) {
    FW_ASSERT(!omp_in_parallel(), "fw_meta_eval inside a parallel region");
    FW_TRY(fw_sampler_check(s));
    if (!same_shape(s, &m->train))
        return fw_errorf(FW_ERR_ARG, "evaluation episodes must have the training shape "
                                     "(%d-way %d-shot %d-query)",
                         m->train.ways, m->train.shots, m->train.query);
#pragma omp parallel num_threads(m->n_threads)
    {
        omp_set_num_threads(1);
        int t = omp_get_thread_num();
#pragma omp for schedule(dynamic)
        for (int i = 0; i < n; i++) {
            fw_task_out o = {0, 0, 0};
            fw_sample(s, 0, i, &m->episodes[t]);
            m->ops->task(m->model, m->workers[t], &m->episodes[t], theta, NULL, &o);
            acc[i] = (float)o.acc;
        }
    }
    return FW_OK;
}

static float nn_accuracy(const fw_episode *ep) {
    size_t d = (size_t)(ep->c * ep->h * ep->w);
    int ns = ep->ways * ep->shots, nq = ep->ways * ep->query, correct = 0;
    for (int q = 0; q < nq; q++) {
        double best = INFINITY;
        int label = -1;
        for (int s = 0; s < ns; s++) {
            double dist = 0;
            for (size_t i = 0; i < d; i++) {
                double diff = (double)ep->xq[(size_t)q * d + i] - ep->xs[(size_t)s * d + i];
                dist += diff * diff;
            }
            if (dist < best) {
                best = dist;
                label = ep->ys[s];
            }
        }
        correct += label == ep->yq[q];
    }
    return (float)correct / (float)nq;
}

void fw_nearest_neighbour_eval(const fw_sampler *s, int n, float *acc) {
#pragma omp parallel
    {
        fw_episode ep;
        fw_status st = fw_episode_init(&ep, s);
        FW_ASSERT(st == FW_OK, "%s", fw_last_error());
#pragma omp for schedule(dynamic)
        for (int i = 0; i < n; i++) {
            fw_sample(s, 0, i, &ep);
            acc[i] = nn_accuracy(&ep);
        }
        fw_episode_free(&ep);
    }
}
