/* log.c: the HDF5 run log (schema in log.h).
 *
 * Scalars are buffered in RAM and appended to extendible datasets at each flush; every flush ends
 * with H5Fflush so a run killed between flushes leaves a readable file. HDF5's own error printing
 * is switched off around our calls; failures become FW_ERR_HDF5 messages that name the file, what
 * failed and HDF5's innermost reason.
 */
#include "framework/log.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <omp.h>
#include <stdarg.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX_SERIES 64
#define LOG_CHUNK 1024      /* rows per chunk of a metric dataset          */
#define LOG_MAX_SUFFIX 1000 /* -1 .. -999 for runs started in one second  */

enum { COL_STEP, COL_VALUE, COL_WALL, N_COLS };
static const char *const col_names[N_COLS] = {"step", "value", "wall_time"};

typedef struct series {
    char *name;
    int64_t *step; /* rows not yet in the file */
    double *value;
    double *wall;
    size_t n, cap;
    hsize_t written; /* rows already in the file */
    hid_t ds[N_COLS];
} series;

struct fw_log {
    char *path;
    hid_t file;
    double t0; /* fw_now() at open: wall_time origin */
    series s[LOG_MAX_SERIES];
    int n_series;
};

/* ---- helpers ---- */

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* UTC time as "20261203-165056" (file names) or "2026-12-03T16:50:56Z" (attributes). */
static void utc_text(const char *fmt, char *buf, size_t size) {
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm) || strftime(buf, size, fmt, &tm) == 0)
        snprintf(buf, size, "unknown-time");
}

static void assert_serial(const char *func) {
    FW_ASSERT(!omp_in_parallel(), "%s called inside an OpenMP parallel region", func);
}

/* ---- HDF5 error handling ---- */

/* HDF5 prints its error stack by default; we turn that off for the duration of each public call
 * and restore the caller's handler afterwards (other code may rely on it). */
typedef struct quiet {
    H5E_auto2_t func;
    void *data;
} quiet;

static quiet quiet_begin(void) {
    quiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

static void quiet_end(quiet q) {
    H5Eset_auto2(H5E_DEFAULT, q.func, q.data);
}

#define REASON_MAX 256

/* Keeps the system's own words when HDF5 quotes them ("error message = 'File too large'"),
 * else HDF5's description up to the first line break (some descriptions embed ctime text). */
static void short_reason(const char *desc, char *out) {
    const char *tag = "error message = '";
    const char *p = strstr(desc, tag);
    size_t n;
    if (p) {
        p += strlen(tag);
        n = strcspn(p, "'");
    } else {
        p = desc;
        n = strcspn(p, "\n");
    }
    snprintf(out, REASON_MAX, "%.*s", (int)(n < REASON_MAX ? n : REASON_MAX - 1), p);
}

static herr_t keep_innermost(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    if (e->desc && e->desc[0])
        short_reason(e->desc, data); /* walking downward: the last one is innermost */
    return 0;
}

/* FW_ERR_HDF5 naming the file, what we tried, and HDF5's innermost reason. */
static fw_status hdf5_error(const char *path, const char *what, const char *obj) {
    char reason[REASON_MAX] = "no detail from HDF5";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, reason);
    H5Eclear2(H5E_DEFAULT);
    return fw_errorf(FW_ERR_HDF5, "run log %.400s: %s %.200s failed (%s)", path, what,
                     obj ? obj : "", reason);
}

/* ---- attributes ---- */

/* Opens attribute `name` on obj for writing, creating it if needed (so status can be rewritten). */
static hid_t attr_open(hid_t obj, const char *name, hid_t type) {
    if (H5Aexists(obj, name) > 0)
        return H5Aopen(obj, name, H5P_DEFAULT);
    hid_t space = H5Screate(H5S_SCALAR);
    if (space < 0)
        return -1;
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(space);
    return a;
}

