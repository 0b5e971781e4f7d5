/* test_meta.c: the meta-learning runner, MAML, loss and optimizers.
 * Determinism across thread counts, learning on a synthetic task family, and unit checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "framework/fw.h"
#include "models/conv4.h"
#include "datasets/synthetic.h"

/* Runs `iters` meta-iterations of first-order MAML + Adam and returns theta (malloc'd). */
static float *train(const fw_graph *g, const fw_sampler *s, int meta_batch, int threads, int iters,
                    float inner_lr, float meta_lr) {
    size_t P = fw_graph_n_params(g);
    float *theta = fw_alloc(P * sizeof(float)), *grad = fw_alloc(P * sizeof(float));
    fw_graph_init_params(g, theta, 7);
    fw_maml mm = {g, s->ways, s->shots, s->query, 1, 3, inner_lr, true};
    fw_meta *m;
    cr_assert_eq(fw_meta_new(&m, &fw_maml_ops, &mm, P, meta_batch, threads, s), FW_OK, "%s",
                 fw_last_error());
    cr_assert_eq(fw_meta_threads(m), threads);
    fw_adam adam;
    cr_assert_eq(fw_adam_init(&adam, P, meta_lr, 0.9f, 0.999f), FW_OK);
    fw_task_out outs[64];
    for (int it = 1; it <= iters; it++) {
        cr_assert_eq(fw_meta_step(m, (uint64_t)it, theta, grad, outs), FW_OK, "%s", fw_last_error());
        fw_adam_step(&adam, theta, grad);
    }
    fw_adam_free(&adam);
    fw_meta_free(m);
    fw_free(grad);
    return theta;
}

/* A fewshot_mnist-sized run: conv4 on 28x28, 5-way 1-shot 15-query, 8 tasks per meta-batch
 * (4 per thread, plus an uneven split with 5 tasks). */
Test(meta, bitwise_identical_for_1_and_2_threads, .timeout = 120) {
    fw_dataset ds;
    cr_assert_eq(synthetic_prototypes(&ds, 10, 20, 28, 28, 0.1f, 3), FW_OK);
    fw_sampler s = {&ds, 5, 1, 15, 11, FW_RNG_TRAIN_TASK, 0};
    fw_graph *g = conv4_new(1, 28, 28, 64, 5, CONV4_STRIDED);
    size_t P = fw_graph_n_params(g);
    int batches[] = {8, 5};
    for (size_t b = 0; b < FW_COUNTOF(batches); b++) {
        float *one = train(g, &s, batches[b], 1, 3, 0.4f, 1e-3f);
        float *two = train(g, &s, batches[b], 2, 3, 0.4f, 1e-3f);
        size_t diff = 0;
        for (size_t i = 0; i < P; i++)
            diff += memcmp(&one[i], &two[i], sizeof(float)) != 0;
        cr_assert_eq(diff, 0, "meta_batch %d: %zu of %zu parameters differ between 1 and 2 threads",
                     batches[b], diff, P);
        /* The run did move the parameters, so the comparison is not between two inits. */
        float *init = fw_alloc(P * sizeof(float));
        fw_graph_init_params(g, init, 7);
        cr_assert(memcmp(init, one, P * sizeof(float)) != 0, "training left theta unchanged");
        fw_free(init);
        fw_free(one);
        fw_free(two);
    }
    fw_graph_free(g);
    fw_dataset_free(&ds);
}

static double eval_acc(const fw_graph *g, const fw_sampler *s, const float *theta, int n) {
    fw_maml mm = {g, s->ways, s->shots, s->query, 1, 3, 0.4f, true};
    fw_meta *m;
    cr_assert_eq(fw_meta_new(&m, &fw_maml_ops, &mm, fw_graph_n_params(g), 4, 2, s), FW_OK);
    float acc[200];
    cr_assert_eq(fw_meta_eval(m, s, n, theta, acc), FW_OK, "%s", fw_last_error());
    double mean, ci;
    fw_mean_ci95(acc, n, &mean, &ci);
    fw_meta_free(m);
    return mean;
}

/* MAML on held-out synthetic classes: a small conv net must clearly beat chance (20 %) and its
 * own untrained accuracy after 300 meta-iterations. */
Test(meta, maml_learns_synthetic_tasks, .timeout = 120) {
    fw_dataset all, tr, te;
    cr_assert_eq(synthetic_prototypes(&all, 40, 20, 12, 12, 0.22f, 5), FW_OK);
    int train_labels[30], test_labels[10];
    for (int i = 0; i < 30; i++)
        train_labels[i] = i;
    for (int i = 0; i < 10; i++)
        test_labels[i] = 30 + i;
    cr_assert_eq(fw_dataset_subset(&tr, &all, train_labels, 30), FW_OK);
    cr_assert_eq(fw_dataset_subset(&te, &all, test_labels, 10), FW_OK);
    fw_graph *g = fw_graph_new();
    int x = fw_input(g, 1, 12, 12);
    x = fw_relu(g, fw_batchnorm(g, fw_conv2d(g, x, 16, 3, 2, 1, false)));
    x = fw_relu(g, fw_batchnorm(g, fw_conv2d(g, x, 16, 3, 2, 1, false)));
    fw_linear(g, fw_global_avgpool(g, x), 5);
    fw_sampler s_tr = {&tr, 5, 1, 5, 1, FW_RNG_TRAIN_TASK, 0};
    fw_sampler s_te = {&te, 5, 1, 5, 1, FW_RNG_EVAL_TASK, 0};
    float *init = fw_alloc(fw_graph_n_params(g) * sizeof(float));
    fw_graph_init_params(g, init, 7);
    double before = eval_acc(g, &s_te, init, 200);
    float *theta = train(g, &s_tr, 8, 2, 300, 0.4f, 3e-3f);
    double after = eval_acc(g, &s_te, theta, 200);
    cr_assert(after > 0.6 && after > before + 0.15,
              "meta-test accuracy %.3f after training, %.3f before (chance 0.2)", after, before);
    fw_free(theta);
    fw_free(init);
    fw_graph_free(g);
    fw_dataset_free(&te);
    fw_dataset_free(&tr);
    fw_dataset_free(&all);
}

