/* deconv2d.c: 2-D transposed convolution through oneDNN deconvolution (forward, backward-data,
 * backward-weights), with the R-operator passes (docs/second-order-notes.md).
 *
 * Parameters in the flat vector: weights W as (I, O, KH, KW), PyTorch's ConvTranspose2d layout,
 * then an optional bias (O). With oh = ih*s - p + kh (and the same for w),
 *     y[n, o, oh, ow] = b[o] + sum_{i, kh, kw} x[n, i, ih, iw] * W[i, o, kh, kw].
 * oneDNN's deconvolution weights are logically {O, I, KH, KW} and obey the same formula with
 * W_dnnl[o, i, kh, kw] = W[i, o, kh, kw]: oneDNN defines deconv forward as convolution
 * backward-data, whose taps are not flipped, so the two layouts differ by the I <-> O swap only.
 * The flat (I, O, KH, KW) block is therefore oneDNN's "iohw" tag on dims {O, I, KH, KW};
 * tests/test_gen_layers.c proves it against a naive loop (including a one-hot weight).
 *
 * Layouts (docs/onednn-2.6-notes.md §3.3): weights use format_tag_any; activations the first of
 * `layouts` (any, then nhwc, then nchw) for which no pass gets a reference kernel. Like conv2d,
 * weights are reordered from the plain view each call and their gradient back, the input is
 * reordered from the producer's layout, and reference ("ref:") kernels are rejected.
 *
 * R-operator (v = direction, V and v_b its weight and bias parts), each a primitive run with
 * other memories:  R y = W (*) R x + V (*) x + v_b,  R g_x = bwd_data(R g_y, W) + bwd_data(g_y, V),
 * R g_W = bwd_weights(x, R g_y) + bwd_weights(R x, g_y),  R g_b = sum R g_y.
 * Terms with R x vanish when the input is the graph input (data does not depend on theta).
 */
#include "framework/internal.h"

#include <math.h>
#include <string.h>

typedef struct deconv_state {
    fwi_prim *fwd, *bwd_data, *bwd_w;
    fwi_prim *x_in;          /* producer layout -> src layout (NULL: same, or aliased) */
    fwi_prim *dx_out;        /* diff_src layout -> producer layout                    */
    fwi_buf xr, dxr;         /* src and diff_src in the primitive's layout            */
    fwi_buf rxr, rdxr;       /* the same for R{x} and R{dx}                           */
    fwi_buf pv;              /* (B, C, 1, 1) nchw view of a (B, C) producer's buffers */
    fwi_buf xtmp;            /* src layout: the second term of R{dx}                  */
    fwi_buf ytmp;            /* dst layout: the second term of R{y}                   */
    fwi_buf w_user, b_user;  /* views of theta (or v): {O, I, KH, KW} as iohw, and (O) */
    fwi_buf zero_b;          /* (O) zeros: the bias of the W (*) R x term              */
    fwi_prim *w_fwd_r, *w_bwd_r, *dw_r;
    fwi_buf w_fwd, w_bwd;    /* weights in the forward / backward-data layouts        */
    fwi_buf v_fwd, v_bwd;    /* the direction's weights in the same layouts           */
    fwi_buf dw, dw_plain, db;
    size_t n_w;              /* weight count, bias excluded                           */
    bool in_is_data;         /* the input is the graph input: R{x} = 0                */
} deconv_state;

/* The producer's buffer b as a 4-D memory: itself, or for a (B, C) vector producer (linear,
 * reshape to (C, 1, 1)) the (B, C, 1, 1) view pointed at it. */
static dnnl_memory_t prod(deconv_state *st, const fwi_buf *b) {
    if (!st->pv.mem)
        return b->mem;
    fwi_buf_point(&st->pv, b->data);
    return st->pv.mem;
}

/* A buffer in the primitive's src layout standing for the producer's buffer: none when the
 * layouts agree, a view (pointed per call) when they are the same bytes, else an own copy. */
typedef enum { SRC_SAME, SRC_ALIAS, SRC_COPY } src_mode;

