/* log.c: the HDF5 run log (life cycle and schema in log.h).
 *
 * Every series is a group of extendible chunked datasets ("columns") that share the first
 * dimension. Scalars are buffered in RAM and appended at each flush; evaluations and image grids
 * are appended when logged. HDF5's own error printing is switched off around our calls; failures
 * become fw_status messages naming the file, what failed and HDF5's innermost reason.
 */
#include "framework/log.h"
#include "framework/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The Makefile writes the commit into build/gen/gitinfo.h at build time: a run must not fork
 * git once OpenMP is running (libgomp hangs the child), and the build is what actually runs. */
#if defined(__has_include)
#if __has_include("gitinfo.h")
#include "gitinfo.h"
#endif
#endif
#ifndef FW_GIT_COMMIT
#define FW_GIT_COMMIT "unknown"
#define FW_GIT_DIRTY (-1)
#endif

#define LOG_MAX_SERIES 64
#define LOG_MAX_SUFFIX 1000 /* -1 .. -999 for runs started in one second */
#define MAX_COLS 5

enum kind { SCALAR, EVAL, IMAGES };
static const char *const kind_group[] = {"metrics", "eval", "samples"};

typedef struct series {
    enum kind kind;
    char *name;            /* as declared: "train/loss"                    */
    char *path;            /* in the file: "metrics/train/loss"            */
    hid_t ds[MAX_COLS];    /* the columns, in the order of column_names()  */
    hsize_t rows;          /* rows in the file                             */
    int64_t *bstep;        /* SCALAR: rows not yet in the file             */
    double *bvalue, *bwall;
    size_t n, cap;
    int n_episodes;        /* EVAL                                         */
    int n_img, img_h, img_w, cols, grid_h, grid_w; /* IMAGES              */
} series;

struct fw_log {
    char *path;  /* final name                                   */
    char *part;  /* hidden name until fw_log_start               */
    char *dir;   /* runs/<experiment>                            */
    char *label; /* "run log <path>", the start of our messages  */
    hid_t file;
    const fw_config *cfg; /* borrowed: for the names of config keys */
    double t0, wall_offset, last_flush, flush_interval;
    bool started;
    series s[LOG_MAX_SERIES];
    int n_series;
    hid_t fl_unix, fl_wall, fl_rows; /* /flushes */
};

/* Root attributes the log writes itself (config keys may not use these names). */
static const char *const reserved_attrs[] = {
    "schema_version", "experiment",   "argv",           "git_commit", "git_dirty",
    "hostname",       "pid",          "n_threads",      "dnnl_version", "hdf5_version",
    "compiler",       "start_time",   "end_time",       "status",     "flush_interval",
    "checkpoint",     "resume_step",  "history_from"};

static void assert_serial(const char *func) {
    FW_ASSERT(!omp_in_parallel(), "%s called inside an OpenMP parallel region", func);
}

static fw_status no_memory(const char *what) {
    return fw_errorf(FW_ERR_NOMEM, "out of memory %s", what);
}

/* ---- columns ---- */

/* Column names of a series kind, in the order of series.ds; NULL-terminated. */
static const char *const *column_names(enum kind k) {
    static const char *const scalar[] = {"step", "value", "wall_time", NULL};
    static const char *const eval[] = {"episodes", "step", "mean", "ci95", "wall_time", NULL};
    static const char *const images[] = {"images", "step", "wall_time", NULL};
    return k == SCALAR ? scalar : k == EVAL ? eval : images;
}

static int n_columns(enum kind k) {
    int n = 0;
    for (const char *const *c = column_names(k); *c; c++)
        n++;
    return n;
}