/* Writes one scalar attribute; file_type is the stored type, mem_type that of *value. */
static fw_status attr_write(const fw_log *l, hid_t obj, const char *name, hid_t file_type,
                            hid_t mem_type, const void *value) {
    hid_t a = attr_open(obj, name, file_type);
    herr_t ok = a >= 0 ? H5Awrite(a, mem_type, value) : -1;
    if (a >= 0)
        H5Aclose(a);
    return ok < 0 ? hdf5_error(l->path, "writing attribute", name) : FW_OK;
}

static fw_status attr_i64(const fw_log *l, hid_t obj, const char *name, int64_t v) {
    return attr_write(l, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static fw_status attr_f64(const fw_log *l, hid_t obj, const char *name, double v) {
    return attr_write(l, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

/* Variable-length UTF-8 string: h5py returns it as a Python str. */
static fw_status attr_str(const fw_log *l, hid_t obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0)
            H5Tclose(t);
        return hdf5_error(l->path, "making string type for attribute", name);
    }
    fw_status s = attr_write(l, obj, name, t, t, &v);
    H5Tclose(t);
    return s;
}

static const char *const reserved_attrs[] = {"experiment", "schema_version", "start_time",
                                             "end_time", "status"};

static fw_status write_config(const fw_log *l, const fw_config *cfg) {
    hid_t root = l->file;
    for (int i = 0; i < cfg->n; i++) {
        const fw_cfg_key *k = &cfg->keys[i];
        for (size_t r = 0; r < FW_COUNTOF(reserved_attrs); r++)
            FW_ASSERT(strcmp(k->name, reserved_attrs[r]) != 0,
                      "config key '%s' clashes with a run log attribute", k->name);
        if (k->type == FW_CFG_INT)
            FW_TRY(attr_i64(l, root, k->name, (int64_t)cfg->num[i]));
        else if (k->type == FW_CFG_FLOAT)
            FW_TRY(attr_f64(l, root, k->name, cfg->num[i]));
        else
            FW_TRY(attr_str(l, root, k->name, cfg->text[i]));
    }
    return FW_OK;
}

/* ---- opening ---- */

/* mkdir -p: creates each missing component of dir; a non-directory in the way is FW_ERR_IO. */
static fw_status make_dirs(const char *dir) {
    char *p = str_printf("%s", dir);
    if (!p)
        return fw_errorf(FW_ERR_NOMEM, "out of memory creating directory %.400s", dir);
    fw_status s = FW_OK;
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        struct stat st;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            s = fw_errorf(FW_ERR_IO, "cannot create directory %.400s: %s", p, strerror(errno));
        else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            s = fw_errorf(FW_ERR_IO, "cannot create directory %.400s: a file that is not a "
                                     "directory is in the way", p);
        *c = saved;
        if (s != FW_OK || saved == '\0')
            break;
    }
    free(p);
    return s;
}

/* Reserves a new file name with O_EXCL so two runs started in the same second never share one:
 * <dir>/<stamp>-s<seed>.h5, then -1, -2, ... The empty file is then replaced by H5Fcreate. */
static fw_status reserve_path(const char *dir, uint64_t seed, char **out) {
    char stamp[32];
    utc_text("%Y%m%d-%H%M%S", stamp, sizeof stamp);
    for (int k = 0; k < LOG_MAX_SUFFIX; k++) {
        char suffix[16] = "";
        if (k > 0)
            snprintf(suffix, sizeof suffix, "-%d", k);
        char *path = str_printf("%s/%s-s%" PRIu64 "%s.h5", dir, stamp, seed, suffix);
        if (!path)
            return fw_errorf(FW_ERR_NOMEM, "out of memory naming the run log in %.400s", dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0) {
            close(fd);
            *out = path;
            return FW_OK;
        }
        int err = errno;
        free(path);
        if (err != EEXIST)
            return fw_errorf(FW_ERR_IO, "cannot create a run log in directory %.400s: %s", dir,
                             strerror(err));
    }
    return fw_errorf(FW_ERR_IO, "cannot create a run log in directory %.400s: %d files for "
                                "seed %" PRIu64 " in the same second", dir, LOG_MAX_SUFFIX, seed);
}

static fw_status create_file(fw_log *l) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* v1.8 formats: dense attribute storage for many config keys, readable by any h5py. */
    if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return hdf5_error(l->path, "setting up file access for", "the file");
    }
    l->file = H5Fcreate(l->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return l->file < 0 ? hdf5_error(l->path, "creating", "the file") : FW_OK;
}

