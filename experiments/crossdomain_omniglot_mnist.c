/* crossdomain_omniglot_mnist: meta-train on Omniglot characters, meta-test 10-way 1-shot on the
 * ten MNIST digits, none of which was seen (Koch, Zemel & Salakhutdinov 2015, Table 3: siamese
 * nets 70.3 %, 1-nearest-neighbour 26.5 %; metagan-notes §4).
 * Meta-training follows fewshot_omniglot's 5-way protocol values (strided conv4 with 64 filters,
 * inner lr 0.4, 1 step in training and 3 at test, meta-batch 32, Adam 1e-3, K query images per
 * class) on `train_chars`: background (the 964 characters of the 30 background alphabets, as
 * Koch et al.), maml (the MAML split's 1200) or all (1623); each character at its 4 rotations.
 * Meta-test: 600 10-way 1-shot episodes of the MNIST test images, 1 query image per class
 * (the training shape), with pixel 1-NN on the same episodes; as an in-domain reference, the same
 * on Omniglot characters never trained on (background: the evaluation alphabets; maml: the 423
 * test characters; all: none).
 * Both datasets have ink = 255 on a 0 background, 28x28.
 * Run:  make exp NAME=crossdomain_omniglot_mnist ARGS="iters=2000"
 * Log:  runs/crossdomain_omniglot_mnist/<UTC time>-s<seed>.h5, checkpoint next to it (.ckpt.h5);
 *       Ctrl-C stops after the current iteration, resume=<checkpoint> continues. */
#include "framework/fw.h"
#include "models/metagan.h"
#include "datasets/mnist.h"
#include "datasets/omniglot.h"

#include <string.h>

static const fw_cfg_key keys[] = {
    {"ways", FW_CFG_INT, "10", 2, 10, NULL, "classes per task (10: all MNIST digits)"},
    {"shots", FW_CFG_INT, "1", 1, 10, NULL, "support images per class"},
    {"query", FW_CFG_INT, "1", 1, 10, NULL, "query images per class"},
    {"meta_batch", FW_CFG_INT, "32", 1, 256, NULL, "tasks per meta-iteration"},
    {"iters", FW_CFG_INT, "2000", 1, 1000000, NULL, "meta-iterations"},
    {"inner_lr", FW_CFG_FLOAT, "0.4", 0, 10, NULL, "inner-loop SGD learning rate"},
    {"inner_steps", FW_CFG_INT, "1", 1, 100, NULL, "inner SGD steps in meta-training"},
    {"test_inner_steps", FW_CFG_INT, "3", 0, 100, NULL, "inner SGD steps at meta-test"},
    {"first_order", FW_CFG_INT, "0", 0, 1, NULL, "1: first-order MAML; 0: exact second order"},
    {"meta_lr", FW_CFG_FLOAT, "0.001", 1e-7, 1, NULL, "Adam learning rate of D's meta-update"},
    {"gan", FW_CFG_INT, "0", 0, 1, NULL, "1: MetaGAN; 0: plain MAML"},
    {"gan_weight", FW_CFG_FLOAT, "1", 0, 100, NULL, "weight of D's real and fake terms"},
    {"z_dim", FW_CFG_INT, "64", 1, 1024, NULL, "generator noise size"},
    {"g_filters", FW_CFG_INT, "32", 1, 256, NULL, "generator width"},
    {"g_lr", FW_CFG_FLOAT, "0.001", 1e-7, 1, NULL, "Adam learning rate of G and E (beta1 0.5)"},
    {"eval_episodes", FW_CFG_INT, "600", 1, 100000, NULL, "meta-test episodes"},
    {"train_chars", FW_CFG_CHOICE, "background", 0, 0, "background|maml|all",
     "Omniglot characters to meta-train on"},
    {"seed", FW_CFG_INT, "1", 0, 2147483647, NULL, "seed of every random stream"},
    {"threads", FW_CFG_INT, "0", 0, 256, NULL, "task threads (0: all cores)"},
    {"omniglot", FW_CFG_STR, "datasets/data/omniglot", 0, 0, NULL, "folder with Omniglot"},
    {"mnist", FW_CFG_STR, "datasets/data/mnist", 0, 0, NULL, "folder with the MNIST IDX files"},
    FW_RUN_KEYS("500"),
};
/* What a resumed run may change: nothing its training depends on. */
static const char *const resumable = "iters threads omniglot mnist eval_episodes";
#define I(key) ((int)fw_cfg_int(&cfg, key))
#define F(key) ((float)fw_cfg_float(&cfg, key))

