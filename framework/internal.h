/* internal.h: what graph.c, dnn.c and the layers share. Models and experiments never include it.
 *
 * A layer kind is one fwi_layer_ops table in framework/layers/<kind>.c. Per exec, every node owns
 * its output y and the gradient dy of that output, both in the oneDNN layout the layer chose
 * (fwi_buf). A layer reads its input through e->nodes[n->in] and, in backward, writes the
 * gradient of its input into that node's dy.
 *
 * Second order (R-operator, docs/second-order-notes.md): every node also carries ry = R{y} and
 * rdy = R{dy}, the directional derivatives along a parameter direction v, in the same layout.
 * r_forward reads the input's ry (the input node's stays 0: data does not depend on theta) and
 * writes the node's ry; r_backward reads rdy, dy, ry and the forward state and writes the input's
 * rdy (when need_dx) and adds the node's part of H v into hv.
 */
#ifndef FW_INTERNAL_H
#define FW_INTERNAL_H

#include "framework/graph.h"
#include "framework/rng.h"

#include <oneapi/dnnl/dnnl.h>

_Static_assert(DNNL_VERSION_MAJOR == 2, "written against the oneDNN 2.x (v2) C API");

typedef enum fwi_kind {
    FWI_INPUT,
    FWI_CONV2D,
    FWI_BATCHNORM,
    FWI_RELU,
    FWI_MAXPOOL,
    FWI_AVGPOOL,
    FWI_FLATTEN,
    FWI_LINEAR,
    FWI_DECONV2D,
    FWI_SIGMOID,
    FWI_TANH,
    FWI_RESHAPE,
    FWI_KIND_COUNT
} fwi_kind;

typedef struct fwi_node {
    fwi_kind kind;
    int in;              /* input node id, -1 for the input node          */
    fw_shape out;        /* per-example output shape                      */
    size_t param_off;    /* into the flat parameter vector                */
    size_t n_params;
    union {
        struct { int out_c, k, stride, pad; bool bias; } conv;
        struct { float slope; } relu;
        struct { int out; } linear;
        struct { int out_c, k, stride, pad; bool bias; } deconv;
    };
} fwi_node;

struct fw_graph {
    int n;
    fwi_node *nodes;     /* owned; (n,) in topological order             */
    size_t n_params;
    bool frozen;         /* set by the first exec: the graph is read-only from then on */
};

/* A buffer with its oneDNN memory descriptor and a memory object wrapping it. */
typedef struct fwi_buf {
    dnnl_memory_desc_t md;
    dnnl_memory_t mem;   /* owned; its handle points at data                 */
    float *data;         /* owned, or borrowed when made by fwi_buf_wrap      */
    size_t bytes;
    bool owned;
} fwi_buf;

/* A primitive and the name of what it does, for the implementation report. */
typedef struct fwi_prim {
    dnnl_primitive_t p;
    dnnl_memory_t scratch;   /* owned; points into the exec's shared scratchpad */
    char what[48];           /* "conv2d bwd_weights"                            */
    char impl[64];
    struct fwi_prim *next;   /* the exec's list, for the report and cleanup     */
} fwi_prim;

typedef struct fwi_xnode {
    fwi_buf y, dy;       /* output and its gradient, same layout              */
    fwi_buf ry, rdy;     /* R{y} and R{dy}, same layout                       */
    void *state;         /* layer-private, owned (freed by ops->exec_free)     */
} fwi_xnode;

struct fw_exec {
    const fw_graph *g;   /* borrowed                                          */
    int batch;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_attr_t attr; /* user scratchpad mode                       */
    fwi_prim *prims;     /* owned list                                        */
    size_t scratch_bytes;
    void *scratch;       /* owned, shared by all primitives (they run in sequence) */
    fwi_xnode *nodes;    /* owned; (g->n,)                                    */
    fwi_buf out_plain;   /* last node's output in plain layout                */
    fwi_buf dout_plain;  /* gradient handed to fw_backward, plain             */
    fwi_buf r_out_plain, r_dout_plain; /* the same for R{y} and R{dy}           */
    fwi_prim *out_reorder, *dout_reorder; /* NULL when the last node is plain */
};

typedef struct fwi_layer_ops {
    const char *name;
    /* Creates the node's primitives and sets e->nodes[id].y.md (the graph allocates y and dy). */
    fw_status (*exec_new)(fw_exec *e, int id);
    void (*forward)(fw_exec *e, int id, const float *theta);
    /* Adds parameter gradients into dtheta; writes the input's dy when need_dx. */
    void (*backward)(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx);
    void (*exec_free)(void *state);
    void (*init_params)(const fwi_node *n, fw_shape in, float *w, fw_rng *r);
    /* Second order: R{y} from R{x} and the direction v (same layout as theta). */
    void (*r_forward)(fw_exec *e, int id, const float *theta, const float *v);
    /* R{dx} (when need_dx) and hv += R{d theta} for this node's parameters. */
    void (*r_backward)(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                       bool need_dx);
} fwi_layer_ops;

extern const fwi_layer_ops fwi_input_ops, fwi_conv2d_ops, fwi_batchnorm_ops, fwi_relu_ops,
    fwi_maxpool_ops, fwi_avgpool_ops, fwi_flatten_ops, fwi_linear_ops;
