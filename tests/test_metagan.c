/* test_metagan.c: MetaGAN's losses, the generator's gradient through D, determinism across
 * thread counts, and the semi-supervised (unlabeled) path. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "framework/fw.h"
#include "models/metagan.h"
#include "datasets/synthetic.h"

/* ---- the N+1-way losses ---- */

static const float logits[3 * 4] = {0.3f, -1.2f, 2.0f, 0.1f, 1.0f, 1.0f, 1.0f, 1.0f,
                                    -3.0f, 4.0f, 0.5f, 0.0f};
static const int labels[3] = {2, -1, 0}; /* row 1 is unlabeled */
static const fw_dloss_w weights = {.sup = 0.5, .real = 0.3, .fake = 0.7};

static double loss_at(const float *z) {
    return fw_dloss(z, labels, 3, 4, weights, NULL, NULL);
}

/* Each term's analytic logit gradient against central differences in double. */
Test(metagan, dloss_gradient_matches_finite_differences) {
    fw_dloss_w terms[] = {{.sup = 1}, {.real = 1}, {.fake = 1}, weights};
    for (size_t t = 0; t < FW_COUNTOF(terms); t++) {
        float dz[12];
        fw_dloss(logits, labels, 3, 4, terms[t], dz, NULL);
        for (int i = 0; i < 12; i++) {
            float zp[12], zm[12];
            memcpy(zp, logits, sizeof zp);
            memcpy(zm, logits, sizeof zm);
            zp[i] += 1e-3f;
            zm[i] -= 1e-3f;
            double fd = (fw_dloss(zp, labels, 3, 4, terms[t], NULL, NULL) -
                         fw_dloss(zm, labels, 3, 4, terms[t], NULL, NULL)) / (zp[i] - zm[i]);
            cr_assert_float_eq(dz[i], fd, 2e-5, "term %zu, logit %d: analytic %g, fd %g", t, i,
                               dz[i], fd);
        }
    }
}

/* The stable forms: -log p(real) and -log p(fake) stay finite for huge logits. */
Test(metagan, dloss_is_stable_for_extreme_logits) {
    float z[2 * 3] = {200, 190, 180, -200, -190, -210};
    float dz[6];
    double l = fw_dloss(z, NULL, 2, 3, (fw_dloss_w){.real = 1, .fake = 1}, dz, NULL);
    cr_assert(isfinite(l) && l > 150, "loss %g", l); /* softplus(200) + softplus(190) ~ 390 */
    for (int i = 0; i < 6; i++)
        cr_assert(isfinite(dz[i]), "dz[%d] = %g", i, dz[i]);
}

/* R{dlogits} along a direction against central differences of the gradient. */
Test(metagan, dloss_r_operator_matches_finite_differences) {
    float r[12], rd[12], gp[12], gm[12], zp[12], zm[12];
    fw_rng rng = fw_rng_for(3, 4, 5, 6);
    for (int i = 0; i < 12; i++)
        r[i] = fw_rng_normal(&rng);
    fw_dloss_r(logits, r, labels, 3, 4, weights, rd);
    const float eps = 1e-3f;
    for (int i = 0; i < 12; i++) {
        zp[i] = logits[i] + eps * r[i];
        zm[i] = logits[i] - eps * r[i];
    }
    fw_dloss(zp, labels, 3, 4, weights, gp, NULL);
    fw_dloss(zm, labels, 3, 4, weights, gm, NULL);
    for (int i = 0; i < 12; i++) {
        double fd = ((double)gp[i] - gm[i]) / (2 * eps);
        cr_assert_float_eq(rd[i], fd, 2e-4, "logit %d: R-op %g, fd %g", i, rd[i], fd);
    }
    (void)loss_at;
}

/* ---- the generator's gradient through D ---- */

