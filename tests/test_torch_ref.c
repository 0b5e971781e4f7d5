/* test_torch_ref.c: MAML's whole-model meta-gradient against PyTorch autograd (float64).
 *
 * Each case builds conv4 (strided, 64 filters, 5 ways), initialises the parameters, draws one
 * 5-way 1-shot 15-query episode of real MNIST digits 0-4 (datasets/data/mnist, `make deps`) and
 * writes theta and the episode to a mkdtemp directory. A forked child computes the C
 * meta-gradient with fw_maml_ops and records the ReLU masks of the same forward passes; then the
 * parent (which never touches oneDNN or OpenMP: libgomp is not fork-safe and popen forks) runs
 *     /usr/bin/python3 -E -s tests/torch_maml_ref.py DIR
 * which differentiates the same network and episode in float64 (formats: its docstring), and
 * compares ||g_c - g_torch|| / ||g_torch||.
 *
 * Why the masks: a float32 forward is ~1e-5 off float64 in the batchnorm outputs, and among the
 * ~1.3 M ReLU inputs of an episode a few lie that close to 0; when one lands on the other side
 * of the kink, the gradient jumps by ~1e-3 (measured on 6 of 16 episodes). The reference
 * therefore follows the C run's branch (relu(z) = mask * z, masks from C), the test checks that
 * the masks disagree with float64's signs only within rounding of the kink, and the distance to
 * the reference with float64's own masks is logged.
 *
 * Tests run from the repository root. Torch missing is a failure (run `make deps`), not a skip.
 * Set FWT_KEEP_TORCH_DIR=1 to keep the exchange directories for inspection.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datasets/mnist.h"
#include "framework/fw.h"
#include "models/conv4.h"

#ifndef TR_PYTHON /* overridable only to test the failure path */
#define TR_PYTHON "/usr/bin/python3"
#endif
#define TR_SCRIPT "tests/torch_maml_ref.py"
#define TR_MNIST "datasets/data/mnist"
#define TR_WAYS 5
#define TR_SHOTS 1
#define TR_QUERY 15
#define TR_FILTERS 64
#define TR_INNER_LR 0.4f
#define TR_INIT_SEED 7

/* Tolerances on ||g_c - g_torch|| / ||g_torch||. */
#define TOL_FIRST_ORDER 1e-4
#define TOL_SECOND_ORDER 1e-3
/* A comparison that should fail must miss by at least this much (10x the loosest tolerance). */
#define SENSITIVE_MIN 1e-2
/* |L_c - L_torch| <= TOL_LOSS * max(1, |L_torch|) for the query loss after adaptation. */
#define TOL_LOSS 1e-4
/* C's ReLU masks may differ from float64's signs only where |pre-activation| is this small
 * (batchnorm outputs are O(1); float32 rounding reaches a few 1e-4 at most). */
#define TOL_FLIP_ABS 1e-3

/* The exchange directory of the running test; emptied and removed by tr_cleanup (.fini). */
static char tr_dir[512];

