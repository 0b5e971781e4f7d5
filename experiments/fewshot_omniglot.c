/* fewshot_omniglot: N-way K-shot Omniglot with MetaGAN (gan=1) or plain MAML (gan=0) on conv4,
 * following the MAML Omniglot protocol (Finn et al. 2017, §5.2 and App. A.1; metagan-notes §2):
 *   - 28x28 images; 1200 characters x 4 rotations meta-train, the other 423 meta-test (the
 *     seeded MAML split; split=vinyals takes the Vinyals lists instead), datasets/omniglot.h;
 *   - strided conv4, 64 filters, no pooling; K query images per class (as many as the shots);
 *   - 5-way: inner lr 0.4, 1 inner step in training and 3 at test, meta-batch 32;
 *     20-way: inner lr 0.1, 5 inner steps, meta-batch 16 (the protocol keys below default to
 *     these values for the chosen ways: the 5-way ones below 20 ways);
 *   - Adam 1e-3, second-order meta-gradient unless first_order=1; 600 test episodes.
 * The paper trains 60,000 iterations: iters=60000 (hours on 2 cores; see the README). A run
 * writes checkpoints; Ctrl-C stops after the current iteration, resume=<checkpoint> continues.
 * Run:  make exp NAME=fewshot_omniglot ARGS="gan=0 shots=1 iters=2000"
 * Log:  runs/fewshot_omniglot/<UTC time>-s<seed>.h5 (schema in framework/log.h), checkpoint
 *       next to it (.ckpt.h5) */
#include "framework/fw.h"
#include "models/metagan.h"
#include "datasets/omniglot.h"

static const fw_cfg_key keys[] = {
    {"ways", FW_CFG_INT, "5", 2, 100, NULL, "classes per task"},
    {"shots", FW_CFG_INT, "1", 1, 19, NULL, "support images per class"},
    {"query", FW_CFG_INT, "0", 0, 19, NULL, "query images per class (0: = shots, as MAML)"},
    {"meta_batch", FW_CFG_INT, "0", 0, 256, NULL, "tasks per meta-iteration (0: 32, 20-way 16)"},
    {"iters", FW_CFG_INT, "2000", 1, 1000000, NULL, "meta-iterations (the paper: 60000)"},
    {"inner_lr", FW_CFG_FLOAT, "0", 0, 10, NULL, "inner-loop SGD learning rate (0: 0.4, 20-way 0.1)"},
    {"inner_steps", FW_CFG_INT, "0", 0, 100, NULL, "inner SGD steps in meta-training (0: 1, 20-way 5)"},
    {"test_inner_steps", FW_CFG_INT, "-1", -1, 100, NULL,
     "inner SGD steps at meta-test (-1: 3, 20-way 5)"},
    {"first_order", FW_CFG_INT, "0", 0, 1, NULL, "1: first-order MAML; 0: exact second order"},
    {"meta_lr", FW_CFG_FLOAT, "0.001", 1e-7, 1, NULL, "Adam learning rate of D's meta-update"},
    {"gan", FW_CFG_INT, "1", 0, 1, NULL, "1: MetaGAN; 0: plain MAML through the same code"},
    {"gan_weight", FW_CFG_FLOAT, "1", 0, 100, NULL, "weight of D's real and fake terms"},
    {"fakes", FW_CFG_INT, "0", 0, 100, NULL, "fakes per class in the inner loop (0: = shots)"},
    {"z_dim", FW_CFG_INT, "64", 1, 1024, NULL, "generator noise size"},
    {"g_filters", FW_CFG_INT, "32", 1, 256, NULL, "generator width"},
    {"g_lr", FW_CFG_FLOAT, "0.001", 1e-7, 1, NULL, "Adam learning rate of G and E (beta1 0.5)"},
    {"sample_every", FW_CFG_INT, "500", 1, 1000000, NULL, "iterations between logged samples"},
    {"eval_episodes", FW_CFG_INT, "600", 1, 100000, NULL, "meta-test episodes"},
    {"split", FW_CFG_CHOICE, "maml", 0, 0, "maml|vinyals",
     "class split: maml (seeded 1200/423) or vinyals (trainval/test lists)"},
    {"split_seed", FW_CFG_INT, "1", 0, 2147483647, NULL, "seed of the maml split"},
    {"test_rotations", FW_CFG_INT, "4", 1, 4, NULL,
     "maml split: rotations of each test character as classes (4 as the MAML code; 1: none)"},
    {"seed", FW_CFG_INT, "1", 0, 2147483647, NULL, "seed of every random stream"},
    {"arch", FW_CFG_CHOICE, "strided", 0, 0, "strided|pool", "conv4 variant"},
    {"threads", FW_CFG_INT, "0", 0, 256, NULL, "task threads (0: all cores)"},
    {"data", FW_CFG_STR, "datasets/data/omniglot", 0, 0, NULL, "folder with the Omniglot files"},
    FW_RUN_KEYS("500"),
};
/* What a resumed run may change: nothing its training depends on. */
static const char *const resumable = "iters threads data eval_episodes sample_every";
#define I(key) ((int)fw_cfg_int(&cfg, key))
#define F(key) ((float)fw_cfg_float(&cfg, key))