static fw_status write_header(fw_log *l, const char *experiment, const fw_config *cfg) {
    char start[32];
    utc_text("%Y-%m-%dT%H:%M:%SZ", start, sizeof start);
    FW_TRY(write_config(l, cfg));
    FW_TRY(attr_str(l, l->file, "experiment", experiment));
    FW_TRY(attr_i64(l, l->file, "schema_version", 1));
    FW_TRY(attr_str(l, l->file, "start_time", start));
    FW_TRY(attr_str(l, l->file, "status", "running"));
    if (H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0)
        return hdf5_error(l->path, "flushing", "the file");
    return FW_OK;
}

static fw_status open_log(fw_log *l, const char *runs_dir, const char *experiment,
                          const fw_config *cfg, uint64_t seed) {
    char *dir = str_printf("%s/%s", runs_dir, experiment);
    if (!dir)
        return fw_errorf(FW_ERR_NOMEM, "out of memory opening the run log");
    fw_status s = make_dirs(dir);
    if (s == FW_OK)
        s = reserve_path(dir, seed, &l->path);
    free(dir);
    FW_TRY(s);
    s = create_file(l);
    if (s == FW_OK)
        s = write_header(l, experiment, cfg);
    if (s != FW_OK) {
        /* A log without its header would only mislead; remove it (or the empty placeholder). */
        if (l->file >= 0)
            H5Fclose(l->file);
        l->file = -1;
        unlink(l->path);
    }
    return s;
}

static void free_log(fw_log *l);

fw_status fw_log_open(fw_log **out, const char *runs_dir, const char *experiment,
                      const fw_config *cfg, uint64_t seed) {
    assert_serial(__func__);
    FW_ASSERT(out && runs_dir && runs_dir[0] && cfg && cfg->keys, "bad arguments");
    FW_ASSERT(experiment && experiment[0] && !strchr(experiment, '/') &&
                  strcmp(experiment, ".") != 0 && strcmp(experiment, "..") != 0,
              "experiment name '%s' must be one plain path component",
              experiment ? experiment : "(null)");
    /* HDF5 1.10's exit-time cleanup segfaults on a file whose write failed (a full disk;
     * HDFGroup/hdf5 #2257, fixed in 1.14). Logs are closed explicitly and every write ends in
     * H5Fflush, so we skip that cleanup. A no-op if HDF5 was already started by other code. */
    H5dont_atexit();
    *out = NULL;
    fw_log *l = calloc(1, sizeof *l);
    if (!l)
        return fw_errorf(FW_ERR_NOMEM, "out of memory opening the run log");
    l->file = -1;
    l->t0 = fw_now();
    quiet q = quiet_begin();
    fw_status s = open_log(l, runs_dir, experiment, cfg, seed);
    quiet_end(q);
    if (s != FW_OK) {
        free_log(l);
        return s;
    }
    *out = l;
    return FW_OK;
}

const char *fw_log_path(const fw_log *l) {
    FW_ASSERT(l != NULL, "l is NULL");
    return l->path;
}

/* ---- scalar series ---- */

/* "a/b" is a prefix-path of "a/b/c": one would be a group holding the other's datasets. */
static bool is_path_prefix(const char *a, const char *b) {
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && b[n] == '/';
}

static void check_series_name(const fw_log *l, const char *name) {
    size_t n = strlen(name);
    FW_ASSERT(n > 0 && name[0] != '/' && name[n - 1] != '/' && !strstr(name, "//"),
              "bad series name '%s'", name);
    for (int i = 0; i < l->n_series; i++)
        FW_ASSERT(!is_path_prefix(name, l->s[i].name) && !is_path_prefix(l->s[i].name, name),
                  "series '%s' and '%s': one would be a group inside the other", name,
                  l->s[i].name);
}

