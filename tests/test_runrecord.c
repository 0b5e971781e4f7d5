/* test_runrecord.c: run records a researcher can trust (issue 4). Real runs of the built
 * experiments, checked with h5py by tests/runrecord_check.py: the log's schema, bitwise resume,
 * SIGINT/SIGTERM, kill -9 at random moments, live SWMR reading, bad checkpoints, and the
 * notebooks executed on real runs. Plus in-process checks of checkpoints and progress output.
 *
 * The experiments run as child processes (fork + exec, popen) of a test process that has not
 * used OpenMP: a forked OpenMP runtime hangs. Waits are bounded; nothing asserts on durations.
 * Runs use tiny settings (a few iterations, meta_batch 2-4) to keep `make test` short.
 */
#define _XOPEN_SOURCE 700 /* posix_openpt and friends */
#include "framework/ckpt.h"
#include "framework/progress.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXP "./build/exp/fewshot_mnist"
#define CHECK "/usr/bin/python3 tests/runrecord_check.py"
/* Fast settings: about 0.1 s per iteration on 2 cores. */
#define FAST "meta_batch=2 query=2 first_order=1 eval_episodes=5"
#define OUT_MAX 16384

TestSuite(runrecord, .timeout = 400);

/* ---- helpers ---- */

static char *make_tmpdir(void) {
    char *dir = strdup("/tmp/metagan-test-runrecord-XXXXXX");
    cr_assert_not_null(dir);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    return dir;
}

static void remove_tree(char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0, "could not remove %s", dir);
    free(dir);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Exit code of a wait status; 128 + signal when killed by one (as a shell reports it). */
static int exit_code(int status) {
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

/* Runs a shell command with stderr merged into stdout; returns its exit code, output in out. */
static int run(const char *cmd, char *out, size_t size) {
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "popen %s", cmd);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    while (fgetc(p) != EOF) /* drain what did not fit */
        ;
    return exit_code(pclose(p));
}

/* run() that must succeed. */
static void run_ok(const char *cmd, char *out, size_t size) {
    int rc = run(cmd, out, size);
    cr_assert_eq(rc, 0, "'%s' exited with %d:\n%s", cmd, rc, out);
}

