/* run.c: one training run (see run.h). */
#include "framework/run.h"
#include "framework/h5io.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* Keys every run has; a resume may change them. */
static const char *const run_keys[] = {"runs", "ckpt_every", "resume", "flush_secs"};

/* ---- signals ---- */

/* Set by the handler (in whatever thread the signal lands), read at iteration ends. */
static volatile sig_atomic_t stop_requested;
static struct sigaction saved_int, saved_term;
static bool handlers_installed;

static void on_stop_signal(int sig) {
    static const char int_msg[] = "\nSIGINT: stopping after this meta-iteration "
                                  "(a second one stops at once)\n";
    static const char term_msg[] = "\nSIGTERM: stopping after this meta-iteration "
                                   "(a second one stops at once)\n";
    if (!stop_requested)
        stop_requested = sig;
    const char *msg = sig == SIGINT ? int_msg : term_msg;
    size_t len = sig == SIGINT ? sizeof int_msg - 1 : sizeof term_msg - 1;
    ssize_t w = write(STDERR_FILENO, msg, len); /* async-signal-safe, unlike printf */
    (void)w;
}

static void install_handlers(void) {
    FW_ASSERT(!handlers_installed, "two fw_runs at once");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESETHAND: the second signal gets the default action (ends the process);
     * SA_RESTART: file writes in progress are not cut short by EINTR */
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    stop_requested = 0;
    sigaction(SIGINT, &sa, &saved_int);
    sigaction(SIGTERM, &sa, &saved_term);
    handlers_installed = true;
}

static void restore_handlers(void) {
    if (!handlers_installed)
        return;
    sigaction(SIGINT, &saved_int, NULL);
    sigaction(SIGTERM, &saved_term, NULL);
    handlers_installed = false;
}

static const char *signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

/* ---- configuration and resume ---- */

static bool in_word_list(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        p += strspn(p, " ");
        size_t len = strcspn(p, " ");
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p += len;
    }
    return false;
}

static bool is_resumable(const char *key, const char *resumable) {
    for (size_t i = 0; i < FW_COUNTOF(run_keys); i++)
        if (strcmp(key, run_keys[i]) == 0)
            return true;
    return in_word_list(resumable, key);
}

static int key_index(const fw_config *cfg, const char *name) {
    for (int i = 0; i < cfg->n; i++)
        if (strcmp(cfg->keys[i].name, name) == 0)
            return i;
    return -1;
}

static void check_table(const fw_cfg_key *keys, int n) {
    fw_config probe = {.keys = keys, .n = n};
    FW_ASSERT(key_index(&probe, "seed") >= 0, "an fw_run experiment needs a 'seed' key");
    for (size_t i = 0; i < FW_COUNTOF(run_keys); i++)
        FW_ASSERT(key_index(&probe, run_keys[i]) >= 0,
                  "key table lacks '%s': end it with FW_RUN_KEYS(...)", run_keys[i]);
}

/* argv as one shell-quoted line: words of safe characters as they are, others in '...'. */
static char *quote_argv(int argc, char **argv) {
    size_t cap = 1;
    for (int i = 0; i < argc; i++)
        cap += 4 * strlen(argv[i]) + 3;
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i > 0)
            *p++ = ' ';
        bool safe = a[0] != '\0' &&
                    strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                              "_-./=:,+@%") == strlen(a);
        if (safe) {
            p += sprintf(p, "%s", a);
            continue;
        }
        *p++ = '\'';
        for (; *a; a++)
            p += *a == '\'' ? sprintf(p, "'\\''") : sprintf(p, "%c", *a);
        *p++ = '\'';
    }
    *p = '\0';
    return out;
}

/* Is the checkpoint's text for key i the value cfg has now? Numbers compare as numbers. */
static bool same_value(const fw_config *cfg, int i, const char *ckpt_text) {
    fw_cfg_type t = cfg->keys[i].type;
    if (t == FW_CFG_INT || t == FW_CFG_FLOAT)
        return strtod(ckpt_text, NULL) == cfg->num[i];
    return strcmp(ckpt_text, cfg->text[i]) == 0;
}

