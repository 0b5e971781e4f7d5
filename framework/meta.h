/* meta.h: the OpenMP meta-batch runner.
 *
 * One parallel region per meta-batch; each task's whole inner loop runs on one thread, through
 * that thread's worker (its own execs, fast weights and buffers, created on that thread after
 * omp_set_num_threads(1): see DESIGN.md, threading contract). Each task writes its gradient into
 * its own slot and the slots are summed in task order, so the meta-gradient is bitwise identical
 * for any thread count. HDF5 and printing stay on the main thread, outside the region.
 *
 * A task may call forward and backward as many times as it likes per inner step: the runner only
 * hands it an episode, the parameters and a gradient slot. First-order MAML uses one backward per
 * step; second-order MAML (R-operator Hessian-vector products) and MetaGAN use several.
 */
#ifndef FW_META_H
#define FW_META_H

#include "framework/data.h"

typedef struct fw_task_out {
    double loss;       /* query loss after adaptation (the classifier's meta-loss) */
    double acc;        /* query accuracy after adaptation, 0..1                    */
    double g_loss;     /* generator loss (MetaGAN), 0 for models without one        */
} fw_task_out;

/* Mean loss and accuracy over n task outputs. */
fw_task_out fw_task_mean(const fw_task_out *outs, int n);

typedef struct fw_meta_ops {
    /* Creates a worker on the calling thread (primitives, buffers). */
    fw_status (*worker_new)(const void *model, void **worker);
    /* Runs one task. grad != NULL: meta-training, add the task's meta-gradient into grad (it
     * starts zeroed). grad == NULL: evaluation (adapt with the test settings, report accuracy). */
    void (*task)(const void *model, void *worker, const fw_episode *ep, const float *theta,
                 float *grad, fw_task_out *out);
    void (*worker_free)(void *worker);
} fw_meta_ops;

typedef struct fw_meta fw_meta;

/* n_threads <= 0 means omp_get_max_threads(). The sampler's shapes fix the workers' batch sizes. */
fw_status fw_meta_new(fw_meta **out, const fw_meta_ops *ops, const void *model, size_t n_params,
                      int meta_batch, int n_threads, const fw_sampler *train);
void fw_meta_free(fw_meta *m);
int fw_meta_threads(const fw_meta *m);

/* One meta-batch of iteration `step`: meta_grad = mean over tasks of the task gradients.
 * outs has meta_batch entries. FW_ERR_NUMERIC (message names the step and the loss) when a loss
 * or the meta-gradient is not finite; meta_grad must then not be applied. */
fw_status fw_meta_step(fw_meta *m, uint64_t step, const float *theta, float *meta_grad,
                       fw_task_out *outs);

/* Accuracy of each of n episodes of s (purpose FW_RNG_EVAL_TASK, step 0, task i), in parallel.
 * s must have the training sampler's ways, shots and query. */
fw_status fw_meta_eval(fw_meta *m, const fw_sampler *s, int n, const float *theta, float *acc);

/* Pixel-space 1-nearest-neighbour (Euclidean) accuracy on the very episodes fw_meta_eval uses;
 * with several shots, the nearest single support image wins. */
void fw_nearest_neighbour_eval(const fw_sampler *s, int n, float *acc);

#endif