static src_mode input_mode(const dnnl_memory_desc_t *have, const dnnl_memory_desc_t *want) {
    if (dnnl_memory_desc_equal(want, have))
        return SRC_SAME;
    if (want->dims[1] == 1 && dnnl_memory_desc_get_size(want) == dnnl_memory_desc_get_size(have) &&
        fwi_view_of(have).tag == dnnl_nchw)
        return SRC_ALIAS; /* one channel: nchw and nhwc are the same bytes */
    return SRC_COPY;
}

static fw_status adapt_input(fw_exec *e, deconv_state *st, int id, const dnnl_memory_desc_t *want) {
    fwi_xnode *in = fwi_in(e, id);
    const dnnl_memory_desc_t *have = &in->y.md;
    if (have->ndims == 2) {
        dnnl_memory_desc_t md4;
        dnnl_dims_t d = {have->dims[0], have->dims[1], 1, 1};
        fwi_md_tag(&md4, 4, d, dnnl_nchw);
        FW_TRY(fwi_buf_wrap(e, &st->pv, &md4, NULL));
        have = &st->pv.md;
    }
    fwi_buf *bufs[] = {&st->xr, &st->dxr, &st->rxr, &st->rdxr};
    switch (input_mode(have, want)) {
    case SRC_SAME:
        return FW_OK;
    case SRC_ALIAS:
        for (size_t i = 0; i < FW_COUNTOF(bufs); i++)
            FW_TRY(fwi_buf_wrap(e, bufs[i], want, NULL));
        return FW_OK;
    case SRC_COPY:
        for (size_t i = 0; i < FW_COUNTOF(bufs); i++)
            FW_TRY(fwi_buf_alloc(e, bufs[i], want));
        FW_TRY(fwi_reorder_new(e, &st->x_in, have, want, "deconv2d src reorder"));
        return fwi_reorder_new(e, &st->dx_out, want, have, "deconv2d diff_src reorder");
    }
    return FW_OK;
}

/* A weight buffer in layout `md`: a view of theta when plain, else an own buffer + reorder. */
static fw_status weights_in(fw_exec *e, deconv_state *st, fwi_buf *b, fwi_prim **r,
                            const dnnl_memory_desc_t *md, const char *what) {
    if (dnnl_memory_desc_equal(md, &st->w_user.md))
        return fwi_buf_wrap(e, b, md, NULL);
    FW_TRY(fwi_buf_alloc(e, b, md));
    return fwi_reorder_new(e, r, &st->w_user.md, md, what);
}

/* The direction's weights in the layout of w (a view when w is one): same reorders as w. */
static fw_status direction_in(fw_exec *e, fwi_buf *v, const fwi_buf *w) {
    return w->owned ? fwi_buf_alloc(e, v, &w->md) : fwi_buf_wrap(e, v, &w->md, NULL);
}

static bool is_ref(const_dnnl_primitive_desc_t pd) {
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    return strncmp(impl, "ref", 3) == 0;
}

/* Activation layouts to try, best first. Which one avoids reference kernels depends on the ISA
 * and the channel counts (measured, oneDNN 2.6.3): with `any`, AVX2 picks gemm on plain nchw for
 * few channels and jit on nChw8c for many; AVX-512 picks nChw16c, whose backward passes are
 * "ref:any" below 16 channels, where nhwc gives jit/brgconv for all three. */
static const dnnl_format_tag_t layouts[][2] = {
    {dnnl_format_tag_any, dnnl_format_tag_any}, {dnnl_nhwc, dnnl_nhwc}, {dnnl_nchw, dnnl_nchw}};

/* The three primitive descriptors for the first layout without reference kernels (or for the
 * last one tried, which fwi_prim_new then rejects with a message). */
