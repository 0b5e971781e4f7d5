/* conv2d.c: 2-D convolution through oneDNN (forward, backward-data, backward-weights).
 *
 * Weights live in the flat vector as (O, I, KH, KW) followed by an optional bias (O). Each call
 * reorders them into the layout the primitive chose, and reorders the weight gradient back.
 * Layouts (docs/onednn-2.6-notes.md §3.3): activations use format_tag_any (blocked nChw8c), except
 * a one-channel input layer, which uses nhwc source and destination: with a blocked destination
 * its backward passes fall back to reference kernels 1000x slower. When `any` still gives a
 * reference kernel (AVX-512, 2..15 input channels), nhwc and then nchw are tried (conv_pds).
 * Second order: R-forward and R-backward reuse the same three primitives with other memories.
 */
#include "framework/internal.h"

#include <math.h>
#include <string.h>

typedef struct conv_state {
    fwi_prim *fwd, *bwd_data, *bwd_w;
    fwi_prim *x_in;        /* producer layout -> src layout (NULL: same, or aliased) */
    fwi_prim *dx_out;      /* diff_src layout -> producer layout                    */
    fwi_buf xr, dxr;       /* src and diff_src in the primitive's layout             */
    fwi_buf w_user, b_user; /* views of theta: (O, I, KH, KW) and (O)                */
    fwi_prim *w_fwd_r, *w_bwd_r, *dw_r;
    fwi_buf w_fwd, w_bwd;  /* weights in the forward / backward-data layouts         */
    fwi_buf dw, dw_plain, db;
    size_t n_w;            /* weight count, bias excluded                            */
    /* R-operator (second order): the direction V in the forward / backward-data layouts, its
     * bias view, a zero bias for the W*Rx pass, R{x} in the src layout (own buffer or alias as
     * for x), an alias of the input's R{dx}, and one dst- and one src-layout temporary. */
    fwi_buf v_fwd, v_bwd, vb_user, zero_b;
    fwi_buf rxr, rdxr;
    fwi_buf ty, tx;
} conv_state;

/* src/diff_src as the primitive sees them: the producer's buffer when the layouts agree (or are
 * the same bytes, as for one channel), else an own buffer with a reorder. */
static fw_status adapt_input(fw_exec *e, conv_state *st, int id, const dnnl_memory_desc_t *want) {
    fwi_xnode *in = fwi_in(e, id);
    if (dnnl_memory_desc_equal(want, &in->y.md))
        return FW_OK;
    if (want->dims[1] == 1 && dnnl_memory_desc_get_size(want) == in->y.bytes &&
        fwi_view_of(&in->y.md).tag == dnnl_nchw) {
        FW_TRY(fwi_buf_wrap(e, &st->xr, want, NULL)); /* pointed at the producer per call */
        return fwi_buf_wrap(e, &st->dxr, want, NULL);
    }
    FW_TRY(fwi_buf_alloc(e, &st->xr, want));
    FW_TRY(fwi_buf_alloc(e, &st->dxr, want));
    FW_TRY(fwi_reorder_new(e, &st->x_in, &in->y.md, want, "conv2d src reorder"));
    return fwi_reorder_new(e, &st->dx_out, want, &in->y.md, "conv2d diff_src reorder");
}

