/* bench.c: `make bench`, the performance benchmark.
 *
 * Measures meta-iterations per second (fw_meta_step plus the Adam update(s), as the experiments
 * run them) of fixed configurations with 1 task thread and with all cores, the useful GFLOP/s
 * (convolution, transposed convolution and linear FLOPs the algorithm needs, see flops_* below),
 * the thread scaling and the peak RSS; the machine's sgemm rate (dnnl_sgemm); and the same
 * configurations in PyTorch (tests/bench/torch_twin.py: functional MAML with autograd, the same
 * shapes), timed in the same run. One summary line per configuration ends in "N.NNx vs PyTorch"
 * (metagan it/s over PyTorch it/s, both on all cores). The targets are checked and reported at
 * the end; missing one does not fail the command (timings on a shared VM are noisy).
 *
 * Processes. `bench` with no argument is the driver: it never runs an OpenMP region or a oneDNN
 * primitive itself (libgomp is not fork-safe) and starts one child per measurement through
 * popen: `bench sgemm`, `bench run <config>` (timing), `bench rss <config>` (the peak RSS of an
 * all-core run), and the Python twin. Each child prints
 * "key value..." lines that the driver parses; each child's peak RSS is its own.
 *
 * Environment: BENCH_SECONDS (timed seconds per configuration and thread count, default 6),
 * BENCH_PYTHON (default /usr/bin/python3), BENCH_CONFIGS (comma-separated subset).
 */
#include "framework/fw.h"
#include "models/conv4.h"
#include "models/metagan.h"
#include "datasets/mnist.h"
#include "datasets/omniglot.h"

#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define TWIN_SCRIPT "tests/bench/torch_twin.py"

/* ================================ configurations ================================ */

typedef struct bench_cfg {
    const char *name;
    const char *title;
    bool omniglot;          /* data: the Omniglot MAML training split; else MNIST digits 0-4 */
    int ways, shots, query, meta_batch, inner_steps;
    float inner_lr;
    bool first_order, gan;  /* gan: MetaGAN (models/metagan.h), else plain MAML (fw_maml)   */
    int z_dim, code_dim, g_filters, fakes;
} bench_cfg;

static const bench_cfg CONFIGS[] = {
    {"maml_omniglot_fo", "MAML Omniglot 5-way 1-shot, strided conv4-64, meta-batch 32, first order",
     true, 5, 1, 1, 32, 1, 0.4f, true, false, 0, 0, 0, 0},
    {"maml_omniglot_so", "MAML Omniglot 5-way 1-shot, strided conv4-64, meta-batch 32, second order",
     true, 5, 1, 1, 32, 1, 0.4f, false, false, 0, 0, 0, 0},
    {"metagan_mnist", "MetaGAN fewshot_mnist default: 5-way 1-shot 15-query, meta-batch 32, "
                      "second order",
     false, 5, 1, 15, 32, 1, 0.4f, false, true, 64, 64, 32, 1},
};
enum { N_CONFIGS = (int)FW_COUNTOF(CONFIGS) };

static const bench_cfg *find_config(const char *name) {
    for (int i = 0; i < N_CONFIGS; i++)
        if (strcmp(CONFIGS[i].name, name) == 0)
            return &CONFIGS[i];
    return NULL;
}

/* ================================ useful FLOPs ================================ */

/* Per-example FLOPs of one network's conv, deconv and linear layers (2 per multiply-add,
 * padded taps included), split by pass. A layer reading the network input ("first") needs no
 * data gradient unless the caller asks for the input's gradient, and its R-forward is W-free:
 *   forward 2M; backward 2M (weights) + 2M (data); R-forward R{y} = W R{x} + V x: 4M (first 2M);
 *   R-backward R{dW} = R{x} dy + x R{dy}: 4M (first 2M), R{dx} = W' R{dy} + V' dy: 4M. */
typedef struct net_flops {
    double fwd, bwd_w, bwd_d, bwd_d_first, r;
} net_flops;