static fw_status deconv_pds(fw_exec *e, int id, dnnl_primitive_desc_t pd[3]) {
    const fwi_node *n = fwi_node_of(e, id);
    fw_shape in = fwi_in_shape(e, id);
    int k = n->deconv.k, s = n->deconv.stride, p = n->deconv.pad, oc = n->deconv.out_c;
    dnnl_dims_t src_d = {e->batch, in.c, in.h, in.w}, dst_d = {e->batch, oc, n->out.h, n->out.w};
    dnnl_dims_t w_d = {oc, in.c, k, k}, b_d = {oc};
    dnnl_dims_t strides = {s, s}, pl = {p, p}, pr = {p, p};
    dnnl_memory_desc_t wei, bias;
    fwi_md_tag(&wei, 4, w_d, dnnl_format_tag_any);
    fwi_md_tag(&bias, 1, b_d, dnnl_x);
    const dnnl_memory_desc_t *bias_p = n->deconv.bias ? &bias : NULL;
    fw_status r = FW_OK;
    for (size_t t = 0; t < FW_COUNTOF(layouts); t++) {
        for (int j = 0; j < 3; j++) {
            if (pd[j]) dnnl_primitive_desc_destroy(pd[j]);
            pd[j] = NULL;
        }
        dnnl_memory_desc_t src, dst;
        fwi_md_tag(&src, 4, src_d, layouts[t][0]);
        fwi_md_tag(&dst, 4, dst_d, layouts[t][1]);
        dnnl_deconvolution_desc_t fd, bdd, bwd;
        fwi_dnnl_must(dnnl_deconvolution_forward_desc_init(&fd, dnnl_forward_training,
                                                           dnnl_deconvolution_direct, &src, &wei,
                                                           bias_p, &dst, strides, pl, pr),
                      "deconv fwd desc");
        if ((r = fwi_pd_new(e, &pd[0], &fd, NULL, "deconv2d fwd")) != FW_OK)
            continue;
        const dnnl_memory_desc_t *src_md = fwi_pd_md(pd[0], DNNL_ARG_SRC);
        const dnnl_memory_desc_t *dst_md = fwi_pd_md(pd[0], DNNL_ARG_DST);
        fwi_dnnl_must(dnnl_deconvolution_backward_data_desc_init(
                          &bdd, dnnl_deconvolution_direct, src_md, &wei, dst_md, strides, pl, pr),
                      "deconv bwd data desc");
        fwi_dnnl_must(dnnl_deconvolution_backward_weights_desc_init(
                          &bwd, dnnl_deconvolution_direct, src_md, &wei, bias_p, dst_md, strides,
                          pl, pr),
                      "deconv bwd weights desc");
        if ((r = fwi_pd_new(e, &pd[1], &bdd, pd[0], "deconv2d bwd_data")) != FW_OK ||
            (r = fwi_pd_new(e, &pd[2], &bwd, pd[0], "deconv2d bwd_weights")) != FW_OK)
            continue;
        if (!is_ref(pd[0]) && !is_ref(pd[1]) && !is_ref(pd[2]))
            break;
    }
    return r;
}

