/* graph.h: networks as a list of layers over flat parameter vectors.
 *
 * A graph (fw_graph) is a definition: nodes, per-example shapes and the parameter layout. It is
 * built once with the builder functions below and is read-only once an exec exists.
 * An exec (fw_exec) runs a graph on one thread for one batch size: it owns the oneDNN primitives,
 * the activations and their gradients, a stream and a scratchpad. Create it on the thread that
 * uses it. Parameters are not stored anywhere in a graph or an exec: every forward and backward
 * call takes the flat parameter vector to use (meta-parameters or a task's fast weights).
 *
 * Every node has exactly one input (the node built before it that it names); graphs are chains.
 * Tensors handed in and out are plain row-major: (B, C, H, W) images, (B, F) vectors.
 * Read next: layers in framework/layers/, second-order hooks in framework/internal.h.
 */
#ifndef FW_GRAPH_H
#define FW_GRAPH_H

#include "framework/base.h"

typedef struct fw_graph fw_graph;
typedef struct fw_exec fw_exec;

typedef struct fw_shape {
    int c, h, w; /* per example; vectors are (F, 1, 1) */
} fw_shape;

fw_graph *fw_graph_new(void); /* aborts on out-of-memory */
void fw_graph_free(fw_graph *g);

/* Builders return the new node's id. Misuse (bad shapes, an unknown input) aborts with a message
 * naming the node. */
int fw_input(fw_graph *g, int c, int h, int w);
/* k x k convolution, out_c filters. Leave bias off in front of batchnorm: it is redundant there. */
int fw_conv2d(fw_graph *g, int x, int out_c, int k, int stride, int pad, bool bias);
/* Batchnorm with transductive batch statistics (no running averages), scale and shift. */
int fw_batchnorm(fw_graph *g, int x);
int fw_relu(fw_graph *g, int x);
int fw_leaky_relu(fw_graph *g, int x, float slope);
int fw_maxpool2(fw_graph *g, int x);        /* 2x2, stride 2, floor; own kernel          */
int fw_global_avgpool(fw_graph *g, int x);  /* (C, H, W) -> (C, 1, 1) vector            */
int fw_flatten(fw_graph *g, int x);         /* (C, H, W) -> (C*H*W, 1, 1), CHW order    */
int fw_linear(fw_graph *g, int x, int out); /* vector input: use flatten or avgpool first */
/* Transposed convolution (PyTorch ConvTranspose2d): (C, H, W) -> (out_c, (H-1)s - 2p + k, same
 * for W). Parameters: weights (C, out_c, k, k) in PyTorch's layout, then the bias (out_c) when
 * bias is set. k4 s2 p1 doubles H and W. Leave bias off in front of batchnorm. */
int fw_deconv2d(fw_graph *g, int x, int out_c, int k, int stride, int pad, bool bias);
int fw_sigmoid(fw_graph *g, int x);         /* 1 / (1 + exp(-x)), element-wise           */
int fw_tanh(fw_graph *g, int x);            /* element-wise                              */
/* Any input of C*H*W elements per example (e.g. a (F) vector) -> (C, H, W), CHW order: the
 * inverse of fw_flatten. The output is plain; (C, 1, 1) makes a vector. */
int fw_reshape(fw_graph *g, int x, int c, int h, int w);

int fw_graph_n_nodes(const fw_graph *g);
fw_shape fw_graph_shape(const fw_graph *g, int node);
size_t fw_graph_n_params(const fw_graph *g);
/* Offset and count of a node's parameters in the flat vector (0, 0 if it has none). */
size_t fw_graph_param_offset(const fw_graph *g, int node);
size_t fw_graph_param_count(const fw_graph *g, int node);
const char *fw_graph_node_kind(const fw_graph *g, int node);
/* Xavier-uniform conv and linear weights, zero biases, batchnorm scale 1 and shift 0; a pure
 * function of seed. theta has fw_graph_n_params() floats. */
void fw_graph_init_params(const fw_graph *g, float *theta, uint64_t seed);
/* A table: node, kind, output shape, parameter count. */
void fw_graph_print(const fw_graph *g, FILE *f);

/* Builds the primitives for `batch` examples. Call on the thread that will run it, after
 * omp_set_num_threads(1) when inside a parallel region (the meta runner does this).
 * Fails with FW_ERR_DNNL if oneDNN refuses a layer or picks a slow reference kernel. */
fw_status fw_exec_new(fw_exec **out, const fw_graph *g, int batch);
void fw_exec_free(fw_exec *e);
int fw_exec_batch(const fw_exec *e);

/* Forward pass. x: (B, C, H, W) of the input node. Returns the last node's output, plain
 * (B, C*H*W), valid until the next forward on this exec. train is reserved: batchnorm always
 * uses batch statistics (transductive, as MAML does). */
const float *fw_forward(fw_exec *e, const float *theta, const float *x);
/* Backward pass after fw_forward with the same theta. dy: gradient of the loss w.r.t. the last
 * node's output, plain. Adds the parameter gradient into dtheta (+=) when dtheta is not NULL and
 * writes the gradient w.r.t. the input into dx (plain, overwritten) when dx is not NULL. */
void fw_backward(fw_exec *e, const float *theta, const float *dy, float *dtheta, float *dx);
/* Backward from an inner node: dy is the loss gradient w.r.t. that node's output, which must be
 * a vector (B, F) node such as a global average pool or a linear layer (e.g. the features used
 * for feature matching). Nodes after it are ignored. Same accumulation rules as fw_backward. */
void fw_backward_from(fw_exec *e, const float *theta, int node, const float *dy, float *dtheta,
                      float *dx);
/* Copies node's last forward output into out, plain (B, C, H, W). For tests and features. */
void fw_exec_read(const fw_exec *e, int node, float *out);
/* The same for R{y} of the last fw_r_forward. */
void fw_exec_read_r(const fw_exec *e, int node, float *out);

/* Second order, by the R-operator (Pearlmutter 1994; docs/second-order-notes.md).
 * After fw_forward and fw_backward at theta (same input), fw_r_forward propagates the directional
 * derivative along the parameter direction v and returns R{output}, plain (B, C*H*W). Given
 * r_dy = R{dL/d output} (from the loss's own R-operator, e.g. fw_softmax_xent_r), fw_r_backward
 * adds H v (the Hessian of the loss w.r.t. theta, times v) into hv, and writes R{dL/dx} into r_dx
 * when it is not NULL. */
const float *fw_r_forward(fw_exec *e, const float *theta, const float *v);
void fw_r_backward(fw_exec *e, const float *theta, const float *v, const float *r_dy, float *hv,
                   float *r_dx);

/* The oneDNN implementation chosen for each primitive, one "node kind pass: impl" line each. */
void fw_exec_print_impls(const fw_exec *e, FILE *f);
/* Number of primitives whose implementation name starts with `prefix` (e.g. "ref"). */
int fw_exec_count_impls(const fw_exec *e, const char *prefix);

#endif