/* The R-operator's buffers, allocated once here: nothing is allocated in the passes. */
static fw_status r_buffers(fw_exec *e, conv_state *st, int id, const dnnl_memory_desc_t *src_md,
                           const dnnl_memory_desc_t *dst_md, const dnnl_memory_desc_t *bias_md) {
    const fwi_buf *bufs[] = {&st->w_fwd, &st->w_bwd};
    fwi_buf *vbufs[] = {&st->v_fwd, &st->v_bwd};
    for (int i = 0; i < 2; i++) {
        if (bufs[i]->owned)
            FW_TRY(fwi_buf_alloc(e, vbufs[i], &bufs[i]->md));
        else
            FW_TRY(fwi_buf_wrap(e, vbufs[i], &bufs[i]->md, NULL));
    }
    FW_TRY(fwi_buf_wrap(e, &st->vb_user, bias_md, NULL));
    FW_TRY(fwi_buf_alloc(e, &st->zero_b, bias_md)); /* zero-filled, never written */
    if (st->x_in)
        FW_TRY(fwi_buf_alloc(e, &st->rxr, src_md));
    else if (st->xr.mem) {
        FW_TRY(fwi_buf_wrap(e, &st->rxr, src_md, NULL));
        FW_TRY(fwi_buf_wrap(e, &st->rdxr, src_md, NULL));
    }
    if (fwi_node_of(e, id)->in != 0) /* the input node's R{y} is 0: no W*Rx pass to add to */
        FW_TRY(fwi_buf_alloc(e, &st->ty, dst_md));
    return fwi_buf_alloc(e, &st->tx, src_md);
}

/* A weight buffer in layout `md`: a view of theta when plain, else an own buffer + reorder. */
static fw_status weights_in(fw_exec *e, conv_state *st, fwi_buf *b, fwi_prim **r,
                            const dnnl_memory_desc_t *md, const char *what) {
    if (dnnl_memory_desc_equal(md, &st->w_user.md))
        return fwi_buf_wrap(e, b, md, NULL);
    FW_TRY(fwi_buf_alloc(e, b, md));
    return fwi_reorder_new(e, r, &st->w_user.md, md, what);
}

static bool is_ref(const_dnnl_primitive_desc_t pd) {
    const char *impl = "";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    return strncmp(impl, "ref", 3) == 0;
}

/* The three primitive descriptors (fwd, bwd_data, bwd_weights) for the first activation layout
 * in which no pass gets a reference kernel; when all do, those of the last layout tried, which
 * fwi_prim_new then rejects with a message. One input channel: nhwc (trap 1 of the notes).
 * Otherwise `any` first (blocked nChw8c / nChw16c), then nhwc, then nchw: on AVX-512 with 2..15
 * input channels, `any` gives a plain nchw source whose backward-data is only "ref:any", while
 * nhwc has jit kernels for all three passes. */
static fw_status conv_pds(fw_exec *e, int id, dnnl_primitive_desc_t pd[3]) {
    const fwi_node *n = fwi_node_of(e, id);
    fw_shape in = fwi_in_shape(e, id);
    int k = n->conv.k, s = n->conv.stride, p = n->conv.pad;
    dnnl_dims_t src_d = {e->batch, in.c, in.h, in.w}, dst_d = {e->batch, n->out.c, n->out.h, n->out.w};
    dnnl_dims_t w_d = {n->out.c, in.c, k, k}, b_d = {n->out.c};
    dnnl_dims_t strides = {s, s}, pl = {p, p};
    dnnl_dims_t pr = {(n->out.h - 1) * s + k - in.h - p, (n->out.w - 1) * s + k - in.w - p};
    static const dnnl_format_tag_t one_channel[] = {dnnl_nhwc};
    static const dnnl_format_tag_t general[] = {dnnl_format_tag_any, dnnl_nhwc, dnnl_nchw};
    const dnnl_format_tag_t *acts = in.c == 1 ? one_channel : general;
    size_t n_acts = in.c == 1 ? FW_COUNTOF(one_channel) : FW_COUNTOF(general);
    dnnl_memory_desc_t wei, bias;
    fwi_md_tag(&wei, 4, w_d, dnnl_format_tag_any);
    fwi_md_tag(&bias, 1, b_d, dnnl_x);
    const dnnl_memory_desc_t *bias_p = n->conv.bias ? &bias : NULL;
    fw_status r = FW_OK;
    for (size_t t = 0; t < n_acts; t++) {
        for (int j = 0; j < 3; j++) {
            if (pd[j])
                dnnl_primitive_desc_destroy(pd[j]);
            pd[j] = NULL;
        }
        dnnl_memory_desc_t src, dst;
        fwi_md_tag(&src, 4, src_d, acts[t]);
        fwi_md_tag(&dst, 4, dst_d, acts[t]);
        dnnl_convolution_desc_t fd, bdd, bwd;
        fwi_dnnl_must(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training,
                                                         dnnl_convolution_direct, &src, &wei,
                                                         bias_p, &dst, strides, pl, pr),
                      "conv fwd desc");
        if ((r = fwi_pd_new(e, &pd[0], &fd, NULL, "conv2d fwd")) != FW_OK)
            continue;
        const dnnl_memory_desc_t *src_md = fwi_pd_md(pd[0], DNNL_ARG_SRC);
        const dnnl_memory_desc_t *dst_md = fwi_pd_md(pd[0], DNNL_ARG_DST);
        fwi_dnnl_must(dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct,
                                                               src_md, &wei, dst_md, strides, pl,
                                                               pr),
                      "conv bwd data desc");
        fwi_dnnl_must(dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct,
                                                                  src_md, &wei, bias_p, dst_md,
                                                                  strides, pl, pr),
                      "conv bwd weights desc");
        if ((r = fwi_pd_new(e, &pd[1], &bdd, pd[0], "conv2d bwd_data")) != FW_OK ||
            (r = fwi_pd_new(e, &pd[2], &bwd, pd[0], "conv2d bwd_weights")) != FW_OK)
            continue;
        if (!is_ref(pd[0]) && !is_ref(pd[1]) && !is_ref(pd[2]))
            break;
    }
    return r;
}

