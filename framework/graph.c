/* graph.c: graph builders, parameter layout and initialisation, and the per-thread exec that
 * runs forward and backward over the node list. */
#include "framework/internal.h"

#include <math.h>
#include <string.h>

static const fwi_layer_ops *const registry[FWI_KIND_COUNT] = {
    [FWI_INPUT] = &fwi_input_ops,     [FWI_CONV2D] = &fwi_conv2d_ops,
    [FWI_BATCHNORM] = &fwi_batchnorm_ops, [FWI_RELU] = &fwi_relu_ops,
    [FWI_MAXPOOL] = &fwi_maxpool_ops, [FWI_AVGPOOL] = &fwi_avgpool_ops,
    [FWI_FLATTEN] = &fwi_flatten_ops, [FWI_LINEAR] = &fwi_linear_ops,
    [FWI_DECONV2D] = &fwi_deconv2d_ops, [FWI_SIGMOID] = &fwi_sigmoid_ops,
    [FWI_TANH] = &fwi_tanh_ops,       [FWI_RESHAPE] = &fwi_reshape_ops,
};

const fwi_layer_ops *fwi_ops(fwi_kind kind) {
    FW_ASSERT(kind >= 0 && kind < FWI_KIND_COUNT && registry[kind], "no ops for kind %d", kind);
    return registry[kind];
}

/* ---- builders ---- */

fw_graph *fw_graph_new(void) {
    fw_graph *g = calloc(1, sizeof *g);
    FW_ASSERT(g, "out of memory");
    return g;
}

void fw_graph_free(fw_graph *g) {
    if (!g)
        return;
    free(g->nodes);
    free(g);
}

static int add_node(fw_graph *g, fwi_node n) {
    FW_ASSERT(!g->frozen, "the graph is read-only once an exec exists: build it completely first");
    FW_ASSERT(n.kind == FWI_INPUT ? g->n == 0 : (n.in >= 0 && n.in < g->n),
              "%s: input node %d does not exist (graph has %d nodes; the input comes first)",
              fwi_ops(n.kind)->name, n.in, g->n);
    fwi_node *grown = realloc(g->nodes, (size_t)(g->n + 1) * sizeof *grown);
    FW_ASSERT(grown, "out of memory");
    g->nodes = grown;
    n.param_off = g->n_params;
    g->n_params += n.n_params;
    g->nodes[g->n] = n;
    return g->n++;
}

static fw_shape shape_of(const fw_graph *g, int x) {
    FW_ASSERT(x >= 0 && x < g->n, "node %d does not exist", x);
    return g->nodes[x].out;
}

int fw_input(fw_graph *g, int c, int h, int w) {
    FW_ASSERT(c > 0 && h > 0 && w > 0, "input shape (%d, %d, %d)", c, h, w);
    return add_node(g, (fwi_node){.kind = FWI_INPUT, .in = -1, .out = {c, h, w}});
}

int fw_conv2d(fw_graph *g, int x, int out_c, int k, int stride, int pad, bool bias) {
    fw_shape in = shape_of(g, x);
    FW_ASSERT(out_c > 0 && k > 0 && stride > 0 && pad >= 0 && pad < k,
              "conv2d: out_c %d, k %d, stride %d, pad %d", out_c, k, stride, pad);
    int oh = (in.h + 2 * pad - k) / stride + 1, ow = (in.w + 2 * pad - k) / stride + 1;
    FW_ASSERT(oh > 0 && ow > 0, "conv2d: %dx%d input too small for k %d pad %d", in.h, in.w, k, pad);
    fwi_node n = {.kind = FWI_CONV2D, .in = x, .out = {out_c, oh, ow}};
    n.conv.out_c = out_c;
    n.conv.k = k;
    n.conv.stride = stride;
    n.conv.pad = pad;
    n.conv.bias = bias;
    n.n_params = (size_t)out_c * (size_t)in.c * (size_t)(k * k) + (bias ? (size_t)out_c : 0);
    return add_node(g, n);
}

int fw_batchnorm(fw_graph *g, int x) {
    fw_shape in = shape_of(g, x);
    return add_node(g, (fwi_node){.kind = FWI_BATCHNORM, .in = x, .out = in,
                                  .n_params = 2 * (size_t)in.c});
}

int fw_leaky_relu(fw_graph *g, int x, float slope) {
    FW_ASSERT(slope >= 0 && slope < 1, "leaky relu slope %g", slope);
    fwi_node n = {.kind = FWI_RELU, .in = x, .out = shape_of(g, x)};
    n.relu.slope = slope;
    return add_node(g, n);
}