int main(int argc, char **argv) {
    fw_config cfg;
    fw_run run;
    int rc = fw_run_init(&run, &cfg, "fewshot_omniglot", keys, (int)FW_COUNTOF(keys), argc, argv,
                         resumable);
    if (rc != 0)
        return rc;
    /* The protocol's values for this many ways, where a key was left at 0 (or -1). */
    bool twenty = I("ways") >= 20;
    int shots = I("shots"), query = I("query") ? I("query") : shots;
    int mb = I("meta_batch") ? I("meta_batch") : twenty ? 16 : 32;
    float inner_lr = F("inner_lr") > 0 ? F("inner_lr") : twenty ? 0.1f : 0.4f;
    int inner_steps = I("inner_steps") ? I("inner_steps") : twenty ? 5 : 1;
    int test_steps = I("test_inner_steps") >= 0 ? I("test_inner_steps") : twenty ? 5 : 3;
    int iters = I("iters"), episodes = I("eval_episodes");
    uint64_t seed = (uint64_t)I("seed");
    if (shots + query > OMNIGLOT_DRAWINGS) {
        fprintf(stderr, "fewshot_omniglot: shots + query = %d, but a character has only %d "
                        "drawings (key shots or query)\n", shots + query, OMNIGLOT_DRAWINGS);
        fw_config_free(&cfg);
        return 2;
    }
    printf("fewshot_omniglot, resolved config:\n");
    fw_config_print(&cfg, stdout);
    printf("protocol values: query %d, meta_batch %d, inner_lr %g, inner_steps %d, "
           "test_inner_steps %d\n", query, mb, inner_lr, inner_steps, test_steps);

    double t0 = fw_now();
    const char *dir = fw_cfg_str(&cfg, "data");
    omniglot og;
    fw_dataset train, test;
    FW_RUN_CHECK(&run, omniglot_load(dir, 28, &og));
    fw_status st = omniglot_split(&og, dir, fw_cfg_str(&cfg, "split"), (uint64_t)I("split_seed"),
                                  I("test_rotations"), &train, &test);
    omniglot_free(&og);
    FW_RUN_CHECK(&run, st);
    printf("Omniglot (%s split): %d training classes, %d test classes, loaded in %.1f s\n",
           fw_cfg_str(&cfg, "split"), train.n_classes, test.n_classes, fw_now() - t0);
    fw_sampler tr = {&train, I("ways"), shots, query, seed, FW_RNG_TRAIN_TASK, 0}, te = tr;
    te.ds = &test;
    te.purpose = FW_RNG_EVAL_TASK;

    metagan_cfg mc = {.ways = tr.ways, .shots = shots, .query = query, .c = 1, .h = 28, .w = 28,
                      .filters = 64, .inner_steps = inner_steps, .test_inner_steps = test_steps,
                      .inner_lr = inner_lr, .first_order = I("first_order"), .gan = I("gan"),
                      .z_dim = I("z_dim"), .code_dim = 64, .g_filters = I("g_filters"),
                      .fakes = I("fakes") ? I("fakes") : shots, .gan_weight = F("gan_weight")};
    conv4_arch_parse(fw_cfg_str(&cfg, "arch"), &mc.arch); /* the config checked the choice */
    metagan mg;
    metagan_new(&mg, &mc);
    float *theta = fw_alloc(mg.n_params * sizeof(float));
    float *grad = fw_alloc(mg.n_params * sizeof(float));
    FW_ASSERT(theta && grad, "out of memory");
    metagan_init_params(&mg, theta, seed);
    fw_meta *meta;
    FW_RUN_CHECK(&run, fw_meta_new(&meta, &metagan_ops, &mg, mg.n_params, mb, I("threads"), &tr));
    fw_adam adam_d, adam_g; /* separate states: D, and G with its encoder */
    FW_RUN_CHECK(&run, fw_adam_init(&adam_d, mg.nd, F("meta_lr"), 0.9f, 0.999f));
    FW_RUN_CHECK(&run, fw_adam_init(&adam_g, mg.ne + mg.ng, F("g_lr"), 0.5f, 0.999f));
    printf("%s on conv4 (%s): D %zu, E %zu, G %zu parameters; %s MAML; %d task threads\n",
           mc.gan ? "MetaGAN" : "MAML", fw_cfg_str(&cfg, "arch"), mg.nd, mg.ne, mg.ng,
           mc.first_order ? "first-order" : "second-order", fw_meta_threads(meta));

    /* A checkpoint holds theta = [D | E | G] and both Adam states; episodes and noise are pure
     * functions of (seed, iteration), so nothing else is needed to resume bit for bit. */
    fw_run_keep_floats(&run, "theta", theta, mg.n_params);
    fw_run_keep_adam(&run, "adam_d", &adam_d);
    fw_run_keep_adam(&run, "adam_g", &adam_g);
    FW_RUN_CHECK(&run, fw_run_open(&run, iters, fw_meta_threads(meta)));
    fw_log *log = run.log;
    FW_RUN_CHECK(&run, fw_log_add_scalar(log, "train/loss"));
    FW_RUN_CHECK(&run, fw_log_add_scalar(log, "train/acc"));
    if (mc.gan) {
        FW_RUN_CHECK(&run, fw_log_add_scalar(log, "train/g_loss"));
        FW_RUN_CHECK(&run, fw_log_add_images(log, "generator", 25, 28, 28, 5));
    }
    FW_RUN_CHECK(&run, fw_log_add_eval(log, "test/acc", episodes));
    FW_RUN_CHECK(&run, fw_log_add_eval(log, "test/nn_acc", episodes));
    FW_RUN_CHECK(&run, fw_run_start(&run));

    fw_episode shown; /* a fixed test task and fixed noise for the logged samples */
    FW_RUN_CHECK(&run, fw_episode_init(&shown, &te));
    fw_sample(&te, 0, 0, &shown);
    float *samples = fw_alloc(25 * 28 * 28 * sizeof(float));
    fw_task_out *outs = calloc((size_t)mb, sizeof *outs);
    FW_ASSERT(samples && outs, "out of memory");
    for (int it = (int)run.first_iter; it <= iters && !fw_run_stopping(&run); it++) {
        FW_RUN_CHECK(&run, fw_meta_step(meta, (uint64_t)it, theta, grad, outs));
        fw_adam_step(&adam_d, theta, grad);
        if (mc.gan)
            fw_adam_step(&adam_g, theta + mg.nd, grad + mg.nd);
        fw_task_out mean = fw_task_mean(outs, mb);
        FW_RUN_CHECK(&run, fw_log_scalar(log, "train/loss", it, mean.loss));
        FW_RUN_CHECK(&run, fw_log_scalar(log, "train/acc", it, mean.acc));
        if (mc.gan)
            FW_RUN_CHECK(&run, fw_log_scalar(log, "train/g_loss", it, mean.g_loss));
        if (mc.gan && (it % I("sample_every") == 0 || it == iters)) {
            FW_RUN_CHECK(&run, metagan_samples(&mg, theta, &shown, 25, seed, samples));
            FW_RUN_CHECK(&run, fw_log_images(log, "generator", it, samples));
        }
        FW_RUN_CHECK(&run, fw_run_iter_done(&run, it, mean.loss, mean.acc));
    }
    if (!fw_run_stopping(&run)) {
        double train_seconds = fw_run_seconds(&run), mean, ci, t_eval = fw_now();
        long done = iters - run.first_iter + 1;
        float *acc = calloc((size_t)episodes, sizeof *acc);
        FW_ASSERT(acc, "out of memory");
        FW_RUN_CHECK(&run, fw_meta_eval(meta, &te, episodes, theta, acc));
        fw_mean_ci95(acc, episodes, &mean, &ci);
        FW_RUN_CHECK(&run, fw_log_eval(log, "test/acc", iters, acc, episodes, mean, ci));
        printf("meta-training took %.1f s (%.2f it/s); evaluation %.1f s\n", train_seconds,
               done / train_seconds, fw_now() - t_eval);
        printf("test accuracy: %.2f%% ± %.2f%% (%d episodes, %d-way %d-shot, %d test steps)\n",
               100 * mean, 100 * ci, episodes, tr.ways, shots, test_steps);
        fw_nearest_neighbour_eval(&te, episodes, acc);
        fw_mean_ci95(acc, episodes, &mean, &ci);
        FW_RUN_CHECK(&run, fw_log_eval(log, "test/nn_acc", iters, acc, episodes, mean, ci));
        printf("nearest-neighbour baseline (same episodes): %.2f%% ± %.2f%%\n", 100 * mean,
               100 * ci);
        printf("total wall time %.1f s\n", fw_now() - t0);
        free(acc);
    }
    rc = fw_run_finish(&run);

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
    return rc;
}