static fw_status conv_exec_new_(fw_exec *e, int id, conv_state *st) {
    const fwi_node *n = fwi_node_of(e, id);
    fw_shape in = fwi_in_shape(e, id);
    int k = n->conv.k;
    dnnl_dims_t w_d = {n->out.c, in.c, k, k}, b_d = {n->out.c};
    dnnl_memory_desc_t bias, w_plain;
    fwi_md_tag(&w_plain, 4, w_d, dnnl_oihw);
    fwi_md_tag(&bias, 1, b_d, dnnl_x);
    st->n_w = (size_t)n->out.c * (size_t)in.c * (size_t)(k * k);

    dnnl_primitive_desc_t pd[3] = {NULL, NULL, NULL}, fpd, dpd, wpd;
    fw_status r;
    if ((r = conv_pds(e, id, pd)) != FW_OK)
        goto done;
    fpd = pd[0], dpd = pd[1], wpd = pd[2];
    if ((r = fwi_prim_new(e, &st->fwd, fpd, "conv2d fwd", true)) != FW_OK ||
        (r = fwi_prim_new(e, &st->bwd_data, dpd, "conv2d bwd_data", true)) != FW_OK ||
        (r = fwi_prim_new(e, &st->bwd_w, wpd, "conv2d bwd_weights", true)) != FW_OK)
        goto done;
    const dnnl_memory_desc_t *src_md = fwi_pd_md(fpd, DNNL_ARG_SRC);
    const dnnl_memory_desc_t *dst_md = fwi_pd_md(fpd, DNNL_ARG_DST);
    /* The backward passes read and write the forward's activation layouts (the hint). */
    FW_ASSERT(dnnl_memory_desc_equal(fwi_pd_md(dpd, DNNL_ARG_DIFF_DST), dst_md) &&
                  dnnl_memory_desc_equal(fwi_pd_md(dpd, DNNL_ARG_DIFF_SRC), src_md) &&
                  dnnl_memory_desc_equal(fwi_pd_md(wpd, DNNL_ARG_DIFF_DST), dst_md) &&
                  dnnl_memory_desc_equal(fwi_pd_md(wpd, DNNL_ARG_SRC), src_md),
              "conv2d: backward activation layouts differ from the forward's");

    e->nodes[id].y.md = *dst_md;
    if ((r = adapt_input(e, st, id, src_md)) != FW_OK ||
        (r = fwi_buf_wrap(e, &st->w_user, &w_plain, NULL)) != FW_OK ||
        (r = fwi_buf_wrap(e, &st->b_user, &bias, NULL)) != FW_OK ||
        (r = weights_in(e, st, &st->w_fwd, &st->w_fwd_r, fwi_pd_md(fpd, DNNL_ARG_WEIGHTS),
                        "conv2d weights reorder")) != FW_OK ||
        (r = weights_in(e, st, &st->w_bwd, &st->w_bwd_r, fwi_pd_md(dpd, DNNL_ARG_WEIGHTS),
                        "conv2d bwd weights reorder")) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->dw, fwi_pd_md(wpd, DNNL_ARG_DIFF_WEIGHTS))) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->dw_plain, &w_plain)) != FW_OK ||
        (r = fwi_buf_alloc(e, &st->db, &bias)) != FW_OK ||
        (r = fwi_reorder_new(e, &st->dw_r, &st->dw.md, &w_plain, "conv2d diff_weights reorder")) ||
        (r = r_buffers(e, st, id, src_md, dst_md, &bias)) != FW_OK)
        goto done;
