/* h5io.h: small HDF5 helpers shared by the run log and the checkpoints (internal: not in fw.h).
 *
 * Main thread only. Errors come back as fw_status; a message starts with the caller's `label`
 * ("run log runs/x/y.h5", "checkpoint runs/x/y.ckpt.h5") and ends with HDF5's innermost reason.
 * Wrap HDF5 calls in fw_h5_quiet_begin/end so HDF5 does not print its own error stack.
 */
#ifndef FW_H5IO_H
#define FW_H5IO_H

#include "framework/config.h"

#include <hdf5.h>

/* printf into a new heap string (NULL when out of memory). */
char *fw_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* UTC time now, formatted with strftime (e.g. "%Y-%m-%dT%H:%M:%SZ"). */
void fw_utc_text(const char *fmt, char *buf, size_t size);

typedef struct fw_h5_quiet {
    H5E_auto2_t func;
    void *data;
} fw_h5_quiet;

/* Turns HDF5's error printing off until fw_h5_quiet_end restores the caller's handler. */
fw_h5_quiet fw_h5_quiet_begin(void);
void fw_h5_quiet_end(fw_h5_quiet q);

/* FW_ERR_HDF5 "<label>: <what> <obj> failed (<HDF5's innermost reason>)"; clears the stack. */
fw_status fw_h5_error(const char *label, const char *what, const char *obj);
/* Same, with another status (FW_ERR_FORMAT for a corrupt checkpoint, FW_ERR_IO). */
fw_status fw_h5_error_as(fw_status s, const char *label, const char *what, const char *obj);

/* Variable-length UTF-8 string type (h5py reads it as str). Close with H5Tclose. */
hid_t fw_h5_str_type(void);

/* Scalar attributes, created on first write and overwritten in place afterwards. */
fw_status fw_h5_set_i64(const char *label, hid_t obj, const char *name, int64_t v);
fw_status fw_h5_set_f64(const char *label, hid_t obj, const char *name, double v);
fw_status fw_h5_set_str(const char *label, hid_t obj, const char *name, const char *v);

/* Readers: FW_ERR_FORMAT naming the attribute when it is missing or of another kind. */
fw_status fw_h5_get_i64(const char *label, hid_t obj, const char *name, int64_t *v);
fw_status fw_h5_get_f64(const char *label, hid_t obj, const char *name, double *v);
/* *v is a new heap string (free it). */
fw_status fw_h5_get_str(const char *label, hid_t obj, const char *name, char **v);

/* Every config key as a typed attribute of obj: INT int64, FLOAT float64, STR/CHOICE string. */
fw_status fw_h5_set_config(const char *label, hid_t obj, const fw_config *cfg);

/* File access for the files we write: HDF5 1.10 format (needed for SWMR; checksummed
 * metadata). Close with H5Pclose; negative on failure. */
hid_t fw_h5_fapl_latest(void);

#endif
