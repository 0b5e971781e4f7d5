/* test_log.c: the HDF5 run log (schema 2, framework/log.h), read back with the HDF5 C API and
 * with h5py. Real runs of the experiments are checked in test_runrecord.c.
 *
 * Tests that fork or call system() use no OpenMP before doing so (a forked OpenMP runtime is not
 * safe to use); the one test that opens a parallel region does nothing else.
 */
#include "framework/log.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

static const fw_cfg_key keys[] = {
    {"ways", FW_CFG_INT, "5", 2, 20, NULL, "classes per episode"},
    {"inner_lr", FW_CFG_FLOAT, "0.4", 0, 10, NULL, "inner-loop learning rate"},
    {"arch", FW_CFG_CHOICE, "strided", 0, 0, "strided|pool", "downsampling"},
    {"tag", FW_CFG_STR, "", 0, 0, NULL, "free text"},
};

/* ---- helpers ---- */

static void make_config(fw_config *c) {
    char *argv[] = {"prog", "ways=7", "inner_lr=0.125", "arch=pool", "tag=größe", NULL};
    cr_assert_eq(fw_config_parse(c, keys, (int)FW_COUNTOF(keys), 5, argv), FW_OK, "%s",
                 fw_last_error());
}

static char *make_tmpdir(void) {
    char *dir = strdup("/tmp/metagan-test-log-XXXXXX");
    cr_assert_not_null(dir);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    return dir;
}

static void remove_tree(char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    cr_expect_eq(system(cmd), 0, "could not remove %s", dir);
    free(dir);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Path of the only run file (.h5, not latest.h5) in dir (caller frees). */
static char *only_h5_in(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    char *found = NULL;
    int count = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (ends_with(e->d_name, ".h5") && strcmp(e->d_name, "latest.h5") != 0) {
            count++;
            free(found);
            size_t n = strlen(dir) + strlen(e->d_name) + 2;
            found = malloc(n);
            snprintf(found, n, "%s/%s", dir, e->d_name);
        }
    closedir(d);
    cr_assert_eq(count, 1, "expected one .h5 file in %s, found %d", dir, count);
    return found;
}

/* Runs the h5py check below on `path`; the arguments are what the file must contain
 * (n_loss < 0: no /metrics group at all). */
static const char *h5py_check =
    "import sys, numbers, h5py\n"
    "path, status, n_loss, n_acc, n_eval = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])\n"
    "def check(ok, what):\n"
    "    if not ok:\n"
    "        sys.exit(\"h5py check failed: \" + what)\n"
    "with h5py.File(path, \"r\", swmr=True) as f:\n"
    "    a = f.attrs\n"
    "    for k in (\"arch\", \"tag\", \"experiment\", \"start_time\", \"status\", \"end_time\",\n"
    "              \"git_commit\", \"hostname\", \"dnnl_version\", \"hdf5_version\", \"argv\"):\n"
    "        check(type(a[k]) is str, k + \" should be str, is \" + repr(type(a[k])))\n"
    "    for k in (\"ways\", \"schema_version\", \"git_dirty\", \"n_threads\", \"pid\"):\n"
    "        check(isinstance(a[k], numbers.Integral) and a[k].dtype == \"int64\",\n"
    "              k + \" should be int64, is \" + repr(type(a[k])))\n"
    "    check(isinstance(a[\"inner_lr\"], float), \"inner_lr should be float\")\n"
    "    check(a[\"ways\"] == 7 and a[\"inner_lr\"] == 0.125, \"config values\")\n"
    "    check(a[\"arch\"] == \"pool\" and a[\"tag\"] == \"gr\\u00f6\\u00dfe\", \"config text\")\n"
    "    check(a[\"schema_version\"] == 2, \"schema_version\")\n"
    "    check(a[\"status\"] == status, \"status is \" + repr(a[\"status\"]))\n"
    "    check((a[\"end_time\"] == \"\") == (status == \"running\"), \"end_time \" + a[\"end_time\"])\n"
    "    names = (\"loss\", \"train/acc\") if n_loss >= 0 else ()\n"
    "    check(n_loss >= 0 or \"metrics\" not in f, \"no metrics expected\")\n"
    "    for name, n, stride in zip(names, (n_loss, n_acc), (1, 10)):\n"
    "        g = f[\"metrics/\" + name]\n"
    "        for col in (\"step\", \"value\", \"wall_time\"):\n"
    "            check(g[col].shape == (n,), name + \"/\" + col + \" has shape \"\n"
    "                  + repr(g[col].shape) + \", expected \" + repr((n,)))\n"
    "        check(list(g[\"step\"][:5]) == list(range(0, stride * min(n, 5), stride)),\n"
    "              name + \" steps \" + repr(list(g[\"step\"][:5])))\n"
    "    if n_eval:\n"
    "        e = f[\"eval/val/episodes\"]\n"
    "        check(e.shape == (1, n_eval) and e.dtype == \"float32\", \"eval/val shape/type\")\n"
    "        check(int(f[\"eval/val\"].attrs[\"n_episodes\"]) == n_eval, \"eval n_episodes\")\n"
    "        check(list(f[\"eval/val/step\"]) == [3000], \"eval step\")\n"
    "    if n_loss >= 0:\n"
    "        last = f[\"flushes/rows\"][-1]\n"
    "        series = list(f[\"flushes\"].attrs[\"series\"])\n"
    "        check(last[series.index(\"metrics/loss\")] == n_loss, \"last flush row: \" + repr(last))\n"
    "print(\"h5py ok:\", path)\n";

static int run_h5py(const char *path, const char *status, int n_loss, int n_acc, int n_eval) {
    cr_assert(strchr(h5py_check, '\'') == NULL, "the script is passed in single quotes");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PYTHON " -c '%s' '%s' '%s' %d %d %d", h5py_check, path, status,
             n_loss, n_acc, n_eval);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* ---- HDF5 C API readers ---- */

static hsize_t dataset_len(hid_t file, const char *name) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    cr_assert_geq(ds, 0, "cannot open dataset %s", name);
    hid_t space = H5Dget_space(ds);
    cr_assert_eq(H5Sget_simple_extent_ndims(space), 1, "%s should be 1-D", name);
    hsize_t n;
    H5Sget_simple_extent_dims(space, &n, NULL);
    H5Sclose(space);
    H5Dclose(ds);
    return n;
}