Test(meta, eval_rejects_a_different_episode_shape) {
    fw_dataset ds;
    cr_assert_eq(synthetic_prototypes(&ds, 10, 20, 8, 8, 0.1f, 3), FW_OK);
    fw_graph *g = fw_graph_new();
    fw_linear(g, fw_flatten(g, fw_input(g, 1, 8, 8)), 5);
    fw_sampler s = {&ds, 5, 1, 5, 1, FW_RNG_TRAIN_TASK, 0}, other = s;
    other.shots = 2;
    fw_maml mm = {g, 5, 1, 5, 1, 1, 0.1f, true};
    fw_meta *m;
    cr_assert_eq(fw_meta_new(&m, &fw_maml_ops, &mm, fw_graph_n_params(g), 2, 1, &s), FW_OK);
    float theta[5 * 64 + 5] = {0}, acc[4];
    cr_assert_eq(fw_meta_eval(m, &other, 4, theta, acc), FW_ERR_ARG);
    cr_assert(strstr(fw_last_error(), "training shape"), "message: %s", fw_last_error());
    fw_meta_free(m);
    fw_graph_free(g);
    fw_dataset_free(&ds);
}

Test(meta, nearest_neighbour_is_perfect_without_noise) {
    fw_dataset ds;
    cr_assert_eq(synthetic_prototypes(&ds, 6, 10, 8, 8, 0.0f, 9), FW_OK);
    fw_sampler s = {&ds, 5, 1, 3, 1, FW_RNG_EVAL_TASK, 0};
    float acc[20];
    fw_nearest_neighbour_eval(&s, 20, acc);
    for (int i = 0; i < 20; i++)
        cr_assert_float_eq(acc[i], 1.0f, 0, "episode %d: %g", i, acc[i]);
    fw_dataset_free(&ds);
}

/* d loss / d logits against central differences in double. */
Test(loss, softmax_xent_gradient_matches_finite_differences) {
    float z[3 * 4] = {0.3f, -1.2f, 2.0f, 0.1f, 1.0f, 1.0f, 1.0f, 1.0f, -3.0f, 4.0f, 0.5f, 0.0f};
    int y[3] = {2, 1, 0}, correct;
    float dz[12];
    double l = fw_softmax_xent(z, y, 3, 4, dz, &correct);
    cr_assert_eq(correct, 1, "row 0 is right (argmax 2), row 1 ties to class 0, row 2 is wrong");
    cr_assert(l > 0);
    for (int i = 0; i < 12; i++) {
        float zp[12], zm[12];
        memcpy(zp, z, sizeof z);
        memcpy(zm, z, sizeof z);
        zp[i] += 1e-3f;
        zm[i] -= 1e-3f;
        double fd = (fw_softmax_xent(zp, y, 3, 4, NULL, NULL) -
                     fw_softmax_xent(zm, y, 3, 4, NULL, NULL)) / (zp[i] - zm[i]);
        cr_assert_float_eq(dz[i], fd, 1e-5, "logit %d: analytic %g, finite difference %g", i,
                           dz[i], fd);
    }
}

Test(loss, mean_ci95) {
    float x[4] = {0.5f, 1.0f, 0.5f, 1.0f};
    double m, ci;
    fw_mean_ci95(x, 4, &m, &ci);
    cr_assert_float_eq(m, 0.75, 1e-12);
    cr_assert_float_eq(ci, 1.96 * 0.25 / 2.0, 1e-12, "ci %g", ci);
}

/* Adam's first step moves every coordinate by lr * sign(g) (bias correction makes m/sqrt(v) = ±1). */
Test(optim, adam_first_step_is_lr_times_sign) {
    fw_adam a;
    cr_assert_eq(fw_adam_init(&a, 3, 0.01f, 0.9f, 0.999f), FW_OK);
    float th[3] = {1, 2, 3}, g[3] = {0.5f, -2.0f, 1e-3f};
    fw_adam_step(&a, th, g);
    cr_assert_float_eq(th[0], 0.99f, 1e-6, "%g", th[0]);
    cr_assert_float_eq(th[1], 2.01f, 1e-6, "%g", th[1]);
    cr_assert_float_eq(th[2], 2.99f, 1e-5, "%g", th[2]);
    fw_adam_free(&a);
}

Test(optim, sgd_step) {
    float th[2] = {1, 1}, g[2] = {2, -4};
    fw_sgd_step(th, g, 2, 0.25f);
    cr_assert_float_eq(th[0], 0.5f, 0);
    cr_assert_float_eq(th[1], 2.0f, 0);
}

Test(rng, streams_are_pure_and_distinct) {
    fw_rng a = fw_rng_for(1, 2, 3, 4), b = fw_rng_for(1, 2, 3, 4), c = fw_rng_for(1, 2, 4, 3);
    uint64_t xa = fw_rng_u64(&a), xb = fw_rng_u64(&b), xc = fw_rng_u64(&c);
    cr_assert_eq(xa, xb);
    cr_assert_neq(xa, xc);
    double s = 0, ss = 0;
    for (int i = 0; i < 100000; i++) {
        double v = fw_rng_normal(&a);
        s += v;
        ss += v * v;
    }
    cr_assert(fabs(s / 1e5) < 0.02 && fabs(ss / 1e5 - 1) < 0.02, "normal mean %g var %g", s / 1e5,
              ss / 1e5);
}