/* Re-parses the config as: the checkpoint's values, then the command line. */
static int apply_checkpoint_config(fw_run *r, const fw_cfg_key *keys, int n_keys, int argc,
                                   char **argv) {
    fw_ckpt *c = r->resume;
    int n_items = fw_ckpt_config_count(c);
    char **args = calloc((size_t)(n_items + argc + 1), sizeof *args);
    if (!args) {
        fprintf(stderr, "%s: out of memory\n", r->experiment);
        return 1;
    }
    int n = 0, rc = 0;
    args[n++] = argv[0];
    for (int i = 0; i < n_items && rc == 0; i++) {
        const char *name, *text;
        fw_ckpt_config_item(c, i, &name, &text);
        if (key_index(r->cfg, name) < 0) {
            fprintf(stderr, "%s: cannot resume from %s: its config has key '%s', which this "
                            "experiment does not know\n", r->experiment, fw_ckpt_path(c), name);
            rc = 1;
        }
        args[n++] = fw_strf("%s=%s", name, text);
        if (!args[n - 1])
            rc = 1;
    }
    for (int a = 1; a < argc; a++)
        args[n++] = argv[a];
    if (rc == 0) {
        fw_config_free(r->cfg);
        if (fw_config_parse(r->cfg, keys, n_keys, n, args) != FW_OK) {
            fprintf(stderr, "%s: %s (from checkpoint %s or the command line)\n", r->experiment,
                    fw_last_error(), fw_ckpt_path(c));
            rc = 2;
        }
    }
    for (int i = 1; i <= n_items && i < n; i++)
        free(args[i]);
    free(args);
    return rc;
}

/* Keys the training depends on must be the checkpoint's. */
static int check_unchanged(fw_run *r, const char *resumable) {
    fw_ckpt *c = r->resume;
    for (int i = 0; i < fw_ckpt_config_count(c); i++) {
        const char *name, *text;
        fw_ckpt_config_item(c, i, &name, &text);
        int k = key_index(r->cfg, name);
        if (is_resumable(name, resumable) || same_value(r->cfg, k, text))
            continue;
        fprintf(stderr, "%s: %s=%s differs from the checkpoint's %s=%s; a resumed run keeps "
                        "the settings it was trained with (may change: %s%s%s)\n",
                r->experiment, name, r->cfg->text[k], name, text, resumable ? resumable : "",
                resumable && resumable[0] ? " " : "", "runs ckpt_every resume flush_secs");
        return 2;
    }
    for (int i = 0; i < r->cfg->n; i++) {
        bool stored = false;
        for (int j = 0; j < fw_ckpt_config_count(c) && !stored; j++) {
            const char *name, *text;
            fw_ckpt_config_item(c, j, &name, &text);
            stored = strcmp(name, r->cfg->keys[i].name) == 0;
        }
        if (!stored)
            fprintf(stderr, "%s: warning: checkpoint %s has no value for '%s' (a newer key); "
                            "using %s=%s\n", r->experiment, fw_ckpt_path(c),
                    r->cfg->keys[i].name, r->cfg->keys[i].name, r->cfg->text[i]);
    }
    return 0;
}

static int open_resume(fw_run *r, const fw_cfg_key *keys, int n_keys, int argc, char **argv,
                       const char *resumable) {
    const char *path = fw_cfg_str(r->cfg, "resume");
    if (fw_ckpt_open(&r->resume, path) != FW_OK) {
        fprintf(stderr, "%s: cannot resume: %s\n", r->experiment, fw_last_error());
        return 1;
    }
    if (strcmp(fw_ckpt_experiment(r->resume), r->experiment) != 0) {
        fprintf(stderr, "%s: cannot resume from %s: it was written by experiment '%s'\n",
                r->experiment, path, fw_ckpt_experiment(r->resume));
        return 1;
    }
    int rc = apply_checkpoint_config(r, keys, n_keys, argc, argv);
    return rc != 0 ? rc : check_unchanged(r, resumable);
}

