/* maml.h: MAML (Finn et al. 2017), first and second order, for classifier graphs whose last node
 * outputs `ways` logits.
 *
 * Two levels:
 *  - fw_maml + fw_maml_ops: plain MAML, ready for the runner (fw_meta_new(&m, &fw_maml_ops, ...)).
 *    Inner loop: inner_steps SGD steps of lr inner_lr on the support cross-entropy, from the
 *    meta-parameters (all parameters adapt, batchnorm's scale and shift included).
 *  - the building blocks below, for models whose task loss has several terms (MetaGAN adds fake
 *    images and an unlabeled set): a task's loss is a list of fw_maml_batch, each a batch through
 *    its own exec with its own loss weights.
 * Second order back-propagates the query gradient through the inner steps,
 *   v <- grad L_q(theta_k);  for i = k-1 .. 0:  v <- v - a H_s(theta_i) v,
 * with exact Hessian-vector products from the R-operator (fw_r_forward / fw_r_backward).
 */
#ifndef FW_MAML_H
#define FW_MAML_H

#include "framework/graph.h"
#include "framework/loss.h"
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

/* One term of a task's classifier loss. */
typedef struct fw_maml_batch {
    fw_exec *exec;         /* borrowed; its batch size is n                     */
    const float *x;        /* borrowed; (n, C, H, W)                            */
    const int *labels;     /* borrowed; (n,) or NULL (no supervised term)        */
    int n;
    fw_dloss_w w;          /* loss weights, 1/count of each mean folded in      */
    float *dlogits;        /* borrowed scratch; (n, ways)                       */
    float *r_dlogits;      /* borrowed scratch; (n, ways), second order only    */
    const float *logits;   /* set by each pass: the exec's output               */
} fw_maml_batch;

/* A task's inner-loop state: fast weights and the buffers of the second-order pass. */
typedef struct fw_maml_state {
    size_t P;
    int max_steps;
    float *fast, *grad;    /* owned; (P,)                                       */
    float *trajectory;     /* owned; (max_steps, P): theta_0 .. theta_{k-1}      */
    float *v, *hv;         /* owned; (P,): d outer / d weights, and H v          */
} fw_maml_state;

fw_status fw_maml_state_init(fw_maml_state *s, size_t P, int max_steps, bool second_order);
void fw_maml_state_free(fw_maml_state *s);

/* Forward, loss and backward of every batch at weights th. Adds the gradient into dtheta when
 * it is not NULL (the backward also runs for batches with r_dlogits, ready for R-passes);
 * returns the summed loss and adds the correctly classified labeled rows into *correct. */
double fw_maml_pass(fw_maml_batch *b, int nb, int ways, const float *th, float *dtheta,
                    int *correct);
/* steps SGD steps of lr on the batches' loss from theta; the result is in s->fast. With
 * remember, keeps theta_0 .. theta_{steps-1} for fw_maml_backprop. */
void fw_maml_adapt(fw_maml_state *s, fw_maml_batch *b, int nb, int ways, const float *theta,
                   int steps, float lr, bool remember);
/* Second order: turns s->v = d(outer loss)/d(fast weights) into d(outer loss)/d(theta) through
 * the steps of the last fw_maml_adapt (with remember), whose batches' execs must not have run
 * anything since. */
void fw_maml_backprop(fw_maml_state *s, fw_maml_batch *b, int nb, int ways, int steps, float lr);

#endif