int fw_relu(fw_graph *g, int x) {
    return fw_leaky_relu(g, x, 0.0f);
}

int fw_maxpool2(fw_graph *g, int x) {
    fw_shape in = shape_of(g, x);
    FW_ASSERT(in.h >= 2 && in.w >= 2, "maxpool2 needs at least 2x2 input, got %dx%d", in.h, in.w);
    return add_node(g, (fwi_node){.kind = FWI_MAXPOOL, .in = x, .out = {in.c, in.h / 2, in.w / 2}});
}

int fw_global_avgpool(fw_graph *g, int x) {
    fw_shape in = shape_of(g, x);
    return add_node(g, (fwi_node){.kind = FWI_AVGPOOL, .in = x, .out = {in.c, 1, 1}});
}

int fw_flatten(fw_graph *g, int x) {
    fw_shape in = shape_of(g, x);
    return add_node(g, (fwi_node){.kind = FWI_FLATTEN, .in = x, .out = {in.c * in.h * in.w, 1, 1}});
}

/* Whether a node's output is a (B, F) vector in every exec: the layers that make vectors, a
 * (F, 1, 1) input, and element-wise layers or batchnorm applied to a vector. */
static bool is_vector(const fw_graph *g, int x) {
    const fwi_node *n = &g->nodes[x];
    switch (n->kind) {
    case FWI_FLATTEN: case FWI_AVGPOOL: case FWI_LINEAR: return true;
    case FWI_INPUT: return n->out.h == 1 && n->out.w == 1;
    case FWI_RELU: case FWI_BATCHNORM: case FWI_SIGMOID: case FWI_TANH: return is_vector(g, n->in);
    default: return false;
    }
}

int fw_linear(fw_graph *g, int x, int out) {
    fw_shape in = shape_of(g, x);
    fwi_kind k = g->nodes[x].kind;
    FW_ASSERT(is_vector(g, x),
              "linear: input node %d (%s) is not a vector; add fw_flatten or fw_global_avgpool",
              x, fwi_ops(k)->name);
    FW_ASSERT(in.h == 1 && in.w == 1, "linear: input (%d, %d, %d) is not a vector", in.c, in.h, in.w);
    FW_ASSERT(out > 0, "linear: %d outputs", out);
    fwi_node n = {.kind = FWI_LINEAR, .in = x, .out = {out, 1, 1},
                  .n_params = (size_t)out * (size_t)in.c + (size_t)out};
    n.linear.out = out;
    return add_node(g, n);
}

int fw_deconv2d(fw_graph *g, int x, int out_c, int k, int stride, int pad, bool bias) {
    fw_shape in = shape_of(g, x);
    FW_ASSERT(out_c > 0 && k > 0 && stride > 0 && pad >= 0 && pad < k,
              "deconv2d: out_c %d, k %d, stride %d, pad %d", out_c, k, stride, pad);
    int oh = (in.h - 1) * stride - 2 * pad + k, ow = (in.w - 1) * stride - 2 * pad + k;
    FW_ASSERT(oh > 0 && ow > 0, "deconv2d: %dx%d input gives an empty output for k %d pad %d",
              in.h, in.w, k, pad);
    fwi_node n = {.kind = FWI_DECONV2D, .in = x, .out = {out_c, oh, ow}};
    n.deconv.out_c = out_c;
    n.deconv.k = k;
    n.deconv.stride = stride;
    n.deconv.pad = pad;
    n.deconv.bias = bias;
    n.n_params = (size_t)in.c * (size_t)out_c * (size_t)(k * k) + (bias ? (size_t)out_c : 0);
    return add_node(g, n);
}

int fw_sigmoid(fw_graph *g, int x) {
    return add_node(g, (fwi_node){.kind = FWI_SIGMOID, .in = x, .out = shape_of(g, x)});
}

int fw_tanh(fw_graph *g, int x) {
    return add_node(g, (fwi_node){.kind = FWI_TANH, .in = x, .out = shape_of(g, x)});
}

int fw_reshape(fw_graph *g, int x, int c, int h, int w) {
    fw_shape in = shape_of(g, x);
    FW_ASSERT(c > 0 && h > 0 && w > 0 && (long)c * h * w == (long)in.c * in.h * in.w,
              "reshape: (%d, %d, %d) -> (%d, %d, %d) changes the element count", in.c, in.h,
              in.w, c, h, w);
    return add_node(g, (fwi_node){.kind = FWI_RESHAPE, .in = x, .out = {c, h, w}});
}