/* Creates /metrics/<name>/ (and any groups on the way) with three empty extendible datasets. */
static fw_status create_series_datasets(const fw_log *l, series *sr) {
    static const hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk = LOG_CHUNK;
    hid_t types[N_COLS] = {H5T_STD_I64LE, H5T_IEEE_F64LE, H5T_IEEE_F64LE};
    char *gname = str_printf("/metrics/%s", sr->name);
    if (!gname)
        return fw_errorf(FW_ERR_NOMEM, "out of memory creating series '%s'", sr->name);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t space = H5Screate_simple(1, &zero, &unlimited);
    hid_t g = -1;
    fw_status s = FW_OK;
    if (lcpl < 0 || dcpl < 0 || space < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
        H5Pset_chunk(dcpl, 1, &chunk) < 0)
        s = hdf5_error(l->path, "preparing datasets for", gname);
    if (s == FW_OK && (g = H5Gcreate2(l->file, gname, lcpl, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        s = hdf5_error(l->path, "creating group", gname);
    for (int c = 0; c < N_COLS && s == FW_OK; c++) {
        sr->ds[c] = H5Dcreate2(g, col_names[c], types[c], space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (sr->ds[c] < 0)
            s = hdf5_error(l->path, "creating dataset in", gname);
    }
    if (g >= 0)
        H5Gclose(g);
    if (space >= 0)
        H5Sclose(space);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    free(gname);
    return s;
}

static series *find_series(fw_log *l, const char *name) {
    for (int i = 0; i < l->n_series; i++)
        if (strcmp(l->s[i].name, name) == 0)
            return &l->s[i];
    return NULL;
}

static fw_status add_series(fw_log *l, const char *name, series **out) {
    FW_ASSERT(l->n_series < LOG_MAX_SERIES, "more than %d series (adding '%s')", LOG_MAX_SERIES,
              name);
    check_series_name(l, name);
    series *sr = &l->s[l->n_series];
    memset(sr, 0, sizeof *sr);
    for (int c = 0; c < N_COLS; c++)
        sr->ds[c] = -1;
    sr->name = str_printf("%s", name);
    if (!sr->name)
        return fw_errorf(FW_ERR_NOMEM, "out of memory creating series '%s'", name);
    fw_status s = create_series_datasets(l, sr);
    if (s != FW_OK) { /* forget the series; the next call reports the problem again */
        for (int c = 0; c < N_COLS; c++)
            if (sr->ds[c] >= 0)
                H5Dclose(sr->ds[c]);
        free(sr->name);
        return s;
    }
    l->n_series++;
    *out = sr;
    return FW_OK;
}

static fw_status grow_series(series *sr) {
    size_t cap = sr->cap ? 2 * sr->cap : 256;
    int64_t *step = realloc(sr->step, cap * sizeof *step);
    if (step)
        sr->step = step;
    double *value = step ? realloc(sr->value, cap * sizeof *value) : NULL;
    if (value)
        sr->value = value;
    double *wall = value ? realloc(sr->wall, cap * sizeof *wall) : NULL;
    if (!wall)
        return fw_errorf(FW_ERR_NOMEM, "out of memory buffering series '%s'", sr->name);
    sr->wall = wall;
    sr->cap = cap;
    return FW_OK;
}

fw_status fw_log_scalar(fw_log *l, const char *name, int64_t step, double value) {
    assert_serial(__func__);
    FW_ASSERT(l != NULL && name != NULL, "l or name is NULL");
    series *sr = find_series(l, name);
    if (!sr) {
        quiet q = quiet_begin();
        fw_status s = add_series(l, name, &sr);
        quiet_end(q);
        FW_TRY(s);
    }
    if (sr->n == sr->cap)
        FW_TRY(grow_series(sr));
    sr->step[sr->n] = step;
    sr->value[sr->n] = value;
    sr->wall[sr->n] = fw_now() - l->t0;
    sr->n++;
    return FW_OK;
}

/* ---- flushing ---- */

/* Writes rows [at, at+n) of one column. Extending to at+n (not by n) makes a retry after a
 * partial failure rewrite the same rows instead of appending duplicates. */
static herr_t append_column(hid_t ds, hid_t mem_type, const void *buf, hsize_t at, hsize_t n) {
    hsize_t total = at + n;
    if (H5Dset_extent(ds, &total) < 0)
        return -1;
    hid_t fspace = H5Dget_space(ds);
    hid_t mspace = H5Screate_simple(1, &n, NULL);
    herr_t r = -1;
    if (fspace >= 0 && mspace >= 0 &&
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &at, NULL, &n, NULL) >= 0)
        r = H5Dwrite(ds, mem_type, mspace, fspace, H5P_DEFAULT, buf);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    return r;
}

static fw_status write_series(const fw_log *l, series *sr) {
    if (sr->n == 0)
        return FW_OK;
    const void *bufs[N_COLS] = {sr->step, sr->value, sr->wall};
    hid_t types[N_COLS] = {H5T_NATIVE_INT64, H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE};
    for (int c = 0; c < N_COLS; c++)
        if (append_column(sr->ds[c], types[c], bufs[c], sr->written, sr->n) < 0) {
            char obj[600];
            snprintf(obj, sizeof obj, "/metrics/%.500s/%s", sr->name, col_names[c]);
            return hdf5_error(l->path, "appending to", obj);
        }
    sr->written += sr->n;
    sr->n = 0;
    return FW_OK;
}

static fw_status flush_all(fw_log *l) {
    for (int i = 0; i < l->n_series; i++)
        FW_TRY(write_series(l, &l->s[i]));
    if (H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0)
        return hdf5_error(l->path, "flushing", "the file");
    return FW_OK;
}

fw_status fw_log_flush(fw_log *l) {
    assert_serial(__func__);
    FW_ASSERT(l != NULL, "l is NULL");
    quiet q = quiet_begin();
    fw_status s = flush_all(l);
    quiet_end(q);
    return s;
}

/* ---- evaluation results ---- */

static fw_status write_eval(fw_log *l, const char *dname, int64_t step, const float *acc, int n,
                            double mean, double ci95) {
    /* Each name once: a second write would be a bug in the experiment, not a data problem. */
    FW_ASSERT(H5Lexists(l->file, dname, H5P_DEFAULT) <= 0, "%s written twice", dname);
    H5Eclear2(H5E_DEFAULT); /* H5Lexists fails (harmlessly) when /eval does not exist yet */
    hsize_t len = (hsize_t)n;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t space = H5Screate_simple(1, &len, NULL);
    hid_t ds = -1;
    fw_status s = FW_OK;
    if (lcpl < 0 || space < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0)
        s = hdf5_error(l->path, "preparing", dname);
    if (s == FW_OK &&
        (ds = H5Dcreate2(l->file, dname, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT,
                         H5P_DEFAULT)) < 0)
        s = hdf5_error(l->path, "creating dataset", dname);
    if (s == FW_OK && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, acc) < 0)
        s = hdf5_error(l->path, "writing dataset", dname);
    if (s == FW_OK)
        s = attr_f64(l, ds, "mean", mean);
    if (s == FW_OK)
        s = attr_f64(l, ds, "ci95", ci95);
    if (s == FW_OK)
        s = attr_i64(l, ds, "step", step);
    if (s == FW_OK)
        s = attr_i64(l, ds, "n_episodes", n);
    if (ds >= 0)
        H5Dclose(ds);
    if (space >= 0)
        H5Sclose(space);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (s == FW_OK && H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0)
        s = hdf5_error(l->path, "flushing", "the file");
    return s;
}

fw_status fw_log_eval(fw_log *l, const char *name, int64_t step, const float *acc, int n,
                      double mean, double ci95) {
    assert_serial(__func__);
    FW_ASSERT(l != NULL && name != NULL && acc != NULL && n > 0, "bad arguments (n=%d)", n);
    size_t len = strlen(name);
    FW_ASSERT(len > 0 && name[0] != '/' && name[len - 1] != '/', "bad eval name '%s'", name);
    char *dname = str_printf("/eval/%s", name);
    if (!dname)
        return fw_errorf(FW_ERR_NOMEM, "out of memory writing eval '%s'", name);
    quiet q = quiet_begin();
    fw_status s = write_eval(l, dname, step, acc, n, mean, ci95);
    quiet_end(q);
    free(dname);
    return s;
}

/* ---- image grids ---- */

static void make_grid(const float *images, int n, int h, int w, int cols, uint8_t *grid) {
    int rows = (n + cols - 1) / cols;
    memset(grid, 0, (size_t)rows * (size_t)h * (size_t)cols * (size_t)w);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = images[((size_t)i * (size_t)h + (size_t)y) * (size_t)w + (size_t)x];
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                size_t gy = (size_t)(i / cols * h + y), gx = (size_t)(i % cols * w + x);
                grid[gy * (size_t)cols * (size_t)w + gx] = (uint8_t)lrintf(v * 255.0f);
            }
}

fw_status fw_log_images(fw_log *l, const char *name, int64_t step, const float *images, int n,
                        int h, int w, int cols) {
    assert_serial(__func__);
    FW_ASSERT(l && name && images && n > 0 && h > 0 && w > 0 && cols > 0, "bad arguments");
    int rows = (n + cols - 1) / cols;
    hsize_t dims[2] = {(hsize_t)rows * (hsize_t)h, (hsize_t)cols * (hsize_t)w};
    uint8_t *grid = malloc(dims[0] * dims[1]);
    char *dname = str_printf("/samples/%s/%08lld", name, (long long)step);
    if (!grid || !dname) {
        free(grid);
        free(dname);
        return fw_errorf(FW_ERR_NOMEM, "out of memory writing samples '%s'", name);
    }
    make_grid(images, n, h, w, cols, grid);
    quiet q = quiet_begin();
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t ds = -1;
    fw_status s = FW_OK;
    if (lcpl < 0 || space < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0)
        s = hdf5_error(l->path, "preparing", dname);
    if (s == FW_OK && (ds = H5Dcreate2(l->file, dname, H5T_STD_U8LE, space, lcpl, H5P_DEFAULT,
                                       H5P_DEFAULT)) < 0)
        s = hdf5_error(l->path, "creating dataset", dname);
    if (s == FW_OK && H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, grid) < 0)
        s = hdf5_error(l->path, "writing dataset", dname);
    if (s == FW_OK)
        s = attr_i64(l, ds, "step", step);
    if (ds >= 0)
        H5Dclose(ds);
    if (space >= 0)
        H5Sclose(space);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (s == FW_OK && H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0)
        s = hdf5_error(l->path, "flushing", "the file");
    quiet_end(q);
    free(dname);
    free(grid);
    return s;
}

