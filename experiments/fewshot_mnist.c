/* fewshot_mnist: N-way K-shot MNIST with MetaGAN (gan=1) or plain MAML (gan=0) on conv4.
 * Meta-train on digits 0-4 of the MNIST training images, meta-test on digits 5-9 of the test
 * images, and report pixel-space nearest neighbour on the very same test episodes.
 * Run:  make exp NAME=fewshot_mnist ARGS="shots=5 gan=0"
 * Log:  runs/fewshot_mnist/<UTC time>-s<seed>.h5 (schema in framework/log.h) */
#include "framework/fw.h"
#include "models/metagan.h"
#include "datasets/mnist.h"

static const fw_cfg_key keys[] = {
    {"ways", FW_CFG_INT, "5", 2, 5, NULL, "classes per task (5 digits per split)"},
    {"shots", FW_CFG_INT, "1", 1, 50, NULL, "support images per class"},
    {"query", FW_CFG_INT, "15", 1, 100, NULL, "query images per class"},
    {"unlabeled", FW_CFG_INT, "0", 0, 100, NULL, "extra unlabeled support images per class"},
    {"meta_batch", FW_CFG_INT, "32", 1, 256, NULL, "tasks per meta-iteration"},
    {"iters", FW_CFG_INT, "150", 1, 1000000, NULL, "meta-iterations"},
    {"inner_lr", FW_CFG_FLOAT, "0.4", 0, 10, NULL, "inner-loop SGD learning rate"},
    {"inner_steps", FW_CFG_INT, "1", 1, 100, NULL, "inner SGD steps in meta-training"},
    {"test_inner_steps", FW_CFG_INT, "3", 0, 100, NULL, "inner SGD steps at meta-test"},
    {"first_order", FW_CFG_INT, "0", 0, 1, NULL, "1: first-order MAML; 0: exact second order"},
    {"meta_lr", FW_CFG_FLOAT, "0.001", 1e-7, 1, NULL, "Adam learning rate of D's meta-update"},
    {"gan", FW_CFG_INT, "1", 0, 1, NULL, "1: MetaGAN; 0: plain MAML through the same code"},
    {"gan_weight", FW_CFG_FLOAT, "1", 0, 100, NULL, "weight of D's real and fake terms"},
    {"fakes", FW_CFG_INT, "0", 0, 100, NULL, "fakes per class in the inner loop (0: = shots)"},
    {"z_dim", FW_CFG_INT, "64", 1, 1024, NULL, "generator noise size"},
    {"g_filters", FW_CFG_INT, "32", 1, 256, NULL, "generator width"},
    {"g_lr", FW_CFG_FLOAT, "0.001", 1e-7, 1, NULL, "Adam learning rate of G and E (beta1 0.5)"},
    {"sample_every", FW_CFG_INT, "100", 1, 1000000, NULL, "iterations between logged samples"},
    {"eval_episodes", FW_CFG_INT, "600", 1, 100000, NULL, "meta-test episodes"},
    {"seed", FW_CFG_INT, "1", 0, 2147483647, NULL, "seed of every random stream"},
    {"arch", FW_CFG_CHOICE, "strided", 0, 0, "strided|pool", "conv4 variant"},
    {"threads", FW_CFG_INT, "0", 0, 256, NULL, "task threads (0: all cores)"},
    {"data", FW_CFG_STR, "datasets/data/mnist", 0, 0, NULL, "folder with the MNIST IDX files"},
    {"runs", FW_CFG_STR, "runs", 0, 0, NULL, "folder for run logs"},
};
#define I(key) ((int)fw_cfg_int(&cfg, key))
#define F(key) ((float)fw_cfg_float(&cfg, key))