/* Starts `cmd` (exec'd by sh, so the pid is the program's) with its output in file out. */
static pid_t spawn(const char *cmd, const char *out) {
    char full[4096];
    snprintf(full, sizeof full, "exec %s > '%s' 2>&1", cmd, out);
    pid_t pid = fork(); /* no OpenMP has run in this process */
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid) {
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return exit_code(status);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    char *buf = calloc(1, OUT_MAX);
    size_t n = fread(buf, 1, OUT_MAX - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Waits until file `out` contains `text` (the run is past that point); fails if the process
 * ends first. Bounded by the suite's timeout. */
static void wait_for_text(pid_t pid, const char *out, const char *text) {
    for (;;) {
        char *s = read_file(out);
        bool found = strstr(s, text) != NULL;
        free(s);
        if (found)
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            char *s2 = read_file(out);
            cr_assert(false, "the run ended (code %d) before printing '%s':\n%s",
                      exit_code(status), text, s2);
        }
        sleep_ms(20);
    }
}

/* The run file latest.h5 points at in dir/fewshot_mnist (NULL if none); caller frees. */
static char *latest_log(const char *runs, const char *experiment) {
    char link[PATH_MAX], real[PATH_MAX];
    snprintf(link, sizeof link, "%s/%s/latest.h5", runs, experiment);
    return realpath(link, real) ? strdup(real) : NULL;
}

static char *ckpt_of(const char *log) {
    size_t n = strlen(log);
    char *c = malloc(n + 8);
    snprintf(c, n + 8, "%.*s.ckpt.h5", (int)(n - 3), log);
    return c;
}

/* The output has no control characters but newlines (it went to a pipe, not a terminal). */
static void expect_plain_text(const char *out) {
    for (const unsigned char *p = (const unsigned char *)out; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
            cr_assert(false, "control character 0x%02x at offset %ld of:\n%s", *p,
                      (long)(p - (const unsigned char *)out), out);
}

/* ---- the log of a real run ---- */

Test(runrecord, schema_of_a_real_run) {
    char *tmp = make_tmpdir();
    char cmd[1024], out[OUT_MAX];
    snprintf(cmd, sizeof cmd, EXP " iters=4 meta_batch=2 query=3 eval_episodes=7 sample_every=3 "
                              "ckpt_every=2 runs=%s", tmp);
    run_ok(cmd, out, sizeof out);
    expect_plain_text(out);
    char *log = latest_log(tmp, "fewshot_mnist");
    cr_assert_not_null(log, "no latest.h5 after the run:\n%s", out);
    char *ckpt = ckpt_of(log);
    /* the summary names the log and the checkpoint */
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "log:        %s\n", log);
    cr_expect(strstr(out, want) != NULL, "summary should name the log %s:\n%s", log, out);
    snprintf(want, sizeof want, "checkpoint: %s (iteration 4)\n", ckpt);
    cr_expect(strstr(out, want) != NULL, "summary should name the checkpoint:\n%s", out);
    snprintf(cmd, sizeof cmd, CHECK " schema '%s' 4 7 3,4", log);
    run_ok(cmd, out, sizeof out);
    free(ckpt);
    free(log);
    remove_tree(tmp);
}

/* ---- resume ---- */

Test(runrecord, resumed_run_ends_bitwise_identical) {
    char *tmp = make_tmpdir();
    char cmd[2048], out[OUT_MAX], a[600], b[600];
    const char *args = "meta_batch=4 query=5 eval_episodes=5 sample_every=2"; /* MetaGAN, 2nd order */
    snprintf(a, sizeof a, "%s/a", tmp);
    snprintf(b, sizeof b, "%s/b", tmp);
    snprintf(cmd, sizeof cmd, EXP " iters=6 %s runs=%s", args, a);
    run_ok(cmd, out, sizeof out);
    snprintf(cmd, sizeof cmd, EXP " iters=3 %s runs=%s", args, b);
    run_ok(cmd, out, sizeof out);
    char *log_a = latest_log(a, "fewshot_mnist"), *log_b1 = latest_log(b, "fewshot_mnist");
    cr_assert(log_a && log_b1);
    char *ckpt_a = ckpt_of(log_a), *ckpt_b1 = ckpt_of(log_b1);
    /* the config comes from the checkpoint; only the length changes */
    snprintf(cmd, sizeof cmd, EXP " resume=%s iters=6", ckpt_b1);
    run_ok(cmd, out, sizeof out);
    cr_expect(strstr(out, "resumed from iteration 3") != NULL, "output:\n%s", out);
    char *log_b2 = latest_log(b, "fewshot_mnist");
    cr_assert(log_b2 && strcmp(log_b2, log_b1) != 0, "the resumed run writes a new log");
    char *ckpt_b2 = ckpt_of(log_b2);
    snprintf(cmd, sizeof cmd, CHECK " same_state '%s' '%s'", ckpt_a, ckpt_b2);
    run_ok(cmd, out, sizeof out);
    snprintf(cmd, sizeof cmd, CHECK " history '%s' '%s' 3", log_a, log_b2);
    run_ok(cmd, out, sizeof out);
    free(log_a), free(log_b1), free(log_b2), free(ckpt_a), free(ckpt_b1), free(ckpt_b2);
    remove_tree(tmp);
}

Test(runrecord, sigint_stops_after_the_iteration_and_resumes_bitwise) {
    char *tmp = make_tmpdir();
    char cmd[2048], out[OUT_MAX], ref[600], dir[600], outfile[700];
    snprintf(ref, sizeof ref, "%s/ref", tmp);
    snprintf(dir, sizeof dir, "%s/int", tmp);
    snprintf(outfile, sizeof outfile, "%s/int.out", tmp);
    snprintf(cmd, sizeof cmd, EXP " iters=30 " FAST " runs=%s", ref);
    run_ok(cmd, out, sizeof out);

    snprintf(cmd, sizeof cmd, EXP " iters=30 " FAST " runs=%s", dir);
    pid_t pid = spawn(cmd, outfile);
    wait_for_text(pid, outfile, "log: "); /* printed once the handlers are in place */
    kill(pid, SIGINT);
    int rc = wait_exit(pid);
    char *text = read_file(outfile);
    cr_assert_eq(rc, 130, "exit code %d after SIGINT:\n%s", rc, text);
    cr_expect(strstr(text, "interrupted by SIGINT") && strstr(text, "checkpoint: ") &&
                  strstr(text, "resume with: "), "summary:\n%s", text);
    free(text);
    char *log = latest_log(dir, "fewshot_mnist"), *ckpt = ckpt_of(log);
    snprintf(cmd, sizeof cmd, CHECK " interrupted '%s'", log);
    run_ok(cmd, out, sizeof out);
    int stopped_at = atoi(out);
    cr_assert(stopped_at >= 1 && stopped_at < 30, "stopped at iteration %d", stopped_at);

    snprintf(cmd, sizeof cmd, EXP " resume=%s", ckpt);
    run_ok(cmd, out, sizeof out);
    char *log2 = latest_log(dir, "fewshot_mnist"), *ckpt2 = ckpt_of(log2);
    char *log_ref = latest_log(ref, "fewshot_mnist"), *ckpt_ref = ckpt_of(log_ref);
    snprintf(cmd, sizeof cmd, CHECK " same_state '%s' '%s'", ckpt_ref, ckpt2);
    run_ok(cmd, out, sizeof out);
    snprintf(cmd, sizeof cmd, CHECK " history '%s' '%s' %d", log_ref, log2, stopped_at);
    run_ok(cmd, out, sizeof out);
    free(log), free(ckpt), free(log2), free(ckpt2), free(log_ref), free(ckpt_ref);
    remove_tree(tmp);
}

/* ---- SWMR: a reader while the run goes on; then SIGTERM ---- */

Test(runrecord, live_reader_sees_new_rows_then_sigterm) {
    char *tmp = make_tmpdir();
    char cmd[2048], out[OUT_MAX], outfile[700];
    snprintf(outfile, sizeof outfile, "%s/run.out", tmp);
    snprintf(cmd, sizeof cmd, EXP " iters=100000 " FAST " flush_secs=0 runs=%s", tmp);
    pid_t pid = spawn(cmd, outfile);
    snprintf(cmd, sizeof cmd, CHECK " live '%s/fewshot_mnist/latest.h5'", tmp);
    int rc = run(cmd, out, sizeof out);
    kill(pid, SIGTERM);
    int rc_run = wait_exit(pid);
    cr_expect_eq(rc, 0, "live reader:\n%s", out);
    char *text = read_file(outfile);
    cr_assert_eq(rc_run, 143, "exit code %d after SIGTERM:\n%s", rc_run, text);
    cr_expect(strstr(text, "interrupted by SIGTERM") != NULL, "summary:\n%s", text);
    free(text);
    char *log = latest_log(tmp, "fewshot_mnist");
    snprintf(cmd, sizeof cmd, CHECK " interrupted '%s'", log);
    run_ok(cmd, out, sizeof out);
    free(log);
    remove_tree(tmp);
}

/* ---- kill -9 at random moments ---- */

#define N_KILLS 4

Test(runrecord, kill9_at_random_moments_keeps_every_flushed_row) {
    char *tmp = make_tmpdir();
    char cmd[4096], out[OUT_MAX], dir[N_KILLS][600], outfile[700];
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    char *logs[N_KILLS] = {NULL};
    int delays_ms[N_KILLS], max_rows = 0, with_file = 0;
    for (int k = 0; k < N_KILLS; k++) {
        snprintf(dir[k], sizeof dir[k], "%s/k%d", tmp, k);
        snprintf(outfile, sizeof outfile, "%s/k%d.out", tmp, k);
        /* flush every iteration and samples every 3: kills land in flushes and image writes */
        snprintf(cmd, sizeof cmd, EXP " iters=100000 " FAST " flush_secs=0 sample_every=3 "
                                  "ckpt_every=4 runs=%s", dir[k]);
        pid_t pid = spawn(cmd, outfile);
        /* the first kill may land anywhere from start-up on; the others once training runs */
        if (k > 0)
            wait_for_text(pid, outfile, "log: ");
        delays_ms[k] = rand() % (k == 0 ? 1500 : 2000);
        sleep_ms(delays_ms[k]);
        kill(pid, SIGKILL);
        cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
        logs[k] = latest_log(dir[k], "fewshot_mnist");
        if (!logs[k])
            continue; /* killed before the run file existed: allowed (log.h) */
        with_file++;
        snprintf(cmd, sizeof cmd, CHECK " flushed '%s'", logs[k]);
        int rc = run(cmd, out, sizeof out);
        cr_assert_eq(rc, 0, "kill %d after %d ms (srand %u): %s:\n%s", k, delays_ms[k], seed,
                     logs[k], out);
        max_rows = atoi(out) > max_rows ? atoi(out) : max_rows;
    }
    cr_assert_geq(with_file, N_KILLS - 1, "most kills come after the start");
    /* an uninterrupted run as long as the longest killed one: the rows must match it */
    snprintf(cmd, sizeof cmd, EXP " iters=%d " FAST " sample_every=3 runs=%s/ref",
             max_rows > 0 ? max_rows : 1, tmp);
    run_ok(cmd, out, sizeof out);
    char ref_dir[700];
    snprintf(ref_dir, sizeof ref_dir, "%s/ref", tmp);
    char *ref = latest_log(ref_dir, "fewshot_mnist");
    for (int k = 0; k < N_KILLS; k++) {
        if (!logs[k])
            continue;
        snprintf(cmd, sizeof cmd, CHECK " killed '%s' '%s'", logs[k], ref);
        int rc = run(cmd, out, sizeof out);
        cr_expect_eq(rc, 0, "kill %d after %d ms (srand %u): %s:\n%s", k, delays_ms[k], seed,
                     logs[k], out);
        free(logs[k]);
    }
    free(ref);
    remove_tree(tmp);
}

/* ---- bad checkpoints: clear errors, no crash, no log ---- */

/* Runs a resume that must fail with `code` and a message containing `needle`. */
static void expect_resume_error(const char *args, int code, const char *needle) {
    char cmd[2048], out[OUT_MAX];
    snprintf(cmd, sizeof cmd, EXP " %s", args);
    int rc = run(cmd, out, sizeof out);
    cr_expect_eq(rc, code, "'%s': exit code %d (want %d):\n%s", args, rc, code, out);
    cr_expect(strstr(out, needle) != NULL, "'%s': message should contain '%s':\n%s", args,
              needle, out);
}

static void copy_file(const char *from, const char *to) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(runrecord, bad_checkpoints_are_clear_errors) {
    char *tmp = make_tmpdir();
    char cmd[2048], out[OUT_MAX], args[2048], path[700], ok_dir[600];
    snprintf(ok_dir, sizeof ok_dir, "%s/ok", tmp);
    snprintf(cmd, sizeof cmd, EXP " iters=1 " FAST " runs=%s", ok_dir);
    run_ok(cmd, out, sizeof out);
    char *log = latest_log(ok_dir, "fewshot_mnist"), *ckpt = ckpt_of(log);
    snprintf(cmd, sizeof cmd, "./build/exp/tutorial iters=1 meta_batch=1 eval_episodes=1 "
                              "runs=%s/tut", tmp);
    run_ok(cmd, out, sizeof out);
    snprintf(path, sizeof path, "%s/tut", tmp);
    char *tut_log = latest_log(path, "tutorial"), *tut_ckpt = ckpt_of(tut_log);

    expect_resume_error("resume=/nonexistent/x.ckpt.h5", 1, "/nonexistent/x.ckpt.h5");
    snprintf(path, sizeof path, "%s/garbage.ckpt.h5", tmp);
    FILE *f = fopen(path, "w");
    fputs("not a checkpoint\n", f);
    fclose(f);
    snprintf(args, sizeof args, "resume=%s", path);
    expect_resume_error(args, 1, "not HDF5");

    snprintf(path, sizeof path, "%s/truncated.ckpt.h5", tmp);
    copy_file(ckpt, path);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
    snprintf(args, sizeof args, "resume=%s", path);
    expect_resume_error(args, 1, path);

    /* flipped bytes inside theta's data: the Fletcher-32 checksum catches them */
    snprintf(path, sizeof path, "%s/flipped.ckpt.h5", tmp);
    copy_file(ckpt, path);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import h5py; f = h5py.File(\"%s\", \"r\"); "
                              "print(f[\"theta\"].id.get_chunk_info(0).byte_offset)'", path);
    run_ok(cmd, out, sizeof out);
    long off = atol(out) + 4000;
    int fd = open(path, O_RDWR);
    unsigned char byte;
    cr_assert(fd >= 0 && pread(fd, &byte, 1, off) == 1);
    byte ^= 0x5a;
    cr_assert(pwrite(fd, &byte, 1, off) == 1);
    close(fd);
    snprintf(args, sizeof args, "resume=%s", path);
    expect_resume_error(args, 1, "theta");

    snprintf(args, sizeof args, "resume=%s", log);
    expect_resume_error(args, 1, "not a checkpoint but a run log");
    snprintf(args, sizeof args, "resume=%s", tut_ckpt);
    expect_resume_error(args, 1, "written by experiment 'tutorial'");
    snprintf(args, sizeof args, "resume=%s arch=pool", ckpt);
    expect_resume_error(args, 2, "arch=pool differs from the checkpoint's arch=strided");

    /* same config, other shapes: a theta of another length */
    snprintf(path, sizeof path, "%s/shapes.ckpt.h5", tmp);
    copy_file(ckpt, path);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import h5py, numpy; f = h5py.File(\"%s\", "
                              "\"r+\"); del f[\"theta\"]; f[\"theta\"] = numpy.zeros(1000, "
                              "\"float32\")'", path);
    run_ok(cmd, out, sizeof out);
    snprintf(args, sizeof args, "resume=%s", path);
    expect_resume_error(args, 1, "'theta' has 1000 values");

    /* none of the failed resumes left a run file behind */
    snprintf(cmd, sizeof cmd, "ls '%s/fewshot_mnist' | grep -c 'h5$'", ok_dir);
    run(cmd, out, sizeof out);
    cr_expect_eq(atoi(out), 3, "run folder should hold the run, its checkpoint and latest.h5; "
                               "ls counts %s", out);
    free(log), free(ckpt), free(tut_log), free(tut_ckpt);
    remove_tree(tmp);
}

/* ---- notebooks ---- */

/* Executes notebooks/<name>.ipynb into html_dir; env holds RUN_FILE / RUN_FILES settings. */
static void execute_notebook(const char *name, const char *env, const char *html_dir) {
    char cmd[4096], out[OUT_MAX];
    snprintf(cmd, sizeof cmd, "cd notebooks && %s PYDEVD_DISABLE_FILE_VALIDATION=1 "
                              "/usr/bin/python3 -m nbconvert --to html --execute "
                              "--ExecutePreprocessor.timeout=300 --output-dir '%s' %s.ipynb",
             env, html_dir, name);
    int rc = run(cmd, out, sizeof out);
    cr_assert_eq(rc, 0, "notebook %s failed (%s):\n%s", name, env, out);
    char html[1024];
    snprintf(html, sizeof html, "%s/%s.html", html_dir, name);
    /* figures are inline PNGs (a forced non-inline backend would drop them silently) */
    snprintf(cmd, sizeof cmd, "grep -q '<html' '%s' && grep -q 'src=\"data:image/png' '%s'",
             html, html);
    cr_expect_eq(system(cmd), 0, "no HTML page with figures in %s", html);
}

Test(runrecord, notebooks_execute_on_real_runs) {
    char *tmp = make_tmpdir();
    char cmd[2048], out[OUT_MAX], env[4096], html[700];
    snprintf(html, sizeof html, "%s/html", tmp);
    snprintf(cmd, sizeof cmd, EXP " gan=0 iters=3 " FAST " runs=%s", tmp);
    run_ok(cmd, out, sizeof out);
    char *maml = latest_log(tmp, "fewshot_mnist");
    snprintf(cmd, sizeof cmd, EXP " gan=1 iters=3 sample_every=2 " FAST " runs=%s", tmp);
    run_ok(cmd, out, sizeof out);
    char *metagan = latest_log(tmp, "fewshot_mnist");
    cr_assert(maml && metagan && strcmp(maml, metagan) != 0);

    snprintf(env, sizeof env, "RUN_FILE='%s'", metagan);
    execute_notebook("analyze_run", env, html);
    snprintf(env, sizeof env, "RUN_FILE='%s'", maml); /* no samples, no G loss */
    execute_notebook("analyze_run", env, html);
    snprintf(env, sizeof env, "RUN_FILES='%s %s'", metagan, maml);
    execute_notebook("compare_runs", env, html);
    free(maml), free(metagan);
    remove_tree(tmp);
}

Test(runrecord, committed_notebooks_have_no_outputs) {
    char out[OUT_MAX];
    run_ok(CHECK " stripped notebooks/analyze_run.ipynb notebooks/compare_runs.ipynb", out,
           sizeof out);
}

/* ---- checkpoints, in process ---- */

static const fw_cfg_key ckpt_keys[] = {
    {"ways", FW_CFG_INT, "5", 2, 20, NULL, "classes"},
    {"lr", FW_CFG_FLOAT, "0.4", 0, 10, NULL, "rate"},
    {"arch", FW_CFG_CHOICE, "strided", 0, 0, "strided|pool", "net"},
};

static void ckpt_config(fw_config *c) {
    char *argv[] = {"prog", "lr=0.125", NULL};
    cr_assert_eq(fw_config_parse(c, ckpt_keys, 3, 2, argv), FW_OK, "%s", fw_last_error());
}

#define N_X 5000

/* Writes a checkpoint with x[i] = 1000 + i, an Adam state of 7, and a few scalars. */
static void write_test_ckpt(const char *path, fw_adam *adam) {
    fw_config cfg;
    ckpt_config(&cfg);
    float *x = malloc(N_X * sizeof *x);
    for (int i = 0; i < N_X; i++)
        x[i] = 1000.0f + (float)i;
    cr_assert_eq(fw_adam_init(adam, 7, 0.01f, 0.9f, 0.999f), FW_OK);
    for (int i = 0; i < 7; i++)
        adam->m[i] = (float)i / 3, adam->v[i] = (float)i / 7;
    adam->t = 42;
    fw_ckpt *c;
    cr_assert_eq(fw_ckpt_create(&c, path, "exp", &cfg), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_ckpt_put_floats(c, "net/x", x, N_X), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_ckpt_put_floats(c, "empty", NULL, 0), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_ckpt_put_adam(c, "opt", adam), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_ckpt_put_i64(c, "iteration", 17), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_ckpt_put_f64(c, "wall_time", 2.5), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_ckpt_put_str(c, "log_file", "größe.h5"), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_ckpt_commit(c), FW_OK, "%s", fw_last_error());
    free(x);
    fw_config_free(&cfg);
}

Test(runrecord, checkpoint_round_trip_and_mismatches) {
    char *tmp = make_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/a.ckpt.h5", tmp);
    fw_adam w;
    write_test_ckpt(path, &w);
    cr_expect_neq(access(path, F_OK), -1);
    char tmp_path[700];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
    cr_expect_eq(access(tmp_path, F_OK), -1, "the .tmp file is renamed away");

    fw_ckpt *c;
    cr_assert_eq(fw_ckpt_open(&c, path), FW_OK, "%s", fw_last_error());
    cr_expect_str_eq(fw_ckpt_experiment(c), "exp");
    cr_assert_eq(fw_ckpt_config_count(c), 3);
    bool saw_lr = false;
    for (int i = 0; i < 3; i++) {
        const char *name, *text;
        fw_ckpt_config_item(c, i, &name, &text);
        if (strcmp(name, "lr") == 0)
            saw_lr = strcmp(text, "0.125") == 0;
    }
    cr_expect(saw_lr, "config text of lr");
    float *x = malloc(N_X * sizeof *x);
    cr_assert_eq(fw_ckpt_get_floats(c, "net/x", x, N_X), FW_OK, "%s", fw_last_error());
    for (int i = 0; i < N_X; i++)
        cr_assert_eq(x[i], 1000.0f + (float)i);
    cr_expect_eq(fw_ckpt_get_floats(c, "empty", NULL, 0), FW_OK, "%s", fw_last_error());
    fw_adam r;
    cr_assert_eq(fw_adam_init(&r, 7, 0.01f, 0.9f, 0.999f), FW_OK);
    cr_assert_eq(fw_ckpt_get_adam(c, "opt", &r), FW_OK, "%s", fw_last_error());
    cr_expect_eq(r.t, 42);
    cr_expect(memcmp(r.m, w.m, 7 * sizeof(float)) == 0 && memcmp(r.v, w.v, 7 * sizeof(float)) == 0);
    int64_t it;
    double wall;
    char *s;
    cr_expect(fw_ckpt_get_i64(c, "iteration", &it) == FW_OK && it == 17);
    cr_expect(fw_ckpt_get_f64(c, "wall_time", &wall) == FW_OK && wall == 2.5);
    cr_assert_eq(fw_ckpt_get_str(c, "log_file", &s), FW_OK);
    cr_expect_str_eq(s, "größe.h5");
    free(s);

    /* mismatches: FW_ERR_FORMAT, naming the item */
    cr_expect_eq(fw_ckpt_get_floats(c, "net/x", x, N_X - 1), FW_ERR_FORMAT);
    cr_expect(strstr(fw_last_error(), "'net/x' has 5000 values, this run has 4999"), "%s",
              fw_last_error());
    cr_expect_eq(fw_ckpt_get_floats(c, "net/y", x, 3), FW_ERR_FORMAT);
    cr_expect(strstr(fw_last_error(), "no 'net/y'"), "%s", fw_last_error());
    cr_expect_eq(fw_ckpt_get_floats(c, "other/y", x, 3), FW_ERR_FORMAT, "missing parent group");
    fw_adam big, fast;
    cr_assert_eq(fw_adam_init(&big, 8, 0.01f, 0.9f, 0.999f), FW_OK);
    cr_expect_eq(fw_ckpt_get_adam(c, "opt", &big), FW_ERR_FORMAT);
    cr_expect(strstr(fw_last_error(), "7 parameters, this run has 8"), "%s", fw_last_error());
    cr_assert_eq(fw_adam_init(&fast, 7, 0.02f, 0.9f, 0.999f), FW_OK);
    cr_expect_eq(fw_ckpt_get_adam(c, "opt", &fast), FW_ERR_FORMAT);
    cr_expect(strstr(fw_last_error(), "lr"), "%s", fw_last_error());
    cr_expect_eq(fw_ckpt_get_adam(c, "nope", &fast), FW_ERR_FORMAT);
    cr_expect_eq(fw_ckpt_get_i64(c, "nope", &it), FW_ERR_FORMAT);
    fw_ckpt_close(c);
    fw_adam_free(&w), fw_adam_free(&r), fw_adam_free(&big), fw_adam_free(&fast);
    free(x);
    remove_tree(tmp);
}

Test(runrecord, damaged_checkpoint_data_is_a_format_error) {
    char *tmp = make_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/a.ckpt.h5", tmp);
    fw_adam w;
    write_test_ckpt(path, &w);
    /* find x[2500] = 3500.0f in the file and change one of its bytes */
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    float target = 3500.0f;
    long at = -1;
    for (size_t i = 0; i + 4 <= n && at < 0; i++)
        if (memcmp(buf + i, &target, 4) == 0)
            at = (long)i;
    cr_assert_geq(at, 0, "value not found in the file");
    fseek(f, at + 1, SEEK_SET);
    fputc(buf[at + 1] ^ 0x01, f);
    fclose(f);

    fw_ckpt *c;
    cr_assert_eq(fw_ckpt_open(&c, path), FW_OK, "%s", fw_last_error());
    float *x = malloc(N_X * sizeof *x);
    cr_expect_eq(fw_ckpt_get_floats(c, "net/x", x, N_X), FW_ERR_FORMAT);
    cr_expect(strstr(fw_last_error(), path) && strstr(fw_last_error(), "net/x"), "%s",
              fw_last_error());
    fw_ckpt_close(c);
    free(x);
    fw_adam_free(&w);
    remove_tree(tmp);
}

Test(runrecord, checkpoint_into_a_missing_folder_fails_cleanly) {
    fw_config cfg;
    ckpt_config(&cfg);
    fw_ckpt *c = (fw_ckpt *)&cfg;
    fw_status s = fw_ckpt_create(&c, "/nonexistent/dir/a.ckpt.h5", "exp", &cfg);
    cr_expect_eq(s, FW_ERR_IO, "%s", fw_last_error());
    cr_expect_null(c);
    cr_expect(strstr(fw_last_error(), "/nonexistent/dir/a.ckpt.h5"), "%s", fw_last_error());
    fw_config_free(&cfg);
}

/* ---- progress output ---- */

Test(runrecord, progress_plain_lines_when_not_a_terminal) {
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    fw_progress p;
    fw_progress_start(&p, 3, 50, 0.0, f); /* a resumed run: iterations 3..50 */
    for (long it = 3; it <= 50; it++)
        fw_progress_update(&p, it, 0.5, 0.75);
    fw_progress_end(&p);
    rewind(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    expect_plain_text(text);
    cr_expect(strncmp(text, "iter      3/50 | loss 0.5000 | train acc  75.00%", 48) == 0, "%s",
              text);
    cr_expect(strstr(text, "iter     50/50 ") != NULL, "last iteration reported:\n%s", text);
}

Test(runrecord, progress_bar_on_a_terminal) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0, "no pty");
    FILE *tty = fopen(ptsname(master), "w");
    cr_assert_not_null(tty);
    setenv("TERM", "xterm", 1);
    fw_progress p;
    fw_progress_start(&p, 1, 5, 10.0, tty);
    for (long it = 1; it <= 5; it++) /* first and last are always drawn */
        fw_progress_update(&p, it, 0.5, 0.75);
    fclose(tty);
    char text[4096];
    ssize_t n = read(master, text, sizeof text - 1);
    close(master);
    cr_assert_gt(n, 0);
    text[n] = '\0';
    cr_expect(strstr(text, "\r[") != NULL, "a bar redrawn with carriage returns: %s", text);
    cr_expect(strstr(text, "[####################] 5/5 100%") != NULL, "full bar: %s", text);
    cr_expect(strstr(text, "ETA") != NULL, "%s", text);
    cr_expect(strchr(text, '\n') != NULL, "the bar's line ends after the last iteration");
}