/* Up to and including node `last` (-1: all). Graphs here are chains: node i reads node i-1. */
static net_flops flops_of(const fw_graph *g, int last) {
    net_flops f = {0};
    int n = last < 0 ? fw_graph_n_nodes(g) : last + 1;
    for (int i = 1; i < n; i++) {
        const char *kind = fw_graph_node_kind(g, i);
        fw_shape in = fw_graph_shape(g, i - 1), out = fw_graph_shape(g, i);
        double params = (double)fw_graph_param_count(g, i), macs;
        if (strcmp(kind, "conv2d") == 0 || strcmp(kind, "deconv2d") == 0) {
            double pairs = (double)in.c * out.c;
            double kk = fmod(params, pairs) == 0 ? params / pairs : (params - out.c) / pairs;
            /* conv: each output pixel takes in.c*k*k taps; deconv: each input pixel feeds out.c*k*k */
            macs = strcmp(kind, "conv2d") == 0 ? (double)out.c * out.h * out.w * in.c * kk
                                               : (double)in.c * in.h * in.w * out.c * kk;
        } else if (strcmp(kind, "linear") == 0) {
            macs = (double)in.c * in.h * in.w * out.c;
        } else {
            continue;
        }
        bool first = i == 1;
        f.fwd += 2 * macs;
        f.bwd_w += 2 * macs;
        if (first)
            f.bwd_d_first += 2 * macs;
        else
            f.bwd_d += 2 * macs;
        f.r += first ? 4 * macs : 12 * macs;
    }
    return f;
}

static double fb(const net_flops *f) { /* forward + backward, no input gradient */
    return f->fwd + f->bwd_w + f->bwd_d;
}

/* FLOPs of one meta-iteration (meta_batch tasks), following maml.c and metagan.c. */
static double flops_per_iteration(const bench_cfg *c, const fw_graph *d, const fw_graph *enc,
                                  const fw_graph *gen, int d_feat) {
    net_flops fd = flops_of(d, -1);
    double ns = c->ways * c->shots, nq = c->ways * c->query, k = c->inner_steps, task;
    /* inner steps; the query pass; second order: a rerun of every step but the last, and an
     * R-forward + R-backward per step */
    double inner_batch = ns + (c->gan ? c->ways * c->fakes : 0);
    double outer_batch = nq + (c->gan ? nq : 0);
    task = k * fb(&fd) * inner_batch + fb(&fd) * outer_batch;
    if (!c->first_order)
        task += ((k - 1) * fb(&fd) + k * fd.r) * inner_batch;
    if (c->gan) {
        net_flops fe = flops_of(enc, -1), fg = flops_of(gen, -1), ff = flops_of(d, d_feat);
        task += fe.fwd * ns + fg.fwd * (c->ways * c->fakes + nq);   /* E, G forward      */
        task += (ff.bwd_d + ff.bwd_d_first) * nq;                   /* D to the fakes    */
        task += (fg.bwd_w + fg.bwd_d + fg.bwd_d_first) * nq;        /* G, to its input   */
        task += (fe.bwd_w + fe.bwd_d) * ns;                         /* E                 */
    }
    return task * c->meta_batch;
}

/* ================================ child: one configuration ================================ */

static long peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct model {
    const bench_cfg *c;
    fw_graph *g;      /* plain MAML: the classifier */
    fw_maml maml;
    metagan mg;       /* MetaGAN                    */
    size_t P, nd;
} model;