done:
    for (int j = 0; j < 3; j++)
        if (pd[j])
            dnnl_primitive_desc_destroy(pd[j]);
    return r;
}

static void conv_exec_free(void *state) {
    conv_state *st = state;
    fwi_buf *bufs[] = {&st->xr,   &st->dxr,     &st->w_user, &st->b_user,  &st->w_fwd,
                       &st->w_bwd, &st->dw,     &st->dw_plain, &st->db,    &st->v_fwd,
                       &st->v_bwd, &st->vb_user, &st->zero_b, &st->rxr,    &st->rdxr,
                       &st->ty,    &st->tx};
    for (size_t i = 0; i < FW_COUNTOF(bufs); i++)
        fwi_buf_free(bufs[i]);
    free(st);
}

static fw_status conv_exec_new(fw_exec *e, int id) {
    conv_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    return conv_exec_new_(e, id, st);
}

/* Points the weight views at theta and fills a layout-specific copy when one is needed. */
static void load_weights(fw_exec *e, conv_state *st, fwi_buf *w, fwi_prim *r, const float *wt) {
    fwi_buf_point(&st->w_user, wt);
    if (r)
        fwi_reorder(e, r, st->w_user.mem, w->mem);
    else
        fwi_buf_point(w, wt);
}

/* The source as the primitive wants it: the producer's buffer, an alias of it, or a reorder. */
static dnnl_memory_t src_mem(fw_exec *e, conv_state *st, int id) {
    fwi_xnode *in = fwi_in(e, id);
    if (st->x_in) {
        fwi_reorder(e, st->x_in, in->y.mem, st->xr.mem);
        return st->xr.mem;
    }
    if (st->xr.mem) {
        fwi_buf_point(&st->xr, in->y.data);
        return st->xr.mem;
    }
    return in->y.mem;
}

static void conv_forward(fw_exec *e, int id, const float *theta) {
    conv_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    const float *wt = theta + n->param_off;
    load_weights(e, st, &st->w_fwd, st->w_fwd_r, wt);
    if (n->conv.bias)
        fwi_buf_point(&st->b_user, wt + st->n_w);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src_mem(e, st, id)},
                              {DNNL_ARG_WEIGHTS, st->w_fwd.mem},
                              {DNNL_ARG_BIAS, st->b_user.mem},
                              {DNNL_ARG_DST, e->nodes[id].y.mem}};
    fwi_run(e, st->fwd, 4, args); /* oneDNN ignores the bias argument when there is none */
}