/* The meta-training characters of `which`, and the held-out ones (n_held may be 0). */
static void pick_chars(const omniglot *o, const char *which, int *train, int *n_train, int *held,
                       int *n_held) {
    *n_train = *n_held = 0;
    if (strcmp(which, "maml") == 0) {
        omniglot_maml_split(1, train, held);
        *n_train = OMNIGLOT_TRAIN_CHARS;
        *n_held = OMNIGLOT_TEST_CHARS;
        return;
    }
    bool all = strcmp(which, "all") == 0;
    for (int c = 0; c < OMNIGLOT_CHARS; c++) {
        if (all || o->alphabet_background[o->alphabet[c]])
            train[(*n_train)++] = c;
        else
            held[(*n_held)++] = c;
    }
}

/* Mean accuracy ± CI of the meta-learner and of pixel 1-NN on n episodes of s; logged. */
static fw_status evaluate(fw_meta *meta, fw_log *log, const char *name, const fw_sampler *s,
                          int n, int step, const float *theta) {
    float *acc = calloc((size_t)n, sizeof *acc);
    if (!acc)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    double mean, ci, nn_mean, nn_ci;
    char key[64];
    fw_status st = fw_meta_eval(meta, s, n, theta, acc);
    if (st == FW_OK) {
        fw_mean_ci95(acc, n, &mean, &ci);
        snprintf(key, sizeof key, "test/%s/acc", name);
        st = fw_log_eval(log, key, step, acc, n, mean, ci);
    }
    if (st == FW_OK) {
        fw_nearest_neighbour_eval(s, n, acc);
        fw_mean_ci95(acc, n, &nn_mean, &nn_ci);
        snprintf(key, sizeof key, "test/%s/nn_acc", name);
        st = fw_log_eval(log, key, step, acc, n, nn_mean, nn_ci);
    }
    if (st == FW_OK)
        printf("%-28s %d-way %d-shot: %.2f%% ± %.2f%%   (pixel 1-NN, same episodes: %.2f%% ± "
               "%.2f%%)\n", name, s->ways, s->shots, 100 * mean, 100 * ci, 100 * nn_mean,
               100 * nn_ci);
    free(acc);
    return st;
}

