/* fewshot_mnist: N-way K-shot MNIST with MAML on the conv4 network.
 * Meta-train on digits 0-4 of the MNIST training images, meta-test on digits 5-9 of the test
 * images, and report pixel-space nearest neighbour on the very same test episodes.
 * Run:  make exp NAME=fewshot_mnist ARGS="shots=5 iters=300"
 * Log:  runs/fewshot_mnist/<UTC time>-s<seed>.h5 (schema in framework/log.h) */
#include "framework/fw.h"
#include "models/conv4.h"
#include "datasets/mnist.h"

static const fw_cfg_key keys[] = {
    {"ways", FW_CFG_INT, "5", 2, 5, NULL, "classes per task (5 digits per split)"},
    {"shots", FW_CFG_INT, "1", 1, 50, NULL, "support images per class"},
    {"query", FW_CFG_INT, "15", 1, 100, NULL, "query images per class"},
    {"meta_batch", FW_CFG_INT, "32", 1, 256, NULL, "tasks per meta-iteration"},
    {"iters", FW_CFG_INT, "400", 1, 1000000, NULL, "meta-iterations"},
    {"inner_lr", FW_CFG_FLOAT, "0.4", 0, 10, NULL, "inner-loop SGD learning rate"},
    {"inner_steps", FW_CFG_INT, "1", 0, 100, NULL, "inner SGD steps in meta-training"},
    {"test_inner_steps", FW_CFG_INT, "3", 0, 100, NULL, "inner SGD steps at meta-test"},
    {"meta_lr", FW_CFG_FLOAT, "0.001", 1e-7, 1, NULL, "Adam learning rate of the meta-update"},
    {"eval_episodes", FW_CFG_INT, "600", 1, 100000, NULL, "meta-test episodes"},
    {"seed", FW_CFG_INT, "1", 0, 2147483647, NULL, "seed of every random stream"},
    {"arch", FW_CFG_CHOICE, "strided", 0, 0, "strided|pool", "conv4 variant"},
    {"threads", FW_CFG_INT, "0", 0, 256, NULL, "task threads (0: all cores)"},
    {"data", FW_CFG_STR, "datasets/data/mnist", 0, 0, NULL, "folder with the MNIST IDX files"},
    {"runs", FW_CFG_STR, "runs", 0, 0, NULL, "folder for run logs"},
};