static void conv_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    conv_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *in = fwi_in(e, id);
    dnnl_memory_t dy = e->nodes[id].dy.mem;
    if (dtheta) {
        /* The forward pass left the source (reordered or aliased) in place. */
        dnnl_memory_t x = st->xr.mem ? st->xr.mem : in->y.mem;
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy},
                                  {DNNL_ARG_DIFF_WEIGHTS, st->dw.mem},
                                  {DNNL_ARG_DIFF_BIAS, st->db.mem}};
        fwi_run(e, st->bwd_w, 4, args);
        const float *dw = st->dw.data;
        if (st->dw_r) {
            fwi_reorder(e, st->dw_r, st->dw.mem, st->dw_plain.mem);
            dw = st->dw_plain.data;
        }
        fwi_add(dtheta + n->param_off, dw, st->n_w);
        if (n->conv.bias)
            fwi_add(dtheta + n->param_off + st->n_w, st->db.data, (size_t)n->out.c);
    }
    if (!need_dx)
        return;
    load_weights(e, st, &st->w_bwd, st->w_bwd_r, theta + n->param_off);
    dnnl_memory_t dx = in->dy.mem;
    if (st->dx_out) {
        dx = st->dxr.mem;
    } else if (st->dxr.mem) {
        fwi_buf_point(&st->dxr, in->dy.data);
        dx = st->dxr.mem;
    }
    dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, st->w_bwd.mem},
                              {DNNL_ARG_DIFF_SRC, dx}};
    fwi_run(e, st->bwd_data, 3, args);
    if (st->dx_out)
        fwi_reorder(e, st->dx_out, st->dxr.mem, in->dy.mem);
}

/* ---- R-operator (docs/second-order-notes.md): the same primitives with other memories ---- */

/* R{x} in the src layout, like src_mem does for x. */
static dnnl_memory_t r_src_mem(fw_exec *e, conv_state *st, int id) {
    fwi_xnode *in = fwi_in(e, id);
    if (st->x_in) {
        fwi_reorder(e, st->x_in, in->ry.mem, st->rxr.mem);
        return st->rxr.mem;
    }
    if (st->rxr.mem) {
        fwi_buf_point(&st->rxr, in->ry.data);
        return st->rxr.mem;
    }
    return in->ry.mem;
}

/* R y = W * R x + V * x + v_b. The first layer's R x is 0, so only V * x + v_b remains. */
static void conv_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    conv_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *in = fwi_in(e, id);
    fwi_buf *ry = &e->nodes[id].ry;
    const float *vt = v + n->param_off;
    load_weights(e, st, &st->v_fwd, st->w_fwd_r, vt);
    if (n->conv.bias)
        fwi_buf_point(&st->vb_user, vt + st->n_w);
    dnnl_memory_t x = st->xr.mem ? st->xr.mem : in->y.mem; /* left in place by the forward */
    bool first = n->in == 0;
    dnnl_exec_arg_t vx[] = {{DNNL_ARG_SRC, x},
                            {DNNL_ARG_WEIGHTS, st->v_fwd.mem},
                            {DNNL_ARG_BIAS, st->vb_user.mem},
                            {DNNL_ARG_DST, first ? ry->mem : st->ty.mem}};
    fwi_run(e, st->fwd, 4, vx);
    if (first)
        return;
    load_weights(e, st, &st->w_fwd, st->w_fwd_r, theta + n->param_off);
    dnnl_exec_arg_t wrx[] = {{DNNL_ARG_SRC, r_src_mem(e, st, id)},
                             {DNNL_ARG_WEIGHTS, st->w_fwd.mem},
                             {DNNL_ARG_BIAS, st->zero_b.mem},
                             {DNNL_ARG_DST, ry->mem}};
    fwi_run(e, st->fwd, 4, wrx);
    fwi_add(ry->data, st->ty.data, fwi_buf_len(ry));
}

/* bwd_weights(src, diff_dst) added into the node's slice of hv; the bias part when with_bias. */
static void r_add_bwd_weights(fw_exec *e, conv_state *st, const fwi_node *n, dnnl_memory_t src,
                              dnnl_memory_t diff_dst, float *hv, bool with_bias) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                              {DNNL_ARG_DIFF_WEIGHTS, st->dw.mem},
                              {DNNL_ARG_DIFF_BIAS, st->db.mem}};
    fwi_run(e, st->bwd_w, 4, args);
    const float *dw = st->dw.data;
    if (st->dw_r) {
        fwi_reorder(e, st->dw_r, st->dw.mem, st->dw_plain.mem);
        dw = st->dw_plain.data;
    }
    fwi_add(hv + n->param_off, dw, st->n_w);
    if (with_bias && n->conv.bias)
        fwi_add(hv + n->param_off + st->n_w, st->db.data, (size_t)n->out.c);
}