int main(int argc, char **argv) {
    fw_config cfg;
    fw_run run;
    int rc = fw_run_init(&run, &cfg, "crossdomain_omniglot_mnist", keys, (int)FW_COUNTOF(keys),
                         argc, argv, resumable);
    if (rc != 0)
        return rc;
    printf("crossdomain_omniglot_mnist, resolved config:\n");
    fw_config_print(&cfg, stdout);
    int iters = I("iters"), episodes = I("eval_episodes"), mb = I("meta_batch");
    uint64_t seed = (uint64_t)I("seed");

    double t0 = fw_now();
    omniglot og;
    fw_dataset train = {0}, held = {0}, digits = {0};
    FW_RUN_CHECK(&run, omniglot_load(fw_cfg_str(&cfg, "omniglot"), 28, &og));
    static int train_chars[OMNIGLOT_CHARS], held_chars[OMNIGLOT_CHARS];
    int n_train, n_held;
    pick_chars(&og, fw_cfg_str(&cfg, "train_chars"), train_chars, &n_train, held_chars, &n_held);
    fw_status st = omniglot_dataset_chars(&og, train_chars, n_train, 4, &train);
    if (st == FW_OK && n_held > 0)
        st = omniglot_dataset_chars(&og, held_chars, n_held, 1, &held);
    omniglot_free(&og);
    FW_RUN_CHECK(&run, st);
    FW_RUN_CHECK(&run, mnist_load(fw_cfg_str(&cfg, "mnist"), false, &digits));
    printf("meta-train: %d Omniglot characters x 4 rotations; meta-test: MNIST test digits "
           "(%d classes, %d images); loaded in %.1f s\n",
           n_train, digits.n_classes, digits.n_images, fw_now() - t0);

    fw_sampler tr = {&train, I("ways"), I("shots"), I("query"), seed, FW_RNG_TRAIN_TASK, 0};
    fw_sampler te_mnist = tr, te_omni = tr;
    te_mnist.ds = &digits;
    te_mnist.purpose = FW_RNG_EVAL_TASK;
    te_omni.ds = &held;
    te_omni.purpose = FW_RNG_EVAL_TASK;

    metagan_cfg mc = {.ways = tr.ways, .shots = tr.shots, .query = tr.query, .c = 1, .h = 28,
                      .w = 28, .filters = 64, .arch = CONV4_STRIDED,
                      .inner_steps = I("inner_steps"), .test_inner_steps = I("test_inner_steps"),
                      .inner_lr = F("inner_lr"), .first_order = I("first_order"), .gan = I("gan"),
                      .z_dim = I("z_dim"), .code_dim = 64, .g_filters = I("g_filters"),
                      .fakes = tr.shots, .gan_weight = F("gan_weight")};
    metagan mg;
    metagan_new(&mg, &mc);
    float *theta = fw_alloc(mg.n_params * sizeof(float));
    float *grad = fw_alloc(mg.n_params * sizeof(float));
    fw_task_out *outs = calloc((size_t)mb, sizeof *outs);
    FW_ASSERT(theta && grad && outs, "out of memory");
    metagan_init_params(&mg, theta, seed);
    fw_meta *meta;
    FW_RUN_CHECK(&run, fw_meta_new(&meta, &metagan_ops, &mg, mg.n_params, mb, I("threads"), &tr));
    fw_adam adam_d, adam_g;
    FW_RUN_CHECK(&run, fw_adam_init(&adam_d, mg.nd, F("meta_lr"), 0.9f, 0.999f));
    FW_RUN_CHECK(&run, fw_adam_init(&adam_g, mg.ne + mg.ng, F("g_lr"), 0.5f, 0.999f));
    printf("%s on strided conv4: %zu parameters in D; %s MAML; %d task threads\n",
           mc.gan ? "MetaGAN" : "MAML", mg.nd, mc.first_order ? "first-order" : "second-order",
           fw_meta_threads(meta));

    fw_run_keep_floats(&run, "theta", theta, mg.n_params);
    fw_run_keep_adam(&run, "adam_d", &adam_d);
    fw_run_keep_adam(&run, "adam_g", &adam_g);
    FW_RUN_CHECK(&run, fw_run_open(&run, iters, fw_meta_threads(meta)));
    fw_log *log = run.log;
    FW_RUN_CHECK(&run, fw_log_add_scalar(log, "train/loss"));
    FW_RUN_CHECK(&run, fw_log_add_scalar(log, "train/acc"));
    FW_RUN_CHECK(&run, fw_log_add_eval(log, "test/mnist/acc", episodes));
    FW_RUN_CHECK(&run, fw_log_add_eval(log, "test/mnist/nn_acc", episodes));
    if (n_held > 0) {
        FW_RUN_CHECK(&run, fw_log_add_eval(log, "test/omniglot_held_out/acc", episodes));
        FW_RUN_CHECK(&run, fw_log_add_eval(log, "test/omniglot_held_out/nn_acc", episodes));
    }
    FW_RUN_CHECK(&run, fw_run_start(&run));

    for (int it = (int)run.first_iter; it <= iters && !fw_run_stopping(&run); it++) {
        FW_RUN_CHECK(&run, fw_meta_step(meta, (uint64_t)it, theta, grad, outs));
        fw_adam_step(&adam_d, theta, grad);
        if (mc.gan)
            fw_adam_step(&adam_g, theta + mg.nd, grad + mg.nd);
        fw_task_out mean = fw_task_mean(outs, mb);
        FW_RUN_CHECK(&run, fw_log_scalar(log, "train/loss", it, mean.loss));
        FW_RUN_CHECK(&run, fw_log_scalar(log, "train/acc", it, mean.acc));
        FW_RUN_CHECK(&run, fw_run_iter_done(&run, it, mean.loss, mean.acc));
    }
    if (!fw_run_stopping(&run)) {
        double train_seconds = fw_run_seconds(&run);
        printf("meta-training took %.1f s (%.2f it/s)\n", train_seconds,
               (iters - run.first_iter + 1) / train_seconds);
        FW_RUN_CHECK(&run, evaluate(meta, log, "mnist", &te_mnist, episodes, iters, theta));
        if (n_held > 0)
            FW_RUN_CHECK(&run, evaluate(meta, log, "omniglot_held_out", &te_omni, episodes, iters,
                                        theta));
        printf("reference (Koch et al. 2015, MNIST 10-way 1-shot): siamese nets 70.3%%, "
               "1-NN 26.5%%\ntotal wall time %.1f s\n", fw_now() - t0);
    }
    rc = fw_run_finish(&run);

    free(outs);
    fw_adam_free(&adam_g);
    fw_adam_free(&adam_d);
    fw_meta_free(meta);
    fw_free(grad);
    fw_free(theta);
    metagan_free(&mg);
    fw_dataset_free(&held);
    fw_dataset_free(&digits);
    fw_dataset_free(&train);
    fw_config_free(&cfg);
    return rc;
}
