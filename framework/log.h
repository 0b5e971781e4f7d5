/* log.h: the HDF5 run log. Call only from the main thread, outside OpenMP parallel regions.
 * This header is the one place the file's schema is documented.
 *
 * Life of a log. SWMR (single writer, many readers: a notebook reads while training runs)
 * forbids creating objects once it is on, so every series is declared before the run starts:
 *   fw_log_open     creates the file under a hidden name, runs/<exp>/.<name>.h5.part, and writes
 *                   the root attributes
 *   fw_log_add_*    declares each series (scalars, evaluations, image grids); fw_log_set_* adds
 *                   root attributes
 *   fw_log_start    switches to SWMR writing, flushes, renames the file to its final name and
 *                   points runs/<exp>/latest.h5 at it. A file under a run's name is always a
 *                   complete SWMR file. A log closed before fw_log_start is deleted, so a run
 *                   that never started leaves no run file. A run killed before it started leaves
 *                   the .part file, which can be deleted.
 *   fw_log_scalar / fw_log_eval / fw_log_images append rows; fw_log_tick flushes when due
 *   fw_log_close    writes status and end_time in place, flushes, closes
 *
 * ---- Schema, version 2 ----
 * File: runs/<experiment>/<UTC yyyymmdd-HHMMSS>-s<seed>[-k].h5, where -k (1, 2, ...) tells apart
 * runs started in the same second. HDF5 1.10 file format (libver latest), written in SWMR mode.
 * runs/<experiment>/latest.h5 is a symlink to the newest run's file.
 * Types: strings are variable-length UTF-8 (h5py gives str), integers int64, reals float64.
 *
 * Root attributes
 *   <key>            every config key with its type: INT int64, FLOAT float64, STR/CHOICE string
 *   schema_version   2
 *   experiment       the experiment's name
 *   argv             the command line, shell-quoted ("./build/exp/fewshot_mnist shots=5")
 *   git_commit       the commit the binary was built from (40 hex digits, or "unknown")
 *   git_dirty        1: the working tree had changes (tracked or untracked) at build time,
 *                    0: clean, -1: unknown
 *   hostname, pid    where the run ran
 *   n_threads        threads the run computes on (for fw_run runs: the meta-batch task threads)
 *   dnnl_version, hdf5_version, compiler    "2.6.3", "1.10.8", "12.2.0"
 *   start_time       UTC ISO 8601, "2026-12-03T16:50:56Z"
 *   end_time         same format; "" while the run is going
 *   status           "running", "finished", "interrupted" (SIGINT/SIGTERM), or
 *                    "failed: <message>". A killed run stays "running": compare the last
 *                    /flushes/unix_time with flush_interval to tell a dead run from a live one.
 *   flush_interval   seconds between periodic flushes (float64)
 *   Set by fw_run (framework/run.h):
 *   checkpoint       path of this run's checkpoint ("" if it writes none)
 *   resume_step      0, or the checkpoint iteration this run continued from (config key `resume`
 *                    names that checkpoint)
 *   history_from     "", or the run log whose rows with step <= resume_step were copied here
 *                    (or "unavailable: <reason>")
 *
 * /metrics/<name>/   one group per scalar series; names may contain '/' ("train/loss")
 *     step int64[n], value float64[n], wall_time float64[n]
 * /eval/<name>/      one group per evaluation series ("test/acc" is /eval/test/acc/), one row
 *                    per evaluation:
 *     episodes float32[n_evals, n_episodes]   accuracy of each episode, in [0, 1]
 *     step int64[n_evals], mean float64[n_evals], ci95 float64[n_evals] (1.96 std/sqrt(n)),
 *     wall_time float64[n_evals]; attribute n_episodes
 * /samples/<name>/   one group per image series, one row per logged grid:
 *     images uint8[n, H, W]   grids of `rows` x `cols` one-channel images (0 black, 255 white)
 *     step int64[n], wall_time float64[n]; attributes rows, cols, image_h, image_w
 * /flushes/          one row per flush, appended after the data it accounts for is on disk:
 *     unix_time float64[f]   seconds since 1970-01-01 UTC (a heartbeat)
 *     wall_time float64[f]
 *     rows int64[f, s]       rows each series had on disk at that flush; attribute `series`
 *                            (string[s]) names the columns: "metrics/train/loss", "eval/test/acc",
 *                            "samples/generator"; absent when the log has no series
 *
 * wall_time is seconds on the run's monotonic clock since it started; a resumed run continues
 * from its checkpoint's wall_time. Rows are only ever appended, in step order.
 *
 * Flushing. Scalars are buffered in memory. A flush writes them, H5Fflush, appends a /flushes
 * row, H5Fflush. Flushes happen once flush_interval seconds have passed (checked in
 * fw_log_tick and fw_log_scalar), at every fw_log_eval and fw_log_images, and at close; fw_run
 * also flushes before each checkpoint. After kill -9 the file opens with
 * h5py.File(path, "r", swmr=True) (or without swmr after `h5clear -s path`) and holds every row
 * counted in its last /flushes row. A kill inside a flush can leave a series' columns of unequal
 * length: readers use the shortest.
 * Reading live: h5py.File(path, "r", swmr=True), then dataset.refresh() before each read (not
 * dataset.id.refresh(): h5py caches shapes). notebooks/runlog.py does this.
 * status and end_time exist from the start and are overwritten in place at close, which HDF5
 * 1.10.8 allows under SWMR (checked: concurrent readers are unaffected, the file stays valid).
 */