static fw_status deconv_exec_new_(fw_exec *e, int id, deconv_state *st) {
    const fwi_node *n = fwi_node_of(e, id);
    fw_shape in = fwi_in_shape(e, id);
    int k = n->deconv.k, oc = n->deconv.out_c;
    dnnl_dims_t w_d = {oc, in.c, k, k}, b_d = {oc};
    dnnl_memory_desc_t bias, w_plain;
    fwi_md_tag(&w_plain, 4, w_d, dnnl_iohw); /* the flat (I, O, KH, KW) block */
    fwi_md_tag(&bias, 1, b_d, dnnl_x);
    st->n_w = (size_t)oc * (size_t)in.c * (size_t)(k * k);
    st->in_is_data = e->g->nodes[n->in].kind == FWI_INPUT;

    dnnl_primitive_desc_t pd[3] = {NULL, NULL, NULL}; /* fwd, bwd_data, bwd_weights */
    fw_status r;
    if ((r = deconv_pds(e, id, pd)) != FW_OK ||
        (r = fwi_prim_new(e, &st->fwd, pd[0], "deconv2d fwd", true)) != FW_OK ||
        (r = fwi_prim_new(e, &st->bwd_data, pd[1], "deconv2d bwd_data", true)) != FW_OK ||
        (r = fwi_prim_new(e, &st->bwd_w, pd[2], "deconv2d bwd_weights", true)) != FW_OK)
        goto done;
    const dnnl_memory_desc_t *src_md = fwi_pd_md(pd[0], DNNL_ARG_SRC);
    const dnnl_memory_desc_t *dst_md = fwi_pd_md(pd[0], DNNL_ARG_DST);
    /* The backward passes read and write the forward's activation layouts (the hint). */
    FW_ASSERT(dnnl_memory_desc_equal(fwi_pd_md(pd[1], DNNL_ARG_DIFF_DST), dst_md) &&
                  dnnl_memory_desc_equal(fwi_pd_md(pd[1], DNNL_ARG_DIFF_SRC), src_md) &&
                  dnnl_memory_desc_equal(fwi_pd_md(pd[2], DNNL_ARG_DIFF_DST), dst_md) &&
                  dnnl_memory_desc_equal(fwi_pd_md(pd[2], DNNL_ARG_SRC), src_md),
              "deconv2d: backward activation layouts differ from the forward's");

    e->nodes[id].y.md = *dst_md;
    if ((r = adapt_input(e, st, id, src_md)) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->xtmp, src_md)) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->ytmp, dst_md)) != FW_OK ||
        (r = fwi_buf_wrap(e, &st->w_user, &w_plain, NULL)) != FW_OK ||
        (r = fwi_buf_wrap(e, &st->b_user, &bias, NULL)) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->zero_b, &bias)) != FW_OK ||
        (r = weights_in(e, st, &st->w_fwd, &st->w_fwd_r, fwi_pd_md(pd[0], DNNL_ARG_WEIGHTS),
                        "deconv2d weights reorder")) != FW_OK ||
        (r = weights_in(e, st, &st->w_bwd, &st->w_bwd_r, fwi_pd_md(pd[1], DNNL_ARG_WEIGHTS),
                        "deconv2d bwd weights reorder")) != FW_OK ||
        (r = direction_in(e, &st->v_fwd, &st->w_fwd)) != FW_OK ||
        (r = direction_in(e, &st->v_bwd, &st->w_bwd)) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->dw, fwi_pd_md(pd[2], DNNL_ARG_DIFF_WEIGHTS))) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->dw_plain, &w_plain)) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->db, &bias)) != FW_OK ||
        (r = fwi_reorder_new(e, &st->dw_r, &st->dw.md, &w_plain, "deconv2d diff_weights reorder")))
        goto done;
done:
    for (int j = 0; j < 3; j++)
        if (pd[j]) dnnl_primitive_desc_destroy(pd[j]);
    return r;
}

static void deconv_exec_free(void *state) {
    deconv_state *st = state;
    fwi_buf *bufs[] = {&st->xr,    &st->dxr,   &st->rxr,    &st->rdxr,  &st->pv, &st->xtmp,
                       &st->ytmp,  &st->w_user, &st->b_user, &st->zero_b, &st->w_fwd,
                       &st->w_bwd, &st->v_fwd, &st->v_bwd,  &st->dw,    &st->dw_plain,
                       &st->db};
    for (size_t i = 0; i < FW_COUNTOF(bufs); i++)
        fwi_buf_free(bufs[i]);
    free(st);
}

static fw_status deconv_exec_new(fw_exec *e, int id) {
    deconv_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    return deconv_exec_new_(e, id, st);
}

/* Weights wt (plain, theta or v) into buffer w of a primitive's layout: a reorder, or a view. */
static dnnl_memory_t load_weights(fw_exec *e, deconv_state *st, fwi_buf *w, fwi_prim *r,
                                  const float *wt) {
    if (!r) {
        fwi_buf_point(w, wt);
        return w->mem;
    }
    fwi_buf_point(&st->w_user, wt);
    fwi_reorder(e, r, st->w_user.mem, w->mem);
    return w->mem;
}

/* A producer tensor (y or ry of the input node) as the primitive's src: the producer's memory,
 * the alias view pointed at it, or the own copy refreshed by a reorder. */
