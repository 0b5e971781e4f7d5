/* metagan.c: MetaGAN's networks and its MAML task. */
#include "models/metagan.h"

#include <math.h>

/* E: 2 x [3x3 conv stride 2 -> BN -> ReLU] -> global average -> linear(code_dim). */
static fw_graph *encoder_new(const metagan_cfg *c) {
    fw_graph *g = fw_graph_new();
    int x = fw_input(g, c->c, c->h, c->w);
    for (int i = 0; i < 2; i++)
        x = fw_relu(g, fw_batchnorm(g, fw_conv2d(g, x, 32, 3, 2, 1, false)));
    fw_linear(g, fw_global_avgpool(g, x), c->code_dim);
    return g;
}

/* G: [z, h] -> linear -> ReLU -> reshape (2F, H/4, W/4) -> deconv 4x4/2 -> BN -> ReLU ->
 * deconv 4x4/2 -> sigmoid, so images come out in the data's [0, 1] range and shape. */
static fw_graph *generator_new(const metagan_cfg *c) {
    int f = c->g_filters, bh = c->h / 4, bw = c->w / 4;
    fw_graph *g = fw_graph_new();
    int x = fw_input(g, c->z_dim + c->code_dim, 1, 1);
    x = fw_relu(g, fw_linear(g, x, 2 * f * bh * bw));
    x = fw_reshape(g, x, 2 * f, bh, bw);
    x = fw_relu(g, fw_batchnorm(g, fw_deconv2d(g, x, f, 4, 2, 1, false)));
    fw_sigmoid(g, fw_deconv2d(g, x, c->c, 4, 2, 1, true));
    return g;
}

void metagan_new(metagan *m, const metagan_cfg *cfg) {
    FW_ASSERT(cfg->h % 4 == 0 && cfg->w % 4 == 0, "image %dx%d: sides must divide by 4", cfg->h,
              cfg->w);
    *m = (metagan){.cfg = *cfg};
    m->d = conv4_new(cfg->c, cfg->h, cfg->w, cfg->filters, cfg->ways, cfg->arch);
    m->enc = encoder_new(cfg);
    m->gen = generator_new(cfg);
    m->nd = fw_graph_n_params(m->d);
    m->ne = fw_graph_n_params(m->enc);
    m->ng = fw_graph_n_params(m->gen);
    m->n_params = m->nd + m->ne + m->ng;
    m->d_feat = fw_graph_n_nodes(m->d) - 2;
}

void metagan_free(metagan *m) {
    fw_graph_free(m->d);
    fw_graph_free(m->enc);
    fw_graph_free(m->gen);
    *m = (metagan){0};
}

void metagan_init_params(const metagan *m, float *theta, uint64_t seed) {
    fw_graph_init_params(m->d, theta, seed);
    fw_graph_init_params(m->enc, theta + m->nd, seed + 1);
    fw_graph_init_params(m->gen, theta + m->nd + m->ne, seed + 2);
}

/* ---- per-thread worker ---- */

enum { B_SUPPORT, B_UNLABELED, B_FAKE_SUPPORT, B_QUERY, B_FAKE_QUERY, N_BATCHES };

typedef struct mg_worker {
    fw_exec *d[N_BATCHES];     /* owned; D at each batch's size (unlabeled: NULL if none) */
    fw_exec *enc, *g_s, *g_q;  /* owned; E (N*K), G (N*fakes), G (N*Q)                     */
    fw_maml_state st;          /* D's fast weights                                         */
    float *dl[N_BATCHES], *rdl[N_BATCHES]; /* owned; logit gradients and their R{}         */
    float *zin_s, *zin_q;      /* owned; G inputs (n, z_dim + code_dim)                    */
    float *code, *dcode;       /* owned; (code_dim)                                        */
    float *feat_q, *feat_f, *dfeat; /* owned; (N*Q, F) D features                          */
    float *dfake, *dzin, *denc; /* owned; gradients w.r.t. fakes, G inputs, E outputs       */
} mg_worker;

static int batch_size(const metagan_cfg *c, int b) {
    int sizes[N_BATCHES] = {c->ways * c->shots, c->ways * c->unlabeled, c->ways * c->fakes,
                            c->ways * c->query, c->ways * c->query};
    return sizes[b];
}

