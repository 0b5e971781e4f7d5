/* params.h: flat parameter vectors. Weights, gradients, Adam moments and fast weights are all
 * plain float arrays of one network's fw_graph_n_params() length; these are the few operations
 * the runner and optimizers need on them. */
#ifndef FW_PARAMS_H
#define FW_PARAMS_H

#include "framework/base.h"

void fw_vec_zero(float *x, size_t n);
void fw_vec_copy(float *dst, const float *src, size_t n);
void fw_vec_axpy(float *y, float a, const float *x, size_t n); /* y += a * x */
void fw_vec_scale(float *x, float a, size_t n);
bool fw_vec_all_finite(const float *x, size_t n);
double fw_vec_norm(const float *x, size_t n);

#endif
