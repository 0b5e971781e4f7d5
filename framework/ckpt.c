/* ckpt.c: checkpoints (format in ckpt.h). */
#include "framework/ckpt.h"
#include "framework/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include("gitinfo.h")
#include "gitinfo.h"
#endif
#endif
#ifndef FW_GIT_COMMIT
#define FW_GIT_COMMIT "unknown"
#endif

#define CKPT_FORMAT "metagan-checkpoint"
#define CKPT_VERSION 1
#define CKPT_CHUNK ((hsize_t)1 << 18) /* floats per chunk: 1 MiB */

struct fw_ckpt {
    char *path;
    char *tmp;   /* writing: the file being written                     */
    char *label; /* "checkpoint <path>", the start of our messages      */
    hid_t file;
    char *experiment;
    int n_config;
    char **config_name, **config_text;
};

static void assert_serial(const char *func) {
    FW_ASSERT(!omp_in_parallel(), "%s called inside an OpenMP parallel region", func);
}

static void free_ckpt(fw_ckpt *c) {
    for (int i = 0; i < c->n_config; i++) {
        free(c->config_name[i]);
        free(c->config_text[i]);
    }
    free(c->config_name);
    free(c->config_text);
    free(c->experiment);
    free(c->label);
    free(c->tmp);
    free(c->path);
    free(c);
}

static fw_ckpt *new_ckpt(const char *path) {
    fw_ckpt *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->file = -1;
    c->path = fw_strf("%s", path);
    c->label = fw_strf("checkpoint %s", path);
    if (!c->path || !c->label) {
        free_ckpt(c);
        return NULL;
    }
    return c;
}

/* ---- writing ---- */