static dnnl_memory_t src_in(fw_exec *e, deconv_state *st, const fwi_buf *from, fwi_buf *own) {
    if (st->x_in) {
        fwi_reorder(e, st->x_in, prod(st, from), own->mem);
        return own->mem;
    }
    if (own->mem) {
        fwi_buf_point(own, from->data);
        return own->mem;
    }
    return prod(st, from);
}

/* The same after src_in ran (the own copy is current): no reorder. */
static dnnl_memory_t src_again(deconv_state *st, const fwi_buf *from, fwi_buf *own) {
    if (own->mem && !st->x_in)
        fwi_buf_point(own, from->data);
    return own->mem ? own->mem : prod(st, from);
}

/* Where a diff_src for the producer's buffer `to` is written: the producer's memory, the alias
 * view, or the own buffer (then finish_dx reorders it into `to`). */
static dnnl_memory_t dx_target(deconv_state *st, const fwi_buf *to, fwi_buf *own) {
    if (st->dx_out)
        return own->mem;
    if (own->mem) {
        fwi_buf_point(own, to->data);
        return own->mem;
    }
    return prod(st, to);
}

static void finish_dx(fw_exec *e, deconv_state *st, const fwi_buf *to, fwi_buf *own) {
    if (st->dx_out)
        fwi_reorder(e, st->dx_out, own->mem, prod(st, to));
}

static void run_fwd(fw_exec *e, deconv_state *st, dnnl_memory_t x, dnnl_memory_t w,
                    dnnl_memory_t b, dnnl_memory_t y) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b},
                              {DNNL_ARG_DST, y}};
    fwi_run(e, st->fwd, 4, args); /* oneDNN ignores the bias argument when there is none */
}

static void run_bwd_data(fw_exec *e, deconv_state *st, dnnl_memory_t dy, dnnl_memory_t w,
                         dnnl_memory_t dx) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, w},
                              {DNNL_ARG_DIFF_SRC, dx}};
    fwi_run(e, st->bwd_data, 3, args);
}

/* dw (and db) of (x, dy); adds the plain weight gradient into acc, and db when with_bias. */
static void run_bwd_w(fw_exec *e, deconv_state *st, const fwi_node *n, dnnl_memory_t x,
                      dnnl_memory_t dy, float *acc, bool with_bias) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, x},
                              {DNNL_ARG_DIFF_DST, dy},
                              {DNNL_ARG_DIFF_WEIGHTS, st->dw.mem},
                              {DNNL_ARG_DIFF_BIAS, st->db.mem}};
    fwi_run(e, st->bwd_w, 4, args);
    const float *dw = st->dw.data;
    if (st->dw_r) {
        fwi_reorder(e, st->dw_r, st->dw.mem, st->dw_plain.mem);
        dw = st->dw_plain.data;
    }
    fwi_add(acc, dw, st->n_w);
    if (with_bias && n->deconv.bias)
        fwi_add(acc + st->n_w, st->db.data, (size_t)n->deconv.out_c);
}

static void deconv_forward(fw_exec *e, int id, const float *theta) {
    deconv_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    const float *wt = theta + n->param_off;
    dnnl_memory_t w = load_weights(e, st, &st->w_fwd, st->w_fwd_r, wt);
    if (n->deconv.bias)
        fwi_buf_point(&st->b_user, wt + st->n_w);
    dnnl_memory_t x = src_in(e, st, &fwi_in(e, id)->y, &st->xr);
    run_fwd(e, st, x, w, st->b_user.mem, e->nodes[id].y.mem);
}

static void deconv_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    deconv_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *in = fwi_in(e, id);
    dnnl_memory_t dy = e->nodes[id].dy.mem;
    if (dtheta)
        run_bwd_w(e, st, n, src_again(st, &in->y, &st->xr), dy, dtheta + n->param_off, true);
    if (!need_dx)
        return;
    dnnl_memory_t w = load_weights(e, st, &st->w_bwd, st->w_bwd_r, theta + n->param_off);
    run_bwd_data(e, st, dy, w, dx_target(st, &in->dy, &st->dxr));
    finish_dx(e, st, &in->dy, &st->dxr);
}