/* Reads a whole 1-D dataset of n elements as mem_type into a new buffer. */
static void *read_dataset(hid_t file, const char *name, hid_t mem_type, size_t elem, hsize_t n) {
    cr_assert_eq(dataset_len(file, name), n, "%s: wrong length", name);
    void *buf = malloc(elem * n);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    cr_assert_geq(H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0, "read %s", name);
    H5Dclose(ds);
    return buf;
}

static void expect_dataset_type(hid_t file, const char *name, H5T_class_t cls, size_t size) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t t = H5Dget_type(ds);
    cr_expect_eq(H5Tget_class(t), cls, "%s: wrong type class", name);
    cr_expect_eq(H5Tget_size(t), size, "%s: %zu-byte elements, expected %zu", name,
                 H5Tget_size(t), size);
    H5Tclose(t);
    H5Dclose(ds);
}

/* Checks the attribute's stored class and size (0 = variable-length UTF-8 string). */
static void expect_attr_type(hid_t obj, const char *name, H5T_class_t cls, size_t size) {
    cr_assert_gt(H5Aexists(obj, name), 0, "attribute %s missing", name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    cr_expect_eq(H5Tget_class(t), cls, "attribute %s: wrong type class", name);
    if (cls == H5T_STRING) {
        cr_expect_gt(H5Tis_variable_str(t), 0, "attribute %s: not a variable-length string",
                     name);
        cr_expect_eq(H5Tget_cset(t), H5T_CSET_UTF8, "attribute %s: not UTF-8", name);
    } else {
        cr_expect_eq(H5Tget_size(t), size, "attribute %s: wrong size", name);
    }
    H5Tclose(t);
    H5Aclose(a);
}

static int64_t attr_i64(hid_t obj, const char *name) {
    expect_attr_type(obj, name, H5T_INTEGER, 8);
    int64_t v = 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    return v;
}

static double attr_f64(hid_t obj, const char *name) {
    expect_attr_type(obj, name, H5T_FLOAT, 8);
    double v = 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}

/* The attribute as a string in buf (truncated to size). */
static const char *attr_str(hid_t obj, const char *name, char *buf, size_t size) {
    expect_attr_type(obj, name, H5T_STRING, 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char *s = NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    cr_assert_geq(H5Aread(a, t, &s), 0, "read attribute %s", name);
    snprintf(buf, size, "%s", s ? s : "");
    H5free_memory(s);
    H5Aclose(a);
    H5Tclose(t);
    return buf;
}

/* "2026-12-03T16:50:56Z" */
static bool is_iso_utc(const char *s) {
    const char *pat = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != strlen(pat))
        return false;
    for (size_t i = 0; pat[i]; i++)
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return false;
    return true;
}

/* "<dir>/yyyymmdd-HHMMSS-s<seed>[-k].h5" */
static bool is_run_name(const char *path, const char *dir, const char *seed_part) {
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0 || path[n] != '/')
        return false;
    const char *base = path + n + 1;
    for (int i = 0; i < 15; i++)
        if (i == 8 ? base[i] != '-' : (base[i] < '0' || base[i] > '9'))
            return false;
    return strncmp(base + 15, seed_part, strlen(seed_part)) == 0 && ends_with(base, ".h5");
}

/* ---- writing and reading back ---- */

#define N_ROWS 3000
#define N_EVAL 600

static double loss_at(int i) {
    return 2.0 / (1.0 + i);
}

#define GRID_N 3 /* images per grid: 3 images of 4x5 in 2 columns, a 8x10 grid */