int fw_run_init(fw_run *r, fw_config *cfg, const char *experiment, const fw_cfg_key *keys,
                int n_keys, int argc, char **argv, const char *resumable) {
    FW_ASSERT(r && cfg && experiment && argc >= 1 && argv, "bad arguments");
    check_table(keys, n_keys);
    memset(r, 0, sizeof *r);
    r->experiment = experiment;
    r->cfg = cfg;
    r->first_iter = 1;
    r->ckpt_iter = -1;
    if (fw_config_parse(cfg, keys, n_keys, argc, argv) != FW_OK) {
        if (strncmp(fw_last_error(), "usage:", 6) == 0) { /* help: every key, uncut */
            char *text = NULL;
            size_t len = 0;
            FILE *f = open_memstream(&text, &len);
            if (f) {
                fw_config_usage(keys, n_keys, f);
                fclose(f);
            }
            const char *keys_part = text ? strstr(text, "\nkeys:") : NULL;
            printf("usage: %s [key=value ...]%s", argv[0], keys_part ? keys_part : "\n");
            free(text);
        } else {
            fprintf(stderr, "%s: %s\n", experiment, fw_last_error());
        }
        return 2;
    }
    r->argv_text = quote_argv(argc, argv);
    r->program = quote_argv(1, argv);
    int rc = 0;
    if (fw_cfg_str(cfg, "resume")[0])
        rc = open_resume(r, keys, n_keys, argc, argv, resumable);
    if (rc != 0) { /* nothing is left for the caller to free */
        fw_ckpt_close(r->resume);
        r->resume = NULL;
        free(r->argv_text);
        free(r->program);
        r->argv_text = r->program = NULL;
        fw_config_free(cfg);
    }
    return rc;
}

void fw_run_keep_floats(fw_run *r, const char *name, float *x, size_t n) {
    FW_ASSERT(r && name && (x || n == 0) && !r->log, "bad arguments or after fw_run_open");
    FW_ASSERT(r->n_items < FW_RUN_MAX_ITEMS, "more than %d kept items", FW_RUN_MAX_ITEMS);
    r->items[r->n_items++] = (fw_run_item){name, x, n, NULL};
}

void fw_run_keep_adam(fw_run *r, const char *name, fw_adam *o) {
    FW_ASSERT(r && name && o && !r->log, "bad arguments or after fw_run_open");
    FW_ASSERT(r->n_items < FW_RUN_MAX_ITEMS, "more than %d kept items", FW_RUN_MAX_ITEMS);
    r->items[r->n_items++] = (fw_run_item){name, NULL, 0, o};
}

/* ---- opening and starting ---- */

static fw_status load_checkpoint(fw_run *r) {
    fw_ckpt *c = r->resume;
    int64_t iter = 0;
    FW_TRY(fw_ckpt_get_i64(c, "iteration", &iter));
    if (iter < 0 || iter > r->iters)
        return fw_errorf(FW_ERR_ARG, "checkpoint %.400s is at iteration %lld, beyond iters=%ld",
                         fw_ckpt_path(c), (long long)iter, r->iters);
    for (int i = 0; i < r->n_items; i++) {
        const fw_run_item *it = &r->items[i];
        if (it->adam)
            FW_TRY(fw_ckpt_get_adam(c, it->name, it->adam));
        else
            FW_TRY(fw_ckpt_get_floats(c, it->name, it->x, it->n));
    }
    FW_TRY(fw_ckpt_get_f64(c, "wall_time", &r->resume_wall));
    FW_TRY(fw_ckpt_get_str(c, "log_file", &r->resume_log));
    r->first_iter = (long)iter + 1;
    r->iter = (long)iter;
    return FW_OK;
}

/* runs/x/<name>.h5 -> runs/x/<name>.ckpt.h5 */
static char *checkpoint_path(const char *log_path) {
    size_t n = strlen(log_path);
    FW_ASSERT(n > 3 && strcmp(log_path + n - 3, ".h5") == 0, "log path %s", log_path);
    return fw_strf("%.*s.ckpt.h5", (int)(n - 3), log_path);
}

