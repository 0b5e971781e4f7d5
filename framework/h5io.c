/* h5io.c: HDF5 helpers shared by the run log and the checkpoints (see h5io.h). */
#include "framework/h5io.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

char *fw_strf(const char *fmt, ...) {
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

void fw_utc_text(const char *fmt, char *buf, size_t size) {
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm) || strftime(buf, size, fmt, &tm) == 0)
        snprintf(buf, size, "unknown-time");
}

/* ---- errors ---- */

fw_h5_quiet fw_h5_quiet_begin(void) {
    fw_h5_quiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

void fw_h5_quiet_end(fw_h5_quiet q) {
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

fw_status fw_h5_error_as(fw_status s, const char *label, const char *what, const char *obj) {
    char reason[REASON_MAX] = "no detail from HDF5";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, reason);
    H5Eclear2(H5E_DEFAULT);
    return fw_errorf(s, "%.400s: %s %.200s failed (%s)", label, what, obj ? obj : "", reason);
}

fw_status fw_h5_error(const char *label, const char *what, const char *obj) {
    return fw_h5_error_as(FW_ERR_HDF5, label, what, obj);
}

/* ---- writing attributes ---- */

hid_t fw_h5_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* Opens attribute `name` of obj for writing, creating it if needed (so status can be rewritten
 * in place: that keeps the file's structure fixed, as SWMR needs). */
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

static fw_status attr_write(const char *label, hid_t obj, const char *name, hid_t file_type,
                            hid_t mem_type, const void *value) {
    hid_t a = attr_open(obj, name, file_type);
    herr_t ok = a >= 0 ? H5Awrite(a, mem_type, value) : -1;
    if (a >= 0)
        H5Aclose(a);
    return ok < 0 ? fw_h5_error(label, "writing attribute", name) : FW_OK;
}

fw_status fw_h5_set_i64(const char *label, hid_t obj, const char *name, int64_t v) {
    return attr_write(label, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

fw_status fw_h5_set_f64(const char *label, hid_t obj, const char *name, double v) {
    return attr_write(label, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

fw_status fw_h5_set_str(const char *label, hid_t obj, const char *name, const char *v) {
    hid_t t = fw_h5_str_type();
    if (t < 0)
        return fw_h5_error(label, "making a string type for attribute", name);
    fw_status s = attr_write(label, obj, name, t, t, &v);
    H5Tclose(t);
    return s;
}

fw_status fw_h5_set_config(const char *label, hid_t obj, const fw_config *cfg) {
    for (int i = 0; i < cfg->n; i++) {
        const fw_cfg_key *k = &cfg->keys[i];
        if (k->type == FW_CFG_INT)
            FW_TRY(fw_h5_set_i64(label, obj, k->name, (int64_t)cfg->num[i]));
        else if (k->type == FW_CFG_FLOAT)
            FW_TRY(fw_h5_set_f64(label, obj, k->name, cfg->num[i]));
        else
            FW_TRY(fw_h5_set_str(label, obj, k->name, cfg->text[i]));
    }
    return FW_OK;
}

/* ---- reading attributes ---- */

/* Opens attribute `name` if it exists and its type is of class `cls`; else FW_ERR_FORMAT. */
static fw_status attr_open_read(const char *label, hid_t obj, const char *name, H5T_class_t cls,
                                hid_t *out) {
    *out = -1;
    if (H5Aexists(obj, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return fw_errorf(FW_ERR_FORMAT, "%.400s: attribute '%s' is missing", label, name);
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return fw_h5_error_as(FW_ERR_FORMAT, label, "opening attribute", name);
    hid_t t = H5Aget_type(a);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    bool ok = c == cls && (cls != H5T_STRING || H5Tis_variable_str(t) > 0);
    if (t >= 0)
        H5Tclose(t);
    if (!ok) {
        H5Aclose(a);
        return fw_errorf(FW_ERR_FORMAT, "%.400s: attribute '%s' has an unexpected type", label,
                         name);
    }
    *out = a;
    return FW_OK;
}

static fw_status attr_read(const char *label, hid_t obj, const char *name, H5T_class_t cls,
                           hid_t mem_type, void *v) {
    hid_t a;
    FW_TRY(attr_open_read(label, obj, name, cls, &a));
    herr_t r = H5Aread(a, mem_type, v);
    H5Aclose(a);
    return r < 0 ? fw_h5_error_as(FW_ERR_FORMAT, label, "reading attribute", name) : FW_OK;
}

fw_status fw_h5_get_i64(const char *label, hid_t obj, const char *name, int64_t *v) {
    return attr_read(label, obj, name, H5T_INTEGER, H5T_NATIVE_INT64, v);
}

fw_status fw_h5_get_f64(const char *label, hid_t obj, const char *name, double *v) {
    return attr_read(label, obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v);
}

fw_status fw_h5_get_str(const char *label, hid_t obj, const char *name, char **v) {
    *v = NULL;
    hid_t t = fw_h5_str_type();
    if (t < 0)
        return fw_h5_error(label, "making a string type for attribute", name);
    char *raw = NULL;
    fw_status s = attr_read(label, obj, name, H5T_STRING, t, &raw);
    H5Tclose(t);
    if (s != FW_OK)
        return s;
    *v = fw_strf("%s", raw ? raw : "");
    H5free_memory(raw);
    return *v ? FW_OK : fw_errorf(FW_ERR_NOMEM, "out of memory reading attribute %s", name);
}

/* ---- file access ---- */

hid_t fw_h5_fapl_latest(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}