/* Creates an empty dataset extendible along its first dimension: dims (0, tail...). */
static hid_t create_column(hid_t group, const char *name, hid_t type, int rank,
                           const hsize_t *tail, hsize_t chunk_rows) {
    hsize_t dims[3] = {0, 0, 0}, maxdims[3] = {H5S_UNLIMITED, 0, 0}, chunk[3] = {chunk_rows, 0, 0};
    for (int d = 1; d < rank; d++)
        dims[d] = maxdims[d] = chunk[d] = tail[d - 1];
    hid_t space = H5Screate_simple(rank, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t ds = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0)
        ds = H5Dcreate2(group, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    return ds;
}

/* Writes rows [at, at+n) of a dataset extendible along dimension 0. Extending to at+n (not by
 * n) makes a retry after a partial failure rewrite the same rows instead of adding more. */
static herr_t write_rows(hid_t ds, hid_t mem_type, const void *buf, hsize_t at, hsize_t n) {
    hid_t fspace = H5Dget_space(ds);
    int rank = fspace >= 0 ? H5Sget_simple_extent_ndims(fspace) : -1;
    hsize_t dims[3], start[3] = {at, 0, 0}, count[3];
    if (rank < 1 || rank > 3 || H5Sget_simple_extent_dims(fspace, dims, NULL) < 0) {
        if (fspace >= 0)
            H5Sclose(fspace);
        return -1;
    }
    H5Sclose(fspace);
    dims[0] = at + n;
    if (H5Dset_extent(ds, dims) < 0)
        return -1;
    memcpy(count, dims, sizeof count);
    count[0] = n;
    fspace = H5Dget_space(ds);
    hid_t mspace = H5Screate_simple(rank, count, NULL);
    herr_t r = -1;
    if (fspace >= 0 && mspace >= 0 &&
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
        r = H5Dwrite(ds, mem_type, mspace, fspace, H5P_DEFAULT, buf);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    return r;
}

/* ---- opening ---- */

/* mkdir -p: creates each missing component of dir; a non-directory in the way is FW_ERR_IO. */
static fw_status make_dirs(const char *dir) {
    char *p = fw_strf("%s", dir);
    if (!p)
        return no_memory("creating a directory");
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

/* Reserves <dir>/<stamp>-s<seed>[-k].h5. The hidden .part file is the reservation: created with
 * O_EXCL, so two processes never hold the same one, and a name whose final file exists already
 * is given back. Only the holder of the .part file renames it to the final name. */
static fw_status reserve_name(fw_log *l, uint64_t seed) {
    char stamp[32];
    fw_utc_text("%Y%m%d-%H%M%S", stamp, sizeof stamp);
    for (int k = 0; k < LOG_MAX_SUFFIX; k++) {
        char suffix[16] = "";
        if (k > 0)
            snprintf(suffix, sizeof suffix, "-%d", k);
        char *path = fw_strf("%s/%s-s%llu%s.h5", l->dir, stamp, (unsigned long long)seed, suffix);
        char *part = fw_strf("%s/.%s-s%llu%s.h5.part", l->dir, stamp, (unsigned long long)seed,
                             suffix);
        if (!path || !part) {
            free(path);
            free(part);
            return no_memory("naming the run log");
        }
        int fd = open(part, O_WRONLY | O_CREAT | O_EXCL, 0666);
        int err = errno;
        if (fd >= 0) {
            close(fd);
            if (access(path, F_OK) != 0) {
                l->path = path;
                l->part = part;
                return FW_OK;
            }
            unlink(part);
        } else if (err != EEXIST) {
            free(path);
            free(part);
            return fw_errorf(FW_ERR_IO, "cannot create a run log in directory %.400s: %s",
                             l->dir, strerror(err));
        }
        free(path);
        free(part);
    }
    return fw_errorf(FW_ERR_IO, "cannot create a run log in directory %.400s: %d files for "
                                "seed %llu in the same second", l->dir, LOG_MAX_SUFFIX,
                     (unsigned long long)seed);
}

static fw_status write_identity(fw_log *l, const char *experiment) {
    char host[256] = "unknown", dnnl[32], hdf5[32], start[32];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    const dnnl_version_t *dv = dnnl_version();
    snprintf(dnnl, sizeof dnnl, "%d.%d.%d", dv->major, dv->minor, dv->patch);
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    snprintf(hdf5, sizeof hdf5, "%u.%u.%u", maj, min, rel);
    fw_utc_text("%Y-%m-%dT%H:%M:%SZ", start, sizeof start);
    const char *lb = l->label;
    hid_t f = l->file;
    FW_TRY(fw_h5_set_i64(lb, f, "schema_version", FW_LOG_SCHEMA_VERSION));
    FW_TRY(fw_h5_set_str(lb, f, "experiment", experiment));
    FW_TRY(fw_h5_set_str(lb, f, "argv", ""));
    FW_TRY(fw_h5_set_str(lb, f, "git_commit", FW_GIT_COMMIT));
    FW_TRY(fw_h5_set_i64(lb, f, "git_dirty", FW_GIT_DIRTY));
    FW_TRY(fw_h5_set_str(lb, f, "hostname", host));
    FW_TRY(fw_h5_set_i64(lb, f, "pid", (int64_t)getpid()));
    FW_TRY(fw_h5_set_i64(lb, f, "n_threads", omp_get_max_threads()));
    FW_TRY(fw_h5_set_str(lb, f, "dnnl_version", dnnl));
    FW_TRY(fw_h5_set_str(lb, f, "hdf5_version", hdf5));
    FW_TRY(fw_h5_set_str(lb, f, "compiler", __VERSION__));
    FW_TRY(fw_h5_set_str(lb, f, "start_time", start));
    /* status and end_time are rewritten at close; they exist now so SWMR needs no new object */
    FW_TRY(fw_h5_set_str(lb, f, "end_time", ""));
    FW_TRY(fw_h5_set_str(lb, f, "status", "running"));
    FW_TRY(fw_h5_set_f64(lb, f, "flush_interval", l->flush_interval));
    FW_TRY(fw_h5_set_str(lb, f, "checkpoint", ""));
    FW_TRY(fw_h5_set_i64(lb, f, "resume_step", 0));
    FW_TRY(fw_h5_set_str(lb, f, "history_from", ""));
    return FW_OK;
}

static fw_status create_file(fw_log *l, const char *experiment, const fw_config *cfg) {
    hid_t fapl = fw_h5_fapl_latest();
    if (fapl < 0)
        return fw_h5_error(l->label, "setting up file access for", "the file");
    l->file = H5Fcreate(l->part, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (l->file < 0)
        return fw_h5_error(l->label, "creating", l->part);
    FW_TRY(fw_h5_set_config(l->label, l->file, cfg));
    return write_identity(l, experiment);
}

static fw_status open_log(fw_log *l, const char *runs_dir, const char *experiment,
                          const fw_config *cfg, uint64_t seed) {
    l->dir = fw_strf("%s/%s", runs_dir, experiment);
    if (!l->dir)
        return no_memory("opening the run log");
    FW_TRY(make_dirs(l->dir));
    FW_TRY(reserve_name(l, seed));
    l->label = fw_strf("run log %s", l->path);
    if (!l->label)
        return no_memory("opening the run log");
    return create_file(l, experiment, cfg);
}

static void check_config_names(const fw_config *cfg) {
    for (int i = 0; i < cfg->n; i++)
        for (size_t r = 0; r < FW_COUNTOF(reserved_attrs); r++)
            FW_ASSERT(strcmp(cfg->keys[i].name, reserved_attrs[r]) != 0,
                      "config key '%s' clashes with a run log attribute", cfg->keys[i].name);
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
    check_config_names(cfg);
    /* HDF5 1.10's exit-time cleanup segfaults on a file whose write failed (a full disk;
     * HDFGroup/hdf5 #2257, fixed in 1.14). Logs are closed explicitly, so we skip that cleanup.
     * A no-op if HDF5 was already started by other code. */
    H5dont_atexit();
    *out = NULL;
    fw_log *l = calloc(1, sizeof *l);
    if (!l)
        return no_memory("opening the run log");
    l->file = l->fl_unix = l->fl_wall = l->fl_rows = -1;
    l->cfg = cfg;
    l->t0 = l->last_flush = fw_now();
    l->flush_interval = 10;
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = open_log(l, runs_dir, experiment, cfg, seed);
    if (s != FW_OK) {
        /* A log without its header would only mislead; remove it (and the reservation). */
        if (l->file >= 0)
            H5Fclose(l->file);
        if (l->part)
            unlink(l->part);
    }
    fw_h5_quiet_end(q);
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

double fw_log_wall(const fw_log *l) {
    return l->wall_offset + (fw_now() - l->t0);
}

/* ---- before start: attributes and settings ---- */

static void assert_not_started(const fw_log *l, const char *func) {
    assert_serial(func);
    FW_ASSERT(l != NULL, "l is NULL");
    FW_ASSERT(!l->started, "%s after fw_log_start: SWMR allows no new objects or attributes "
                           "once the run has started; declare everything before", func);
}

static void assert_not_config_key(const fw_log *l, const char *name) {
    for (int i = 0; i < l->cfg->n; i++)
        FW_ASSERT(strcmp(l->cfg->keys[i].name, name) != 0,
                  "attribute '%s' would overwrite the config key of that name", name);
}

fw_status fw_log_set_str(fw_log *l, const char *name, const char *value) {
    assert_not_started(l, __func__);
    FW_ASSERT(name && value, "name or value is NULL");
    assert_not_config_key(l, name);
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = fw_h5_set_str(l->label, l->file, name, value);
    fw_h5_quiet_end(q);
    return s;
}

fw_status fw_log_set_i64(fw_log *l, const char *name, int64_t value) {
    assert_not_started(l, __func__);
    FW_ASSERT(name != NULL, "name is NULL");
    assert_not_config_key(l, name);
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = fw_h5_set_i64(l->label, l->file, name, value);
    fw_h5_quiet_end(q);
    return s;
}

void fw_log_set_flush_interval(fw_log *l, double seconds) {
    assert_not_started(l, __func__);
    FW_ASSERT(seconds >= 0 && isfinite(seconds), "flush interval %g", seconds);
    l->flush_interval = seconds;
}

void fw_log_set_wall_offset(fw_log *l, double seconds) {
    assert_not_started(l, __func__);
    FW_ASSERT(seconds >= 0 && isfinite(seconds), "wall offset %g", seconds);
    l->wall_offset = seconds;
}

/* ---- declaring series ---- */

/* "a/b" is a prefix-path of "a/b/c": one would be a group holding the other's datasets. */
static bool is_path_prefix(const char *a, const char *b) {
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && b[n] == '/';
}

static void check_series_name(const fw_log *l, enum kind kind, const char *name) {
    size_t n = strlen(name);
    FW_ASSERT(n > 0 && name[0] != '/' && name[n - 1] != '/' && !strstr(name, "//"),
              "bad series name '%s'", name);
    for (int i = 0; i < l->n_series; i++) {
        const series *o = &l->s[i];
        if (o->kind != kind)
            continue;
        FW_ASSERT(strcmp(name, o->name) != 0, "series '%s' declared twice", name);
        FW_ASSERT(!is_path_prefix(name, o->name) && !is_path_prefix(o->name, name),
                  "series '%s' and '%s': one would be a group inside the other", name, o->name);
    }
}

static fw_status create_columns(const fw_log *l, series *sr, hid_t g) {
    const char *const *names = column_names(sr->kind);
    for (int c = 0; names[c]; c++) {
        hid_t type = strcmp(names[c], "step") == 0 ? H5T_STD_I64LE : H5T_IEEE_F64LE;
        int rank = 1;
        hsize_t tail[2] = {0, 0}, chunk = 1024; /* 1024 rows: 8 KiB chunks of scalars */
        if (sr->kind == EVAL && c == 0) {
            type = H5T_IEEE_F32LE;
            rank = 2;
            tail[0] = (hsize_t)sr->n_episodes;
            chunk = 1;
        } else if (sr->kind == IMAGES && c == 0) {
            type = H5T_STD_U8LE;
            rank = 3;
            tail[0] = (hsize_t)sr->grid_h;
            tail[1] = (hsize_t)sr->grid_w;
            chunk = 1;
        } else if (sr->kind != SCALAR) {
            chunk = 64; /* evaluations and grids are rare */
        }
        sr->ds[c] = create_column(g, names[c], type, rank, tail, chunk);
        if (sr->ds[c] < 0)
            return fw_h5_error(l->label, "creating dataset in", sr->path);
    }
    if (sr->kind == EVAL)
        FW_TRY(fw_h5_set_i64(l->label, g, "n_episodes", sr->n_episodes));
    if (sr->kind == IMAGES) {
        FW_TRY(fw_h5_set_i64(l->label, g, "rows", (sr->n_img + sr->cols - 1) / sr->cols));
        FW_TRY(fw_h5_set_i64(l->label, g, "cols", sr->cols));
        FW_TRY(fw_h5_set_i64(l->label, g, "image_h", sr->img_h));
        FW_TRY(fw_h5_set_i64(l->label, g, "image_w", sr->img_w));
    }
    return FW_OK;
}

/* Creates the series' group (and any groups on the way) and its empty columns. */
static fw_status create_series(const fw_log *l, series *sr) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t g = -1;
    fw_status s = FW_OK;
    if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0)
        s = fw_h5_error(l->label, "preparing", sr->path);
    if (s == FW_OK && (g = H5Gcreate2(l->file, sr->path, lcpl, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        s = fw_h5_error(l->label, "creating group", sr->path);
    if (s == FW_OK)
        s = create_columns(l, sr, g);
    if (g >= 0)
        H5Gclose(g);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    return s;
}

static void free_series(series *sr) {
    for (int c = 0; c < MAX_COLS; c++)
        if (sr->ds[c] >= 0)
            H5Dclose(sr->ds[c]);
    free(sr->name);
    free(sr->path);
    free(sr->bstep);
    free(sr->bvalue);
    free(sr->bwall);
    memset(sr, 0, sizeof *sr);
}

/* Declares a series; `tmpl` carries the kind-specific sizes. */
static fw_status add_series(fw_log *l, const series *tmpl) {
    FW_ASSERT(l->n_series < LOG_MAX_SERIES, "more than %d series (adding '%s')", LOG_MAX_SERIES,
              tmpl->name);
    check_series_name(l, tmpl->kind, tmpl->name);
    series *sr = &l->s[l->n_series];
    *sr = *tmpl;
    for (int c = 0; c < MAX_COLS; c++)
        sr->ds[c] = -1;
    sr->name = fw_strf("%s", tmpl->name);
    sr->path = fw_strf("%s/%s", kind_group[tmpl->kind], tmpl->name);
    fw_status s = sr->name && sr->path ? FW_OK : no_memory("declaring a series");
    if (s == FW_OK) {
        fw_h5_quiet q = fw_h5_quiet_begin();
        s = create_series(l, sr);
        fw_h5_quiet_end(q);
    }
    if (s != FW_OK) {
        free_series(sr);
        return s;
    }
    l->n_series++;
    return FW_OK;
}

fw_status fw_log_add_scalar(fw_log *l, const char *name) {
    assert_not_started(l, __func__);
    FW_ASSERT(name != NULL, "name is NULL");
    series t = {.kind = SCALAR, .name = (char *)name};
    return add_series(l, &t);
}

fw_status fw_log_add_eval(fw_log *l, const char *name, int n_episodes) {
    assert_not_started(l, __func__);
    FW_ASSERT(name != NULL && n_episodes > 0, "bad arguments (n_episodes=%d)", n_episodes);
    series t = {.kind = EVAL, .name = (char *)name, .n_episodes = n_episodes};
    return add_series(l, &t);
}

fw_status fw_log_add_images(fw_log *l, const char *name, int n, int h, int w, int cols) {
    assert_not_started(l, __func__);
    FW_ASSERT(name && n > 0 && h > 0 && w > 0 && cols > 0, "bad arguments");
    series t = {.kind = IMAGES, .name = (char *)name, .n_img = n, .img_h = h, .img_w = w,
                .cols = cols, .grid_h = (n + cols - 1) / cols * h, .grid_w = cols * w};
    return add_series(l, &t);
}

static series *find_series(fw_log *l, enum kind kind, const char *name, const char *func) {
    FW_ASSERT(name != NULL, "name is NULL");
    for (int i = 0; i < l->n_series; i++)
        if (l->s[i].kind == kind && strcmp(l->s[i].name, name) == 0)
            return &l->s[i];
    FW_ASSERT(false, "%s: series '%s' was not declared (declare it with fw_log_add_%s before "
                     "fw_log_start)", func, name, kind == SCALAR ? "scalar" : kind_group[kind]);
}

/* ---- scalars ---- */

static fw_status grow_buffer(series *sr) {
    size_t cap = sr->cap ? 2 * sr->cap : 256;
    int64_t *step = realloc(sr->bstep, cap * sizeof *step);
    if (step)
        sr->bstep = step;
    double *value = step ? realloc(sr->bvalue, cap * sizeof *value) : NULL;
    if (value)
        sr->bvalue = value;
    double *wall = value ? realloc(sr->bwall, cap * sizeof *wall) : NULL;
    if (!wall)
        return fw_errorf(FW_ERR_NOMEM, "out of memory buffering series '%s'", sr->name);
    sr->bwall = wall;
    sr->cap = cap;
    return FW_OK;
}

static fw_status buffer_row(series *sr, int64_t step, double value, double wall) {
    if (sr->n == sr->cap)
        FW_TRY(grow_buffer(sr));
    sr->bstep[sr->n] = step;
    sr->bvalue[sr->n] = value;
    sr->bwall[sr->n] = wall;
    sr->n++;
    return FW_OK;
}

fw_status fw_log_scalar(fw_log *l, const char *name, int64_t step, double value) {
    assert_serial(__func__);
    FW_ASSERT(l != NULL, "l is NULL");
    FW_TRY(buffer_row(find_series(l, SCALAR, name, __func__), step, value, fw_log_wall(l)));
    /* so the interval holds for callers that never call fw_log_tick (0 is left to them) */
    return l->started && l->flush_interval > 0 ? fw_log_tick(l) : FW_OK;
}

/* ---- flushing ---- */

static fw_status column_error(const fw_log *l, const series *sr, int c) {
    char obj[600];
    snprintf(obj, sizeof obj, "/%.500s/%s", sr->path, column_names(sr->kind)[c]);
    return fw_h5_error(l->label, "appending to", obj);
}

static fw_status write_buffered(const fw_log *l, series *sr) {
    if (sr->kind != SCALAR || sr->n == 0)
        return FW_OK;
    const void *bufs[3] = {sr->bstep, sr->bvalue, sr->bwall};
    hid_t types[3] = {H5T_NATIVE_INT64, H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE};
    for (int c = 0; c < 3; c++)
        if (write_rows(sr->ds[c], types[c], bufs[c], sr->rows, sr->n) < 0)
            return column_error(l, sr, c);
    sr->rows += sr->n;
    sr->n = 0;
    return FW_OK;
}

/* Appends one /flushes row: the time and how many rows each series has on disk. */
static fw_status write_flush_record(fw_log *l) {
    hsize_t at = 0;
    hid_t space = H5Dget_space(l->fl_unix);
    if (space < 0 || H5Sget_simple_extent_dims(space, &at, NULL) < 0) {
        if (space >= 0)
            H5Sclose(space);
        return fw_h5_error(l->label, "reading the size of", "/flushes/unix_time");
    }
    H5Sclose(space);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double unix_time = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec, wall = fw_log_wall(l);
    int64_t rows[LOG_MAX_SERIES];
    for (int i = 0; i < l->n_series; i++)
        rows[i] = (int64_t)l->s[i].rows;
    /* rows first, times last: a reader taking the shortest column sees a complete record */
    if (l->fl_rows >= 0 && write_rows(l->fl_rows, H5T_NATIVE_INT64, rows, at, 1) < 0)
        return fw_h5_error(l->label, "appending to", "/flushes/rows");
    if (write_rows(l->fl_wall, H5T_NATIVE_DOUBLE, &wall, at, 1) < 0 ||
        write_rows(l->fl_unix, H5T_NATIVE_DOUBLE, &unix_time, at, 1) < 0)
        return fw_h5_error(l->label, "appending to", "/flushes");
    return FW_OK;
}

static fw_status h5_flush(const fw_log *l) {
    if (H5Fflush(l->file, H5F_SCOPE_GLOBAL) < 0)
        return fw_h5_error(l->label, "flushing", "the file");
    return FW_OK;
}

/* Data first and on disk, then the record that vouches for it. */
static fw_status flush_all(fw_log *l) {
    for (int i = 0; i < l->n_series; i++)
        FW_TRY(write_buffered(l, &l->s[i]));
    FW_TRY(h5_flush(l));
    if (l->started) {
        FW_TRY(write_flush_record(l));
        FW_TRY(h5_flush(l));
    }
    l->last_flush = fw_now();
    return FW_OK;
}

fw_status fw_log_flush(fw_log *l) {
    assert_serial(__func__);
    FW_ASSERT(l != NULL, "l is NULL");
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = flush_all(l);
    fw_h5_quiet_end(q);
    return s;
}

fw_status fw_log_tick(fw_log *l) {
    assert_serial(__func__);
    FW_ASSERT(l != NULL, "l is NULL");
    if (fw_now() - l->last_flush < l->flush_interval)
        return FW_OK;
    return fw_log_flush(l);
}

/* ---- evaluations and image grids ---- */

static fw_status append_eval(fw_log *l, series *sr, int64_t step, const float *acc, double mean,
                             double ci95, double wall) {
    const void *bufs[5] = {acc, &step, &mean, &ci95, &wall};
    hid_t types[5] = {H5T_NATIVE_FLOAT, H5T_NATIVE_INT64, H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE,
                      H5T_NATIVE_DOUBLE};
    for (int c = 0; c < 5; c++)
        if (write_rows(sr->ds[c], types[c], bufs[c], sr->rows, 1) < 0)
            return column_error(l, sr, c);
    sr->rows++;
    return FW_OK;
}

fw_status fw_log_eval(fw_log *l, const char *name, int64_t step, const float *acc, int n,
                      double mean, double ci95) {
    assert_serial(__func__);
    FW_ASSERT(l != NULL && acc != NULL, "l or acc is NULL");
    series *sr = find_series(l, EVAL, name, __func__);
    FW_ASSERT(n == sr->n_episodes, "eval '%s': %d episodes, declared %d", name, n,
              sr->n_episodes);
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = append_eval(l, sr, step, acc, mean, ci95, fw_log_wall(l));
    if (s == FW_OK)
        s = flush_all(l);
    fw_h5_quiet_end(q);
    return s;
}

static void make_grid(const series *sr, const float *images, uint8_t *grid) {
    int h = sr->img_h, w = sr->img_w, cols = sr->cols;
    memset(grid, 0, (size_t)sr->grid_h * (size_t)sr->grid_w);
    for (int i = 0; i < sr->n_img; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = images[((size_t)i * (size_t)h + (size_t)y) * (size_t)w + (size_t)x];
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                size_t gy = (size_t)(i / cols * h + y), gx = (size_t)(i % cols * w + x);
                grid[gy * (size_t)sr->grid_w + gx] = (uint8_t)lrintf(v * 255.0f);
            }
}

static fw_status append_grid(fw_log *l, series *sr, int64_t step, const uint8_t *grid,
                             double wall) {
    const void *bufs[3] = {grid, &step, &wall};
    hid_t types[3] = {H5T_NATIVE_UINT8, H5T_NATIVE_INT64, H5T_NATIVE_DOUBLE};
    for (int c = 0; c < 3; c++)
        if (write_rows(sr->ds[c], types[c], bufs[c], sr->rows, 1) < 0)
            return column_error(l, sr, c);
    sr->rows++;
    return FW_OK;
}

fw_status fw_log_images(fw_log *l, const char *name, int64_t step, const float *images) {
    assert_serial(__func__);
    FW_ASSERT(l != NULL && images != NULL, "l or images is NULL");
    series *sr = find_series(l, IMAGES, name, __func__);
    uint8_t *grid = malloc((size_t)sr->grid_h * (size_t)sr->grid_w);
    if (!grid)
        return fw_errorf(FW_ERR_NOMEM, "out of memory writing samples '%s'", name);
    make_grid(sr, images, grid);
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = append_grid(l, sr, step, grid, fw_log_wall(l));
    if (s == FW_OK)
        s = flush_all(l);
    fw_h5_quiet_end(q);
    free(grid);
    return s;
}

/* ---- importing an earlier run's rows (resume) ---- */

static int step_column(enum kind k) {
    return k == SCALAR ? 0 : 1;
}

/* Memory type and row size of column c (a row of "episodes" or "images" is a whole array). */
static hid_t column_mem_type(const series *sr, int c) {
    const char *name = column_names(sr->kind)[c];
    if (strcmp(name, "step") == 0)
        return H5T_NATIVE_INT64;
    if (strcmp(name, "episodes") == 0)
        return H5T_NATIVE_FLOAT;
    if (strcmp(name, "images") == 0)
        return H5T_NATIVE_UINT8;
    return H5T_NATIVE_DOUBLE;
}

static size_t column_row_bytes(const series *sr, int c) {
    const char *name = column_names(sr->kind)[c];
    if (strcmp(name, "episodes") == 0)
        return (size_t)sr->n_episodes * sizeof(float);
    if (strcmp(name, "images") == 0)
        return (size_t)sr->grid_h * (size_t)sr->grid_w;
    return 8;
}

/* Dimensions of a dataset (up to 3); dims[0] = 0 on failure. */
static void dataset_dims(hid_t ds, hsize_t dims[3]) {
    dims[0] = dims[1] = dims[2] = 0;
    hid_t space = H5Dget_space(ds);
    if (space < 0)
        return;
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 1 || rank > 3 || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        dims[0] = 0;
    H5Sclose(space);
}

/* The first n rows of a dataset in a new buffer (NULL on failure). */
static void *read_rows(hid_t ds, hid_t mem_type, size_t row_bytes, hsize_t n) {
    void *buf = malloc(row_bytes * (n ? n : 1));
    if (!buf || n == 0)
        return buf;
    hsize_t dims[3], start[3] = {0, 0, 0};
    dataset_dims(ds, dims);
    hid_t fspace = H5Dget_space(ds);
    int rank = fspace >= 0 ? H5Sget_simple_extent_ndims(fspace) : -1;
    dims[0] = n;
    hid_t mspace = rank >= 1 ? H5Screate_simple(rank, dims, NULL) : -1;
    herr_t r = -1;
    if (mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, dims, NULL) >= 0)
        r = H5Dread(ds, mem_type, mspace, fspace, H5P_DEFAULT, buf);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    if (r < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

typedef struct old_series {
    hid_t ds[MAX_COLS];
    hsize_t rows; /* complete rows: the shortest column, and no more than the last flush */
} old_series;

/* The names in /flushes' `series` attribute and the last /flushes/rows row; false if absent. */
static bool read_last_flush(hid_t old, char ***names, int64_t **rows, hssize_t *n) {
    *names = NULL;
    *rows = NULL;
    *n = 0;
    if (H5Lexists(old, "/flushes", H5P_DEFAULT) <= 0 ||
        H5Lexists(old, "/flushes/rows", H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
    }
    hid_t ds = H5Dopen2(old, "/flushes/rows", H5P_DEFAULT);
    hid_t a = H5Aopen_by_name(old, "/flushes", "series", H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = fw_h5_str_type(), space = a >= 0 ? H5Aget_space(a) : -1;
    hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    hsize_t dims[3];
    dataset_dims(ds, dims);
    bool ok = false;
    if (count > 0 && dims[0] > 0 && dims[1] == (hsize_t)count) {
        *names = calloc((size_t)count, sizeof **names);
        int64_t *all = read_rows(ds, H5T_NATIVE_INT64, (size_t)count * 8, dims[0]);
        *rows = malloc((size_t)count * sizeof **rows);
        if (*names && all && *rows && H5Aread(a, t, *names) >= 0) {
            memcpy(*rows, all + (dims[0] - 1) * (hsize_t)count, (size_t)count * sizeof **rows);
            *n = count;
            ok = true;
        }
        free(all);
    }
    if (t >= 0)
        H5Tclose(t);
    if (space >= 0)
        H5Sclose(space);
    if (a >= 0)
        H5Aclose(a);
    if (ds >= 0)
        H5Dclose(ds);
    H5Eclear2(H5E_DEFAULT);
    if (!ok) {
        free(*names);
        free(*rows);
        *names = NULL;
        *rows = NULL;
    }
    return ok;
}

/* Opens the old file's columns of sr; false (nothing opened) if it lacks the series. */
static bool open_old_series(hid_t old, const series *sr, old_series *o) {
    const char *const *names = column_names(sr->kind);
    o->rows = HSIZE_UNDEF;
    for (int c = 0; c < MAX_COLS; c++)
        o->ds[c] = -1;
    for (int c = 0; names[c]; c++) {
        char *p = fw_strf("/%s/%s", sr->path, names[c]);
        if (p && H5Lexists(old, p, H5P_DEFAULT) > 0)
            o->ds[c] = H5Dopen2(old, p, H5P_DEFAULT);
        free(p);
        if (o->ds[c] < 0) {
            for (int k = 0; k < c; k++)
                H5Dclose(o->ds[k]);
            H5Eclear2(H5E_DEFAULT);
            return false;
        }
        hsize_t dims[3];
        dataset_dims(o->ds[c], dims);
        o->rows = dims[0] < o->rows ? dims[0] : o->rows;
    }
    return true;
}

/* An evaluation or grid series must have the same row shape in both files. */
static fw_status check_old_shape(const fw_log *l, const series *sr, const old_series *o) {
    if (sr->kind == SCALAR)
        return FW_OK;
    hsize_t dims[3];
    dataset_dims(o->ds[0], dims);
    bool same = sr->kind == EVAL ? dims[1] == (hsize_t)sr->n_episodes
                                 : dims[1] == (hsize_t)sr->grid_h &&
                                       dims[2] == (hsize_t)sr->grid_w;
    if (same)
        return FW_OK;
    return fw_errorf(FW_ERR_FORMAT, "%.400s: /%s has rows of another shape", l->label, sr->path);
}

/* Copies the rows with step <= max_step: scalars into the buffer, the others into the file. */
static fw_status import_series(fw_log *l, series *sr, const old_series *o, int64_t max_step) {
    FW_TRY(check_old_shape(l, sr, o));
    int n = n_columns(sr->kind), sc = step_column(sr->kind);
    void *cols[MAX_COLS] = {NULL};
    cols[sc] = read_rows(o->ds[sc], H5T_NATIVE_INT64, 8, o->rows);
    hsize_t k = 0; /* rows are in step order */
    while (cols[sc] && k < o->rows && ((int64_t *)cols[sc])[k] <= max_step)
        k++;
    for (int c = 0; c < n; c++)
        if (c != sc)
            cols[c] = read_rows(o->ds[c], column_mem_type(sr, c), column_row_bytes(sr, c), k);
    fw_status s = FW_OK;
    for (int c = 0; c < n && s == FW_OK; c++)
        if (!cols[c])
            s = fw_h5_error_as(FW_ERR_FORMAT, l->label, "reading the earlier rows of", sr->path);
    if (s == FW_OK && sr->kind == SCALAR) {
        const int64_t *step = cols[0];
        const double *value = cols[1], *wall = cols[2];
        for (hsize_t i = 0; i < k && s == FW_OK; i++)
            s = buffer_row(sr, step[i], value[i], wall[i]);
    } else if (s == FW_OK && k > 0) {
        for (int c = 0; c < n && s == FW_OK; c++)
            if (write_rows(sr->ds[c], column_mem_type(sr, c), cols[c], sr->rows, k) < 0)
                s = column_error(l, sr, c);
        if (s == FW_OK)
            sr->rows += k;
    }
    for (int c = 0; c < n; c++)
        free(cols[c]);
    return s;
}

static fw_status import_all(fw_log *l, hid_t old, const char *old_label, int64_t max_step) {
    int64_t version = 0;
    FW_TRY(fw_h5_get_i64(old_label, old, "schema_version", &version));
    if (version != FW_LOG_SCHEMA_VERSION)
        return fw_errorf(FW_ERR_FORMAT, "%.400s: schema version %lld, expected %d", old_label,
                         (long long)version, FW_LOG_SCHEMA_VERSION);
    char **names;
    int64_t *flushed;
    hssize_t n_flushed;
    read_last_flush(old, &names, &flushed, &n_flushed);
    fw_status s = FW_OK;
    for (int i = 0; i < l->n_series && s == FW_OK; i++) {
        old_series o;
        if (!open_old_series(old, &l->s[i], &o))
            continue; /* the earlier run did not log this series */
        for (hssize_t j = 0; j < n_flushed; j++) /* only rows a flush vouched for */
            if (names[j] && strcmp(names[j], l->s[i].path) == 0 && (hsize_t)flushed[j] < o.rows)
                o.rows = (hsize_t)flushed[j];
        s = import_series(l, &l->s[i], &o, max_step);
        for (int c = 0; c < MAX_COLS; c++)
            if (o.ds[c] >= 0)
                H5Dclose(o.ds[c]);
    }
    for (hssize_t j = 0; j < n_flushed; j++)
        H5free_memory(names[j]);
    free(names);
    free(flushed);
    return s;
}

/* Undoes a partial import: no rows in the buffer or in the file. */
static void forget_rows(series *sr) {
    sr->n = 0;
    for (int c = 0; c < MAX_COLS && sr->rows > 0; c++)
        if (sr->ds[c] >= 0) {
            hsize_t dims[3];
            dataset_dims(sr->ds[c], dims);
            dims[0] = 0;
            H5Dset_extent(sr->ds[c], dims);
        }
    sr->rows = 0;
}

fw_status fw_log_import(fw_log *l, const char *old_path, int64_t max_step) {
    assert_not_started(l, __func__);
    FW_ASSERT(old_path != NULL, "old_path is NULL");
    for (int i = 0; i < l->n_series; i++)
        FW_ASSERT(l->s[i].rows == 0 && l->s[i].n == 0, "fw_log_import after rows were logged");
    char *old_label = fw_strf("run log %s", old_path);
    if (!old_label)
        return no_memory("importing a run log");
    fw_h5_quiet q = fw_h5_quiet_begin();
    /* SWMR read: the earlier run may have been killed while writing in SWMR mode */
    hid_t old = H5Fopen(old_path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    if (old < 0)
        old = H5Fopen(old_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    fw_status s = old < 0 ? fw_h5_error_as(FW_ERR_IO, old_label, "opening", "the file")
                          : import_all(l, old, old_label, max_step);
    if (old >= 0)
        H5Fclose(old);
    if (s != FW_OK)
        for (int i = 0; i < l->n_series; i++)
            forget_rows(&l->s[i]);
    H5Eclear2(H5E_DEFAULT);
    fw_h5_quiet_end(q);
    free(old_label);
    return s;
}

/* ---- starting ---- */

static fw_status create_flushes(fw_log *l) {
    hid_t g = H5Gcreate2(l->file, "/flushes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return fw_h5_error(l->label, "creating group", "/flushes");
    fw_status s = FW_OK;
    l->fl_unix = create_column(g, "unix_time", H5T_IEEE_F64LE, 1, NULL, 256);
    l->fl_wall = create_column(g, "wall_time", H5T_IEEE_F64LE, 1, NULL, 256);
    if (l->fl_unix < 0 || l->fl_wall < 0)
        s = fw_h5_error(l->label, "creating datasets in", "/flushes");
    if (s == FW_OK && l->n_series > 0) {
        hsize_t tail = (hsize_t)l->n_series;
        l->fl_rows = create_column(g, "rows", H5T_STD_I64LE, 2, &tail, 256);
        const char *names[LOG_MAX_SERIES];
        for (int i = 0; i < l->n_series; i++)
            names[i] = l->s[i].path;
        hid_t t = fw_h5_str_type(), space = H5Screate_simple(1, &tail, NULL), a = -1;
        if (l->fl_rows < 0 || t < 0 || space < 0 ||
            (a = H5Acreate2(g, "series", t, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
            H5Awrite(a, t, names) < 0)
            s = fw_h5_error(l->label, "creating", "/flushes/rows");
        if (a >= 0)
            H5Aclose(a);
        if (space >= 0)
            H5Sclose(space);
        if (t >= 0)
            H5Tclose(t);
    }
    H5Gclose(g);
    return s;
}

/* Points <dir>/latest.h5 at the run file: a relative symlink, replaced atomically by rename. */
static fw_status update_latest(const fw_log *l) {
    const char *base = strrchr(l->path, '/') + 1;
    char *tmp = fw_strf("%s/.latest.h5.%ld", l->dir, (long)getpid());
    char *latest = fw_strf("%s/latest.h5", l->dir);
    fw_status s = tmp && latest ? FW_OK : no_memory("linking latest.h5");
    if (s == FW_OK) {
        unlink(tmp);
        if (symlink(base, tmp) != 0 || rename(tmp, latest) != 0) {
            s = fw_errorf(FW_ERR_IO, "cannot point %.400s at the run log: %s", latest,
                          strerror(errno));
            unlink(tmp);
        }
    }
    free(tmp);
    free(latest);
    return s;
}

static fw_status start_log(fw_log *l) {
    FW_TRY(fw_h5_set_f64(l->label, l->file, "flush_interval", l->flush_interval));
    FW_TRY(create_flushes(l));
    for (int i = 0; i < l->n_series; i++)
        FW_TRY(write_buffered(l, &l->s[i]));
    if (H5Fstart_swmr_write(l->file) < 0) /* flushes everything written so far */
        return fw_h5_error(l->label, "starting SWMR writing of", "the file");
    l->started = true;
    FW_TRY(write_flush_record(l));
    FW_TRY(h5_flush(l));
    l->last_flush = fw_now();
    if (rename(l->part, l->path) != 0)
        return fw_errorf(FW_ERR_IO, "cannot rename %.400s to %.400s: %s", l->part, l->path,
                         strerror(errno));
    free(l->part);
    l->part = NULL;
    return update_latest(l);
}

fw_status fw_log_start(fw_log *l) {
    assert_not_started(l, __func__);
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = start_log(l);
    fw_h5_quiet_end(q);
    return s;
}

/* ---- closing ---- */

static void free_log(fw_log *l) {
    for (int i = 0; i < l->n_series; i++)
        free_series(&l->s[i]);
    free(l->path);
    free(l->part);
    free(l->dir);
    free(l->label);
    free(l);
}

/* Keeps the first error: later ones are usually consequences of it. */
static void keep_first(fw_status *first, fw_status s) {
    if (*first == FW_OK)
        *first = s;
}

static fw_status close_file(fw_log *l) {
    fw_status first = FW_OK;
    for (int i = 0; i < l->n_series; i++)
        for (int c = 0; c < MAX_COLS; c++)
            if (l->s[i].ds[c] >= 0) {
                if (H5Dclose(l->s[i].ds[c]) < 0)
                    keep_first(&first, fw_h5_error(l->label, "closing", l->s[i].path));
                l->s[i].ds[c] = -1;
            }
    hid_t fl[3] = {l->fl_unix, l->fl_wall, l->fl_rows};
    for (int i = 0; i < 3; i++)
        if (fl[i] >= 0 && H5Dclose(fl[i]) < 0)
            keep_first(&first, fw_h5_error(l->label, "closing", "/flushes"));
    if (H5Fclose(l->file) < 0)
        keep_first(&first, fw_h5_error(l->label, "closing", "the file"));
    return first;
}

static fw_status close_log(fw_log *l, const char *status) {
    if (!l->started) { /* never started: no run file */
        fw_status s = close_file(l);
        if (l->part)
            unlink(l->part);
        return s;
    }
    char end[32];
    fw_utc_text("%Y-%m-%dT%H:%M:%SZ", end, sizeof end);
    fw_status first = FW_OK;
    for (int i = 0; i < l->n_series; i++)
        keep_first(&first, write_buffered(l, &l->s[i]));
    keep_first(&first, fw_h5_set_str(l->label, l->file, "status", status));
    keep_first(&first, fw_h5_set_str(l->label, l->file, "end_time", end));
    if (first == FW_OK)
        keep_first(&first, flush_all(l));
    keep_first(&first, close_file(l));
    return first;
}

fw_status fw_log_close(fw_log *l, const char *status) {
    if (!l)
        return FW_OK;
    assert_serial(__func__);
    FW_ASSERT(status != NULL, "status is NULL");
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = close_log(l, status);
    fw_h5_quiet_end(q);
    free_log(l);
    return s;
}