/* ---- queries ---- */

int fw_graph_n_nodes(const fw_graph *g) {
    return g->n;
}
fw_shape fw_graph_shape(const fw_graph *g, int node) {
    return shape_of(g, node);
}
size_t fw_graph_n_params(const fw_graph *g) {
    return g->n_params;
}
size_t fw_graph_param_offset(const fw_graph *g, int node) {
    shape_of(g, node);
    return g->nodes[node].param_off;
}
size_t fw_graph_param_count(const fw_graph *g, int node) {
    shape_of(g, node);
    return g->nodes[node].n_params;
}
const char *fw_graph_node_kind(const fw_graph *g, int node) {
    shape_of(g, node);
    return fwi_ops(g->nodes[node].kind)->name;
}

void fw_graph_init_params(const fw_graph *g, float *theta, uint64_t seed) {
    for (int i = 0; i < g->n; i++) {
        const fwi_node *n = &g->nodes[i];
        if (!n->n_params)
            continue;
        fw_rng r = fw_rng_for(seed, FW_RNG_INIT, 0, (uint64_t)i);
        fw_shape in = n->in >= 0 ? g->nodes[n->in].out : n->out;
        fwi_ops(n->kind)->init_params(n, in, theta + n->param_off, &r);
    }
}

void fw_graph_print(const fw_graph *g, FILE *f) {
    fprintf(f, "  %-4s %-12s %-16s %s\n", "node", "kind", "output", "params");
    for (int i = 0; i < g->n; i++) {
        const fwi_node *n = &g->nodes[i];
        char shape[48];
        snprintf(shape, sizeof shape, "%dx%dx%d", n->out.c, n->out.h, n->out.w);
        fprintf(f, "  %-4d %-12s %-16s %zu\n", i, fwi_ops(n->kind)->name, shape, n->n_params);
    }
    fprintf(f, "  total parameters: %zu\n", g->n_params);
}

/* ---- exec ---- */

/* The plain layout of a node's output: (B, F) for vector nodes, else (B, C, H, W). */
static fw_status plain_md(const fw_exec *e, int id, dnnl_memory_desc_t *md) {
    fw_shape s = e->g->nodes[id].out;
    if (e->nodes[id].y.md.ndims == 2) {
        dnnl_dims_t d = {e->batch, s.c};
        fwi_md_tag(md, 2, d, dnnl_nc);
    } else {
        dnnl_dims_t d = {e->batch, s.c, s.h, s.w};
        fwi_md_tag(md, 4, d, dnnl_nchw);
    }
    return FW_OK;
}

/* The last node may sit in a blocked layout; callers always see it plain. */
static fw_status make_output_views(fw_exec *e) {
    int last = e->g->n - 1;
    dnnl_memory_desc_t md;
    plain_md(e, last, &md);
    fwi_xnode *x = &e->nodes[last];
    if (dnnl_memory_desc_equal(&md, &x->y.md)) {
        FW_TRY(fwi_buf_wrap(e, &e->out_plain, &md, x->y.data));
        FW_TRY(fwi_buf_wrap(e, &e->r_out_plain, &md, x->ry.data));
        FW_TRY(fwi_buf_wrap(e, &e->r_dout_plain, &md, x->rdy.data));
        return fwi_buf_wrap(e, &e->dout_plain, &md, x->dy.data);
    }
    FW_TRY(fwi_buf_alloc(e, &e->out_plain, &md));
    FW_TRY(fwi_buf_alloc(e, &e->dout_plain, &md));
    FW_TRY(fwi_buf_alloc(e, &e->r_out_plain, &md));
    FW_TRY(fwi_buf_alloc(e, &e->r_dout_plain, &md));
    FW_TRY(fwi_reorder_new(e, &e->out_reorder, &x->y.md, &md, "output to plain"));
    return fwi_reorder_new(e, &e->dout_reorder, &md, &x->dy.md, "output grad from plain");
}