static void model_new(model *m, const bench_cfg *c) {
    *m = (model){.c = c};
    if (c->gan) {
        metagan_cfg mc = {.ways = c->ways, .shots = c->shots, .query = c->query, .c = 1, .h = 28,
                          .w = 28, .arch = CONV4_STRIDED, .filters = 64,
                          .inner_steps = c->inner_steps, .test_inner_steps = 3,
                          .inner_lr = c->inner_lr, .first_order = c->first_order, .gan = true,
                          .z_dim = c->z_dim, .code_dim = c->code_dim, .g_filters = c->g_filters,
                          .fakes = c->fakes, .gan_weight = 1};
        metagan_new(&m->mg, &mc);
        m->P = m->mg.n_params;
        m->nd = m->mg.nd;
    } else {
        m->g = conv4_new(1, 28, 28, 64, c->ways, CONV4_STRIDED);
        m->maml = (fw_maml){.g = m->g, .ways = c->ways, .shots = c->shots, .query = c->query,
                            .inner_steps = c->inner_steps, .test_inner_steps = 3,
                            .inner_lr = c->inner_lr, .first_order = c->first_order};
        m->P = m->nd = fw_graph_n_params(m->g);
    }
}

static void model_free(model *m) {
    if (m->c->gan)
        metagan_free(&m->mg);
    else
        fw_graph_free(m->g);
}

/* One thread count's meta-learning state: the runner, parameters, gradient, Adam. */
typedef struct runner {
    const model *m;
    int threads;
    fw_meta *meta;
    float *theta, *grad;
    fw_task_out *outs;
    fw_adam ad, ag;
    double busy;     /* seconds spent in meta-iterations, warm-up included (for profile.sh) */
} runner;

static void runner_new(runner *r, const model *m, const fw_sampler *tr, int threads) {
    const bench_cfg *c = m->c;
    *r = (runner){.m = m, .threads = threads};
    FW_CHECK(fw_meta_new(&r->meta, c->gan ? &metagan_ops : &fw_maml_ops,
                         c->gan ? (const void *)&m->mg : (const void *)&m->maml, m->P,
                         c->meta_batch, threads, tr));
    r->theta = fw_alloc(m->P * sizeof(float));
    r->grad = fw_alloc(m->P * sizeof(float));
    r->outs = calloc((size_t)c->meta_batch, sizeof *r->outs);
    FW_ASSERT(r->theta && r->grad && r->outs, "out of memory");
    if (c->gan)
        metagan_init_params(&m->mg, r->theta, 1);
    else
        fw_graph_init_params(m->g, r->theta, 1);
    FW_CHECK(fw_adam_init(&r->ad, m->nd, 1e-3f, 0.9f, 0.999f));
    FW_CHECK(fw_adam_init(&r->ag, m->P - m->nd > 0 ? m->P - m->nd : 1, 1e-3f, 0.5f, 0.999f));
}

static void runner_free(runner *r) {
    fw_adam_free(&r->ag);
    fw_adam_free(&r->ad);
    free(r->outs);
    fw_free(r->grad);
    fw_free(r->theta);
    fw_meta_free(r->meta);
}

/* Runs meta-iterations (fw_meta_step and the Adam update(s), as the experiments do) until
 * min_seconds have passed and at least one ran, or (max_iters > 0) max_iters ran; returns the
 * iterations per second. */
static double runner_window(runner *r, double min_seconds, int max_iters, uint64_t *step) {
    const model *m = r->m;
    int n = 0;
    double t0 = fw_now(), t;
    do {
        FW_CHECK(fw_meta_step(r->meta, ++*step, r->theta, r->grad, r->outs));
        fw_adam_step(&r->ad, r->theta, r->grad);
        if (m->c->gan)
            fw_adam_step(&r->ag, r->theta + m->nd, r->grad + m->nd);
        n++;
        t = fw_now() - t0;
    } while (max_iters > 0 ? n < max_iters && t < min_seconds : t < min_seconds);
    r->busy += t;
    return n / t;
}

/* The configuration's meta-training data: the Omniglot MAML split's training classes, or MNIST
 * digits 0-4 (the files `make deps` fetches). */
static void load_train(const bench_cfg *c, fw_dataset *train) {
    if (c->omniglot) {
        omniglot og;
        fw_dataset test;
        FW_CHECK(omniglot_load("datasets/data/omniglot", 28, &og));
        FW_CHECK(omniglot_split(&og, "datasets/data/omniglot", "maml", 1, 4, train, &test));
        fw_dataset_free(&test);
        omniglot_free(&og);
    } else {
        const int digits[] = {0, 1, 2, 3, 4};
        FW_CHECK(mnist_load_digits("datasets/data/mnist", true, digits, 5, train));
    }
}