static void mg_worker_free(void *p) {
    mg_worker *w = p;
    if (!w)
        return;
    for (int b = 0; b < N_BATCHES; b++) {
        fw_exec_free(w->d[b]);
        fw_free(w->dl[b]);
        fw_free(w->rdl[b]);
    }
    fw_exec_free(w->enc);
    fw_exec_free(w->g_s);
    fw_exec_free(w->g_q);
    fw_maml_state_free(&w->st);
    float *bufs[] = {w->zin_s, w->zin_q, w->code, w->dcode, w->feat_q, w->feat_f, w->dfeat,
                     w->dfake, w->dzin, w->denc};
    for (size_t i = 0; i < FW_COUNTOF(bufs); i++)
        fw_free(bufs[i]);
    free(w);
}

static float *falloc(size_t n, bool *ok) {
    float *p = fw_alloc((n ? n : 1) * sizeof(float));
    *ok = *ok && p;
    return p;
}

static fw_status mg_worker_new(const void *model, void **out) {
    const metagan *m = model;
    const metagan_cfg *c = &m->cfg;
    mg_worker *w = calloc(1, sizeof *w);
    if (!w)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    *out = w;
    bool ok = true;
    size_t zc = (size_t)(c->z_dim + c->code_dim), nq = (size_t)(c->ways * c->query);
    size_t img = (size_t)(c->c * c->h * c->w), nf_s = (size_t)(c->ways * c->fakes);
    size_t feat = (size_t)fw_graph_shape(m->d, m->d_feat).c;
    for (int b = 0; b < N_BATCHES; b++) {
        int n = batch_size(c, b);
        if (n == 0 || (!c->gan && b != B_SUPPORT && b != B_QUERY))
            continue;
        FW_TRY(fw_exec_new(&w->d[b], m->d, n));
        w->dl[b] = falloc((size_t)n * (size_t)c->ways, &ok);
        w->rdl[b] = falloc((size_t)n * (size_t)c->ways, &ok);
    }
    FW_TRY(fw_maml_state_init(&w->st, m->nd, c->inner_steps, !c->first_order));
    if (c->gan) {
        FW_TRY(fw_exec_new(&w->enc, m->enc, c->ways * c->shots));
        FW_TRY(fw_exec_new(&w->g_s, m->gen, c->ways * c->fakes));
        FW_TRY(fw_exec_new(&w->g_q, m->gen, c->ways * c->query));
        w->zin_s = falloc(nf_s * zc, &ok);
        w->zin_q = falloc(nq * zc, &ok);
        w->code = falloc((size_t)c->code_dim, &ok);
        w->dcode = falloc((size_t)c->code_dim, &ok);
        w->feat_q = falloc(nq * feat, &ok);
        w->feat_f = falloc(nq * feat, &ok);
        w->dfeat = falloc(nq * feat, &ok);
        w->dfake = falloc(nq * img, &ok);
        w->dzin = falloc(nq * zc, &ok);
        w->denc = falloc((size_t)(c->ways * c->shots * c->code_dim), &ok);
    }
    return ok ? FW_OK : fw_errorf(FW_ERR_NOMEM, "out of memory for a MetaGAN worker");
}

/* out = mean over the n rows of x (n, d): the task code is the mean of E over the support. */
static void mean_rows(const float *x, int n, int d, float *out) {
    for (int j = 0; j < d; j++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            s += x[(size_t)i * (size_t)d + (size_t)j];
        out[j] = (float)(s / n);
    }
}

/* Rows [z ~ N(0, I), h]; z is a pure function of the episode's identity and `stream`. */
static void noise_rows(const metagan *m, const fw_episode *ep, const float *code, float *zin,
                       int n, uint64_t stream) {
    fw_rng id = fw_rng_for(ep->seed, ep->purpose, ep->step, (uint64_t)ep->task);
    fw_rng r = fw_rng_for(fw_rng_u64(&id), FW_RNG_NOISE, stream, 0);
    int zd = m->cfg.z_dim, cd = m->cfg.code_dim;
    for (int i = 0; i < n; i++) {
        float *row = zin + (size_t)i * (size_t)(zd + cd);
        for (int j = 0; j < zd; j++)
            row[j] = fw_rng_normal(&r);
        fw_vec_copy(row + zd, code, (size_t)cd);
    }
}