/* ---- closing ---- */

static void free_log(fw_log *l) {
    for (int i = 0; i < l->n_series; i++) {
        free(l->s[i].name);
        free(l->s[i].step);
        free(l->s[i].value);
        free(l->s[i].wall);
    }
    free(l->path);
    free(l);
}

/* Keeps the first error: later ones are usually consequences of it. */
static void keep_first(fw_status *first, fw_status s) {
    if (*first == FW_OK)
        *first = s;
}

static fw_status close_log(fw_log *l, const char *status) {
    char end[32];
    utc_text("%Y-%m-%dT%H:%M:%SZ", end, sizeof end);
    fw_status first = FW_OK;
    for (int i = 0; i < l->n_series; i++)
        keep_first(&first, write_series(l, &l->s[i]));
    keep_first(&first, attr_str(l, l->file, "status", status));
    keep_first(&first, attr_str(l, l->file, "end_time", end));
    for (int i = 0; i < l->n_series; i++)
        for (int c = 0; c < N_COLS; c++)
            if (l->s[i].ds[c] >= 0 && H5Dclose(l->s[i].ds[c]) < 0)
                keep_first(&first, hdf5_error(l->path, "closing dataset of", l->s[i].name));
    if (H5Fclose(l->file) < 0)
        keep_first(&first, hdf5_error(l->path, "closing", "the file"));
    return first;
}

fw_status fw_log_close(fw_log *l, const char *status) {
    if (!l)
        return FW_OK;
    assert_serial(__func__);
    FW_ASSERT(status != NULL, "status is NULL");
    quiet q = quiet_begin();
    fw_status s = close_log(l, status);
    quiet_end(q);
    free_log(l);
    return s;
}