static fw_status exec_build(fw_exec *e) {
    FW_TRY(fwi_dnnl_check(dnnl_engine_create(&e->engine, dnnl_cpu, 0), "engine create"));
    FW_TRY(fwi_dnnl_check(dnnl_stream_create(&e->stream, e->engine, dnnl_stream_default_flags),
                          "stream create"));
    FW_TRY(fwi_dnnl_check(dnnl_primitive_attr_create(&e->attr), "attr create"));
    FW_TRY(fwi_dnnl_check(dnnl_primitive_attr_set_scratchpad_mode(e->attr, dnnl_scratchpad_mode_user),
                          "scratchpad mode"));
    e->nodes = calloc((size_t)e->g->n, sizeof *e->nodes);
    if (!e->nodes)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < e->g->n; i++) {
        FW_TRY(fwi_ops(e->g->nodes[i].kind)->exec_new(e, i));
        fwi_xnode *x = &e->nodes[i];
        dnnl_memory_desc_t md = x->y.md;
        FW_TRY(fwi_buf_alloc(e, &x->y, &md));
        FW_TRY(fwi_buf_alloc(e, &x->dy, &md));
        FW_TRY(fwi_buf_alloc(e, &x->ry, &md));
        FW_TRY(fwi_buf_alloc(e, &x->rdy, &md));
    }
    FW_TRY(make_output_views(e));
    /* One scratchpad for all primitives: they run one after another on this thread. */
    e->scratch = fw_alloc(e->scratch_bytes);
    if (!e->scratch)
        return fw_errorf(FW_ERR_NOMEM, "out of memory for the scratchpad");
    for (fwi_prim *p = e->prims; p; p = p->next)
        if (p->scratch)
            fwi_dnnl_must(dnnl_memory_set_data_handle(p->scratch, e->scratch), "scratchpad");
    return FW_OK;
}

fw_status fw_exec_new(fw_exec **out, const fw_graph *g, int batch) {
    FW_ASSERT(g->n > 0 && g->nodes[0].kind == FWI_INPUT, "a graph starts with fw_input");
    FW_ASSERT(batch > 0, "batch %d", batch);
    *out = NULL;
    fw_exec *e = calloc(1, sizeof *e);
    if (!e)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    ((fw_graph *)g)->frozen = true; /* the only write: marks the definition read-only */
    e->g = g;
    e->batch = batch;
    fw_status s = exec_build(e);
    if (s != FW_OK) {
        fw_exec_free(e);
        return s;
    }
    *out = e;
    return FW_OK;
}

void fw_exec_free(fw_exec *e) {
    if (!e)
        return;
    if (e->nodes) {
        for (int i = 0; i < e->g->n; i++) {
            if (e->nodes[i].state)
                fwi_ops(e->g->nodes[i].kind)->exec_free(e->nodes[i].state);
            fwi_buf_free(&e->nodes[i].y);
            fwi_buf_free(&e->nodes[i].dy);
            fwi_buf_free(&e->nodes[i].ry);
            fwi_buf_free(&e->nodes[i].rdy);
        }
        free(e->nodes);
    }
    fwi_buf_free(&e->out_plain);
    fwi_buf_free(&e->dout_plain);
    fwi_buf_free(&e->r_out_plain);
    fwi_buf_free(&e->r_dout_plain);
    while (e->prims) {
        fwi_prim *p = e->prims;
        e->prims = p->next;
        if (p->p)
            dnnl_primitive_destroy(p->p);
        if (p->scratch)
            dnnl_memory_destroy(p->scratch);
        free(p);
    }
    fw_free(e->scratch);
    if (e->attr)
        dnnl_primitive_attr_destroy(e->attr);
    if (e->stream)
        dnnl_stream_destroy(e->stream);
    if (e->engine)
        dnnl_engine_destroy(e->engine);
    free(e);
}

int fw_exec_batch(const fw_exec *e) {
    return e->batch;
}

const float *fw_forward(fw_exec *e, const float *theta, const float *x) {
    fw_shape s = e->g->nodes[0].out;
    memcpy(e->nodes[0].y.data, x, (size_t)e->batch * (size_t)(s.c * s.h * s.w) * sizeof(float));
    for (int i = 1; i < e->g->n; i++)
        fwi_ops(e->g->nodes[i].kind)->forward(e, i, theta);
    if (e->out_reorder)
        fwi_reorder(e, e->out_reorder, e->nodes[e->g->n - 1].y.mem, e->out_plain.mem);
    return e->out_plain.data;
}

/* Hands the caller's plain gradient to the last node, in its layout. */
static void seed_last(fw_exec *e, fwi_buf *plain, fwi_buf *dst, const float *dy) {
    memcpy(plain->data, dy, plain->bytes);
    if (e->dout_reorder)
        fwi_reorder(e, e->dout_reorder, plain->mem, dst->mem);
}