/* Declares what write_run writes and starts the log. */
static void declare_and_start(fw_log *l) {
    cr_assert_eq(fw_log_add_scalar(l, "loss"), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_log_add_scalar(l, "train/acc"), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_log_add_eval(l, "val", N_EVAL), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_log_add_images(l, "gen", GRID_N, 4, 5, 2), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_log_start(l), FW_OK, "%s", fw_last_error());
}

/* Pixel (y, x) of image i of grid k, in [0, 1]. */
static float pixel(int k, int i, int y, int x) {
    return (float)((k * 31 + i * 7 + y * 5 + x) % 256) / 255.0f;
}

static void write_grid(fw_log *l, int k, int64_t step) {
    float img[GRID_N * 4 * 5];
    for (int i = 0; i < GRID_N; i++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 5; x++)
                img[(i * 4 + y) * 5 + x] = pixel(k, i, y, x);
    cr_assert_eq(fw_log_images(l, "gen", step, img), FW_OK, "%s", fw_last_error());
}

static void write_run(fw_log *l) {
    declare_and_start(l);
    write_grid(l, 0, 10);
    for (int i = 0; i < N_ROWS; i++) {
        cr_assert_eq(fw_log_scalar(l, "loss", i, loss_at(i)), FW_OK, "%s", fw_last_error());
        cr_assert_eq(fw_log_scalar(l, "train/acc", 10 * i, 0.5 + i * 1e-4), FW_OK, "%s",
                     fw_last_error());
        if (i == N_ROWS / 2)
            cr_assert_eq(fw_log_flush(l), FW_OK, "%s", fw_last_error());
    }
    float acc[N_EVAL];
    for (int i = 0; i < N_EVAL; i++)
        acc[i] = (float)(i % 5) / 4.0f;
    cr_assert_eq(fw_log_eval(l, "val", N_ROWS, acc, N_EVAL, 0.5, 0.0283), FW_OK, "%s",
                 fw_last_error());
    write_grid(l, 1, 20);
}

static void check_metrics(hid_t f) {
    int64_t *step = read_dataset(f, "/metrics/loss/step", H5T_NATIVE_INT64, 8, N_ROWS);
    double *value = read_dataset(f, "/metrics/loss/value", H5T_NATIVE_DOUBLE, 8, N_ROWS);
    double *wall = read_dataset(f, "/metrics/loss/wall_time", H5T_NATIVE_DOUBLE, 8, N_ROWS);
    for (int i = 0; i < N_ROWS; i++) {
        cr_assert_eq(step[i], i, "loss step[%d] = %ld", i, (long)step[i]);
        cr_assert_eq(value[i], loss_at(i), "loss value[%d] = %g, expected %g", i, value[i],
                     loss_at(i));
        cr_assert(wall[i] >= 0 && (i == 0 || wall[i] >= wall[i - 1]),
                  "wall_time must start at >= 0 and never decrease (row %d: %g)", i, wall[i]);
    }
    free(step);
    free(value);
    free(wall);
    step = read_dataset(f, "/metrics/train/acc/step", H5T_NATIVE_INT64, 8, N_ROWS);
    value = read_dataset(f, "/metrics/train/acc/value", H5T_NATIVE_DOUBLE, 8, N_ROWS);
    for (int i = 0; i < N_ROWS; i++) {
        cr_assert_eq(step[i], 10 * i, "train/acc step[%d] = %ld", i, (long)step[i]);
        cr_assert_eq(value[i], 0.5 + i * 1e-4, "train/acc value[%d] = %g", i, value[i]);
    }
    free(step);
    free(value);
    expect_dataset_type(f, "/metrics/train/acc/step", H5T_INTEGER, 8);
    expect_dataset_type(f, "/metrics/train/acc/value", H5T_FLOAT, 8);
    expect_dataset_type(f, "/metrics/train/acc/wall_time", H5T_FLOAT, 8);
}

/* Reads a whole dataset of `elems` elements of any rank as mem_type (caller frees). */
static void *read_all(hid_t file, const char *name, hid_t mem_type, size_t elem, size_t elems) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    cr_assert_geq(ds, 0, "cannot open dataset %s", name);
    hid_t space = H5Dget_space(ds);
    cr_assert_eq((size_t)H5Sget_simple_extent_npoints(space), elems, "%s: wrong size", name);
    H5Sclose(space);
    void *buf = malloc(elem * elems);
    cr_assert_geq(H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0, "read %s", name);
    H5Dclose(ds);
    return buf;
}

