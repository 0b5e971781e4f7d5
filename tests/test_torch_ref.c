/* test_torch_ref.c: MAML's whole-model meta-gradient against PyTorch autograd (float64).
 *
 * Each case builds conv4 (strided, 64 filters, 5 ways), initialises the parameters, draws one
 * 5-way 1-shot 15-query episode of real MNIST digits 0-4 (datasets/data/mnist, `make deps`),
 * writes theta and the episode to a mkdtemp directory and runs
 *     /usr/bin/python3 -E -s tests/torch_maml_ref.py DIR
 * which writes the first- and second-order meta-gradients computed by autograd in float64
 * (file formats: the docstring of tests/torch_maml_ref.py). Only then does the test create any
 * oneDNN primitive or OpenMP thread (libgomp is not fork-safe: popen forks), compute the C
 * meta-gradient with fw_maml_ops and compare: ||g_c - g_torch|| / ||g_torch||.
 * Tests run from the repository root. Torch missing is a failure (run `make deps`), not a skip.
 * Set FWT_KEEP_TORCH_DIR=1 to keep the exchange directories for inspection.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datasets/mnist.h"
#include "framework/fw.h"
#include "models/conv4.h"

#define TR_PYTHON "/usr/bin/python3"
#define TR_SCRIPT "tests/torch_maml_ref.py"
#define TR_MNIST "datasets/data/mnist"
#define TR_WAYS 5
#define TR_SHOTS 1
#define TR_QUERY 15
#define TR_FILTERS 64
#define TR_INNER_LR 0.4f

/* Tolerances on ||g_c - g_torch|| / ||g_torch|| (the brief of this check). */
#define TOL_FIRST_ORDER 1e-4
#define TOL_SECOND_ORDER 1e-3
/* A comparison that should fail must miss by at least this much (10x the loosest tolerance). */
#define SENSITIVE_MIN 1e-2
/* |L_c - L_torch| <= TOL_LOSS * max(1, |L_torch|) for the query loss after adaptation. */
#define TOL_LOSS 1e-4

static const char *const tr_files[] = {
    "config.txt", "layout.txt", "theta.f32", "xs.f32", "ys.i32", "xq.f32", "yq.i32",
    "grad_first_order.f64", "grad_second_order.f64", "result.txt",
};

/* The exchange directory of the running test; removed by tr_cleanup (.fini), pass or fail. */
static char tr_dir[512];

static void tr_cleanup(void) {
    if (!tr_dir[0])
        return;
    const char *keep = getenv("FWT_KEEP_TORCH_DIR");
    if (keep && *keep && strcmp(keep, "0") != 0) {
        cr_log_info("kept %s", tr_dir);
        return;
    }
    char path[600];
    for (size_t i = 0; i < FW_COUNTOF(tr_files); i++) {
        snprintf(path, sizeof path, "%s/%s", tr_dir, tr_files[i]);
        unlink(path);
    }
    rmdir(tr_dir);
    tr_dir[0] = '\0';
}

typedef struct tr_run {
    fw_dataset ds;
    fw_graph *g;
    size_t P;
    float *theta;        /* (P,)                          */
    fw_sampler s;
    fw_episode ep;
    int inner_steps;
    double *g_first;     /* (P,) torch first-order         */
    double *g_second;    /* (P,) torch second-order        */
    double query_loss;   /* torch query loss at theta_k    */
} tr_run;

static void tr_path(char *out, size_t n, const char *file) {
    int len = snprintf(out, n, "%s/%s", tr_dir, file);
    cr_assert(len > 0 && (size_t)len < n, "path %s/%s too long", tr_dir, file);
}

static void tr_write(const char *file, const void *data, size_t elem, size_t count) {
    char path[600];
    tr_path(path, sizeof path, file);
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s: %s", path, strerror(errno));
    size_t got = fwrite(data, elem, count, f);
    int closed = fclose(f);
    cr_assert(got == count && closed == 0, "cannot write %s: %s", path, strerror(errno));
}

