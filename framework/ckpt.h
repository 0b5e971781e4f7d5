/* ckpt.h: checkpoints, one HDF5 file holding what a run needs to continue bit for bit.
 * Main thread only, outside OpenMP parallel regions.
 *
 * Format (version 1): root attributes
 *   format "metagan-checkpoint", format_version 1, experiment, created (UTC ISO 8601),
 *   git_commit, plus whatever the writer puts with fw_ckpt_put_i64/f64/str (fw_run: iteration,
 *   wall_time, log_file, and rng, a note that the seed in /config and the iteration are the
 *   whole random state: see run.h, "Resume")
 * /config           one string attribute per config key: its resolved text ("0.4", "strided")
 * /<name>           float32[n] arrays (fw_ckpt_put_floats), chunked with a Fletcher-32 checksum
 *                   so a damaged file is an error, not silently wrong numbers
 * /<name>/m, /<name>/v   an Adam state (fw_ckpt_put_adam); attributes n, t, lr, beta1, beta2, eps
 *
 * Writing goes to <path>.tmp, which is synced and then renamed over <path>: a crash while
 * writing leaves the previous checkpoint intact. Reading checks everything it takes: a missing
 * item, another size or a failed checksum is FW_ERR_FORMAT naming the file and the item.
 */
#ifndef FW_CKPT_H
#define FW_CKPT_H

#include "framework/config.h"
#include "framework/optim.h"

typedef struct fw_ckpt fw_ckpt;

/* ---- writing ---- */
fw_status fw_ckpt_create(fw_ckpt **out, const char *path, const char *experiment,
                         const fw_config *cfg);
fw_status fw_ckpt_put_floats(fw_ckpt *c, const char *name, const float *x, size_t n);
fw_status fw_ckpt_put_adam(fw_ckpt *c, const char *name, const fw_adam *o);
fw_status fw_ckpt_put_i64(fw_ckpt *c, const char *name, int64_t v);
fw_status fw_ckpt_put_f64(fw_ckpt *c, const char *name, double v);
fw_status fw_ckpt_put_str(fw_ckpt *c, const char *name, const char *v);
/* Closes, syncs and renames the file into place; frees c (also on failure, which then leaves
 * the previous checkpoint as it was). */
fw_status fw_ckpt_commit(fw_ckpt *c);

/* ---- reading ---- */
/* Opens a checkpoint; FW_ERR_IO (missing, unreadable) or FW_ERR_FORMAT (not an HDF5 file, not a
 * checkpoint, damaged) with a message naming the path. */
fw_status fw_ckpt_open(fw_ckpt **out, const char *path);
const char *fw_ckpt_path(const fw_ckpt *c);
/* The experiment that wrote it. */
const char *fw_ckpt_experiment(const fw_ckpt *c);
/* Number of config keys stored, and key i's name and text (owned by c). */
int fw_ckpt_config_count(const fw_ckpt *c);
void fw_ckpt_config_item(const fw_ckpt *c, int i, const char **name, const char **text);
/* Reads exactly n floats into x; FW_ERR_FORMAT if missing, of another size or damaged. */
fw_status fw_ckpt_get_floats(fw_ckpt *c, const char *name, float *x, size_t n);
/* Restores an Adam state into o, which must have been initialised with the same size and
 * hyper-parameters (a difference is FW_ERR_FORMAT naming it). */
fw_status fw_ckpt_get_adam(fw_ckpt *c, const char *name, fw_adam *o);
fw_status fw_ckpt_get_i64(fw_ckpt *c, const char *name, int64_t *v);
fw_status fw_ckpt_get_f64(fw_ckpt *c, const char *name, double *v);
/* *v is a new heap string (free it). */
fw_status fw_ckpt_get_str(fw_ckpt *c, const char *name, char **v);
/* Closes a checkpoint opened for reading, or abandons one being written (its .tmp goes). */
void fw_ckpt_close(fw_ckpt *c);

#endif