static fw_status write_header(fw_ckpt *c, const char *experiment, const fw_config *cfg) {
    char created[32];
    fw_utc_text("%Y-%m-%dT%H:%M:%SZ", created, sizeof created);
    FW_TRY(fw_h5_set_str(c->label, c->file, "format", CKPT_FORMAT));
    FW_TRY(fw_h5_set_i64(c->label, c->file, "format_version", CKPT_VERSION));
    FW_TRY(fw_h5_set_str(c->label, c->file, "experiment", experiment));
    FW_TRY(fw_h5_set_str(c->label, c->file, "created", created));
    FW_TRY(fw_h5_set_str(c->label, c->file, "git_commit", FW_GIT_COMMIT));
    hid_t g = H5Gcreate2(c->file, "/config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return fw_h5_error(c->label, "creating group", "/config");
    fw_status s = FW_OK;
    for (int i = 0; i < cfg->n && s == FW_OK; i++) /* text: resumes exactly what was parsed */
        s = fw_h5_set_str(c->label, g, cfg->keys[i].name, cfg->text[i]);
    H5Gclose(g);
    return s;
}

fw_status fw_ckpt_create(fw_ckpt **out, const char *path, const char *experiment,
                         const fw_config *cfg) {
    assert_serial(__func__);
    FW_ASSERT(out && path && experiment && cfg, "bad arguments");
    H5dont_atexit(); /* see fw_log_open */
    *out = NULL;
    fw_ckpt *c = new_ckpt(path);
    if (c)
        c->tmp = fw_strf("%s.tmp", path);
    if (!c || !c->tmp) {
        if (c)
            free_ckpt(c);
        return fw_errorf(FW_ERR_NOMEM, "out of memory writing checkpoint %.400s", path);
    }
    fw_h5_quiet q = fw_h5_quiet_begin();
    hid_t fapl = fw_h5_fapl_latest();
    c->file = fapl >= 0 ? H5Fcreate(c->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
    if (fapl >= 0)
        H5Pclose(fapl);
    fw_status s = c->file < 0 ? fw_h5_error_as(FW_ERR_IO, c->label, "creating", c->tmp)
                              : write_header(c, experiment, cfg);
    fw_h5_quiet_end(q);
    if (s != FW_OK) {
        fw_ckpt_close(c);
        return s;
    }
    *out = c;
    return FW_OK;
}

static void assert_writing(const fw_ckpt *c) {
    FW_ASSERT(c != NULL && c->tmp != NULL, "checkpoint not open for writing");
}

/* A float32 dataset of n values; checksummed chunks (none when n = 0: HDF5 needs chunks > 0). */
static fw_status write_floats(fw_ckpt *c, const char *name, const float *x, size_t n) {
    hsize_t len = (hsize_t)n, chunk = len < CKPT_CHUNK ? len : CKPT_CHUNK;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t space = H5Screate_simple(1, &len, NULL), ds = -1;
    fw_status s = FW_OK;
    if (lcpl < 0 || dcpl < 0 || space < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
        (n > 0 && (H5Pset_chunk(dcpl, 1, &chunk) < 0 || H5Pset_fletcher32(dcpl) < 0)))
        s = fw_h5_error(c->label, "preparing dataset", name);
    if (s == FW_OK &&
        (ds = H5Dcreate2(c->file, name, H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT)) < 0)
        s = fw_h5_error(c->label, "creating dataset", name);
    if (s == FW_OK && n > 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        s = fw_h5_error(c->label, "writing dataset", name);
    if (ds >= 0)
        H5Dclose(ds);
    if (space >= 0)
        H5Sclose(space);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    return s;
}

fw_status fw_ckpt_put_floats(fw_ckpt *c, const char *name, const float *x, size_t n) {
    assert_serial(__func__);
    assert_writing(c);
    FW_ASSERT(name && (x || n == 0), "bad arguments");
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = write_floats(c, name, x, n);
    fw_h5_quiet_end(q);
    return s;
}

static fw_status write_adam(fw_ckpt *c, const char *name, const fw_adam *o) {
    char *m = fw_strf("%s/m", name), *v = fw_strf("%s/v", name);
    fw_status s = m && v ? FW_OK : fw_errorf(FW_ERR_NOMEM, "out of memory writing %s", name);
    if (s == FW_OK)
        s = write_floats(c, m, o->m, o->n);
    if (s == FW_OK)
        s = write_floats(c, v, o->v, o->n);
    free(m);
    free(v);
    hid_t g = s == FW_OK ? H5Gopen2(c->file, name, H5P_DEFAULT) : -1;
    if (s == FW_OK && g < 0)
        s = fw_h5_error(c->label, "opening group", name);
    if (s == FW_OK)
        s = fw_h5_set_i64(c->label, g, "n", (int64_t)o->n);
    if (s == FW_OK)
        s = fw_h5_set_i64(c->label, g, "t", o->t);
    if (s == FW_OK)
        s = fw_h5_set_f64(c->label, g, "lr", o->lr);
    if (s == FW_OK)
        s = fw_h5_set_f64(c->label, g, "beta1", o->beta1);
    if (s == FW_OK)
        s = fw_h5_set_f64(c->label, g, "beta2", o->beta2);
    if (s == FW_OK)
        s = fw_h5_set_f64(c->label, g, "eps", o->eps);
    if (g >= 0)
        H5Gclose(g);
    return s;
}

fw_status fw_ckpt_put_adam(fw_ckpt *c, const char *name, const fw_adam *o) {
    assert_serial(__func__);
    assert_writing(c);
    FW_ASSERT(name && o, "bad arguments");
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = write_adam(c, name, o);
    fw_h5_quiet_end(q);
    return s;
}

/* Root attributes: the caller's scalars next to ours (format, experiment, ...). */
#define PUT_ATTR(call)                                                                         \
    do {                                                                                       \
        assert_serial(__func__);                                                               \
        assert_writing(c);                                                                     \
        FW_ASSERT(name != NULL, "name is NULL");                                               \
        fw_h5_quiet q = fw_h5_quiet_begin();                                                   \
        fw_status s = (call);                                                                  \
        fw_h5_quiet_end(q);                                                                    \
        return s;                                                                              \
    } while (0)

fw_status fw_ckpt_put_i64(fw_ckpt *c, const char *name, int64_t v) {
    PUT_ATTR(fw_h5_set_i64(c->label, c->file, name, v));
}

fw_status fw_ckpt_put_f64(fw_ckpt *c, const char *name, double v) {
    PUT_ATTR(fw_h5_set_f64(c->label, c->file, name, v));
}

fw_status fw_ckpt_put_str(fw_ckpt *c, const char *name, const char *v) {
    PUT_ATTR(fw_h5_set_str(c->label, c->file, name, v));
}

/* fsync, so the rename below never exposes a file whose blocks are not yet written. */
static fw_status sync_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return fw_errorf(FW_ERR_IO, "cannot sync %.400s: %s", path, strerror(err));
    }
    close(fd);
    return FW_OK;
}

fw_status fw_ckpt_commit(fw_ckpt *c) {
    assert_serial(__func__);
    assert_writing(c);
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = H5Fclose(c->file) < 0 ? fw_h5_error(c->label, "closing", c->tmp) : FW_OK;
    fw_h5_quiet_end(q);
    c->file = -1;
    if (s == FW_OK)
        s = sync_file(c->tmp);
    if (s == FW_OK && rename(c->tmp, c->path) != 0)
        s = fw_errorf(FW_ERR_IO, "cannot rename %.400s to %.400s: %s", c->tmp, c->path,
                      strerror(errno));
    if (s != FW_OK)
        unlink(c->tmp);
    free_ckpt(c);
    return s;
}

/* ---- reading ---- */

static herr_t collect_config(hid_t g, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    fw_ckpt *c = data;
    char *text = NULL;
    if (fw_h5_get_str(c->label, g, name, &text) != FW_OK)
        return -1;
    char **names = realloc(c->config_name, (size_t)(c->n_config + 1) * sizeof *names);
    if (names)
        c->config_name = names;
    char **texts = names ? realloc(c->config_text, (size_t)(c->n_config + 1) * sizeof *texts)
                         : NULL;
    if (texts)
        c->config_text = texts;
    char *copy = texts ? fw_strf("%s", name) : NULL;
    if (!copy) {
        free(text);
        return -1;
    }
    c->config_name[c->n_config] = copy;
    c->config_text[c->n_config] = text;
    c->n_config++;
    return 0;
}

static fw_status read_header(fw_ckpt *c) {
    char *format = NULL;
    int64_t version = 0;
    if (H5Aexists(c->file, "format") <= 0) {
        bool is_log = H5Aexists(c->file, "schema_version") > 0;
        H5Eclear2(H5E_DEFAULT);
        return fw_errorf(FW_ERR_FORMAT, "%.400s is not a checkpoint%s", c->path,
                         is_log ? " but a run log (its `checkpoint` attribute names the run's "
                                  "checkpoint)" : " (no 'format' attribute)");
    }
    fw_status s = fw_h5_get_str(c->label, c->file, "format", &format);
    if (s == FW_OK && strcmp(format, CKPT_FORMAT) != 0)
        s = fw_errorf(FW_ERR_FORMAT, "%.400s is not a checkpoint (format '%.100s')", c->path,
                      format);
    free(format);
    FW_TRY(s);
    FW_TRY(fw_h5_get_i64(c->label, c->file, "format_version", &version));
    if (version != CKPT_VERSION)
        return fw_errorf(FW_ERR_FORMAT, "%.400s: checkpoint format version %lld, this build "
                                        "reads version %d", c->path, (long long)version,
                         CKPT_VERSION);
    FW_TRY(fw_h5_get_str(c->label, c->file, "experiment", &c->experiment));
    hid_t g = H5Gopen2(c->file, "/config", H5P_DEFAULT);
    if (g < 0)
        return fw_h5_error_as(FW_ERR_FORMAT, c->label, "opening", "/config");
    hsize_t idx = 0;
    herr_t r = H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_config, c);
    H5Gclose(g);
    if (r < 0)
        return fw_h5_error_as(FW_ERR_FORMAT, c->label, "reading", "/config");
    return FW_OK;
}

