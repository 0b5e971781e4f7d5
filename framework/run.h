/* run.h: one training run, from the command line to the summary: configuration (with resume),
 * the run log, checkpoints, SIGINT/SIGTERM and progress. Main thread only. An experiment:
 *
 *   static const fw_cfg_key keys[] = {..., {"seed", ...}, FW_RUN_KEYS("50")};
 *   int main(int argc, char **argv) {
 *       fw_config cfg;
 *       fw_run run;
 *       int rc = fw_run_init(&run, &cfg, "tutorial", keys, (int)FW_COUNTOF(keys), argc, argv,
 *                            "iters eval_episodes");         // keys a resume may change
 *       if (rc != 0)
 *           return rc;                                       // 2: bad config, 1: bad checkpoint
 *       ... data, model, optimizers ...
 *       fw_run_keep_floats(&run, "theta", theta, n);         // what a checkpoint holds
 *       fw_run_keep_adam(&run, "adam", &adam);
 *       FW_RUN_CHECK(&run, fw_run_open(&run, iters, threads)); // loads a checkpoint; opens the log
 *       FW_RUN_CHECK(&run, fw_log_add_scalar(run.log, "train/loss"));  // declare every series
 *       FW_RUN_CHECK(&run, fw_run_start(&run));
 *       for (long it = run.first_iter; it <= iters && !fw_run_stopping(&run); it++) {
 *           ... one meta-iteration; fw_log_scalar(run.log, ...) ...
 *           FW_RUN_CHECK(&run, fw_run_iter_done(&run, it, loss, acc));
 *       }
 *       if (!fw_run_stopping(&run)) { ... evaluation, fw_log_eval(run.log, ...) ... }
 *       rc = fw_run_finish(&run);                            // 0, or 130 / 143
 *       ... free ...
 *       return rc;
 *   }
 *
 * Checkpoints (framework/ckpt.h) go to the log's path with .ckpt.h5 for .h5, every ckpt_every
 * iterations, at the last iteration and when a signal stops the run. Each holds the kept arrays
 * and optimizer states, the iteration, the log's wall time, the log's path and the config.
 * The log is flushed before each checkpoint, so it holds every row the checkpoint covers.
 *
 * Resume: resume=<checkpoint> takes the config from the checkpoint (arguments on the command line
 * override it), then the kept arrays and optimizer states, and continues at the iteration after
 * the checkpoint's. Only the run keys and the keys the experiment lists as resumable may differ
 * from the checkpoint; any other difference is an error naming the key. Every random stream,
 * the episode sampler included, is a pure function of (seed, purpose, step, task) (rng.h,
 * data.h), so the seed in the config and the iteration counter are the whole random state: the
 * resumed run draws the very episodes and noise the uninterrupted run would have, and ends with
 * bitwise identical parameters. A resumed run writes a new log that starts with the earlier
 * log's rows up to the checkpoint (fw_log_import), so its curves are complete.
 *
 * Signals: the first SIGINT or SIGTERM makes the run stop after the current meta-iteration:
 * fw_run_iter_done writes a checkpoint, fw_run_stopping turns true, and fw_run_finish marks the
 * log "interrupted" and returns 130 (SIGINT) or 143 (SIGTERM). A second one ends the process at
 * once (the log then stays readable, like after kill -9). A signal during the final evaluation
 * lets it finish; the run then ends normally.
 */
#ifndef FW_RUN_H
#define FW_RUN_H

#include "framework/ckpt.h"
#include "framework/log.h"
#include "framework/progress.h"

/* The keys every fw_run experiment has; put this at the end of the key table. */
#define FW_RUN_KEYS(ckpt_every_default)                                                        \
    {"runs", FW_CFG_STR, "runs", 0, 0, NULL, "folder for run logs and checkpoints"},           \
    {"ckpt_every", FW_CFG_INT, ckpt_every_default, 0, 1e9, NULL,                               \
     "iterations between checkpoints (0: only at the end)"},                                   \
    {"resume", FW_CFG_STR, "", 0, 0, NULL, "checkpoint to continue from (its .ckpt.h5 file)"}, \
    {"flush_secs", FW_CFG_FLOAT, "10", 0, 30, NULL,                                            \
     "seconds between log flushes (0: every iteration)"}

#define FW_RUN_MAX_ITEMS 16

typedef struct fw_run_item {
    const char *name;
    float *x;      /* kept floats, or NULL for an optimizer */
    size_t n;
    fw_adam *adam;
} fw_run_item;

typedef struct fw_run {
    /* for the experiment */
    fw_log *log;     /* from fw_run_open on                                     */
    long first_iter; /* 1, or the iteration after the resumed checkpoint         */
    /* private */
    const char *experiment;
    fw_config *cfg;
    char *argv_text, *program; /* the command line, and argv[0], shell-quoted */
    fw_ckpt *resume; /* open between fw_run_init and fw_run_open               */
    char *resume_log;
    double resume_wall;
    fw_run_item items[FW_RUN_MAX_ITEMS];
    int n_items;
    long iters, iter, ckpt_iter; /* total, last done, last checkpointed (-1: none) */
    char *ckpt_path;
    fw_progress progress;
    int stop_signal; /* the signal that stopped the run, 0 if none */
    bool started;
} fw_run;

/* Parses argv into *cfg (applying resume=), printing any problem to stderr. Returns 0, or the
 * exit code to return from main: 2 for a bad argument (or help), 1 for an unusable checkpoint;
 * then nothing needs freeing. The table
 * must hold a "seed" key and FW_RUN_KEYS. `resumable`: space-separated keys a resume may
 * change (iterations, threads, evaluation or logging settings: nothing the training uses). */
int fw_run_init(fw_run *r, fw_config *cfg, const char *experiment, const fw_cfg_key *keys,
                int n_keys, int argc, char **argv, const char *resumable);
/* What checkpoints hold. The pointers must stay valid until fw_run_finish. */
void fw_run_keep_floats(fw_run *r, const char *name, float *x, size_t n);
void fw_run_keep_adam(fw_run *r, const char *name, fw_adam *o);
/* Restores the kept state from the resume checkpoint, if any (FW_ERR_FORMAT naming what does
 * not match), then opens the log (r->log) for the series declarations. */
fw_status fw_run_open(fw_run *r, long iters, int n_threads);
/* Copies the earlier log's rows when resuming, starts the log (SWMR), installs the signal
 * handlers and starts the progress display. */
fw_status fw_run_start(fw_run *r);
/* After meta-iteration `iter`: progress, a checkpoint when due (or when a signal came), else a
 * log flush when due. */
fw_status fw_run_iter_done(fw_run *r, long iter, double loss, double acc);
/* True once a signal has stopped the run (a checkpoint has then been written). */
bool fw_run_stopping(const fw_run *r);
/* Seconds since fw_run_start (the training time of this session). */
double fw_run_seconds(const fw_run *r);
/* Ends the run: a checkpoint if the last iteration has none, status "finished" or
 * "interrupted", close, and a summary naming the log and the checkpoint. Returns the exit code:
 * 0, 128 + signal when interrupted, 1 if closing failed. */
int fw_run_finish(fw_run *r);
/* Reports fw_last_error(), marks the log "failed: <message>", closes it. Returns 1. */
int fw_run_fail(fw_run *r);

/* In main: on failure, end the run as failed and return 1. */
#define FW_RUN_CHECK(run, expr)                                                                \
    do {                                                                                       \
        if ((expr) != FW_OK)                                                                   \
            return fw_run_fail(run);                                                           \
    } while (0)

#endif