int main(int argc, char **argv) {
    fw_config cfg;
    if (fw_config_parse(&cfg, keys, (int)FW_COUNTOF(keys), argc, argv) != FW_OK) {
        fprintf(stderr, "fewshot_mnist: %s\n", fw_last_error());
        return 2;
    }
    printf("fewshot_mnist, resolved config:\n");
    fw_config_print(&cfg, stdout);
    int ways = (int)fw_cfg_int(&cfg, "ways"), iters = (int)fw_cfg_int(&cfg, "iters");
    int episodes = (int)fw_cfg_int(&cfg, "eval_episodes"), mb = (int)fw_cfg_int(&cfg, "meta_batch");
    uint64_t seed = (uint64_t)fw_cfg_int(&cfg, "seed");

    fw_dataset train, test;
    const int train_digits[] = {0, 1, 2, 3, 4}, test_digits[] = {5, 6, 7, 8, 9};
    FW_CHECK(mnist_load_digits(fw_cfg_str(&cfg, "data"), true, train_digits, 5, &train));
    FW_CHECK(mnist_load_digits(fw_cfg_str(&cfg, "data"), false, test_digits, 5, &test));
    fw_sampler tr = {&train, ways, (int)fw_cfg_int(&cfg, "shots"), (int)fw_cfg_int(&cfg, "query"),
                     seed, FW_RNG_TRAIN_TASK, 0};
    fw_sampler te = tr;
    te.ds = &test;
    te.purpose = FW_RNG_EVAL_TASK;

    conv4_arch arch;
    conv4_arch_parse(fw_cfg_str(&cfg, "arch"), &arch); /* the config already checked the choice */
    fw_graph *g = conv4_new(1, 28, 28, 64, ways, arch);
    size_t P = fw_graph_n_params(g);
    float *theta = fw_alloc(P * sizeof(float)), *grad = fw_alloc(P * sizeof(float));
    FW_ASSERT(theta && grad, "out of memory");
    fw_graph_init_params(g, theta, seed);
    fw_maml maml = {.g = g, .ways = ways, .shots = tr.shots, .query = tr.query,
                    .inner_steps = (int)fw_cfg_int(&cfg, "inner_steps"),
                    .test_inner_steps = (int)fw_cfg_int(&cfg, "test_inner_steps"),
                    .inner_lr = (float)fw_cfg_float(&cfg, "inner_lr"), .first_order = true};
    fw_meta *meta;
    FW_CHECK(fw_meta_new(&meta, &fw_maml_ops, &maml, P, mb, (int)fw_cfg_int(&cfg, "threads"), &tr));
    fw_adam adam;
    FW_CHECK(fw_adam_init(&adam, P, (float)fw_cfg_float(&cfg, "meta_lr"), 0.9f, 0.999f));
    fw_log *log;
    FW_CHECK(fw_log_open(&log, fw_cfg_str(&cfg, "runs"), "fewshot_mnist", &cfg, seed));
    printf("conv4 (%s), %zu parameters, %d task threads, first-order MAML\n",
           fw_cfg_str(&cfg, "arch"), P, fw_meta_threads(meta));

    fw_task_out *outs = calloc((size_t)mb, sizeof *outs);
    fw_progress prog;
    fw_progress_start(&prog, iters, 10.0);
    for (int it = 1; it <= iters; it++) {
        fw_status s = fw_meta_step(meta, (uint64_t)it, theta, grad, outs);
        if (s != FW_OK) { /* the parameters stay finite: the update is skipped */
            fprintf(stderr, "fewshot_mnist: %s\n", fw_last_error());
            fw_log_close(log, "failed: non-finite loss or gradient");
            return 1;
        }
        fw_adam_step(&adam, theta, grad);
        fw_task_out mean = fw_task_mean(outs, mb);
        FW_CHECK(fw_log_scalar(log, "train/loss", it, mean.loss));
        FW_CHECK(fw_log_scalar(log, "train/acc", it, mean.acc));
        fw_progress_update(&prog, it, mean.loss, mean.acc, stdout);
    }
    double train_seconds = fw_now() - prog.start;

    float *acc = calloc((size_t)episodes, sizeof *acc);
    double mean, ci;
    FW_CHECK(fw_meta_eval(meta, &te, episodes, theta, acc));
    fw_mean_ci95(acc, episodes, &mean, &ci);
    FW_CHECK(fw_log_eval(log, "test/acc", iters, acc, episodes, mean, ci));
    printf("meta-training took %.1f s (%.2f it/s)\n", train_seconds, iters / train_seconds);
    printf("test accuracy: %.2f%% ± %.2f%% (%d episodes)\n", 100 * mean, 100 * ci, episodes);
    fw_nearest_neighbour_eval(&te, episodes, acc);
    fw_mean_ci95(acc, episodes, &mean, &ci);
    FW_CHECK(fw_log_eval(log, "test/nn_acc", iters, acc, episodes, mean, ci));
    printf("nearest-neighbour baseline (same episodes): %.2f%% ± %.2f%%\n", 100 * mean, 100 * ci);
    printf("log: %s\n", fw_log_path(log));

    FW_CHECK(fw_log_close(log, "finished"));
    free(acc);
    free(outs);
    fw_adam_free(&adam);
    fw_meta_free(meta);
    fw_free(grad);
    fw_free(theta);
    fw_graph_free(g);
    fw_dataset_free(&test);
    fw_dataset_free(&train);
    fw_config_free(&cfg);
    return 0;
}