static void check_eval(hid_t f) {
    float *acc = read_all(f, "/eval/val/episodes", H5T_NATIVE_FLOAT, 4, N_EVAL);
    for (int i = 0; i < N_EVAL; i++)
        cr_assert_eq(acc[i], (float)(i % 5) / 4.0f, "eval acc[%d] = %g", i, acc[i]);
    free(acc);
    expect_dataset_type(f, "/eval/val/episodes", H5T_FLOAT, 4);
    double *mean = read_dataset(f, "/eval/val/mean", H5T_NATIVE_DOUBLE, 8, 1);
    double *ci = read_dataset(f, "/eval/val/ci95", H5T_NATIVE_DOUBLE, 8, 1);
    int64_t *step = read_dataset(f, "/eval/val/step", H5T_NATIVE_INT64, 8, 1);
    cr_expect_eq(mean[0], 0.5);
    cr_expect_eq(ci[0], 0.0283);
    cr_expect_eq(step[0], N_ROWS);
    free(mean);
    free(ci);
    free(step);
    hid_t g = H5Gopen2(f, "/eval/val", H5P_DEFAULT);
    cr_expect_eq(attr_i64(g, "n_episodes"), N_EVAL);
    H5Gclose(g);
}

/* Two grids (steps 10, 20) of 3 images 4x5 in 2 columns: (2, 8, 10) uint8, black padding. */
static void check_samples(hid_t f) {
    uint8_t *g = read_all(f, "/samples/gen/images", H5T_NATIVE_UINT8, 1, 2 * 8 * 10);
    for (int k = 0; k < 2; k++)
        for (int gy = 0; gy < 8; gy++)
            for (int gx = 0; gx < 10; gx++) {
                int i = gy / 4 * 2 + gx / 5, y = gy % 4, x = gx % 5;
                int want = i < GRID_N ? (int)lrintf(pixel(k, i, y, x) * 255.0f) : 0;
                cr_assert_eq(g[(k * 8 + gy) * 10 + gx], want, "grid %d pixel (%d, %d)", k, gy, gx);
            }
    free(g);
    int64_t *step = read_dataset(f, "/samples/gen/step", H5T_NATIVE_INT64, 8, 2);
    cr_expect(step[0] == 10 && step[1] == 20, "sample steps %ld %ld", (long)step[0], (long)step[1]);
    free(step);
    hid_t grp = H5Gopen2(f, "/samples/gen", H5P_DEFAULT);
    cr_expect_eq(attr_i64(grp, "rows"), 2);
    cr_expect_eq(attr_i64(grp, "cols"), 2);
    cr_expect_eq(attr_i64(grp, "image_h"), 4);
    cr_expect_eq(attr_i64(grp, "image_w"), 5);
    H5Gclose(grp);
}

/* The last /flushes row counts every row in the file (the log was closed). */
static void check_flushes(hid_t f) {
    hid_t ds = H5Dopen2(f, "/flushes/rows", H5P_DEFAULT);
    cr_assert_geq(ds, 0, "no /flushes/rows");
    hid_t space = H5Dget_space(ds);
    hsize_t dims[2];
    cr_assert_eq(H5Sget_simple_extent_dims(space, dims, NULL), 2);
    cr_assert_eq(dims[1], 4, "4 series, %d columns", (int)dims[1]);
    H5Sclose(space);
    H5Dclose(ds);
    int64_t *rows = read_all(f, "/flushes/rows", H5T_NATIVE_INT64, 8, dims[0] * dims[1]);
    const int64_t *last = rows + (dims[0] - 1) * 4; /* declared order: loss, train/acc, val, gen */
    cr_expect(last[0] == N_ROWS && last[1] == N_ROWS && last[2] == 1 && last[3] == 2,
              "last flush row %ld %ld %ld %ld", (long)last[0], (long)last[1], (long)last[2],
              (long)last[3]);
    free(rows);
    double *t = read_dataset(f, "/flushes/unix_time", H5T_NATIVE_DOUBLE, 8, dims[0]);
    cr_expect(t[dims[0] - 1] > 1.6e9, "unix_time %g", t[dims[0] - 1]);
    free(t);
}

static void check_root(hid_t f) {
    char buf[256];
    cr_expect_eq(attr_i64(f, "ways"), 7);
    cr_expect_eq(attr_f64(f, "inner_lr"), 0.125);
    cr_expect_str_eq(attr_str(f, "arch", buf, sizeof buf), "pool");
    cr_expect_str_eq(attr_str(f, "tag", buf, sizeof buf), "größe");
    cr_expect_str_eq(attr_str(f, "experiment", buf, sizeof buf), "exp_a");
    cr_expect_eq(attr_i64(f, "schema_version"), 2);
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    char want[32];
    snprintf(want, sizeof want, "%u.%u.%u", maj, min, rel);
    cr_expect_str_eq(attr_str(f, "hdf5_version", buf, sizeof buf), want);
    cr_expect(strchr("0123456789", attr_str(f, "dnnl_version", buf, sizeof buf)[0]) != NULL,
              "dnnl_version '%s'", buf);
    attr_str(f, "git_commit", buf, sizeof buf);
    cr_expect(strcmp(buf, "unknown") == 0 || strspn(buf, "0123456789abcdef") == 40,
              "git_commit '%s'", buf);
    int64_t dirty = attr_i64(f, "git_dirty");
    cr_expect(dirty >= -1 && dirty <= 1, "git_dirty %ld", (long)dirty);
    cr_expect_gt(strlen(attr_str(f, "hostname", buf, sizeof buf)), 0);
    cr_expect_eq(attr_i64(f, "pid"), (int64_t)getpid());
    cr_expect_gt(attr_i64(f, "n_threads"), 0);
    cr_expect_gt(strlen(attr_str(f, "compiler", buf, sizeof buf)), 0);
    cr_expect_eq(attr_f64(f, "flush_interval"), 10.0);
    cr_expect_str_eq(attr_str(f, "checkpoint", buf, sizeof buf), "");
    cr_expect_eq(attr_i64(f, "resume_step"), 0);
    cr_expect(is_iso_utc(attr_str(f, "start_time", buf, sizeof buf)), "start_time '%s'", buf);
    cr_expect(is_iso_utc(attr_str(f, "end_time", buf, sizeof buf)), "end_time '%s'", buf);
    cr_expect_str_eq(attr_str(f, "status", buf, sizeof buf), "finished");
}

