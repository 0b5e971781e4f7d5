/* tutorial: the worked example of experiments/README.md. A custom two-block network, MAML on
 * 3-way 1-shot MNIST (train digits 0-6, test digits 7-9), and one extra logged metric: the spread
 * of the task losses in each meta-batch. fw_run (framework/run.h) does the rest: the log,
 * checkpoints, Ctrl-C, resume=<checkpoint>, progress and the summary.
 * Run:  make exp NAME=tutorial ARGS="iters=50" */
#include "framework/fw.h"
#include "datasets/mnist.h"

#include <math.h>

static const fw_cfg_key keys[] = {
    {"iters", FW_CFG_INT, "100", 1, 100000, NULL, "meta-iterations"},
    {"meta_batch", FW_CFG_INT, "16", 1, 256, NULL, "tasks per meta-iteration"},
    {"inner_lr", FW_CFG_FLOAT, "0.4", 0, 10, NULL, "inner-loop SGD learning rate"},
    {"eval_episodes", FW_CFG_INT, "200", 1, 100000, NULL, "meta-test episodes"},
    {"seed", FW_CFG_INT, "1", 0, 2147483647, NULL, "seed of every random stream"},
    {"data", FW_CFG_STR, "datasets/data/mnist", 0, 0, NULL, "folder with the MNIST IDX files"},
    FW_RUN_KEYS("50"), /* runs, ckpt_every, resume, flush_secs */
};

/* Step 1: compose a model from the framework's layers. */
static fw_graph *small_net(int ways) {
    fw_graph *g = fw_graph_new();
    int x = fw_input(g, 1, 28, 28);
    x = fw_leaky_relu(g, fw_batchnorm(g, fw_conv2d(g, x, 32, 3, 1, 1, false)), 0.2f);
    x = fw_maxpool2(g, x);                    /* 28x28 -> 14x14 */
    for (int block = 0; block < 2; block++) { /* 14x14 -> 7x7 -> 4x4 */
        x = fw_conv2d(g, x, 32, 3, 2, 1, false);
        x = fw_leaky_relu(g, fw_batchnorm(g, x), 0.2f);
    }
    fw_linear(g, fw_global_avgpool(g, x), ways);
    return g;
}

int main(int argc, char **argv) {
    fw_config cfg;
    fw_run run;
    /* a resumed run may change how long it trains and how it is evaluated, nothing else */
    int rc = fw_run_init(&run, &cfg, "tutorial", keys, (int)FW_COUNTOF(keys), argc, argv,
                         "iters eval_episodes data");
    if (rc != 0)
        return rc;
    int iters = (int)fw_cfg_int(&cfg, "iters"), mb = (int)fw_cfg_int(&cfg, "meta_batch");
    int n_eval = (int)fw_cfg_int(&cfg, "eval_episodes");
    uint64_t seed = (uint64_t)fw_cfg_int(&cfg, "seed");

    /* Step 2: data and episodes. */
    fw_dataset train, test;
    const int train_digits[] = {0, 1, 2, 3, 4, 5, 6}, test_digits[] = {7, 8, 9};
    FW_RUN_CHECK(&run, mnist_load_digits(fw_cfg_str(&cfg, "data"), true, train_digits, 7, &train));
    FW_RUN_CHECK(&run, mnist_load_digits(fw_cfg_str(&cfg, "data"), false, test_digits, 3, &test));
    fw_sampler tr = {&train, 3, 1, 10, seed, FW_RNG_TRAIN_TASK, 0}, te = tr;
    te.ds = &test;
    te.purpose = FW_RNG_EVAL_TASK;

    /* Step 3: MAML on the runner, Adam on the meta-parameters. */
    fw_graph *g = small_net(3);
    size_t P = fw_graph_n_params(g);
    float *theta = fw_alloc(P * sizeof(float)), *grad = fw_alloc(P * sizeof(float));
    FW_ASSERT(theta && grad, "out of memory");
    fw_graph_init_params(g, theta, seed);
    fw_maml maml = {.g = g, .ways = 3, .shots = 1, .query = 10, .inner_steps = 1,
                    .test_inner_steps = 3, .inner_lr = (float)fw_cfg_float(&cfg, "inner_lr"),
                    .first_order = true};
    fw_meta *meta;
    FW_RUN_CHECK(&run, fw_meta_new(&meta, &fw_maml_ops, &maml, P, mb, 0, &tr));
    fw_adam adam;
    FW_RUN_CHECK(&run, fw_adam_init(&adam, P, 1e-3f, 0.9f, 0.999f));

    /* Step 4: the run. Checkpoints hold what is kept; the log's series are declared up front,
     * and an extra metric is one more declaration and one fw_log_scalar call. */
    fw_run_keep_floats(&run, "theta", theta, P);
    fw_run_keep_adam(&run, "adam", &adam);
    FW_RUN_CHECK(&run, fw_run_open(&run, iters, fw_meta_threads(meta)));
    FW_RUN_CHECK(&run, fw_log_add_scalar(run.log, "train/loss"));
    FW_RUN_CHECK(&run, fw_log_add_scalar(run.log, "train/loss_std"));
    FW_RUN_CHECK(&run, fw_log_add_eval(run.log, "test/acc", n_eval));
    FW_RUN_CHECK(&run, fw_run_start(&run));

    fw_task_out outs[256];
    for (int it = (int)run.first_iter; it <= iters && !fw_run_stopping(&run); it++) {
        FW_RUN_CHECK(&run, fw_meta_step(meta, (uint64_t)it, theta, grad, outs));
        fw_adam_step(&adam, theta, grad);
        float losses[256];
        double mean, ci;
        for (int t = 0; t < mb; t++)
            losses[t] = (float)outs[t].loss;
        fw_mean_ci95(losses, mb, &mean, &ci);
        FW_RUN_CHECK(&run, fw_log_scalar(run.log, "train/loss", it, mean));
        FW_RUN_CHECK(&run, fw_log_scalar(run.log, "train/loss_std", it,
                                         ci / 1.96 * sqrt((double)mb)));
        FW_RUN_CHECK(&run, fw_run_iter_done(&run, it, mean, fw_task_mean(outs, mb).acc));
    }

    if (!fw_run_stopping(&run)) {
        float *acc = calloc((size_t)n_eval, sizeof *acc);
        FW_ASSERT(acc, "out of memory");
        double mean, ci;
        FW_RUN_CHECK(&run, fw_meta_eval(meta, &te, n_eval, theta, acc));
        fw_mean_ci95(acc, n_eval, &mean, &ci);
        FW_RUN_CHECK(&run, fw_log_eval(run.log, "test/acc", iters, acc, n_eval, mean, ci));
        printf("test accuracy: %.2f%% ± %.2f%% (%d episodes)\n", 100 * mean, 100 * ci, n_eval);
        free(acc);
    }
    rc = fw_run_finish(&run); /* summary; 130 or 143 if Ctrl-C or SIGTERM stopped it */
    fw_adam_free(&adam);
    fw_meta_free(meta);
    fw_free(grad);
    fw_free(theta);
    fw_graph_free(g);
    fw_dataset_free(&test);
    fw_dataset_free(&train);
    fw_config_free(&cfg);
    return rc;
}