/* Names the problem for the two failures users meet: no such file, and not a (whole) file. */
static fw_status open_error(const fw_ckpt *c) {
    if (access(c->path, R_OK) != 0)
        return fw_errorf(FW_ERR_IO, "cannot read checkpoint %.400s: %s", c->path,
                         strerror(errno));
    return fw_h5_error_as(FW_ERR_FORMAT, c->label, "opening", "the file (damaged or not HDF5?)");
}

fw_status fw_ckpt_open(fw_ckpt **out, const char *path) {
    assert_serial(__func__);
    FW_ASSERT(out && path, "bad arguments");
    H5dont_atexit();
    *out = NULL;
    fw_ckpt *c = new_ckpt(path);
    if (!c)
        return fw_errorf(FW_ERR_NOMEM, "out of memory reading checkpoint %.400s", path);
    fw_h5_quiet q = fw_h5_quiet_begin();
    c->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    fw_status s = c->file < 0 ? open_error(c) : read_header(c);
    fw_h5_quiet_end(q);
    if (s != FW_OK) {
        fw_ckpt_close(c);
        return s;
    }
    *out = c;
    return FW_OK;
}

static void assert_reading(const fw_ckpt *c) {
    FW_ASSERT(c != NULL && c->tmp == NULL && c->file >= 0, "checkpoint not open for reading");
}