Test(log, write_and_read_back) {
    char *tmp = make_tmpdir();
    fw_config cfg;
    make_config(&cfg);
    fw_log *l = NULL;
    cr_assert_eq(fw_log_open(&l, tmp, "exp_a", &cfg, 42), FW_OK, "%s", fw_last_error());
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s/exp_a", tmp);
    snprintf(path, sizeof path, "%s", fw_log_path(l));
    cr_expect(is_run_name(path, dir, "-s42"), "unexpected run file name %s", path);
    write_run(l);
    cr_assert_eq(fw_log_close(l, "finished"), FW_OK, "%s", fw_last_error());

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0, "cannot reopen %s", path);
    check_root(f);
    check_metrics(f);
    check_eval(f);
    check_samples(f);
    check_flushes(f);
    H5Fclose(f);
    char latest[1024], target[1024];
    snprintf(latest, sizeof latest, "%s/latest.h5", dir);
    ssize_t n = readlink(latest, target, sizeof target - 1);
    cr_assert_gt(n, 0, "%s should be a symlink", latest);
    target[n] = '\0';
    cr_expect_str_eq(target, strrchr(path, '/') + 1, "latest.h5 -> %s", target);

    cr_expect_eq(run_h5py(path, "finished", N_ROWS, N_ROWS, N_EVAL), 0, "h5py check of %s",
                 path);
    fw_config_free(&cfg);
    remove_tree(tmp);
}

Test(log, same_second_runs_get_distinct_files) {
    char *tmp = make_tmpdir();
    fw_config cfg;
    make_config(&cfg);
    fw_log *l[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fw_log_open(&l[i], tmp, "exp_b", &cfg, 7), FW_OK, "%s", fw_last_error());
    const char *p0 = fw_log_path(l[0]), *p1 = fw_log_path(l[1]), *p2 = fw_log_path(l[2]);
    cr_expect_str_neq(p0, p1);
    cr_expect_str_neq(p1, p2);
    cr_expect_str_neq(p0, p2);
    /* Same timestamp (the usual case): the second file carries "-1" instead of overwriting. */
    size_t stamp = strlen(p0) - strlen("-s7.h5");
    if (strncmp(p0, p1, stamp) == 0)
        cr_expect(ends_with(p1, "-s7-1.h5"), "second run in one second: %s", p1);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(fw_log_close(l[i], "finished"), FW_OK, "%s", fw_last_error());
    fw_config_free(&cfg);
    remove_tree(tmp);
}

Test(log, close_null_is_ok) {
    cr_expect_eq(fw_log_close(NULL, "finished"), FW_OK);
}

/* ---- environment errors ---- */

Test(log, regular_file_in_the_way) {
    char *tmp = make_tmpdir();
    char blocker[512];
    snprintf(blocker, sizeof blocker, "%s/blocker", tmp);
    FILE *fp = fopen(blocker, "w");
    cr_assert_not_null(fp);
    fclose(fp);
    fw_config cfg;
    make_config(&cfg);

    /* runs_dir itself is a file, a file is above runs_dir, the experiment dir is a file */
    char below[600];
    snprintf(below, sizeof below, "%s/runs", blocker);
    const char *runs_dirs[] = {blocker, below, tmp};
    const char *exps[] = {"exp", "exp", "blocker"};
    for (int i = 0; i < 3; i++) {
        fw_log *l = (fw_log *)&cfg; /* must be reset to NULL on failure */
        fw_status s = fw_log_open(&l, runs_dirs[i], exps[i], &cfg, 1);
        const char *msg = fw_last_error();
        cr_expect_eq(s, FW_ERR_IO, "case %d: expected FW_ERR_IO, got %s (%s)", i,
                     fw_status_str(s), msg);
        cr_expect_null(l, "case %d: no log on failure", i);
        cr_expect(strstr(msg, blocker) != NULL, "case %d: message '%s' should name %s", i, msg,
                  blocker);
    }
    fw_config_free(&cfg);
    remove_tree(tmp);
}