static void tr_cleanup(void) {
    if (!tr_dir[0])
        return;
    const char *keep = getenv("FWT_KEEP_TORCH_DIR");
    if (keep && *keep && strcmp(keep, "0") != 0) {
        cr_log_info("kept %s", tr_dir);
        tr_dir[0] = '\0';
        return;
    }
    DIR *d = opendir(tr_dir);
    if (d) {
        struct dirent *e;
        char path[800];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                snprintf(path, sizeof path, "%s/%s", tr_dir, e->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(tr_dir);
    tr_dir[0] = '\0';
}

typedef struct tr_run {
    fw_dataset ds;
    fw_graph *g;
    size_t P;
    float *theta;       /* (P,)                                                      */
    fw_sampler s;
    fw_episode ep;
    int inner_steps;
    bool with_c;        /* the C side ran: grad_c, masks                             */
    float *grad_c;      /* (P,) C meta-gradient                                      */
    double loss_c;      /* C query loss after adaptation                             */
    double *g_first, *g_second;          /* torch, on the C run's ReLU branch (or own) */
    double *g_first_own, *g_second_own;  /* torch with its own masks (with_c only)     */
    double query_loss, query_loss_own;
    double relu_elements, relu_flips, relu_flip_max_abs;
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

/* Reads exactly count elements of elem bytes (malloc'd). */
static void *tr_read(const char *file, size_t elem, size_t count) {
    char path[600];
    tr_path(path, sizeof path, file);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s is missing: %s", path, strerror(errno));
    void *x = malloc(count * elem + 1);
    cr_assert(x, "out of memory");
    size_t got = fread(x, elem, count, f);
    char extra;
    size_t more = fread(&extra, 1, 1, f);
    fclose(f);
    cr_assert(got == count && more == 0, "%s: expected exactly %zu values of %zu bytes", path,
              count, elem);
    return x;
}

/* Reads "key value" from a result file written by the script (ends with "status ok"). */
static double tr_read_result(const char *key) {
    char path[600], k[128], sval[64];
    tr_path(path, sizeof path, "result.txt");
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s was not written by %s: %s", path, TR_SCRIPT, strerror(errno));
    double v = NAN, val;
    bool ok = false;
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

/* ---- the C side, in a forked child (no Criterion calls there: errors go to c_error.txt) ---- */

static void child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void child_fail(const char *fmt, ...) {
    char path[600];
    snprintf(path, sizeof path, "%s/c_error.txt", tr_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fclose(f);
    }
    _exit(3);
}

static void child_write(const char *file, const void *data, size_t bytes) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tr_dir, file);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes || fclose(f) != 0)
        child_fail("cannot write %s: %s", path, strerror(errno));
}

/* The ReLU masks (output > 0, i.e. input > 0) of e's last forward, node by node, plain. */
static void child_masks(const fw_graph *g, const fw_exec *e, int batch, const char *file) {
    size_t total = 0, off = 0, most = 0;
    for (int i = 0; i < fw_graph_n_nodes(g); i++)
        if (strcmp(fw_graph_node_kind(g, i), "relu") == 0) {
            fw_shape s = fw_graph_shape(g, i);
            size_t n = (size_t)batch * (size_t)(s.c * s.h * s.w);
            total += n;
            most = n > most ? n : most;
        }
    unsigned char *m = malloc(total);
    float *y = malloc(most * sizeof(float));
    if (!m || !y)
        child_fail("out of memory for the ReLU masks");
    for (int i = 0; i < fw_graph_n_nodes(g); i++)
        if (strcmp(fw_graph_node_kind(g, i), "relu") == 0) {
            fw_shape s = fw_graph_shape(g, i);
            size_t n = (size_t)batch * (size_t)(s.c * s.h * s.w);
            fw_exec_read(e, i, y);
            for (size_t j = 0; j < n; j++)
                m[off + j] = y[j] > 0.0f;
            off += n;
        }
    child_write(file, m, total);
    free(m);
    free(y);
}

/* The meta-gradient through fw_maml_ops, then the ReLU masks of the same passes: a replica of
 * fw_maml_adapt (fw_maml_pass + fw_sgd_step) on execs of its own, stopping after each forward to
 * read them. Its query loss must equal the task's bit for bit, or the masks are not the task's. */
static void child_main(const tr_run *r, bool first_order) {
    fw_maml mm = {.g = r->g, .ways = TR_WAYS, .shots = TR_SHOTS, .query = TR_QUERY,
                  .inner_steps = r->inner_steps, .test_inner_steps = r->inner_steps,
                  .inner_lr = TR_INNER_LR, .first_order = first_order};
    size_t P = r->P;
    float *grad = fw_alloc(P * sizeof(float)), *fast = fw_alloc(P * sizeof(float)),
          *g2 = fw_alloc(P * sizeof(float));
    int ns = TR_WAYS * TR_SHOTS, nq = TR_WAYS * TR_QUERY;
    float *dl = fw_alloc((size_t)(nq * TR_WAYS) * sizeof(float));
    if (!grad || !fast || !g2 || !dl)
        child_fail("out of memory");
    memset(grad, 0, P * sizeof(float));
    void *w = NULL;
    if (fw_maml_ops.worker_new(&mm, &w) != FW_OK)
        child_fail("MAML worker: %s", fw_last_error());
    fw_task_out out = {0};
    fw_maml_ops.task(&mm, w, &r->ep, r->theta, grad, &out);
    fw_maml_ops.worker_free(w);
    child_write("grad_c.f32", grad, P * sizeof(float));

    fw_exec *es, *eq;
    if (fw_exec_new(&es, r->g, ns) != FW_OK || fw_exec_new(&eq, r->g, nq) != FW_OK)
        child_fail("exec: %s", fw_last_error());
    fw_vec_copy(fast, r->theta, P);
    char name[64];
    for (int k = 0; k < r->inner_steps; k++) {
        const float *logits = fw_forward(es, fast, r->ep.xs);
        snprintf(name, sizeof name, "relu_support_%d.u8", k);
        child_masks(r->g, es, ns, name);
        fw_dloss(logits, r->ep.ys, ns, TR_WAYS, (fw_dloss_w){.sup = 1.0 / ns}, dl, NULL);
        fw_vec_zero(g2, P);
        fw_backward(es, fast, dl, g2, NULL);
        fw_sgd_step(fast, g2, P, TR_INNER_LR);
    }
    const float *logits = fw_forward(eq, fast, r->ep.xq);
    child_masks(r->g, eq, nq, "relu_query.u8");
    double lq = fw_dloss(logits, r->ep.yq, nq, TR_WAYS, (fw_dloss_w){.sup = 1.0 / nq}, NULL, NULL);
    fw_exec_free(es);
    fw_exec_free(eq);

    char path[600];
    snprintf(path, sizeof path, "%s/c_result.txt", tr_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        child_fail("cannot create %s: %s", path, strerror(errno));
    fprintf(f, "%.17g %.17g\n", out.loss, lq);
    if (fclose(f) != 0)
        child_fail("cannot write %s", path);
    fw_free(grad);
    fw_free(fast);
    fw_free(g2);
    fw_free(dl);
}

/* Forks, runs child_main in the child and waits: the parent stays free of OpenMP and oneDNN. */
static void tr_c_side(tr_run *r, bool first_order) {
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        child_main(r, first_order);
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        cr_assert(errno == EINTR, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char path[600], msg[1024] = "(no message)";
        tr_path(path, sizeof path, "c_error.txt");
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(msg, 1, sizeof msg - 1, f);
            msg[n] = '\0';
            fclose(f);
        }
        cr_assert_fail("the C side (%s order, %d steps) failed: %s %d: %s",
                       first_order ? "first" : "second", r->inner_steps,
                       WIFEXITED(st) ? "exit status" : "signal",
                       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), msg);
    }
    r->grad_c = tr_read("grad_c.f32", sizeof(float), r->P);
    for (size_t i = 0; i < r->P; i++)
        cr_assert(isfinite(r->grad_c[i]), "C meta-gradient[%zu] = %g is not finite", i,
                  r->grad_c[i]);
    char path[600];
    tr_path(path, sizeof path, "c_result.txt");
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s is missing", path);
    double replica;
    int got = fscanf(f, "%lf %lf", &r->loss_c, &replica);
    fclose(f);
    cr_assert(got == 2, "%s: expected two losses", path);
    cr_expect(r->loss_c == replica,
              "the replica of fw_maml_adapt in this test no longer reproduces the task's passes "
              "(query loss %.17g vs %.17g): update child_main to match framework/maml.c",
              r->loss_c, replica);
    r->with_c = true;
}