static fw_status describe_run(fw_run *r, int n_threads) {
    fw_log *l = r->log;
    r->ckpt_path = checkpoint_path(fw_log_path(l));
    if (!r->ckpt_path || !r->argv_text)
        return fw_errorf(FW_ERR_NOMEM, "out of memory opening the run");
    FW_TRY(fw_log_set_str(l, "argv", r->argv_text));
    FW_TRY(fw_log_set_i64(l, "n_threads", n_threads));
    FW_TRY(fw_log_set_str(l, "checkpoint", r->ckpt_path));
    FW_TRY(fw_log_set_i64(l, "resume_step", r->first_iter - 1));
    fw_log_set_flush_interval(l, fw_cfg_float(r->cfg, "flush_secs"));
    fw_log_set_wall_offset(l, r->resume_wall);
    return FW_OK;
}

fw_status fw_run_open(fw_run *r, long iters, int n_threads) {
    FW_ASSERT(r && r->cfg && !r->log && iters >= 0, "bad arguments or opened twice");
    r->iters = iters;
    if (r->resume) {
        fw_status s = load_checkpoint(r);
        fw_ckpt_close(r->resume);
        r->resume = NULL;
        if (s != FW_OK) {
            char msg[1024]; /* fw_errorf writes the buffer fw_last_error reads */
            snprintf(msg, sizeof msg, "%s", fw_last_error());
            return fw_errorf(s, "cannot resume: %s", msg);
        }
    }
    FW_TRY(fw_log_open(&r->log, fw_cfg_str(r->cfg, "runs"), r->experiment, r->cfg,
                       (uint64_t)fw_cfg_int(r->cfg, "seed")));
    return describe_run(r, n_threads);
}

/* The earlier run's rows up to the checkpoint; a run whose history is lost still goes on. */
static fw_status import_history(fw_run *r) {
    if (!r->resume_log)
        return FW_OK;
    if (fw_log_import(r->log, r->resume_log, r->first_iter - 1) == FW_OK)
        return fw_log_set_str(r->log, "history_from", r->resume_log);
    char note[1100];
    snprintf(note, sizeof note, "unavailable: %s", fw_last_error());
    fprintf(stderr, "%s: warning: %s; this log starts at iteration %ld\n", r->experiment,
            fw_last_error(), r->first_iter);
    return fw_log_set_str(r->log, "history_from", note);
}

fw_status fw_run_start(fw_run *r) {
    FW_ASSERT(r && r->log && !r->started, "fw_run_start before fw_run_open, or twice");
    FW_TRY(import_history(r));
    FW_TRY(fw_log_start(r->log));
    r->started = true;
    install_handlers();
    if (r->first_iter > 1)
        printf("resumed from iteration %ld of %s\n", r->first_iter - 1, fw_cfg_str(r->cfg,
                                                                                  "resume"));
    printf("log: %s\n", fw_log_path(r->log));
    fflush(stdout);
    fw_progress_start(&r->progress, r->first_iter, r->iters, 10.0, stdout);
    return FW_OK;
}

/* ---- iterations ---- */

static fw_status write_checkpoint(fw_run *r) {
    /* the log first: it then holds every row the checkpoint covers */
    FW_TRY(fw_log_flush(r->log));
    fw_ckpt *c;
    FW_TRY(fw_ckpt_create(&c, r->ckpt_path, r->experiment, r->cfg));
    fw_status s = fw_ckpt_put_i64(c, "iteration", r->iter);
    if (s == FW_OK)
        s = fw_ckpt_put_f64(c, "wall_time", fw_log_wall(r->log));
    if (s == FW_OK)
        s = fw_ckpt_put_str(c, "log_file", fw_log_path(r->log));
    if (s == FW_OK) /* the whole random state: the seed (in the config) and the iteration */
        s = fw_ckpt_put_str(c, "rng", "every random stream, episodes included, is a pure "
                                      "function of (seed, purpose, step, task); the next "
                                      "meta-iteration is iteration + 1");
    for (int i = 0; i < r->n_items && s == FW_OK; i++) {
        const fw_run_item *it = &r->items[i];
        s = it->adam ? fw_ckpt_put_adam(c, it->name, it->adam)
                     : fw_ckpt_put_floats(c, it->name, it->x, it->n);
    }
    if (s != FW_OK) {
        fw_ckpt_close(c);
        return s;
    }
    FW_TRY(fw_ckpt_commit(c));
    r->ckpt_iter = r->iter;
    return FW_OK;
}