Test(log, non_writable_runs_dir) {
    if (geteuid() == 0)
        cr_skip_test("running as root: permissions do not stop root");
    char *tmp = make_tmpdir();
    cr_assert_eq(chmod(tmp, 0555), 0);
    fw_config cfg;
    make_config(&cfg);
    fw_log *l = NULL;
    fw_status s = fw_log_open(&l, tmp, "exp", &cfg, 1);
    cr_expect_eq(s, FW_ERR_IO, "got %s (%s)", fw_status_str(s), fw_last_error());
    cr_expect(strstr(fw_last_error(), tmp) != NULL, "message '%s' should name %s",
              fw_last_error(), tmp);
    fw_config_free(&cfg);
    remove_tree(tmp);
}

/* ---- children: a full disk, a killed run ---- */

/* Child processes report through their exit code; they must not use Criterion's asserts. */
enum { CHILD_OK = 0, CHILD_CONFIG = 3, CHILD_OPEN, CHILD_SCALAR, CHILD_FLUSH, CHILD_NO_KILL,
       CHILD_WRONG_STATUS };

/* Opens a log with the two scalar series; starts it unless start is false. */
static fw_log *child_open(const char *tmp, const char *experiment, uint64_t seed, bool start) {
    static fw_config cfg; /* lives until the child ends */
    char *argv[] = {"prog", "ways=7", "inner_lr=0.125", "arch=pool", "tag=größe", NULL};
    if (fw_config_parse(&cfg, keys, (int)FW_COUNTOF(keys), 5, argv) != FW_OK)
        _exit(CHILD_CONFIG);
    fw_log *l;
    if (fw_log_open(&l, tmp, experiment, &cfg, seed) != FW_OK ||
        fw_log_add_scalar(l, "loss") != FW_OK || fw_log_add_scalar(l, "train/acc") != FW_OK ||
        (start && fw_log_start(l) != FW_OK))
        _exit(CHILD_OPEN);
    return l;
}

/* Logs rows [from, to) of both series. */
static void child_rows(fw_log *l, int from, int to) {
    for (int i = from; i < to; i++)
        if (fw_log_scalar(l, "loss", i, loss_at(i)) != FW_OK ||
            fw_log_scalar(l, "train/acc", 10 * i, 0.5) != FW_OK)
            _exit(CHILD_SCALAR);
}

/* Forks; the child runs fn(tmp, fd) with fd the write end of a pipe for a message. Returns the
 * child's wait status; the message (possibly empty) goes to msg. */
static int run_child(void (*fn)(const char *, int), const char *tmp, char *msg, size_t size) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0, "pipe failed");
    pid_t pid = fork(); /* no OpenMP has run in this process */
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) {
        close(fds[0]);
        fn(tmp, fds[1]);
        _exit(CHILD_NO_KILL);
    }
    close(fds[1]);
    size_t got = 0;
    for (ssize_t r; got + 1 < size && (r = read(fds[0], msg + got, size - 1 - got)) > 0;)
        got += (size_t)r;
    msg[got] = '\0';
    close(fds[0]);
    int wstatus;
    cr_assert_eq(waitpid(pid, &wstatus, 0), pid);
    return wstatus;
}

/* A small file size limit stands in for a full disk. The child then ends through exit(), so
 * HDF5's exit-time cleanup (if any) runs: it must not crash on the failed file. */
static void full_disk_child(const char *tmp, int fd) {
    fw_log *l = child_open(tmp, "exp_full", 1, true);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {64 * 1024, 64 * 1024};
    setrlimit(RLIMIT_FSIZE, &small);
    child_rows(l, 0, 50000);
    fw_status s = fw_log_flush(l);
    const char *msg = fw_last_error();
    if (write(fd, msg, strlen(msg)) < 0)
        _exit(CHILD_FLUSH);
    fw_status sc = fw_log_close(l, "failed: disk full");
    exit(s == FW_ERR_HDF5 && sc == FW_ERR_HDF5 ? CHILD_OK : CHILD_WRONG_STATUS);
}

Test(log, full_disk_is_hdf5_error_without_crash) {
    char *tmp = make_tmpdir();
    char msg[1024];
    int w = run_child(full_disk_child, tmp, msg, sizeof msg);
    cr_expect(WIFEXITED(w), "child crashed with signal %d (flush message: %s)",
              WIFSIGNALED(w) ? WTERMSIG(w) : 0, msg);
    cr_expect(WIFEXITED(w) && WEXITSTATUS(w) == CHILD_OK,
              "flush and close on a full disk should both be FW_ERR_HDF5 (child code %d)",
              WIFEXITED(w) ? WEXITSTATUS(w) : -1);
    cr_expect(strstr(msg, tmp) != NULL && strstr(msg, "File too large") != NULL,
              "message should name the file and the reason: '%s'", msg);
    remove_tree(tmp);
}