#ifndef FW_LOG_H
#define FW_LOG_H

#include "framework/config.h"

typedef struct fw_log fw_log;

#define FW_LOG_SCHEMA_VERSION 2

/* Creates runs_dir/<experiment>/ if needed and the (hidden) run file inside it, with the config
 * and the run's identity as root attributes. FW_ERR_IO / FW_ERR_HDF5 naming the path. */
fw_status fw_log_open(fw_log **out, const char *runs_dir, const char *experiment,
                      const fw_config *cfg, uint64_t seed);
/* The run file's final name (it has it from fw_log_start on). */
const char *fw_log_path(const fw_log *l);

/* ---- before fw_log_start ---- */
/* Extra root attributes; a name may not be a config key. Overwrites an attribute we wrote. */
fw_status fw_log_set_str(fw_log *l, const char *name, const char *value);
fw_status fw_log_set_i64(fw_log *l, const char *name, int64_t value);
/* Seconds between periodic flushes (fw_log_tick); default 10. */
void fw_log_set_flush_interval(fw_log *l, double seconds);
/* wall_time of the first row; a resumed run passes its checkpoint's wall time. */
void fw_log_set_wall_offset(fw_log *l, double seconds);
/* Series declarations. Names are paths without leading, trailing or double '/'. */
fw_status fw_log_add_scalar(fw_log *l, const char *name);
fw_status fw_log_add_eval(fw_log *l, const char *name, int n_episodes);
/* Grids of n one-channel h x w images in `cols` columns. */
fw_status fw_log_add_images(fw_log *l, const char *name, int n, int h, int w, int cols);
/* Copies the rows with step <= max_step of every declared series from an earlier run log (the
 * one a resumed run's checkpoint came from). Only rows counted by its last flush are taken.
 * FW_ERR_IO / FW_ERR_FORMAT when it cannot be read; nothing is copied then. */
fw_status fw_log_import(fw_log *l, const char *old_path, int64_t max_step);
fw_status fw_log_start(fw_log *l);

/* ---- after fw_log_start (appending before it is fine too) ---- */
/* Buffers (step, value) for scalar series `name`; flushes when flush_interval (> 0) seconds
 * have passed since the last flush. */
fw_status fw_log_scalar(fw_log *l, const char *name, int64_t step, double value);
/* Appends one evaluation (n = the declared n_episodes accuracies) and flushes. */
fw_status fw_log_eval(fw_log *l, const char *name, int64_t step, const float *acc, int n,
                      double mean, double ci95);
/* Appends one grid of the declared n images (n, h, w), values in [0, 1], and flushes. */
fw_status fw_log_images(fw_log *l, const char *name, int64_t step, const float *images);
/* Flushes if flush_interval seconds have passed since the last flush (interval 0: at every
 * call). Call once per iteration, so flushes fall between iterations. */
fw_status fw_log_tick(fw_log *l);
fw_status fw_log_flush(fw_log *l);
/* Seconds on the log's clock now (what the next row's wall_time would be). */
double fw_log_wall(const fw_log *l);
/* Started: sets status ("finished", "interrupted", "failed: ...") and end_time, flushes and
 * closes. Not started: closes and deletes the file. NULL-safe. */
fw_status fw_log_close(fw_log *l, const char *status);

#endif