fw_status fw_run_iter_done(fw_run *r, long iter, double loss, double acc) {
    FW_ASSERT(r && r->started && iter >= r->first_iter && iter <= r->iters,
              "iteration %ld outside %ld..%ld", iter, r ? r->first_iter : 0, r ? r->iters : 0);
    r->iter = iter;
    fw_progress_update(&r->progress, iter, loss, acc);
    int sig = stop_requested;
    long every = fw_cfg_int(r->cfg, "ckpt_every");
    if (sig || iter == r->iters || (every > 0 && iter % every == 0))
        FW_TRY(write_checkpoint(r));
    else
        FW_TRY(fw_log_tick(r->log));
    if (sig) {
        r->stop_signal = sig;
        fw_progress_end(&r->progress);
    }
    return FW_OK;
}

bool fw_run_stopping(const fw_run *r) {
    return r->stop_signal != 0;
}

double fw_run_seconds(const fw_run *r) {
    return fw_now() - r->progress.start;
}

/* ---- ending ---- */

static void free_run(fw_run *r) {
    restore_handlers();
    fw_ckpt_close(r->resume);
    free(r->argv_text);
    free(r->program);
    free(r->resume_log);
    free(r->ckpt_path);
    memset(r, 0, sizeof *r);
}

static void print_summary(const fw_run *r, const char *log_path) {
    if (r->stop_signal)
        printf("interrupted by %s after iteration %ld of %ld\n", signal_name(r->stop_signal),
               r->iter, r->iters);
    else
        printf("run finished: %ld iterations\n", r->iter);
    printf("log:        %s\n", log_path);
    printf("checkpoint: %s (iteration %ld)\n", r->ckpt_path, r->ckpt_iter);
    if (r->stop_signal)
        printf("resume with: %s resume=%s\n", r->program, r->ckpt_path);
    fflush(stdout);
}

int fw_run_finish(fw_run *r) {
    FW_ASSERT(r && r->started, "fw_run_finish before fw_run_start");
    fw_progress_end(&r->progress);
    fw_status s = FW_OK;
    if (!r->stop_signal && r->ckpt_iter != r->iter) /* e.g. a resume with nothing left to do */
        s = write_checkpoint(r);
    if (!r->stop_signal && stop_requested)
        printf("(%s came during the final evaluation; the run completed)\n",
               signal_name(stop_requested));
    if (s != FW_OK)
        return fw_run_fail(r);
    char *log_path = fw_strf("%s", fw_log_path(r->log));
    s = fw_log_close(r->log, r->stop_signal ? "interrupted" : "finished");
    r->log = NULL;
    int rc = r->stop_signal ? 128 + r->stop_signal : 0;
    if (s != FW_OK) {
        fprintf(stderr, "%s: error: %s\n", r->experiment, fw_last_error());
        rc = 1;
    } else {
        print_summary(r, log_path ? log_path : "?");
    }
    free(log_path);
    free_run(r);
    return rc;
}

int fw_run_fail(fw_run *r) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", fw_last_error());
    fw_progress_end(&r->progress);
    fprintf(stderr, "%s: error: %s\n", r->experiment ? r->experiment : "run", msg);
    if (r->log) {
        bool started = r->started;
        char *status = fw_strf("failed: %s", msg);
        char *path = fw_strf("%s", fw_log_path(r->log));
        if (fw_log_close(r->log, status ? status : "failed") != FW_OK)
            fprintf(stderr, "%s: also: %s\n", r->experiment, fw_last_error());
        else if (started && path)
            fprintf(stderr, "log: %s (status failed)\n", path);
        free(status);
        free(path);
        r->log = NULL;
    }
    free_run(r);
    return 1;
}