/* ---- the PyTorch side ---- */

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

/* Setup (pure C: data, graph, theta, episode, input files); then, with_c, the C side in a
 * child; then the reference. */
static void tr_setup(tr_run *r, int inner_steps, uint64_t episode_seed, bool with_c,
                     bool first_order) {
    memset(r, 0, sizeof *r);
    const union { uint32_t u; uint8_t b[4]; } probe = {1};
    cr_assert(probe.b[0] == 1, "the exchange files are little-endian; this host is not");
    cr_assert(sizeof(int) == 4, "labels are written as int32");

    int digits[] = {0, 1, 2, 3, 4};
    cr_assert_eq(mnist_load_digits(TR_MNIST, true, digits, 5, &r->ds), FW_OK, "%s",
                 fw_last_error());
    r->g = conv4_new(1, 28, 28, TR_FILTERS, TR_WAYS, CONV4_STRIDED);
    r->P = fw_graph_n_params(r->g);
    r->theta = fw_alloc(r->P * sizeof(float));
    cr_assert(r->theta, "out of memory");
    fw_graph_init_params(r->g, r->theta, TR_INIT_SEED);
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
               "inner_lr %.17g\nfilters %d\nc %d\nh %d\nw %d\nn_params %zu\nrelu_masks %d\n",
            TR_WAYS, TR_SHOTS, TR_QUERY, inner_steps, (double)TR_INNER_LR, TR_FILTERS, 1, 28, 28,
            r->P, with_c ? 1 : 0);
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
    tr_write("theta.f32", r->theta, sizeof(float), r->P);
    tr_write("xs.f32", r->ep.xs, sizeof(float), ns * img);
    tr_write("ys.i32", r->ep.ys, sizeof(int), ns);
    tr_write("xq.f32", r->ep.xq, sizeof(float), nq * img);
    tr_write("yq.i32", r->ep.yq, sizeof(int), nq);

    if (with_c)
        tr_c_side(r, first_order);
    tr_run_python();
    r->g_first = tr_read("grad_first_order.f64", sizeof(double), r->P);
    r->g_second = tr_read("grad_second_order.f64", sizeof(double), r->P);
    r->query_loss = tr_read_result("query_loss");
    if (with_c) {
        r->g_first_own = tr_read("grad_first_order_own.f64", sizeof(double), r->P);
        r->g_second_own = tr_read("grad_second_order_own.f64", sizeof(double), r->P);
        r->query_loss_own = tr_read_result("query_loss_own");
        r->relu_elements = tr_read_result("relu_elements");
        r->relu_flips = tr_read_result("relu_flips");
        r->relu_flip_max_abs = tr_read_result("relu_flip_max_abs");
    }
}