/* dst[i] += src[i] over two buffers of the same layout (padding included: zeros plus zeros). */
static void add_buf(fwi_buf *dst, const fwi_buf *src) {
    fwi_add(dst->data, src->data, fwi_buf_len(dst));
}

static void deconv_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    deconv_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *me = &e->nodes[id];
    const float *vt = v + n->param_off;
    /* V (*) x + v_b, with x still in place from the forward pass. */
    dnnl_memory_t vw = load_weights(e, st, &st->v_fwd, st->w_fwd_r, vt);
    if (n->deconv.bias)
        fwi_buf_point(&st->b_user, vt + st->n_w);
    dnnl_memory_t x = src_again(st, &fwi_in(e, id)->y, &st->xr);
    if (st->in_is_data) {
        run_fwd(e, st, x, vw, st->b_user.mem, me->ry.mem);
        return;
    }
    run_fwd(e, st, x, vw, st->b_user.mem, st->ytmp.mem);
    /* + W (*) R x */
    dnnl_memory_t w = load_weights(e, st, &st->w_fwd, st->w_fwd_r, theta + n->param_off);
    dnnl_memory_t rx = src_in(e, st, &fwi_in(e, id)->ry, &st->rxr);
    run_fwd(e, st, rx, w, st->zero_b.mem, me->ry.mem);
    add_buf(&me->ry, &st->ytmp);
}

static void deconv_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                              bool need_dx) {
    deconv_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *me = &e->nodes[id], *in = fwi_in(e, id);
    if (hv) {
        /* R g_W = bwd_weights(x, R g_y) + bwd_weights(R x, g_y); R g_b = sum R g_y. */
        float *acc = hv + n->param_off;
        run_bwd_w(e, st, n, src_again(st, &in->y, &st->xr), me->rdy.mem, acc, true);
        if (!st->in_is_data)
            run_bwd_w(e, st, n, src_again(st, &in->ry, &st->rxr), me->dy.mem, acc, false);
    }
    if (!need_dx)
        return;
    /* R g_x = bwd_data(R g_y, W) + bwd_data(g_y, V) */
    dnnl_memory_t w = load_weights(e, st, &st->w_bwd, st->w_bwd_r, theta + n->param_off);
    dnnl_memory_t rdx = dx_target(st, &in->rdy, &st->rdxr);
    run_bwd_data(e, st, me->rdy.mem, w, rdx);
    dnnl_memory_t vw = load_weights(e, st, &st->v_bwd, st->w_bwd_r, v + n->param_off);
    run_bwd_data(e, st, me->dy.mem, vw, st->xtmp.mem);
    add_buf(st->dx_out ? &st->rdxr : &in->rdy, &st->xtmp);
    finish_dx(e, st, &in->rdy, &st->rdxr);
}

/* Xavier (Glorot) uniform over fan_in + fan_out = (I + O) k^2, as for conv2d; zero bias. */
static void deconv_init(const fwi_node *n, fw_shape in, float *w, fw_rng *r) {
    int k = n->deconv.k;
    double fan_in = (double)in.c * k * k, fan_out = (double)n->deconv.out_c * k * k;
    float a = (float)sqrt(6.0 / (fan_in + fan_out));
    size_t nw = (size_t)n->deconv.out_c * (size_t)in.c * (size_t)(k * k);
    for (size_t i = 0; i < nw; i++)
        w[i] = a * (2.0f * fw_rng_uniform(r) - 1.0f);
    for (size_t i = nw; i < n->n_params; i++)
        w[i] = 0.0f;
}

const fwi_layer_ops fwi_deconv2d_ops = {
    .name = "deconv2d",
    .exec_new = deconv_exec_new,
    .forward = deconv_forward,
    .backward = deconv_backward,
    .exec_free = deconv_exec_free,
    .init_params = deconv_init,
    .r_forward = deconv_r_forward,
    .r_backward = deconv_r_backward,
};