int main(int argc, char **argv) {
    fw_config cfg;
    if (fw_config_parse(&cfg, keys, (int)FW_COUNTOF(keys), argc, argv) != FW_OK) {
        fprintf(stderr, "fewshot_mnist: %s\n", fw_last_error());
        return 2;
    }
    printf("fewshot_mnist, resolved config:\n");
    fw_config_print(&cfg, stdout);
    int iters = I("iters"), episodes = I("eval_episodes"), mb = I("meta_batch");
    uint64_t seed = (uint64_t)I("seed");
    fw_dataset train, test;
    const int train_digits[] = {0, 1, 2, 3, 4}, test_digits[] = {5, 6, 7, 8, 9};
    FW_CHECK(mnist_load_digits(fw_cfg_str(&cfg, "data"), true, train_digits, 5, &train));
    FW_CHECK(mnist_load_digits(fw_cfg_str(&cfg, "data"), false, test_digits, 5, &test));
    fw_sampler tr = {&train, I("ways"), I("shots"), I("query"), seed, FW_RNG_TRAIN_TASK,
                     I("unlabeled")}, te = tr;
    te.ds = &test;
    te.purpose = FW_RNG_EVAL_TASK;

    metagan_cfg mc = {.ways = tr.ways, .shots = tr.shots, .query = tr.query,
                      .unlabeled = tr.unlabeled, .c = 1, .h = 28, .w = 28, .filters = 64,
                      .inner_steps = I("inner_steps"), .test_inner_steps = I("test_inner_steps"),
                      .inner_lr = F("inner_lr"), .first_order = I("first_order"), .gan = I("gan"),
                      .z_dim = I("z_dim"), .code_dim = 64, .g_filters = I("g_filters"),
                      .fakes = I("fakes") ? I("fakes") : tr.shots, .gan_weight = F("gan_weight")};
    conv4_arch_parse(fw_cfg_str(&cfg, "arch"), &mc.arch); /* the config checked the choice */
    metagan mg;
    metagan_new(&mg, &mc);
    float *theta = fw_alloc(mg.n_params * sizeof(float));
    float *grad = fw_alloc(mg.n_params * sizeof(float));
    FW_ASSERT(theta && grad, "out of memory");
    metagan_init_params(&mg, theta, seed);
    fw_meta *meta;
    FW_CHECK(fw_meta_new(&meta, &metagan_ops, &mg, mg.n_params, mb, I("threads"), &tr));
    fw_adam adam_d, adam_g; /* separate states: D, and G with its encoder */
    FW_CHECK(fw_adam_init(&adam_d, mg.nd, F("meta_lr"), 0.9f, 0.999f));
    FW_CHECK(fw_adam_init(&adam_g, mg.ne + mg.ng, F("g_lr"), 0.5f, 0.999f));
    fw_log *log;
    FW_CHECK(fw_log_open(&log, fw_cfg_str(&cfg, "runs"), "fewshot_mnist", &cfg, seed));
    printf("%s on conv4 (%s): D %zu, E %zu, G %zu parameters; %s MAML; %d task threads\n",
           mc.gan ? "MetaGAN" : "MAML", fw_cfg_str(&cfg, "arch"), mg.nd, mg.ne, mg.ng,
           mc.first_order ? "first-order" : "second-order", fw_meta_threads(meta));

    fw_episode shown; /* a fixed test task and fixed noise for the logged samples */
    FW_CHECK(fw_episode_init(&shown, &te));
    fw_sample(&te, 0, 0, &shown);
    float *samples = fw_alloc(25 * 28 * 28 * sizeof(float));
    fw_task_out *outs = calloc((size_t)mb, sizeof *outs);
    fw_progress prog;
    fw_progress_start(&prog, iters, 10.0);
    for (int it = 1; it <= iters; it++) {
        if (fw_meta_step(meta, (uint64_t)it, theta, grad, outs) != FW_OK) {
            fprintf(stderr, "fewshot_mnist: %s; stopping (parameters not updated)\n", fw_last_error());
            fw_log_close(log, "failed: non-finite loss or gradient");
            return 1;
        }
        fw_adam_step(&adam_d, theta, grad);
        fw_adam_step(&adam_g, theta + mg.nd, grad + mg.nd);
        fw_task_out mean = fw_task_mean(outs, mb);
        FW_CHECK(fw_log_scalar(log, "train/loss", it, mean.loss));
        FW_CHECK(fw_log_scalar(log, "train/acc", it, mean.acc));
        FW_CHECK(fw_log_scalar(log, "train/g_loss", it, mean.g_loss));
        fw_progress_update(&prog, it, mean.loss, mean.acc, stdout);
        if (mc.gan && (it % I("sample_every") == 0 || it == iters)) {
            FW_CHECK(metagan_samples(&mg, theta, &shown, 25, seed, samples));
            FW_CHECK(fw_log_images(log, "generator", it, samples, 25, 28, 28, 5));
        }
    }
    double train_seconds = fw_now() - prog.start, mean, ci;
    float *acc = calloc((size_t)episodes, sizeof *acc);
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
    fw_free(samples);
    fw_episode_free(&shown);
    fw_adam_free(&adam_g);
    fw_adam_free(&adam_d);
    fw_meta_free(meta);
    fw_free(grad);
    fw_free(theta);
    metagan_free(&mg);
    fw_dataset_free(&test);
    fw_dataset_free(&train);
    fw_config_free(&cfg);
    return 0;
}