/* L(theta_G) = mean_f (mean_rows phi(x_real) - mean_rows phi(G(zin)))^2 with D fixed. */
static double feature_loss(fw_exec *d, fw_exec *g, int feat, const float *th_d, const float *th_g,
                           const float *zin, const float *real_feat, int n, int F, float *dfeat) {
    fw_forward(d, th_d, fw_forward(g, th_g, zin));
    float *f = malloc(sizeof(float) * (size_t)n * (size_t)F);
    fw_exec_read(d, feat, f);
    double loss = 0;
    for (int j = 0; j < F; j++) {
        double mf = 0;
        for (int i = 0; i < n; i++)
            mf += f[i * F + j] / n;
        loss += (real_feat[j] - mf) * (real_feat[j] - mf) / F;
        if (dfeat)
            for (int i = 0; i < n; i++)
                dfeat[i * F + j] = (float)(-2.0 * (real_feat[j] - mf) / (F * n));
    }
    free(f);
    return loss;
}

/* The chain fw_backward_from(D features) -> dx -> fw_backward(G) against a directional finite
 * difference of the feature-matching loss in theta_G. */
Test(metagan, generator_gradient_through_d_matches_finite_differences, .timeout = 60) {
    metagan_cfg c = {.ways = 5, .shots = 1, .query = 3, .c = 1, .h = 28, .w = 28, .filters = 16,
                     .inner_steps = 1, .test_inner_steps = 1, .inner_lr = 0.1f, .gan = true,
                     .z_dim = 8, .code_dim = 8, .g_filters = 8, .fakes = 1, .gan_weight = 1};
    metagan m;
    metagan_new(&m, &c);
    float *theta = fw_alloc(m.n_params * sizeof(float));
    metagan_init_params(&m, theta, 5);
    const float *th_d = theta, *th_g = theta + m.nd + m.ne;
    int n = 6, F = fw_graph_shape(m.d, m.d_feat).c, zc = c.z_dim + c.code_dim;
    fw_exec *d, *g;
    cr_assert_eq(fw_exec_new(&d, m.d, n), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_exec_new(&g, m.gen, n), FW_OK, "%s", fw_last_error());
    float *zin = fw_alloc(sizeof(float) * (size_t)(n * zc)), real_feat[64];
    fw_rng r = fw_rng_for(9, 9, 9, 9);
    for (int i = 0; i < n * zc; i++)
        zin[i] = fw_rng_normal(&r);
    for (int j = 0; j < F; j++)
        real_feat[j] = 0.5f + 0.1f * fw_rng_normal(&r);
    float *dfeat = fw_alloc(sizeof(float) * (size_t)(n * F));
    float *dimg = fw_alloc(sizeof(float) * (size_t)(n * 784));
    float *gg = fw_alloc(m.ng * sizeof(float)), *thp = fw_alloc(m.ng * sizeof(float));
    feature_loss(d, g, m.d_feat, th_d, th_g, zin, real_feat, n, F, dfeat);
    fw_backward_from(d, th_d, m.d_feat, dfeat, NULL, dimg);
    fw_backward(g, th_g, dimg, gg, NULL);
    double norm = fw_vec_norm(gg, m.ng);
    cr_assert(norm > 0, "zero generator gradient");
    /* Along the normalised gradient u, d/de L(theta + e u) = |g|. ReLU kinks in G and D make
     * the loss non-smooth at steps above ~1e-5 (central differences there are off by 2-18 %,
     * measured), so the step is small; the loss is ~2e-2 with fp32 noise ~1e-9, i.e. ~1e-4 of
     * the derivative at this step. Measured here: 0.1 %. */
    double eps = 5e-6, f[2];
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < m.ng; i++)
            thp[i] = th_g[i] + (float)((k ? -eps : eps) * gg[i] / norm);
        f[k] = feature_loss(d, g, m.d_feat, th_d, thp, zin, real_feat, n, F, NULL);
    }
    double fd = (f[0] - f[1]) / (2 * eps);
    cr_assert(fabs(fd - norm) <= 1e-2 * norm, "directional derivative %g, |g| %g (rel %g)", fd,
              norm, fabs(fd - norm) / norm);
    fw_free(thp);
    fw_free(gg);
    fw_free(dimg);
    fw_free(dfeat);
    fw_free(zin);
    fw_exec_free(g);
    fw_exec_free(d);
    fw_free(theta);
    metagan_free(&m);
}

/* ---- whole model ---- */

