/* loss.h: softmax cross-entropy, accuracy, and the mean with its 95 % confidence interval. */
#ifndef FW_LOSS_H
#define FW_LOSS_H

#include "framework/base.h"

/* Weights of the three terms of a classifier loss, 1/count of each mean folded in. */
typedef struct fw_dloss_w {
    double sup;  /* supervised N-way cross-entropy, on rows with a label >= 0   */
    double real; /* -log p(real) = softplus(-LSE), on every row                 */
    double fake; /* -log p(fake) = softplus(LSE), on every row                  */
} fw_dloss_w;

/* MetaGAN's N+1-way discriminator loss (Salimans et al. 2016; metagan-notes §1.3): the
 * classifier emits N logits l and the fake class has the implicit logit 0, so with
 * LSE = log sum_k exp(l_k), p(real) = sigmoid(LSE) and p(fake) = sigmoid(-LSE). Each row adds
 * w.sup * (LSE - l_y) + w.real * softplus(-LSE) + w.fake * softplus(LSE), in these stable forms.
 * labels may be NULL (no supervised term). Returns the loss; dlogits (if not NULL) receives its
 * gradient: w.sup (s - onehot) - w.real s p(fake) + w.fake s p(real), s = softmax(l).
 * *n_correct (if not NULL) counts labeled rows whose first largest logit is the label. */
double fw_dloss(const float *logits, const int *labels, int B, int N, fw_dloss_w w,
                float *dlogits, int *n_correct);
/* R-operator of fw_dloss's gradient along R{logits} (second-order MAML). */
void fw_dloss_r(const float *logits, const float *r_logits, const int *labels, int B, int N,
                fw_dloss_w w, float *r_dlogits);

/* Mean softmax cross-entropy of (B, N) logits against labels in [0, N). When dlogits is not
 * NULL it receives the gradient (softmax - onehot) / B. *n_correct (if not NULL) counts rows
 * whose largest logit (first on ties) is the label. Computed in double, log-sum-exp stable. */
double fw_softmax_xent(const float *logits, const int *labels, int B, int N, float *dlogits,
                       int *n_correct);

/* The R-operator of the gradient above: given the direction r_logits = R{logits}, writes
 * R{dlogits} = softmax * (R z - <softmax, R z>) / B, row by row (second-order MAML). */
void fw_softmax_xent_r(const float *logits, const float *r_logits, int B, int N, float *r_dlogits);

/* mean and 1.96 * std / sqrt(n) (population std, as the MAML evaluation code computes it). */
void fw_mean_ci95(const float *x, int n, double *mean, double *ci95);

#endif