/* The loss terms of one side (support or query) as fw_maml batches; returns their count. */
static int batches(const metagan *m, mg_worker *w, const fw_episode *ep, bool query,
                   const float *fakes, fw_maml_batch *out) {
    const metagan_cfg *c = &m->cfg;
    double lam = c->gan ? c->gan_weight : 0.0;
    int nb = 0, nl = query ? c->ways * c->query : c->ways * c->shots;
    int nu = query ? 0 : c->ways * c->unlabeled, nf = query ? nl : c->ways * c->fakes;
    int bl = query ? B_QUERY : B_SUPPORT, bf = query ? B_FAKE_QUERY : B_FAKE_SUPPORT;
    /* Every real image counts in the real term: the labeled ones and the unlabeled ones. */
    double real = nl + (c->gan ? nu : 0) > 0 ? lam / (nl + (c->gan ? nu : 0)) : 0;
    /* Only the inner loop's batches take part in R-passes (second order). */
    float *rdl_l = query ? NULL : w->rdl[bl], *rdl_f = query ? NULL : w->rdl[bf];
    out[nb++] = (fw_maml_batch){w->d[bl], query ? ep->xq : ep->xs, query ? ep->yq : ep->ys, nl,
                                {.sup = 1.0 / nl, .real = real}, w->dl[bl], rdl_l, NULL};
    if (!c->gan)
        return nb;
    if (nu > 0)
        out[nb++] = (fw_maml_batch){w->d[B_UNLABELED], ep->xu, NULL, nu, {.real = real},
                                    w->dl[B_UNLABELED], w->rdl[B_UNLABELED], NULL};
    if (nf > 0)
        out[nb++] = (fw_maml_batch){w->d[bf], fakes, NULL, nf, {.fake = lam / nf}, w->dl[bf],
                                    rdl_f, NULL};
    return nb;
}

/* Feature matching (Salimans et al. 2016): L_G = mean_f (mean_q phi - mean_fake phi)^2 on the
 * adapted D's penultimate features; its gradient goes through D to the fakes, then through G
 * (theta_G) and the task code into E (theta_E). Returns L_G. */
static double generator_step(const metagan *m, mg_worker *w, const float *theta, float *grad) {
    const metagan_cfg *c = &m->cfg;
    int nq = c->ways * c->query, ns = c->ways * c->shots, zc = c->z_dim + c->code_dim;
    int F = fw_graph_shape(m->d, m->d_feat).c;
    fw_exec_read(w->d[B_QUERY], m->d_feat, w->feat_q);
    fw_exec_read(w->d[B_FAKE_QUERY], m->d_feat, w->feat_f);
    double loss = 0;
    for (int f = 0; f < F; f++) {
        double mq = 0, mf = 0;
        for (int i = 0; i < nq; i++) {
            mq += w->feat_q[(size_t)i * (size_t)F + (size_t)f] / nq;
            mf += w->feat_f[(size_t)i * (size_t)F + (size_t)f] / nq;
        }
        loss += (mq - mf) * (mq - mf) / F;
        for (int i = 0; i < nq; i++)
            w->dfeat[(size_t)i * (size_t)F + (size_t)f] = (float)(-2.0 * (mq - mf) / (F * nq));
    }
    /* D only carries the gradient here: its parameters get nothing from L_G. */
    fw_backward_from(w->d[B_FAKE_QUERY], w->st.fast, m->d_feat, w->dfeat, NULL, w->dfake);
    fw_backward(w->g_q, theta + m->nd + m->ne, w->dfake, grad + m->nd + m->ne, w->dzin);
    for (int j = 0; j < c->code_dim; j++) {
        double s = 0;
        for (int i = 0; i < nq; i++)
            s += w->dzin[(size_t)i * (size_t)zc + (size_t)(c->z_dim + j)];
        w->dcode[j] = (float)s;
    }
    for (int i = 0; i < ns; i++) /* h is a mean over the support: each row gets 1/ns */
        for (int j = 0; j < c->code_dim; j++)
            w->denc[(size_t)i * (size_t)c->code_dim + (size_t)j] = w->dcode[j] / (float)ns;
    fw_backward(w->enc, theta + m->nd, w->denc, grad + m->nd, NULL);
    return loss;
}