/* 2000 flushed rows per series and 500 unflushed ones, then SIGKILL. */
static void killed_after_flush_child(const char *tmp, int fd) {
    (void)fd;
    fw_log *l = child_open(tmp, "exp_k", 9, true);
    child_rows(l, 0, 2000);
    if (fw_log_flush(l) != FW_OK)
        _exit(CHILD_FLUSH);
    child_rows(l, 2000, 2500);
    raise(SIGKILL);
}

/* 1000 rows flushed; then the disk fills up during the next flush, which must fail; SIGKILL.
 * The /flushes row comes after its data, so the file cannot claim the rows that failed. */
static void failed_flush_child(const char *tmp, int fd) {
    (void)fd;
    fw_log *l = child_open(tmp, "exp_k", 9, true);
    child_rows(l, 0, 1000);
    struct stat st;
    if (fw_log_flush(l) != FW_OK || stat(fw_log_path(l), &st) != 0)
        _exit(CHILD_FLUSH);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {(rlim_t)st.st_size + 4096, (rlim_t)st.st_size + 4096};
    setrlimit(RLIMIT_FSIZE, &lim);
    child_rows(l, 1000, 60000);
    if (fw_log_flush(l) == FW_OK)
        _exit(CHILD_WRONG_STATUS);
    raise(SIGKILL);
}

static const char *flushed_check =
    "import sys, h5py\n"
    "f = h5py.File(sys.argv[1], \"r\", swmr=True)\n"
    "names = list(f[\"flushes\"].attrs[\"series\"])\n"
    "claimed = int(f[\"flushes/rows\"][-1][names.index(\"metrics/loss\")])\n"
    "g = f[\"metrics/loss\"]\n"
    "n = min(len(g[c]) for c in (\"step\", \"value\", \"wall_time\"))\n"
    "steps = list(g[\"step\"][:claimed])\n"
    "if claimed != 1000 or n < claimed or steps != list(range(claimed)):\n"
    "    sys.exit(\"last flush claims %d rows; %d complete rows\" % (claimed, n))\n";

/* Killed right after the start (its one flush): the file must hold the config. */
static void killed_after_start_child(const char *tmp, int fd) {
    (void)fd;
    child_open(tmp, "exp_k", 9, true);
    raise(SIGKILL);
}

/* Killed before the start: no file under a run's name. */
static void killed_before_start_child(const char *tmp, int fd) {
    (void)fd;
    child_open(tmp, "exp_k", 9, false);
    raise(SIGKILL);
}

/* The run file in tmp/exp_k after the child died by SIGKILL (caller frees). */
static char *killed_run_file(void (*fn)(const char *, int), const char *tmp) {
    char msg[16];
    int w = run_child(fn, tmp, msg, sizeof msg);
    cr_assert(WIFSIGNALED(w) && WTERMSIG(w) == SIGKILL,
              "child should die by SIGKILL (exit code %d means a log call failed)",
              WIFEXITED(w) ? WEXITSTATUS(w) : -1);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/exp_k", tmp);
    return only_h5_in(dir);
}

Test(log, killed_run_is_readable) {
    char *tmp = make_tmpdir();
    char *path = killed_run_file(killed_after_flush_child, tmp);
    cr_expect_eq(run_h5py(path, "running", 2000, 2000, 0), 0, "h5py check of killed run %s",
                 path);
    /* a killed SWMR writer leaves the file marked as open: readers need SWMR_READ */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    cr_assert_geq(f, 0, "C API cannot open killed run %s", path);
    cr_expect_eq(dataset_len(f, "/metrics/loss/value"), 2000);
    char buf[64];
    cr_expect_str_eq(attr_str(f, "status", buf, sizeof buf), "running");
    H5Fclose(f);
    free(path);
    remove_tree(tmp);
}

Test(log, failed_flush_claims_no_unwritten_rows) {
    char *tmp = make_tmpdir();
    char *path = killed_run_file(failed_flush_child, tmp);
    char cmd[4096];
    cr_assert(strchr(flushed_check, '\'') == NULL);
    snprintf(cmd, sizeof cmd, PYTHON " -c '%s' '%s'", flushed_check, path);
    int rc = system(cmd);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "h5py check of %s", path);
    free(path);
    remove_tree(tmp);
}

Test(log, killed_right_after_start_keeps_config) {
    char *tmp = make_tmpdir();
    char *path = killed_run_file(killed_after_start_child, tmp);
    cr_expect_eq(run_h5py(path, "running", 0, 0, 0), 0, "h5py check of killed run %s", path);
    free(path);
    remove_tree(tmp);
}

Test(log, killed_before_start_leaves_no_run_file) {
    char *tmp = make_tmpdir();
    char msg[16];
    int w = run_child(killed_before_start_child, tmp, msg, sizeof msg);
    cr_assert(WIFSIGNALED(w) && WTERMSIG(w) == SIGKILL, "child should die by SIGKILL (code %d)",
              WIFEXITED(w) ? WEXITSTATUS(w) : -1);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/exp_k", tmp);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int visible = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        visible += e->d_name[0] != '.';
    closedir(d);
    cr_expect_eq(visible, 0, "a run killed before fw_log_start left a visible file in %s", dir);
    remove_tree(tmp);
}

