/* dnn.c: oneDNN helpers shared by the layers: status mapping, primitive creation with the
 * implementation check, user scratchpads, buffers and reorders. See docs/onednn-2.6-notes.md. */
#include "framework/internal.h"

#include <omp.h>
#include <string.h>

fw_status fwi_dnnl_check(dnnl_status_t s, const char *what) {
    if (s == dnnl_success)
        return FW_OK;
    return fw_errorf(FW_ERR_DNNL, "oneDNN: %s failed (status %d)", what, (int)s);
}

void fwi_dnnl_must(dnnl_status_t s, const char *what) {
    FW_ASSERT(s == dnnl_success, "oneDNN: %s failed (status %d)", what, (int)s);
}

void fwi_md_tag(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_format_tag_t tag) {
    fwi_dnnl_must(dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tag), "memory desc");
}

fw_status fwi_pd_new(fw_exec *e, dnnl_primitive_desc_t *pd, const void *op_desc,
                     const_dnnl_primitive_desc_t hint, const char *what) {
    /* Primitives fix their work split at creation from omp_get_max_threads(); inside a task
     * thread that must be 1, or backward conv and batchnorm silently compute wrong results. */
    FW_ASSERT(!omp_in_parallel() || omp_get_max_threads() == 1,
              "%s: call omp_set_num_threads(1) in a task thread before creating primitives", what);
    return fwi_dnnl_check(dnnl_primitive_desc_create(pd, op_desc, e->attr, e->engine, hint), what);
}

fw_status fwi_prim_new(fw_exec *e, fwi_prim **out, const_dnnl_primitive_desc_t pd,
                       const char *what, bool reject_ref) {
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (reject_ref && strncmp(impl, "ref", 3) == 0)
        return fw_errorf(FW_ERR_DNNL,
                         "oneDNN picked the slow reference kernel '%s' for %s (batch %d); "
                         "check the layouts (docs/onednn-2.6-notes.md, trap 1)",
                         impl, what, e->batch);
    fwi_prim *p = calloc(1, sizeof *p);
    if (!p)
        return fw_errorf(FW_ERR_NOMEM, "%s: out of memory", what);
    snprintf(p->what, sizeof p->what, "%s", what);
    snprintf(p->impl, sizeof p->impl, "%s", impl);
    p->next = e->prims;
    e->prims = p;
    FW_TRY(fwi_dnnl_check(dnnl_primitive_create(&p->p, pd), what));
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (sbytes > 0) {
        /* The handle is set once the exec knows the largest scratchpad (graph.c). */
        FW_TRY(fwi_dnnl_check(dnnl_memory_create(&p->scratch, smd, e->engine, DNNL_MEMORY_NONE),
                              what));
        if (sbytes > e->scratch_bytes)
            e->scratch_bytes = sbytes;
    }
    *out = p;
    return FW_OK;
}

void fwi_run(fw_exec *e, fwi_prim *p, int nargs, const dnnl_exec_arg_t *args) {
    dnnl_exec_arg_t all[16];
    FW_ASSERT(nargs < 16, "too many arguments");
    memcpy(all, args, (size_t)nargs * sizeof *args);
    int n = nargs;
    if (p->scratch)
        all[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    fwi_dnnl_must(dnnl_primitive_execute(p->p, e->stream, n, all), p->what);
}

const dnnl_memory_desc_t *fwi_pd_md(const_dnnl_primitive_desc_t pd, int arg) {
    return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}

fw_status fwi_buf_alloc(fw_exec *e, fwi_buf *b, const dnnl_memory_desc_t *md) {
    b->md = *md;
    b->bytes = dnnl_memory_desc_get_size(md);
    b->data = fw_alloc(b->bytes);
    b->owned = true;
    if (!b->data)
        return fw_errorf(FW_ERR_NOMEM, "out of memory for a %zu-byte activation", b->bytes);
    return fwi_dnnl_check(dnnl_memory_create(&b->mem, md, e->engine, b->data), "memory create");
}

fw_status fwi_buf_wrap(fw_exec *e, fwi_buf *b, const dnnl_memory_desc_t *md, const float *data) {
    b->md = *md;
    b->bytes = dnnl_memory_desc_get_size(md);
    b->data = (float *)data;
    b->owned = false;
    return fwi_dnnl_check(
        dnnl_memory_create(&b->mem, md, e->engine, data ? (void *)data : DNNL_MEMORY_NONE),
        "memory create");
}

void fwi_buf_point(fwi_buf *b, const float *data) {
    FW_ASSERT(!b->owned, "re-pointing an owned buffer");
    b->data = (float *)data;
    fwi_dnnl_must(dnnl_memory_set_data_handle(b->mem, (void *)data), "set data handle");
}

void fwi_buf_free(fwi_buf *b) {
    if (b->mem)
        dnnl_memory_destroy(b->mem);
    if (b->owned)
        fw_free(b->data);
    memset(b, 0, sizeof *b);
}

fw_status fwi_reorder_new(fw_exec *e, fwi_prim **p, const dnnl_memory_desc_t *from,
                          const dnnl_memory_desc_t *to, const char *what) {
    *p = NULL;
    if (dnnl_memory_desc_equal(from, to))
        return FW_OK;
    FW_ASSERT(!omp_in_parallel() || omp_get_max_threads() == 1,
              "%s: call omp_set_num_threads(1) in a task thread before creating primitives", what);
    dnnl_primitive_desc_t pd;
    FW_TRY(fwi_dnnl_check(
        dnnl_reorder_primitive_desc_create(&pd, from, e->engine, to, e->engine, e->attr), what));
    fw_status s = fwi_prim_new(e, p, pd, what, false);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

void fwi_reorder(fw_exec *e, fwi_prim *p, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    fwi_run(e, p, 2, args);
}

fwi_view fwi_view_of(const dnnl_memory_desc_t *md) {
    FW_ASSERT(md->ndims == 4, "pooling needs a 4-D tensor, got %d-D", md->ndims);
    fwi_view v = {.n = (int)md->dims[0], .c = (int)md->dims[1], .h = (int)md->dims[2],
                  .w = (int)md->dims[3]};
    static const struct { dnnl_format_tag_t tag; int inner; } known[] = {
        {dnnl_nchw, 1}, {dnnl_nhwc, 0}, {dnnl_nChw8c, 8}, {dnnl_nChw16c, 16}};
    for (size_t i = 0; i < FW_COUNTOF(known); i++) {
        dnnl_memory_desc_t t;
        fwi_md_tag(&t, 4, md->dims, known[i].tag);
        if (dnnl_memory_desc_equal(&t, md)) {
            v.tag = known[i].tag;
            v.inner = known[i].inner ? known[i].inner : v.c;
            v.cb = known[i].inner ? (v.c + known[i].inner - 1) / known[i].inner : 1;
            if (known[i].tag == dnnl_nchw) {
                v.inner = 1;
                v.cb = v.c;
            }
            return v;
        }
    }
    FW_ASSERT(false, "unsupported activation layout for a hand-written kernel");
    return v;
}
