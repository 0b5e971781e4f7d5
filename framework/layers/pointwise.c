/* pointwise.c: the shared body of element-wise activations whose derivatives are functions of
 * their output y (sigmoid, tanh): y = f(x), dy/dx = d(y), and d'(y) = dd(y), which gives the
 * R-operator passes of docs/second-order-notes.md in one form:
 *     g_x = d(y) g_y,   R y = d(y) R x,   R g_x = d(y) R g_y + dd(y) R y g_y.
 * Plain C loops in the producer's layout that touch only real elements, so the padded channels of
 * a blocked layout stay zero (oneDNN's eltwise picked ref:any on padded layouts here). */
#include "framework/internal.h"

typedef struct pw_state {
    const fwi_pointwise *fn;  /* borrowed: the kind's functions       */
    size_t len;               /* floats in each buffer, padding included */
    size_t chunk, hw, cb, c;  /* which of them are real: see real_len  */
} pw_state;

/* The buffer as chunks of `chunk` floats; chunk q holds channel block (q / hw) % cb, whose first
 * real_len(q) channels are real. A layout without padding is one chunk. */
static void chunks_of(pw_state *st, const fwi_buf *b) {
    size_t n = 1;
    for (int i = 0; i < b->md.ndims; i++)
        n *= (size_t)b->md.dims[i];
    st->len = fwi_buf_len(b);
    st->chunk = st->c = n;
    st->hw = st->cb = 1;
    if (st->len == n)
        return;
    fwi_view v = fwi_view_of(&b->md); /* padded: nChw8c or nChw16c */
    st->chunk = (size_t)v.inner;
    st->hw = (size_t)v.h * (size_t)v.w;
    st->cb = (size_t)v.cb;
    st->c = (size_t)v.c;
}

static size_t real_len(const pw_state *st, size_t q) {
    size_t left = st->c - ((q / st->hw) % st->cb) * st->chunk;
    return left < st->chunk ? left : st->chunk;
}

/* for (each real index i) body */
#define EACH_REAL(st, i, body)                                                                 \
    for (size_t q_ = 0, i0_ = 0; i0_ < (st)->len; q_++, i0_ += (st)->chunk)                    \
        for (size_t i = i0_, end_ = i0_ + real_len((st), q_); i < end_; i++) {                 \
            body;                                                                              \
        }

fw_status fwi_pointwise_exec_new(fw_exec *e, int id, const fwi_pointwise *fn) {
    pw_state *st = calloc(1, sizeof *st);
    if (!st)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    e->nodes[id].state = st;
    st->fn = fn;
    const fwi_buf *x = &fwi_in(e, id)->y;
    chunks_of(st, x);
    fw_shape s = fwi_node_of(e, id)->out;
    e->nodes[id].y.md = x->md;
    if (s.h == 1 && s.w == 1 && st->chunk == st->len) { /* a vector: plain (B, F), same bytes */
        dnnl_dims_t d = {e->batch, s.c};
        fwi_md_tag(&e->nodes[id].y.md, 2, d, dnnl_nc);
    }
    return FW_OK;
}

void fwi_pointwise_forward(fw_exec *e, int id, const float *theta) {
    (void)theta;
    const pw_state *st = e->nodes[id].state;
    const float *x = fwi_in(e, id)->y.data;
    float *y = e->nodes[id].y.data;
    EACH_REAL(st, i, y[i] = st->fn->f(x[i]));
}

void fwi_pointwise_backward(fw_exec *e, int id, const float *theta, float *dtheta, bool need_dx) {
    (void)theta, (void)dtheta;
    if (!need_dx)
        return;
    const pw_state *st = e->nodes[id].state;
    const float *y = e->nodes[id].y.data, *dy = e->nodes[id].dy.data;
    float *dx = fwi_in(e, id)->dy.data;
    EACH_REAL(st, i, dx[i] = st->fn->d(y[i]) * dy[i]);
}

void fwi_pointwise_r_forward(fw_exec *e, int id, const float *theta, const float *v) {
    (void)theta, (void)v;
    const pw_state *st = e->nodes[id].state;
    const float *y = e->nodes[id].y.data, *rx = fwi_in(e, id)->ry.data;
    float *ry = e->nodes[id].ry.data;
    EACH_REAL(st, i, ry[i] = st->fn->d(y[i]) * rx[i]);
}

void fwi_pointwise_r_backward(fw_exec *e, int id, const float *theta, const float *v, float *hv,
                              bool need_dx) {
    (void)theta, (void)v, (void)hv;
    if (!need_dx)
        return;
    const pw_state *st = e->nodes[id].state;
    const fwi_xnode *me = &e->nodes[id];
    const float *y = me->y.data, *ry = me->ry.data, *dy = me->dy.data, *rdy = me->rdy.data;
    float *rdx = fwi_in(e, id)->rdy.data;
    EACH_REAL(st, i, rdx[i] = st->fn->d(y[i]) * rdy[i] + st->fn->dd(y[i]) * ry[i] * dy[i]);
}