const char *fw_ckpt_path(const fw_ckpt *c) {
    FW_ASSERT(c != NULL, "c is NULL");
    return c->path;
}

const char *fw_ckpt_experiment(const fw_ckpt *c) {
    assert_reading(c);
    return c->experiment;
}

int fw_ckpt_config_count(const fw_ckpt *c) {
    assert_reading(c);
    return c->n_config;
}

void fw_ckpt_config_item(const fw_ckpt *c, int i, const char **name, const char **text) {
    assert_reading(c);
    FW_ASSERT(i >= 0 && i < c->n_config, "config item %d of %d", i, c->n_config);
    *name = c->config_name[i];
    *text = c->config_text[i];
}

static fw_status read_floats(fw_ckpt *c, const char *name, float *x, size_t n) {
    if (H5Lexists(c->file, name, H5P_DEFAULT) <= 0) { /* fails when a parent group is missing */
        H5Eclear2(H5E_DEFAULT);
        return fw_errorf(FW_ERR_FORMAT, "%.400s has no '%s'", c->label, name);
    }
    hid_t ds = H5Dopen2(c->file, name, H5P_DEFAULT);
    if (ds < 0)
        return fw_h5_error_as(FW_ERR_FORMAT, c->label, "opening", name);
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    hsize_t len = 0;
    bool shape_ok = space >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
                    H5Sget_simple_extent_dims(space, &len, NULL) == 1;
    bool type_ok = type >= 0 && H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4;
    fw_status s = FW_OK;
    if (!shape_ok || !type_ok)
        s = fw_errorf(FW_ERR_FORMAT, "%.400s: '%s' is not a float32 vector", c->label, name);
    else if (len != (hsize_t)n)
        s = fw_errorf(FW_ERR_FORMAT, "%.400s: '%s' has %llu values, this run has %zu (another "
                                     "architecture or other shapes?)", c->label, name,
                      (unsigned long long)len, n);
    else if (n > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        s = fw_h5_error_as(FW_ERR_FORMAT, c->label, "reading (damaged file?)", name);
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(ds);
    return s;
}

fw_status fw_ckpt_get_floats(fw_ckpt *c, const char *name, float *x, size_t n) {
    assert_serial(__func__);
    assert_reading(c);
    FW_ASSERT(name && (x || n == 0), "bad arguments");
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = read_floats(c, name, x, n);
    fw_h5_quiet_end(q);
    return s;
}

/* The stored hyper-parameter must equal this run's (compared as the floats Adam uses). */
static fw_status check_hyper(fw_ckpt *c, hid_t g, const char *name, const char *what,
                             float mine) {
    double stored;
    FW_TRY(fw_h5_get_f64(c->label, g, what, &stored));
    if ((float)stored != mine)
        return fw_errorf(FW_ERR_FORMAT, "%.400s: %s %s is %g, this run uses %g", c->label, name,
                         what, stored, (double)mine);
    return FW_OK;
}

static fw_status read_adam(fw_ckpt *c, const char *name, fw_adam *o) {
    hid_t g = -1;
    if (H5Lexists(c->file, name, H5P_DEFAULT) <= 0 ||
        (g = H5Gopen2(c->file, name, H5P_DEFAULT)) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return fw_errorf(FW_ERR_FORMAT, "%.400s has no optimizer state '%s'", c->label, name);
    }
    int64_t n = 0, t = 0;
    fw_status s = fw_h5_get_i64(c->label, g, "n", &n);
    if (s == FW_OK && n != (int64_t)o->n)
        s = fw_errorf(FW_ERR_FORMAT, "%.400s: optimizer '%s' has %lld parameters, this run has "
                                     "%zu (another architecture or other shapes?)", c->label,
                      name, (long long)n, o->n);
    if (s == FW_OK)
        s = fw_h5_get_i64(c->label, g, "t", &t);
    if (s == FW_OK)
        s = check_hyper(c, g, name, "lr", o->lr);
    if (s == FW_OK)
        s = check_hyper(c, g, name, "beta1", o->beta1);
    if (s == FW_OK)
        s = check_hyper(c, g, name, "beta2", o->beta2);
    if (s == FW_OK)
        s = check_hyper(c, g, name, "eps", o->eps);
    H5Gclose(g);
    char *m = fw_strf("%s/m", name), *v = fw_strf("%s/v", name);
    if (s == FW_OK && (!m || !v))
        s = fw_errorf(FW_ERR_NOMEM, "out of memory reading %s", name);
    if (s == FW_OK)
        s = read_floats(c, m, o->m, o->n);
    if (s == FW_OK)
        s = read_floats(c, v, o->v, o->n);
    if (s == FW_OK)
        o->t = t;
    free(m);
    free(v);
    return s;
}

fw_status fw_ckpt_get_adam(fw_ckpt *c, const char *name, fw_adam *o) {
    assert_serial(__func__);
    assert_reading(c);
    FW_ASSERT(name && o && o->m && o->v, "bad arguments");
    fw_h5_quiet q = fw_h5_quiet_begin();
    fw_status s = read_adam(c, name, o);
    fw_h5_quiet_end(q);
    return s;
}

#define GET_ATTR(call)                                                                         \
    do {                                                                                       \
        assert_serial(__func__);                                                               \
        assert_reading(c);                                                                     \
        FW_ASSERT(name && v, "bad arguments");                                                 \
        fw_h5_quiet q = fw_h5_quiet_begin();                                                   \
        fw_status s = (call);                                                                  \
        fw_h5_quiet_end(q);                                                                    \
        return s;                                                                              \
    } while (0)

fw_status fw_ckpt_get_i64(fw_ckpt *c, const char *name, int64_t *v) {
    GET_ATTR(fw_h5_get_i64(c->label, c->file, name, v));
}

fw_status fw_ckpt_get_f64(fw_ckpt *c, const char *name, double *v) {
    GET_ATTR(fw_h5_get_f64(c->label, c->file, name, v));
}

fw_status fw_ckpt_get_str(fw_ckpt *c, const char *name, char **v) {
    GET_ATTR(fw_h5_get_str(c->label, c->file, name, v));
}

void fw_ckpt_close(fw_ckpt *c) {
    if (!c)
        return;
    assert_serial(__func__);
    fw_h5_quiet q = fw_h5_quiet_begin();
    if (c->file >= 0)
        H5Fclose(c->file);
    H5Eclear2(H5E_DEFAULT);
    fw_h5_quiet_end(q);
    if (c->tmp)
        unlink(c->tmp);
    free_ckpt(c);
}
