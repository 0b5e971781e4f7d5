/* loss.h: softmax cross-entropy, accuracy, and the mean with its 95 % confidence interval. */
#ifndef FW_LOSS_H
#define FW_LOSS_H

#include "framework/base.h"

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