/* only_threads > 0: measure with that many task threads only (for profiling).
 * Timing: for each thread count, 1 warm-up iteration (2 if it took under seconds/6); then three
 * rounds, each a window of at least seconds/3 (and 1 iteration) per thread count, the thread
 * counts taking turns so that a change in the machine's state hits them alike; the median
 * window of each. */
static int child_run(const char *name, double seconds, int only_threads) {
    const bench_cfg *c = find_config(name);
    if (!c) {
        fprintf(stderr, "bench: unknown configuration '%s'\n", name);
        return 2;
    }
    fw_dataset train;
    load_train(c, &train);
    fw_sampler tr = {&train, c->ways, c->shots, c->query, 1, FW_RNG_TRAIN_TASK, 0};
    model m;
    model_new(&m, c);
    double flops = c->gan ? flops_per_iteration(c, m.mg.d, m.mg.enc, m.mg.gen, m.mg.d_feat)
                          : flops_per_iteration(c, m.g, NULL, NULL, 0);
    printf("flops %s %.6e\n", c->name, flops);
    printf("params %s %zu\n", c->name, m.P);
    fflush(stdout);
    int cores = omp_get_num_procs(), counts[2] = {1, cores}, nr = 0;
    runner rs[2];
    for (int i = 0; i < (cores > 1 ? 2 : 1); i++)
        if (only_threads <= 0 || counts[i] == only_threads)
            runner_new(&rs[nr++], &m, &tr, counts[i]);
    uint64_t step = 0;
    for (int i = 0; i < nr; i++)
        runner_window(&rs[i], seconds / 6, 2, &step);
    double rates[2][3];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < nr; i++)
            rates[i][round] = runner_window(&rs[i], seconds / 3, 0, &step);
    for (int i = 0; i < nr; i++) {
        qsort(rates[i], 3, sizeof rates[i][0], cmp_double);
        printf("loop %s %d %.4f\n", c->name, rs[i].threads, rs[i].busy); /* for profile.sh */
        printf("result %s %d %.4f\n", c->name, rs[i].threads, rates[i][1]);
        runner_free(&rs[i]);
    }
    model_free(&m);
    fw_dataset_free(&train);
    return 0;
}

/* The peak RSS of a run on all cores: a process of its own (the timing child holds the 1-thread
 * and the all-core state at once), the configuration's data and model, 2 meta-iterations. */
static int child_rss(const char *name) {
    const bench_cfg *c = find_config(name);
    if (!c) {
        fprintf(stderr, "bench: unknown configuration '%s'\n", name);
        return 2;
    }
    fw_dataset train;
    load_train(c, &train);
    fw_sampler tr = {&train, c->ways, c->shots, c->query, 1, FW_RNG_TRAIN_TASK, 0};
    model m;
    model_new(&m, c);
    runner r;
    runner_new(&r, &m, &tr, omp_get_num_procs());
    uint64_t step = 0;
    runner_window(&r, 0, 2, &step);
    runner_free(&r);
    printf("rss %s %ld\n", c->name, peak_rss_kb());
    model_free(&m);
    fw_dataset_free(&train);
    return 0;
}

/* ================================ child: sgemm roof ================================ */