static void mg_task(const void *model, void *worker, const fw_episode *ep, const float *theta,
                    float *grad, fw_task_out *out) {
    const metagan *m = model;
    const metagan_cfg *c = &m->cfg;
    mg_worker *w = worker;
    const float *fake_s = NULL, *fake_q = NULL;
    if (c->gan) { /* fakes for this task from G(z, h), G and E fixed during adaptation */
        int nf = c->ways * c->fakes, nq = c->ways * c->query;
        mean_rows(fw_forward(w->enc, theta + m->nd, ep->xs), ep->ways * ep->shots, c->code_dim,
                  w->code);
        noise_rows(m, ep, w->code, w->zin_s, nf, 0);
        if (nf > 0)
            fake_s = fw_forward(w->g_s, theta + m->nd + m->ne, w->zin_s);
        if (grad) {
            noise_rows(m, ep, w->code, w->zin_q, nq, 1);
            fake_q = fw_forward(w->g_q, theta + m->nd + m->ne, w->zin_q);
        }
    }
    fw_maml_batch inner[3], outer[2];
    int n_in = batches(m, w, ep, false, fake_s, inner);
    int n_out = batches(m, w, ep, true, fake_q, outer);
    if (!grad) { /* evaluation scores the real query's classes only */
        n_out = 1;
        outer[0].w.real = 0;
    }
    bool second = grad && !c->first_order;
    int steps = grad ? c->inner_steps : c->test_inner_steps;
    fw_maml_adapt(&w->st, inner, n_in, c->ways, theta, steps, c->inner_lr, second);

    int correct = 0, nq = c->ways * c->query;
    fw_vec_zero(w->st.v, m->nd);
    out->loss = fw_maml_pass(outer, n_out, c->ways, w->st.fast, grad ? w->st.v : NULL, &correct);
    out->acc = (double)correct / nq;
    out->g_loss = 0;
    if (!grad)
        return;
    if (second)
        fw_maml_backprop(&w->st, inner, n_in, c->ways, steps, c->inner_lr);
    fw_vec_axpy(grad, 1.0f, w->st.v, m->nd);
    if (c->gan)
        out->g_loss = generator_step(m, w, theta, grad);
}

const fw_meta_ops metagan_ops = {
    .worker_new = mg_worker_new,
    .task = mg_task,
    .worker_free = mg_worker_free,
};

fw_status metagan_samples(const metagan *m, const float *theta, const fw_episode *ep, int n,
                          uint64_t noise_seed, float *out) {
    FW_ASSERT(m->cfg.gan, "samples of a model without a generator");
    fw_exec *enc = NULL, *gen = NULL;
    int zc = m->cfg.z_dim + m->cfg.code_dim, ns = ep->ways * ep->shots;
    float *code = fw_alloc((size_t)m->cfg.code_dim * sizeof(float));
    float *zin = fw_alloc((size_t)n * (size_t)zc * sizeof(float));
    fw_status s = code && zin ? FW_OK : fw_errorf(FW_ERR_NOMEM, "out of memory for samples");
    if (s == FW_OK)
        s = fw_exec_new(&enc, m->enc, ns);
    if (s == FW_OK)
        s = fw_exec_new(&gen, m->gen, n);
    if (s == FW_OK) {
        mean_rows(fw_forward(enc, theta + m->nd, ep->xs), ns, m->cfg.code_dim, code);
        fw_rng r = fw_rng_for(noise_seed, FW_RNG_NOISE, 0, 0);
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < m->cfg.z_dim; j++)
                zin[(size_t)i * (size_t)zc + (size_t)j] = fw_rng_normal(&r);
            fw_vec_copy(zin + (size_t)i * (size_t)zc + m->cfg.z_dim, code, (size_t)m->cfg.code_dim);
        }
        const float *img = fw_forward(gen, theta + m->nd + m->ne, zin);
        fw_vec_copy(out, img, (size_t)n * (size_t)(m->cfg.c * m->cfg.h * m->cfg.w));
    }
    fw_exec_free(enc);
    fw_exec_free(gen);
    fw_free(code);
    fw_free(zin);
    return s;
}
