/* log.h: the HDF5 run log. Call only from the main thread, outside OpenMP parallel regions.
 *
 * One file per run: runs/<experiment>/<UTC yyyymmdd-HHMMSS>-s<seed>.h5
 * Schema (version 1):
 *   /                     attrs: every config key (int64, float64 or UTF-8 string, by key type),
 *                         experiment, schema_version, start_time, end_time, status
 *   /metrics/<name>/      one group per scalar series, three extendible chunked datasets:
 *                         step (int64), value (float64), wall_time (float64 s since start)
 *   /eval/<name>          float32[n_episodes] per-episode accuracies, attrs mean, ci95, step
 *   /samples/<name>/<step, 8 digits>  uint8[rows*H, cols*W] image grid (0 = black), attr step
 * Scalars are buffered in memory and written at fw_log_flush (at every evaluation and at close).
 */
#ifndef FW_LOG_H
#define FW_LOG_H

#include "framework/config.h"

typedef struct fw_log fw_log;

/* Creates runs_dir/<experiment>/ if needed and the run file inside it; writes the config as root
 * attributes. FW_ERR_IO / FW_ERR_HDF5 with the path on failure. */
fw_status fw_log_open(fw_log **out, const char *runs_dir, const char *experiment,
                      const fw_config *cfg, uint64_t seed);
const char *fw_log_path(const fw_log *l);
/* Appends (step, value) to series `name` (created on first use; names may contain '/'). */
fw_status fw_log_scalar(fw_log *l, const char *name, int64_t step, double value);
/* Writes /eval/<name> (replacing nothing: each name once) with mean and ci95 attributes. */
fw_status fw_log_eval(fw_log *l, const char *name, int64_t step, const float *acc, int n,
                      double mean, double ci95);
/* Writes n one-channel images (n, H, W) with values in [0, 1] as one uint8 grid of `cols`
 * columns under /samples/<name>/<step>, and flushes. */
fw_status fw_log_images(fw_log *l, const char *name, int64_t step, const float *images, int n,
                        int h, int w, int cols);
fw_status fw_log_flush(fw_log *l);
/* Sets status ("finished", "failed: ...") and end_time, flushes and closes. NULL-safe. */
fw_status fw_log_close(fw_log *l, const char *status);

#endif