Test(log, closed_before_start_leaves_nothing) {
    char *tmp = make_tmpdir();
    fw_config cfg;
    make_config(&cfg);
    fw_log *l = NULL;
    cr_assert_eq(fw_log_open(&l, tmp, "exp_c", &cfg, 3), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_log_add_scalar(l, "loss"), FW_OK, "%s", fw_last_error());
    cr_expect_eq(fw_log_close(l, "failed: before start"), FW_OK, "%s", fw_last_error());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s/exp_c')\"", tmp);
    cr_expect_eq(system(cmd), 0, "%s/exp_c should be empty", tmp);
    fw_config_free(&cfg);
    remove_tree(tmp);
}

/* ---- programmer errors abort ---- */

/* A log with series "loss" and eval "val" (2 episodes), started if `start`. */
static fw_log *open_scratch_log(fw_config *cfg, bool start) {
    char *tmp = make_tmpdir();
    make_config(cfg);
    fw_log *l = NULL;
    cr_assert_eq(fw_log_open(&l, tmp, "exp_x", cfg, 1), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_log_add_scalar(l, "loss"), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_log_add_eval(l, "val", 2), FW_OK, "%s", fw_last_error());
    if (start)
        cr_assert_eq(fw_log_start(l), FW_OK, "%s", fw_last_error());
    remove_tree(tmp); /* now: these tests abort; the open file outlives its directory entry */
    return l;
}

Test(log, evals_append_rows) {
    fw_config cfg;
    fw_log *l = open_scratch_log(&cfg, true);
    float acc[2] = {0.5f, 1.0f};
    cr_expect_eq(fw_log_eval(l, "val", 1, acc, 2, 0.75, 0.1), FW_OK, "%s", fw_last_error());
    cr_expect_eq(fw_log_eval(l, "val", 2, acc, 2, 0.75, 0.1), FW_OK, "%s", fw_last_error());
    cr_expect_eq(fw_log_close(l, "finished"), FW_OK, "%s", fw_last_error());
    fw_config_free(&cfg);
}

Test(log, failed_status_keeps_its_message) {
    char *tmp = make_tmpdir();
    fw_config cfg;
    make_config(&cfg);
    fw_log *l = NULL;
    cr_assert_eq(fw_log_open(&l, tmp, "exp_f", &cfg, 5), FW_OK, "%s", fw_last_error());
    cr_assert_eq(fw_log_start(l), FW_OK, "%s", fw_last_error());
    char path[1024], buf[256];
    snprintf(path, sizeof path, "%s", fw_log_path(l));
    cr_assert_eq(fw_log_close(l, "failed: step 7: loss is nan"), FW_OK, "%s", fw_last_error());
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    cr_expect_str_eq(attr_str(f, "status", buf, sizeof buf), "failed: step 7: loss is nan");
    cr_expect(is_iso_utc(attr_str(f, "end_time", buf, sizeof buf)), "end_time '%s'", buf);
    H5Fclose(f);
    fw_config_free(&cfg);
    remove_tree(tmp);
}

Test(log, undeclared_series_aborts, .signal = SIGABRT) {
    fw_config cfg;
    fw_log *l = open_scratch_log(&cfg, true);
    fw_log_scalar(l, "train/loss", 0, 1.0);
}

Test(log, declaring_after_start_aborts, .signal = SIGABRT) {
    fw_config cfg;
    fw_log *l = open_scratch_log(&cfg, true);
    fw_log_add_scalar(l, "train/loss");
}

Test(log, wrong_episode_count_aborts, .signal = SIGABRT) {
    fw_config cfg;
    fw_log *l = open_scratch_log(&cfg, true);
    float acc[3] = {0.5f, 1.0f, 0.0f};
    fw_log_eval(l, "val", 1, acc, 3, 0.5, 0.1);
}

Test(log, attribute_named_like_a_config_key_aborts, .signal = SIGABRT) {
    fw_config cfg;
    fw_log *l = open_scratch_log(&cfg, false);
    fw_log_set_str(l, "arch", "resnet");
}

Test(log, series_nested_in_series_aborts, .signal = SIGABRT) {
    fw_config cfg;
    fw_log *l = open_scratch_log(&cfg, false);
    cr_assert_eq(fw_log_add_scalar(l, "train"), FW_OK, "%s", fw_last_error());
    fw_log_add_scalar(l, "train/loss");
}

Test(log, call_inside_parallel_region_aborts, .signal = SIGABRT) {
    fw_config cfg;
    fw_log *l = open_scratch_log(&cfg, true);
#pragma omp parallel num_threads(2)
    {
#pragma omp master
        fw_log_scalar(l, "loss", 0, 1.0);
    }
    cr_skip_test("OpenMP gave only one thread, so the region was not active");
}