static int child_sgemm(void) {
    enum { N = 2048 };
    float *a = fw_alloc((size_t)N * N * sizeof(float)), *b = fw_alloc((size_t)N * N * sizeof(float));
    float *c = fw_alloc((size_t)N * N * sizeof(float));
    FW_ASSERT(a && b && c, "out of memory");
    for (size_t i = 0; i < (size_t)N * N; i++) {
        a[i] = (float)(i % 7) * 0.25f;
        b[i] = (float)(i % 5) * 0.5f;
    }
    int cores = omp_get_num_procs();
    for (int t = 1; t <= cores; t = t < cores ? cores : cores + 1) {
        omp_set_num_threads(t); /* dnnl_sgemm takes its thread count at each call */
        dnnl_sgemm('N', 'N', N, N, N, 1.0f, a, N, b, N, 0.0f, c, N); /* warm-up */
        int calls = 0;
        double t0 = fw_now(), el;
        do {
            dnnl_status_t s = dnnl_sgemm('N', 'N', N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
            FW_ASSERT(s == dnnl_success, "dnnl_sgemm: %d", (int)s);
            calls++;
            el = fw_now() - t0;
        } while (el < 1.5 || calls < 3);
        printf("sgemm %d %.3f\n", t, 2.0 * N * N * (double)N * calls / el / 1e9);
        fflush(stdout);
    }
    fw_free(a);
    fw_free(b);
    fw_free(c);
    return 0;
}

/* ================================ driver ================================ */

typedef struct measured {
    double flops;
    double c_rate[2], py_rate[2]; /* [0]: 1 thread, [1]: all cores; 0 if missing */
    long c_rss, py_rss;
    char py_error[512];
} measured;

/* Runs cmd; hands each output line to on_line. Returns the exit status (-1: did not start). */
static int run_child(const char *cmd, void (*on_line)(const char *line, void *ctx), void *ctx) {
    char full[2048];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    fflush(stdout);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    char line[1024];
    while (fgets(line, sizeof line, p))
        on_line(line, ctx);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct parse_ctx {
    measured *m;
    double sgemm[2];
    int cores;
    bool python;         /* lines come from the twin */
    char last_other[512];
} parse_ctx;

static void on_line(const char *line, void *vctx) {
    parse_ctx *ctx = vctx;
    char name[64];
    int threads;
    double v;
    long kb;
    int slot;
    if (sscanf(line, "sgemm %d %lf", &threads, &v) == 2) {
        ctx->sgemm[threads == 1 ? 0 : 1] = v;
    } else if (sscanf(line, "flops %63s %lf", name, &v) == 2) {
        ctx->m->flops = v;
    } else if (sscanf(line, "result %63s %d %lf", name, &threads, &v) == 3) {
        slot = threads == 1 ? 0 : 1;
        if (threads != 1 && threads != ctx->cores)
            return;
        if (ctx->python)
            ctx->m->py_rate[slot] = v;
        else
            ctx->m->c_rate[slot] = v;
    } else if (sscanf(line, "rss %63s %ld", name, &kb) == 2) {
        if (ctx->python)
            ctx->m->py_rss = kb;
        else
            ctx->m->c_rss = kb;
    } else if (strncmp(line, "params ", 7) != 0 && strncmp(line, "version ", 8) != 0 &&
               strncmp(line, "loop ", 5) != 0) {
        snprintf(ctx->last_other, sizeof ctx->last_other, "%s", line);
        size_t n = strlen(ctx->last_other);
        if (n && ctx->last_other[n - 1] == '\n')
            ctx->last_other[n - 1] = '\0';
        fprintf(stderr, "  | %s\n", ctx->last_other);
    }
}

static void read_first_line(const char *path, char *out, size_t size, const char *key) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (key && strncmp(line, key, strlen(key)) != 0)
            continue;
        const char *v = key ? strchr(line, ':') : line;
        v = v ? v + (key ? 1 : 0) : line;
        while (*v == ' ' || *v == '\t')
            v++;
        snprintf(out, size, "%s", v);
        size_t n = strlen(out);
        if (n && out[n - 1] == '\n')
            out[n - 1] = '\0';
        break;
    }
    fclose(f);
}