static double *tr_read_f64(const char *file, size_t count) {
    char path[600];
    tr_path(path, sizeof path, file);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s was not written by %s: %s", path, TR_SCRIPT, strerror(errno));
    double *x = malloc(count * sizeof(double) + 1);
    cr_assert(x, "out of memory");
    size_t got = fread(x, sizeof(double), count, f);
    char extra;
    size_t more = fread(&extra, 1, 1, f);
    fclose(f);
    cr_assert(got == count && more == 0, "%s: expected exactly %zu float64 values", path, count);
    return x;
}

/* Reads "key value" from result.txt; the file must end with "status ok". */
static double tr_read_result(const char *key) {
    char path[600], k[128];
    tr_path(path, sizeof path, "result.txt");
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s was not written by %s: %s", path, TR_SCRIPT, strerror(errno));
    double v = NAN, val;
    bool ok = false;
    char sval[64];
    while (fscanf(f, "%127s %63s", k, sval) == 2) {
        if (strcmp(k, "status") == 0)
            ok = strcmp(sval, "ok") == 0;
        else if (strcmp(k, key) == 0 && sscanf(sval, "%lf", &val) == 1)
            v = val;
    }
    fclose(f);
    cr_assert(ok, "%s: no 'status ok' line", path);
    cr_assert(isfinite(v), "%s: no finite '%s'", path, key);
    return v;
}

/* Runs the reference; a failure message carries the script's output and the `make deps` hint. */
static void tr_run_python(void) {
    cr_assert(access(TR_PYTHON, X_OK) == 0,
              "%s not found: run `make deps` (Debian's python3-torch needs it)", TR_PYTHON);
    cr_assert(access(TR_SCRIPT, R_OK) == 0, "%s not found: run the tests from the repository root",
              TR_SCRIPT);
    cr_assert(strchr(tr_dir, '\'') == NULL, "unexpected quote in %s", tr_dir);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "%s -E -s %s '%s' 2>&1", TR_PYTHON, TR_SCRIPT, tr_dir);
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen(%s): %s", cmd, strerror(errno));
    char out[4096];
    size_t n = 0;
    int c;
    while ((c = fgetc(p)) != EOF)
        if (n + 1 < sizeof out)
            out[n++] = (char)c;
        else { /* keep the tail: the error is at the end */
            memmove(out, out + 1, sizeof out - 2);
            out[sizeof out - 2] = (char)c;
        }
    out[n] = '\0';
    int st = pclose(p);
    bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    cr_assert(ok,
              "the PyTorch reference failed (%s, status %d). If torch is missing, run `make deps` "
              "(python3-torch, for /usr/bin/python3). Output:\n%s",
              cmd, st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), out);
}