extern const fwi_layer_ops fwi_deconv2d_ops, fwi_sigmoid_ops, fwi_tanh_ops, fwi_reshape_ops;
const fwi_layer_ops *fwi_ops(fwi_kind kind);

static inline const fwi_node *fwi_node_of(const fw_exec *e, int id) {
    return &e->g->nodes[id];
}
static inline fwi_xnode *fwi_in(fw_exec *e, int id) {
    return &e->nodes[e->g->nodes[id].in];
}
static inline fw_shape fwi_in_shape(const fw_exec *e, int id) {
    return e->g->nodes[e->g->nodes[id].in].out;
}

/* Element-wise activations whose derivatives are functions of the output y (sigmoid, tanh):
 * y = f(x), dy/dx = d(y), d(d)/dy = dd(y). layers/pointwise.c holds their shared passes. */
typedef struct fwi_pointwise {
    float (*f)(float x);
    float (*d)(float y);
    float (*dd)(float y);
} fwi_pointwise;
fw_status fwi_pointwise_exec_new(fw_exec *e, int id, const fwi_pointwise *fn);
void fwi_pointwise_forward(fw_exec *e, int id, const float *theta);
void fwi_pointwise_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx);
void fwi_pointwise_r_forward(fw_exec *e, int id, const float *theta, const float *v);
void fwi_pointwise_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                              bool need_dx);

/* ---- dnn.c: the oneDNN helpers every layer uses ---- */

/* Maps a oneDNN status to FW_ERR_DNNL with the call named. */
fw_status fwi_dnnl_check(dnnl_status_t s, const char *what);
/* Aborts on failure: executing a primitive that was created successfully must not fail. */
void fwi_dnnl_must(dnnl_status_t s, const char *what);

void fwi_md_tag(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_format_tag_t tag);
/* Creates a primitive descriptor in user-scratchpad mode. `what` names it in errors. */
fw_status fwi_pd_new(fw_exec *e, dnnl_primitive_desc_t *pd, const void *op_desc,
                     const_dnnl_primitive_desc_t hint, const char *what);
/* Creates the primitive of pd, records its implementation, and rejects slow reference kernels
 * ("ref:") when reject_ref is set. Does not destroy pd. */
fw_status fwi_prim_new(fw_exec *e, fwi_prim **out, const_dnnl_primitive_desc_t pd,
                       const char *what, bool reject_ref);
/* Runs p with args plus the scratchpad. */
void fwi_run(fw_exec *e, fwi_prim *p, int nargs, const dnnl_exec_arg_t *args);
const dnnl_memory_desc_t *fwi_pd_md(const_dnnl_primitive_desc_t pd, int arg);

/* Buffers: fwi_buf_alloc owns zeroed memory of md's size; fwi_buf_wrap borrows data (may be
 * NULL, set later with fwi_buf_point). */
fw_status fwi_buf_alloc(fw_exec *e, fwi_buf *b, const dnnl_memory_desc_t *md);
fw_status fwi_buf_wrap(fw_exec *e, fwi_buf *b, const dnnl_memory_desc_t *md, const float *data);
void fwi_buf_point(fwi_buf *b, const float *data);
void fwi_buf_free(fwi_buf *b);

/* A reorder between two layouts of the same tensor; *p stays NULL when they are equal. */
fw_status fwi_reorder_new(fw_exec *e, fwi_prim **p, const dnnl_memory_desc_t *from,
                          const dnnl_memory_desc_t *to, const char *what);
void fwi_reorder(fw_exec *e, fwi_prim *p, dnnl_memory_t from, dnnl_memory_t to);

/* dst[i] += src[i]: parameter gradients accumulate across backward calls. */
static inline void fwi_add(float *dst, const float *src, size_t n) {
#pragma omp simd /* element-wise: the same bits as the scalar loop, several lanes at a time */
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* Element count of a tensor (padding included) = bytes / 4. */
static inline size_t fwi_buf_len(const fwi_buf *b) {
    return b->bytes / sizeof(float);
}

/* Plain 4-D views of blocked layouts, for the hand-written kernels (pooling):
 * element (n, c, h, w) lives at ((outer * H + h) * W + w) * inner + c_in,
 * with outer = n * CB + c / inner and c_in = c % inner. nchw: inner 1; nhwc: inner C, CB 1;
 * nChw8c: inner 8, CB = ceil(C / 8). */
typedef struct fwi_view {
    int n, c, h, w;
    int inner, cb;
    dnnl_format_tag_t tag;
} fwi_view;
/* Recognises nchw, nhwc, nChw8c and nChw16c; aborts on anything else. */
fwi_view fwi_view_of(const dnnl_memory_desc_t *md);
static inline size_t fwi_view_index(const fwi_view *v, int n, int c, int h, int w) {
    size_t outer, c_in;
    if (v->inner == v->c && v->cb == 1) { /* nhwc */
        outer = (size_t)n;
        c_in = (size_t)c;
    } else {
        outer = (size_t)n * (size_t)v->cb + (size_t)(c / v->inner);
        c_in = (size_t)(c % v->inner);
    }
    return ((outer * (size_t)v->h + (size_t)h) * (size_t)v->w + (size_t)w) * (size_t)v->inner + c_in;
}

#endif