static metagan_cfg small_cfg(int unlabeled, float gan_weight, bool first_order) {
    return (metagan_cfg){.ways = 5, .shots = 1, .query = 5, .unlabeled = unlabeled, .c = 1,
                         .h = 28, .w = 28, .filters = 16, .inner_steps = 2,
                         .test_inner_steps = 2, .inner_lr = 0.4f, .first_order = first_order,
                         .gan = true, .z_dim = 16, .code_dim = 16, .g_filters = 8, .fakes = 1,
                         .gan_weight = gan_weight};
}

/* Runs iters meta-iterations (two Adam states) and returns theta. */
static float *run(const metagan_cfg *c, const fw_dataset *ds, int threads, int iters) {
    metagan m;
    metagan_new(&m, c);
    float *theta = fw_alloc(m.n_params * sizeof(float)), *grad = fw_alloc(m.n_params * 4);
    metagan_init_params(&m, theta, 3);
    fw_sampler s = {ds, c->ways, c->shots, c->query, 17, FW_RNG_TRAIN_TASK, c->unlabeled};
    fw_meta *meta;
    cr_assert_eq(fw_meta_new(&meta, &metagan_ops, &m, m.n_params, 6, threads, &s), FW_OK, "%s",
                 fw_last_error());
    fw_adam ad, ag;
    fw_adam_init(&ad, m.nd, 1e-3f, 0.9f, 0.999f);
    fw_adam_init(&ag, m.ne + m.ng, 1e-3f, 0.5f, 0.999f);
    fw_task_out outs[6];
    for (int it = 1; it <= iters; it++) {
        cr_assert_eq(fw_meta_step(meta, (uint64_t)it, theta, grad, outs), FW_OK, "%s",
                     fw_last_error());
        cr_assert(outs[0].g_loss > 0, "the generator loss is %g", outs[0].g_loss);
        fw_adam_step(&ad, theta, grad);
        fw_adam_step(&ag, theta + m.nd, grad + m.nd);
    }
    fw_adam_free(&ad);
    fw_adam_free(&ag);
    fw_meta_free(meta);
    fw_free(grad);
    metagan_free(&m);
    return theta;
}

static size_t n_params_of(const metagan_cfg *c) {
    metagan m;
    metagan_new(&m, c);
    size_t n = m.n_params;
    metagan_free(&m);
    return n;
}

Test(metagan, smoke_run_is_bitwise_identical_for_1_and_2_threads, .timeout = 120) {
    fw_dataset ds;
    cr_assert_eq(synthetic_prototypes(&ds, 8, 20, 28, 28, 0.1f, 4), FW_OK);
    metagan_cfg c = small_cfg(0, 1, false);
    size_t P = n_params_of(&c);
    float *one = run(&c, &ds, 1, 3), *two = run(&c, &ds, 2, 3);
    size_t diff = 0;
    for (size_t i = 0; i < P; i++)
        diff += memcmp(&one[i], &two[i], sizeof(float)) != 0;
    cr_assert_eq(diff, 0, "%zu of %zu parameters differ between 1 and 2 threads", diff, P);
    fw_free(one);
    fw_free(two);
    fw_dataset_free(&ds);
}

/* Unlabeled images enter only the real term: with its weight at 0 they change nothing, bit for
 * bit; with weight 1 they change the run. */
Test(metagan, unlabeled_images_enter_only_the_real_term, .timeout = 120) {
    fw_dataset ds;
    cr_assert_eq(synthetic_prototypes(&ds, 8, 20, 28, 28, 0.1f, 4), FW_OK);
    metagan_cfg plain0 = small_cfg(0, 0, true), unl0 = small_cfg(3, 0, true);
    metagan_cfg plain1 = small_cfg(0, 1, true), unl1 = small_cfg(3, 1, true);
    size_t nd;
    {
        metagan m;
        metagan_new(&m, &plain0);
        nd = m.nd;
        metagan_free(&m);
    }
    float *a = run(&plain0, &ds, 2, 2), *b = run(&unl0, &ds, 2, 2);
    size_t changed = 0;
    for (size_t i = 0; i < nd; i++) /* == rather than memcmp: adding +0 may turn -0 into +0 */
        changed += a[i] != b[i];
    cr_assert_eq(changed, 0, "with gan_weight=0, unlabeled images changed %zu of %zu weights",
                 changed, nd);
    float *c = run(&plain1, &ds, 2, 2), *d = run(&unl1, &ds, 2, 2);
    cr_assert(memcmp(c, d, nd * sizeof(float)) != 0,
              "unlabeled images had no effect at all with gan_weight=1");
    fw_free(a);
    fw_free(b);
    fw_free(c);
    fw_free(d);
    fw_dataset_free(&ds);
}