/* Everything up to and including the PyTorch reference; no oneDNN, no OpenMP. */
static void tr_setup(tr_run *r, int inner_steps, uint64_t episode_seed, uint64_t init_seed) {
    memset(r, 0, sizeof *r);
    const union { uint32_t u; uint8_t b[4]; } probe = {1};
    cr_assert(probe.b[0] == 1, "the exchange files are little-endian; this host is not");

    int digits[] = {0, 1, 2, 3, 4};
    cr_assert_eq(mnist_load_digits(TR_MNIST, true, digits, 5, &r->ds), FW_OK, "%s",
                 fw_last_error());
    r->g = conv4_new(1, 28, 28, TR_FILTERS, TR_WAYS, CONV4_STRIDED);
    r->P = fw_graph_n_params(r->g);
    r->theta = fw_alloc(r->P * sizeof(float));
    cr_assert(r->theta, "out of memory");
    fw_graph_init_params(r->g, r->theta, init_seed);
    r->s = (fw_sampler){.ds = &r->ds, .ways = TR_WAYS, .shots = TR_SHOTS, .query = TR_QUERY,
                        .seed = episode_seed, .purpose = FW_RNG_TRAIN_TASK};
    cr_assert_eq(fw_sampler_check(&r->s), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_episode_init(&r->ep, &r->s), FW_OK, "%s", fw_last_error());
    fw_sample(&r->s, 1, 0, &r->ep);
    r->inner_steps = inner_steps;

    const char *tmp = getenv("TMPDIR");
    snprintf(tr_dir, sizeof tr_dir, "%s/metagan-torchref-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert(mkdtemp(tr_dir), "mkdtemp(%s): %s", tr_dir, strerror(errno));

    char path[600];
    tr_path(path, sizeof path, "config.txt");
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot create %s: %s", path, strerror(errno));
    fprintf(f, "format 1\narch strided\nways %d\nshots %d\nquery %d\ninner_steps %d\n"
               "inner_lr %.17g\nfilters %d\nc %d\nh %d\nw %d\nn_params %zu\n",
            TR_WAYS, TR_SHOTS, TR_QUERY, inner_steps, (double)TR_INNER_LR, TR_FILTERS, 1, 28, 28,
            r->P);
    cr_assert(fclose(f) == 0, "cannot write %s", path);

    tr_path(path, sizeof path, "layout.txt");
    f = fopen(path, "w");
    cr_assert(f, "cannot create %s: %s", path, strerror(errno));
    for (int i = 0; i < fw_graph_n_nodes(r->g); i++) {
        fw_shape sh = fw_graph_shape(r->g, i);
        fprintf(f, "%d %s %zu %zu %d %d %d\n", i, fw_graph_node_kind(r->g, i),
                fw_graph_param_offset(r->g, i), fw_graph_param_count(r->g, i), sh.c, sh.h, sh.w);
    }
    cr_assert(fclose(f) == 0, "cannot write %s", path);

    size_t img = 28 * 28, ns = TR_WAYS * TR_SHOTS, nq = TR_WAYS * TR_QUERY;
    cr_assert(sizeof(int) == 4, "labels are written as int32");
    tr_write("theta.f32", r->theta, sizeof(float), r->P);
    tr_write("xs.f32", r->ep.xs, sizeof(float), ns * img);
    tr_write("ys.i32", r->ep.ys, sizeof(int), ns);
    tr_write("xq.f32", r->ep.xq, sizeof(float), nq * img);
    tr_write("yq.i32", r->ep.yq, sizeof(int), nq);

    tr_run_python();
    r->g_first = tr_read_f64("grad_first_order.f64", r->P);
    r->g_second = tr_read_f64("grad_second_order.f64", r->P);
    r->query_loss = tr_read_result("query_loss");
}

/* The C meta-gradient of the episode (first oneDNN and OpenMP use of the test). */
static float *tr_c_grad(const tr_run *r, bool first_order, fw_task_out *out) {
    fw_maml mm = {.g = r->g, .ways = TR_WAYS, .shots = TR_SHOTS, .query = TR_QUERY,
                  .inner_steps = r->inner_steps, .test_inner_steps = r->inner_steps,
                  .inner_lr = TR_INNER_LR, .first_order = first_order};
    float *grad = fw_alloc(r->P * sizeof(float));
    cr_assert(grad, "out of memory");
    memset(grad, 0, r->P * sizeof(float));
    void *w = NULL;
    fw_status st = fw_maml_ops.worker_new(&mm, &w);
    cr_assert_eq(st, FW_OK, "MAML worker: %s", fw_last_error());
    fw_maml_ops.task(&mm, w, &r->ep, r->theta, grad, out);
    fw_maml_ops.worker_free(w);
    for (size_t i = 0; i < r->P; i++)
        cr_assert(isfinite(grad[i]), "C meta-gradient[%zu] = %g is not finite", i, grad[i]);
    return grad;
}

static void tr_free(tr_run *r) {
    free(r->g_first);
    free(r->g_second);
    fw_free(r->theta);
    fw_episode_free(&r->ep);
    fw_graph_free(r->g);
    fw_dataset_free(&r->ds);
}

static double rel_l2_fd(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double rel_l2_dd(const double *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double dnorm(const double *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * a[i];
    return sqrt(s);
}

/* Relative L2 error of each parameter block (node), for the failure message. */
static void block_errors(const tr_run *r, const float *gc, const double *gt, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < fw_graph_n_nodes(r->g) && len < n; i++) {
        size_t cnt = fw_graph_param_count(r->g, i), off = fw_graph_param_offset(r->g, i);
        if (!cnt)
            continue;
        int k = snprintf(buf + len, n - len, " %s%d=%.2e", fw_graph_node_kind(r->g, i), i,
                         rel_l2_fd(gc + off, gt + off, cnt));
        if (k < 0)
            break;
        len += (size_t)k;
    }
}

/* One case: the C meta-gradient of the given order against torch's, within tol. */
static void check_case(int inner_steps, bool first_order, uint64_t episode_seed, double tol) {
    tr_run r;
    tr_setup(&r, inner_steps, episode_seed, 7);
    fw_task_out out;
    float *gc = tr_c_grad(&r, first_order, &out);
    const double *gt = first_order ? r.g_first : r.g_second;
    double err = rel_l2_fd(gc, gt, r.P);
    double loss_err = fabs(out.loss - r.query_loss);
    const char *order = first_order ? "first" : "second";
    cr_log_info("%s order, %d inner step(s): rel L2 error %.3e (tol %.0e); query loss C %.9f "
                "torch %.9f", order, inner_steps, err, tol, out.loss, r.query_loss);
    char blocks[1024];
    block_errors(&r, gc, gt, blocks, sizeof blocks);
    cr_expect(loss_err <= TOL_LOSS * fmax(1.0, fabs(r.query_loss)),
              "%s order, k=%d: query loss after adaptation C %.9f vs torch %.9f",
              order, inner_steps, out.loss, r.query_loss);
    cr_expect(err <= tol,
              "%s-order MAML, %d inner step(s): ||g_c - g_torch|| / ||g_torch|| = %.3e > %.0e "
              "(||g_torch|| = %.3e; per block:%s)",
              order, inner_steps, err, tol, dnorm(gt, r.P), blocks);
    fw_free(gc);
    tr_free(&r);
}

TestSuite(torch_ref, .timeout = 300, .fini = tr_cleanup);

Test(torch_ref, first_order_1_step) {
    check_case(1, true, 2024, TOL_FIRST_ORDER);
}

Test(torch_ref, second_order_1_step) {
    check_case(1, false, 2024, TOL_SECOND_ORDER);
}

Test(torch_ref, second_order_3_steps) {
    check_case(3, false, 2025, TOL_SECOND_ORDER);
}

/* The comparison can fail: the first-order C gradient is far from torch's second-order one. */
Test(torch_ref, comparison_is_sensitive) {
    tr_run r;
    tr_setup(&r, 1, 2024, 7);
    fw_task_out out;
    float *gc = tr_c_grad(&r, true, &out);
    double matched = rel_l2_fd(gc, r.g_first, r.P), crossed = rel_l2_fd(gc, r.g_second, r.P);
    cr_log_info("C first order vs torch first order %.3e, vs torch second order %.3e", matched,
                crossed);
    cr_expect(crossed >= SENSITIVE_MIN,
              "C first-order vs torch second-order gradient: rel L2 %.3e < %.0e; the check "
              "cannot tell the two orders apart", crossed, SENSITIVE_MIN);
    fw_free(gc);
    tr_free(&r);
}

/* Second order is really exercised: torch's two gradients differ, after 1 and after 3 steps. */
Test(torch_ref, torch_orders_differ) {
    int steps[] = {1, 3};
    uint64_t seeds[] = {2024, 2025};
    for (int i = 0; i < 2; i++) {
        tr_run r;
        tr_setup(&r, steps[i], seeds[i], 7);
        double d = rel_l2_dd(r.g_first, r.g_second, r.P);
        cr_log_info("torch first vs second order, %d step(s): rel L2 %.3e", steps[i], d);
        cr_expect(d >= SENSITIVE_MIN,
                  "%d inner step(s): torch first- and second-order gradients differ by only %.3e",
                  steps[i], d);
        tr_free(&r);
        tr_cleanup();
    }
}