/* The input gradient of the first layer is only needed when the caller asks for dx. */
static bool need_dx(const fw_exec *e, int id, const float *dx) {
    return e->g->nodes[id].in > 0 || dx != NULL;
}

static void backward_nodes(fw_exec *e, int from, const float *theta, float *dtheta, float *dx) {
    for (int i = from; i >= 1; i--)
        fwi_ops(e->g->nodes[i].kind)->backward(e, i, theta, dtheta, need_dx(e, i, dx));
    if (dx)
        memcpy(dx, e->nodes[0].dy.data, e->nodes[0].dy.bytes);
}

void fw_backward(fw_exec *e, const float *theta, const float *dy, float *dtheta, float *dx) {
    int last = e->g->n - 1;
    seed_last(e, &e->dout_plain, &e->nodes[last].dy, dy);
    backward_nodes(e, last, theta, dtheta, dx);
}

void fw_backward_from(fw_exec *e, const float *theta, int node, const float *dy, float *dtheta,
                      float *dx) {
    FW_ASSERT(node > 0 && node < e->g->n, "node %d", node);
    fwi_buf *d = &e->nodes[node].dy;
    FW_ASSERT(d->md.ndims == 2, "fw_backward_from: node %d (%s) is not a (B, F) vector", node,
              fwi_ops(e->g->nodes[node].kind)->name);
    memcpy(d->data, dy, d->bytes);
    backward_nodes(e, node, theta, dtheta, dx);
}

const float *fw_r_forward(fw_exec *e, const float *theta, const float *v) {
    for (int i = 1; i < e->g->n; i++) {
        const fwi_layer_ops *ops = fwi_ops(e->g->nodes[i].kind);
        FW_ASSERT(ops->r_forward, "layer %s has no R-forward", ops->name);
        ops->r_forward(e, i, theta, v);
    }
    if (e->out_reorder)
        fwi_reorder(e, e->out_reorder, e->nodes[e->g->n - 1].ry.mem, e->r_out_plain.mem);
    return e->r_out_plain.data;
}

void fw_r_backward(fw_exec *e, const float *theta, const float *v, const float *r_dy, float *hv,
                   float *r_dx) {
    int last = e->g->n - 1;
    seed_last(e, &e->r_dout_plain, &e->nodes[last].rdy, r_dy);
    for (int i = last; i >= 1; i--) {
        const fwi_layer_ops *ops = fwi_ops(e->g->nodes[i].kind);
        FW_ASSERT(ops->r_backward, "layer %s has no R-backward", ops->name);
        ops->r_backward(e, i, theta, v, hv, need_dx(e, i, r_dx));
    }
    if (r_dx)
        memcpy(r_dx, e->nodes[0].rdy.data, e->nodes[0].rdy.bytes);
}

static void read_plain(const fw_exec *e, int node, const fwi_buf *b, float *out) {
    FW_ASSERT(node >= 0 && node < e->g->n, "node %d", node);
    fw_shape s = e->g->nodes[node].out;
    if (s.h == 1 && s.w == 1 && b->md.ndims == 2) {
        memcpy(out, b->data, (size_t)e->batch * (size_t)s.c * sizeof(float));
        return;
    }
    fwi_view v = fwi_view_of(&b->md);
    size_t o = 0;
    for (int n = 0; n < v.n; n++)
        for (int c = 0; c < v.c; c++)
            for (int h = 0; h < v.h; h++)
                for (int w = 0; w < v.w; w++)
                    out[o++] = b->data[fwi_view_index(&v, n, c, h, w)];
}

void fw_exec_read(const fw_exec *e, int node, float *out) {
    read_plain(e, node, &e->nodes[node].y, out);
}

void fw_exec_read_r(const fw_exec *e, int node, float *out) {
    read_plain(e, node, &e->nodes[node].ry, out);
}

void fw_exec_print_impls(const fw_exec *e, FILE *f) {
    for (const fwi_prim *p = e->prims; p; p = p->next)
        fprintf(f, "  %-32s %s\n", p->what, p->impl);
}

int fw_exec_count_impls(const fw_exec *e, const char *prefix) {
    int n = 0;
    for (const fwi_prim *p = e->prims; p; p = p->next)
        n += strncmp(p->impl, prefix, strlen(prefix)) == 0;
    return n;
}