/* gan=false is plain MAML through the same code: the same meta-gradient as fw_maml_ops. */
Test(metagan, gan_off_equals_plain_maml, .timeout = 60) {
    fw_dataset ds;
    cr_assert_eq(synthetic_prototypes(&ds, 8, 20, 28, 28, 0.1f, 4), FW_OK);
    metagan_cfg c = small_cfg(0, 1, false);
    c.gan = false;
    metagan m;
    metagan_new(&m, &c);
    float *theta = fw_alloc(m.n_params * sizeof(float));
    metagan_init_params(&m, theta, 3);
    fw_sampler s = {&ds, 5, 1, 5, 17, FW_RNG_TRAIN_TASK, 0};
    fw_maml mm = {m.d, 5, 1, 5, 2, 2, 0.4f, false};
    fw_meta *a, *b;
    cr_assert_eq(fw_meta_new(&a, &metagan_ops, &m, m.n_params, 4, 2, &s), FW_OK);
    cr_assert_eq(fw_meta_new(&b, &fw_maml_ops, &mm, m.nd, 4, 2, &s), FW_OK);
    float *ga = fw_alloc(m.n_params * sizeof(float)), *gb = fw_alloc(m.nd * sizeof(float));
    fw_task_out oa[4], ob[4];
    cr_assert_eq(fw_meta_step(a, 1, theta, ga, oa), FW_OK);
    cr_assert_eq(fw_meta_step(b, 1, theta, gb, ob), FW_OK);
    cr_assert(memcmp(ga, gb, m.nd * sizeof(float)) == 0, "D's meta-gradients differ");
    for (size_t i = m.nd; i < m.n_params; i++)
        cr_assert_eq(ga[i], 0.0f, "generator gradient %g at %zu with gan off", ga[i], i);
    fw_meta_free(a);
    fw_meta_free(b);
    fw_free(ga);
    fw_free(gb);
    fw_free(theta);
    metagan_free(&m);
    fw_dataset_free(&ds);
}

/* A diverging inner loop is reported with the iteration, and the caller gets no gradient to
 * apply: the experiment stops before any NaN reaches the parameters. */
Test(metagan, non_finite_loss_is_reported_not_applied, .timeout = 60) {
    fw_dataset ds;
    cr_assert_eq(synthetic_prototypes(&ds, 8, 20, 28, 28, 0.1f, 4), FW_OK);
    metagan_cfg c = small_cfg(0, 1, true);
    c.inner_lr = 1e30f;
    metagan m;
    metagan_new(&m, &c);
    float *theta = fw_alloc(m.n_params * sizeof(float)), *grad = fw_alloc(m.n_params * 4);
    metagan_init_params(&m, theta, 3);
    fw_sampler s = {&ds, 5, 1, 5, 17, FW_RNG_TRAIN_TASK, 0};
    fw_meta *meta;
    cr_assert_eq(fw_meta_new(&meta, &metagan_ops, &m, m.n_params, 2, 1, &s), FW_OK);
    fw_task_out outs[2];
    cr_assert_eq(fw_meta_step(meta, 7, theta, grad, outs), FW_ERR_NUMERIC);
    cr_assert(strstr(fw_last_error(), "iteration 7"), "message: %s", fw_last_error());
    cr_assert(fw_vec_all_finite(theta, m.n_params), "theta was modified");
    fw_meta_free(meta);
    fw_free(grad);
    fw_free(theta);
    metagan_free(&m);
    fw_dataset_free(&ds);
}