/* R g_W = bwd_w(x, R g_y) + bwd_w(R x, g_y), R g_b = sum R g_y (the bias gradient of the first
 * call); R g_x = bwd_data(R g_y, W) + bwd_data(g_y, V). */
static void conv_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                            bool need_dx) {
    conv_state *st = e->nodes[id].state;
    const fwi_node *n = fwi_node_of(e, id);
    fwi_xnode *in = fwi_in(e, id), *me = &e->nodes[id];
    bool first = n->in == 0;
    if (hv) {
        dnnl_memory_t x = st->xr.mem ? st->xr.mem : in->y.mem;
        r_add_bwd_weights(e, st, n, x, me->rdy.mem, hv, true);
        if (!first) {
            /* R{x} in the src layout: r_forward left it in rxr, or it is the input's ry. */
            dnnl_memory_t rx = st->rxr.mem ? st->rxr.mem : in->ry.mem;
            r_add_bwd_weights(e, st, n, rx, me->dy.mem, hv, false);
        }
    }
    if (!need_dx)
        return;
    dnnl_memory_t rdx = in->rdy.mem;
    float *rdx_data = in->rdy.data;
    if (st->dx_out) {
        rdx = st->dxr.mem; /* the backward pass is done with it */
        rdx_data = st->dxr.data;
    } else if (st->rdxr.mem) {
        fwi_buf_point(&st->rdxr, in->rdy.data);
        rdx = st->rdxr.mem;
    }
    load_weights(e, st, &st->w_bwd, st->w_bwd_r, theta + n->param_off);
    dnnl_exec_arg_t a1[] = {{DNNL_ARG_DIFF_DST, me->rdy.mem}, {DNNL_ARG_WEIGHTS, st->w_bwd.mem},
                            {DNNL_ARG_DIFF_SRC, rdx}};
    fwi_run(e, st->bwd_data, 3, a1);
    load_weights(e, st, &st->v_bwd, st->w_bwd_r, v + n->param_off);
    dnnl_exec_arg_t a2[] = {{DNNL_ARG_DIFF_DST, me->dy.mem}, {DNNL_ARG_WEIGHTS, st->v_bwd.mem},
                            {DNNL_ARG_DIFF_SRC, st->tx.mem}};
    fwi_run(e, st->bwd_data, 3, a2);
    fwi_add(rdx_data, st->tx.data, fwi_buf_len(&st->tx));
    if (st->dx_out)
        fwi_reorder(e, st->dx_out, st->dxr.mem, in->rdy.mem);
}

/* Xavier (Glorot) uniform, as MAML initialises its convolutions; zero bias. */
static void conv_init(const fwi_node *n, fw_shape in, float *w, fw_rng *r) {
    int k = n->conv.k;
    double fan_in = (double)in.c * k * k, fan_out = (double)n->conv.out_c * k * k;
    float a = (float)sqrt(6.0 / (fan_in + fan_out));
    size_t nw = (size_t)n->conv.out_c * (size_t)in.c * (size_t)(k * k);
    for (size_t i = 0; i < nw; i++)
        w[i] = a * (2.0f * fw_rng_uniform(r) - 1.0f);
    for (size_t i = nw; i < n->n_params; i++)
        w[i] = 0.0f;
}

const fwi_layer_ops fwi_conv2d_ops = {
    .name = "conv2d",
    .exec_new = conv_exec_new,
    .forward = conv_forward,
    .backward = conv_backward,
    .exec_free = conv_exec_free,
    .init_params = conv_init,
    .r_forward = conv_r_forward,
    .r_backward = conv_r_backward,
};