static bool selected(const char *name) {
    const char *sel = getenv("BENCH_CONFIGS");
    if (!sel || !*sel)
        return true;
    size_t n = strlen(name);
    for (const char *p = sel; (p = strstr(p, name)); p += n)
        if ((p == sel || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return true;
    return false;
}

static const char *mib(long kb, char *buf, size_t size) {
    if (kb <= 0)
        snprintf(buf, size, "n/a");
    else
        snprintf(buf, size, "%.0f MiB", kb / 1024.0);
    return buf;
}

static int driver(const char *self) {
    double t_start = fw_now();
    const char *env = getenv("BENCH_SECONDS");
    double seconds = env && atof(env) > 0 ? atof(env) : 6.0;
    const char *python = getenv("BENCH_PYTHON");
    python = python && *python ? python : "/usr/bin/python3";
    int cores = omp_get_num_procs();
    char cpu[512], load[512];
    read_first_line("/proc/cpuinfo", cpu, sizeof cpu, "model name");
    read_first_line("/proc/loadavg", load, sizeof load, NULL);
    const dnnl_version_t *ver = dnnl_version();
    printf("metagan bench: %s, %d cores; oneDNN %d.%d.%d\n", cpu[0] ? cpu : "unknown CPU", cores,
           ver->major, ver->minor, ver->patch);
    printf("load average at start (1, 5, 15 min, runnable/total, last pid): %s\n", load);
    printf("timing: 1-2 warm-up meta-iterations, then 3 rounds of one window of >= %.1f s per "
           "thread count, taking turns; the median window; metagan and PyTorch alike\n\n",
           seconds / 3);

    parse_ctx sg = {.cores = cores};
    measured dummy = {0};
    sg.m = &dummy;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' sgemm", self);
    run_child(cmd, on_line, &sg);
    printf("machine roof, dnnl_sgemm 2048^3: %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads "
           "(%.2fx)\n\n", sg.sgemm[0], sg.sgemm[1], cores,
           sg.sgemm[0] > 0 ? sg.sgemm[1] / sg.sgemm[0] : 0);

    measured m[N_CONFIGS] = {{0}};
    printf("%-18s %-8s %7s %10s %9s %8s %10s\n", "configuration", "impl", "threads", "it/s",
           "GFLOP/s", "% sgemm", "peak RSS");
    for (int i = 0; i < N_CONFIGS; i++) {
        const bench_cfg *c = &CONFIGS[i];
        if (!selected(c->name))
            continue;
        parse_ctx ctx = {.m = &m[i], .cores = cores};
        snprintf(cmd, sizeof cmd, "'%s' run %s %g", self, c->name, seconds);
        int rc = run_child(cmd, on_line, &ctx);
        if (rc != 0)
            printf("%-18s metagan run failed (exit %d): %s\n", c->name, rc, ctx.last_other);
        snprintf(cmd, sizeof cmd, "'%s' rss %s", self, c->name);
        run_child(cmd, on_line, &ctx);
        ctx.python = true;
        ctx.last_other[0] = '\0';
        snprintf(cmd, sizeof cmd,
                 "'%s' -E -s " TWIN_SCRIPT " name=%s ways=%d shots=%d query=%d meta_batch=%d "
                 "inner_steps=%d inner_lr=%g first_order=%d gan=%d z_dim=%d code_dim=%d "
                 "g_filters=%d fakes=%d seconds=%g threads=1,%d",
                 python, c->name, c->ways, c->shots, c->query, c->meta_batch, c->inner_steps,
                 c->inner_lr, c->first_order, c->gan, c->z_dim, c->code_dim, c->g_filters,
                 c->fakes, seconds, cores);
        rc = run_child(cmd, on_line, &ctx);
        if (rc != 0)
            snprintf(m[i].py_error, sizeof m[i].py_error, "PyTorch twin failed (exit %d): %s", rc,
                     ctx.last_other);
        for (int impl = 0; impl < 2; impl++)
            for (int s = 0; s < 2; s++) {
                double r = impl ? m[i].py_rate[s] : m[i].c_rate[s];
                double gf = r * m[i].flops / 1e9, roof = sg.sgemm[s];
                char rss[32];
                printf("%-18s %-8s %7d %10.3f %9.1f %7.1f%% %10s\n", s == 0 && impl == 0 ? c->name : "",
                       impl ? "pytorch" : "metagan", s ? cores : 1, r, gf,
                       roof > 0 ? 100 * gf / roof : 0,
                       s == 1 ? mib(impl ? m[i].py_rss : m[i].c_rss, rss, sizeof rss) : "");
            }
        if (m[i].py_error[0])
            printf("%-18s %s\n", "", m[i].py_error);
        fflush(stdout);
    }

    printf("\nper configuration, on %d threads (all cores):\n", cores);
    /* Each target's verdict per configuration, collected for the lines after the summary. */
    char t_ratio[512] = "", t_scaling[512] = "", t_roof[512] = "";
    bool any = false;
    for (int i = 0; i < N_CONFIGS; i++) {
        const bench_cfg *c = &CONFIGS[i];
        if (!selected(c->name))
            continue;
        any = true;
        double r1 = m[i].c_rate[0], r2 = m[i].c_rate[1], p2 = m[i].py_rate[1];
        double gf = r2 * m[i].flops / 1e9, scaling = r1 > 0 ? r2 / r1 : 0;
        double ratio = p2 > 0 ? r2 / p2 : 0, roof = sg.sgemm[1] > 0 ? 100 * gf / sg.sgemm[1] : 0;
        printf("%s: %s | metagan %.2f it/s, %.1f useful GFLOP/s (%.1f%% of sgemm), %.2fx over "
               "1 thread | PyTorch %.3f it/s | ",
               c->name, c->title, r2, gf, roof, scaling, p2);
        if (ratio > 0)
            printf("%.2fx vs PyTorch\n", ratio);
        else
            printf("n/a vs PyTorch\n");
        size_t n = strlen(t_ratio);
        snprintf(t_ratio + n, sizeof t_ratio - n, "  %s %.2fx %s", c->name, ratio,
                 ratio >= 5 ? "met" : "NOT met");
        n = strlen(t_scaling);
        snprintf(t_scaling + n, sizeof t_scaling - n, "  %s %.2fx %s", c->name, scaling,
                 scaling >= 1.8 ? "met" : "NOT met");
        n = strlen(t_roof);
        if (c->omniglot)
            snprintf(t_roof + n, sizeof t_roof - n, "  %s %.1f%% %s", c->name, roof,
                     roof >= 40 ? "met" : "NOT met");
    }
    if (!any) {
        fprintf(stderr, "bench: BENCH_CONFIGS selects no configuration\n");
        return 2;
    }
    printf("\ntargets (run-to-run variation on this VM is about 5 %%):\n");
    printf("  metagan >= 5x PyTorch's it/s:%s\n", t_ratio);
    printf("  %d-thread speedup >= 1.8x:%s\n", cores, t_scaling);
    if (t_roof[0])
        printf("  MAML Omniglot useful GFLOP/s >= 40%% of %d-thread sgemm:%s\n", cores, t_roof);
    read_first_line("/proc/loadavg", load, sizeof load, NULL);
    printf("load average at end: %s; bench took %.0f s\n", load, fw_now() - t_start);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "sgemm") == 0)
        return child_sgemm();
    if (argc >= 3 && strcmp(argv[1], "rss") == 0)
        return child_rss(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "run") == 0)
        return child_run(argv[2], argc >= 4 ? atof(argv[3]) : 6.0, argc >= 5 ? atoi(argv[4]) : 0);
    if (argc == 1)
        return driver(argv[0]);
    fprintf(stderr, "usage: %s            (the whole benchmark)\n"
                    "       %s sgemm      (the sgemm roof)\n"
                    "       %s run NAME [SECONDS [THREADS]]   (time one configuration)\n"
                    "       %s rss NAME   (peak RSS of an all-core run; NAME: ",
            argv[0], argv[0], argv[0], argv[0]);
    for (int i = 0; i < N_CONFIGS; i++)
        fprintf(stderr, "%s%s", i ? ", " : "", CONFIGS[i].name);
    fprintf(stderr, ")\n");
    return 2;
}