static void tr_free(tr_run *r) {
    free(r->grad_c);
    free(r->g_first);
    free(r->g_second);
    free(r->g_first_own);
    free(r->g_second_own);
    fw_free(r->theta);
    fw_episode_free(&r->ep);
    fw_graph_free(r->g);
    fw_dataset_free(&r->ds);
}

/* ---- measures ---- */

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

/* The ReLU masks of the C run agree with float64 except within rounding of the kink. */
static void check_masks(const tr_run *r) {
    cr_log_info("ReLU masks: %.0f of %.0f C decisions differ from float64's (largest "
                "|pre-activation| among them %.2e)", r->relu_flips, r->relu_elements,
                r->relu_flip_max_abs);
    cr_expect(r->relu_elements > 0, "no ReLU masks were compared");
    cr_expect(r->relu_flip_max_abs <= TOL_FLIP_ABS,
              "the C forward puts a ReLU input of float64 value %.3e on the wrong side of 0 "
              "(%.0f flips of %.0f): the forward pass is wrong, not just rounded",
              r->relu_flip_max_abs, r->relu_flips, r->relu_elements);
}

/* One case: the C meta-gradient of the given order against torch's, within tol. */
static void check_case(int inner_steps, bool first_order, uint64_t episode_seed, double tol) {
    tr_run r;
    tr_setup(&r, inner_steps, episode_seed, true, first_order);
    const double *gt = first_order ? r.g_first : r.g_second;
    const double *gown = first_order ? r.g_first_own : r.g_second_own;
    double err = rel_l2_fd(r.grad_c, gt, r.P), err_own = rel_l2_fd(r.grad_c, gown, r.P);
    const char *order = first_order ? "first" : "second";
    cr_log_info("%s order, %d inner step(s): rel L2 error %.3e (tol %.0e); vs float64's own "
                "ReLU masks %.3e; query loss C %.9f torch %.9f", order, inner_steps, err, tol,
                err_own, r.loss_c, r.query_loss);
    check_masks(&r);
    cr_expect(fabs(r.loss_c - r.query_loss) <= TOL_LOSS * fmax(1.0, fabs(r.query_loss)),
              "%s order, k=%d: query loss after adaptation C %.9f vs torch %.9f", order,
              inner_steps, r.loss_c, r.query_loss);
    char blocks[1024];
    block_errors(&r, r.grad_c, gt, blocks, sizeof blocks);
    cr_expect(err <= tol,
              "%s-order MAML, %d inner step(s): ||g_c - g_torch|| / ||g_torch|| = %.3e > %.0e "
              "(||g_torch|| = %.3e; per block:%s)",
              order, inner_steps, err, tol, dnorm(gt, r.P), blocks);
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
    tr_setup(&r, 1, 2024, true, true);
    double matched = rel_l2_fd(r.grad_c, r.g_first, r.P);
    double crossed = rel_l2_fd(r.grad_c, r.g_second, r.P);
    cr_log_info("C first order vs torch first order %.3e, vs torch second order %.3e", matched,
                crossed);
    cr_expect(crossed >= SENSITIVE_MIN,
              "C first-order vs torch second-order gradient: rel L2 %.3e < %.0e; the check "
              "cannot tell the two orders apart", crossed, SENSITIVE_MIN);
    tr_free(&r);
}

/* Second order is really exercised: torch's two gradients differ, after 1 and after 3 steps
 * (float64's own masks; no C run). */
Test(torch_ref, torch_orders_differ) {
    int steps[] = {1, 3};
    uint64_t seeds[] = {2024, 2025};
    for (int i = 0; i < 2; i++) {
        tr_run r;
        tr_setup(&r, steps[i], seeds[i], false, true);
        double d = rel_l2_dd(r.g_first, r.g_second, r.P);
        cr_log_info("torch first vs second order, %d step(s): rel L2 %.3e", steps[i], d);
        cr_expect(d >= SENSITIVE_MIN,
                  "%d inner step(s): torch first- and second-order gradients differ by only %.3e",
                  steps[i], d);
        tr_free(&r);
        tr_cleanup();
    }
}
