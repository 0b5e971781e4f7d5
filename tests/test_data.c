/* test_data.c: IDX loading and its errors, datasets and splits, the episode sampler, MNIST
 * loading and the MNIST fetch script. */
#include "datasets/mnist.h"
#include "framework/data.h"
#include "framework/rng.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* ---------------------------------------------------------------- temporary files */

/* Each test runs in its own process, so one directory per test is enough. */
static char tmp_dir[64];

static void make_tmp_dir(void) {
    strcpy(tmp_dir, "/tmp/metagan_test_data_XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp failed: %s", strerror(errno));
}

static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void remove_tmp_dir(void) {
    if (tmp_dir[0])
        remove_tree(tmp_dir);
}

TestSuite(data, .init = make_tmp_dir, .fini = remove_tmp_dir);
TestSuite(sampler, .init = make_tmp_dir, .fini = remove_tmp_dir);
TestSuite(fetch, .init = make_tmp_dir, .fini = remove_tmp_dir);

/* <tmp_dir>/<name>; a few rotating buffers so that one call may use several paths. */
static const char *tmp_path(const char *name) {
    static char bufs[8][512];
    static int next;
    char *p = bufs[next++ % 8];
    snprintf(p, sizeof bufs[0], "%s/%s", tmp_dir, name);
    return p;
}

static void write_file(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(bytes, 1, n, f), n, "short write to %s", path);
    cr_assert_eq(fclose(f), 0, "cannot close %s", path);
}

static void write_gz(const char *path, const void *bytes, size_t n) {
    gzFile f = gzopen(path, "wb");
    cr_assert_not_null(f, "gzopen(%s) failed", path);
    cr_assert_eq(gzwrite(f, bytes, (unsigned)n), (int)n, "short gzwrite to %s", path);
    cr_assert_eq(gzclose(f), Z_OK, "gzclose(%s) failed", path);
}

/* Whole file into a malloc'd buffer; *n is its size. */
static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size, "short read of %s", path);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static bool file_exists(const char *path) {
    return access(path, F_OK) == 0;
}

/* ---------------------------------------------------------------- IDX builders */

/* An IDX image in memory: 4 magic bytes, ndim big-endian uint32 dims, then the data. */
typedef struct idx_buf {
    uint8_t bytes[4096];
    size_t n;
} idx_buf;

static idx_buf make_idx(uint8_t type, int ndim, const uint32_t *dims, const uint8_t *data,
                        size_t n_data) {
    idx_buf b = {.bytes = {0, 0, type, (uint8_t)ndim}, .n = 4};
    for (int i = 0; i < ndim; i++) {
        for (int k = 3; k >= 0; k--)
            b.bytes[b.n++] = (uint8_t)(dims[i] >> (8 * k));
    }
    cr_assert_leq(b.n + n_data, sizeof b.bytes, "test IDX too large");
    if (n_data)
        memcpy(b.bytes + b.n, data, n_data);
    b.n += n_data;
    return b;
}

/* The 2x3x4 reference IDX whose byte i is i*7 mod 256. */
static idx_buf small_idx(void) {
    uint8_t data[24];
    for (int i = 0; i < 24; i++)
        data[i] = (uint8_t)(i * 7);
    return make_idx(0x08, 3, (const uint32_t[]){2, 3, 4}, data, sizeof data);
}

static void check_small_idx(const fw_idx *idx) {
    cr_assert_eq(idx->ndim, 3);
    cr_assert_eq(idx->dims[0], 2);
    cr_assert_eq(idx->dims[1], 3);
    cr_assert_eq(idx->dims[2], 4);
    cr_assert_not_null(idx->data);
    for (int i = 0; i < 24; i++)
        cr_assert_eq(idx->data[i], (uint8_t)(i * 7), "byte %d is %d, expected %d", i,
                     idx->data[i], (uint8_t)(i * 7));
}

/* Expects status `want` and a message that contains every given fragment. */
static void expect_error(fw_status got, fw_status want, const char *const *fragments, int n) {
    const char *msg = fw_last_error();
    cr_assert_eq(got, want, "expected '%s', got '%s' (message: '%s')", fw_status_str(want),
                 fw_status_str(got), msg);
    for (int i = 0; i < n; i++)
        cr_expect(strstr(msg, fragments[i]) != NULL, "message '%s' should contain '%s'", msg,
                  fragments[i]);
}
#define EXPECT_ERROR(got, want, ...)                                                           \
    expect_error((got), (want), (const char *const[]){__VA_ARGS__},                            \
                 (int)FW_COUNTOF(((const char *const[]){__VA_ARGS__})))

/* Loads `path`, expects FW_ERR_FORMAT naming it, and that the output stays empty. */
#define EXPECT_FORMAT_ERROR(path, ...)                                                         \
    do {                                                                                       \
        fw_idx idx_;                                                                           \
        EXPECT_ERROR(fw_idx_load((path), &idx_), FW_ERR_FORMAT, (path), __VA_ARGS__);          \
        cr_expect_null(idx_.data, "no data must be returned on error");                        \
    } while (0)

/* ---------------------------------------------------------------- IDX: good files */

Test(data, idx_raw_loads) {
    idx_buf b = small_idx();
    const char *path = tmp_path("small.idx");
    write_file(path, b.bytes, b.n);
    fw_idx idx;
    cr_assert_eq(fw_idx_load(path, &idx), FW_OK, "%s", fw_last_error());
    check_small_idx(&idx);
    fw_idx_free(&idx);
    cr_expect_null(idx.data);
}

Test(data, idx_gzip_loads) {
    idx_buf b = small_idx();
    const char *path = tmp_path("small.idx.gz");
    write_gz(path, b.bytes, b.n);
    size_t n;
    uint8_t *raw = read_file(path, &n);
    cr_assert(n >= 2 && raw[0] == 0x1f && raw[1] == 0x8b, "%s should be gzip-compressed", path);
    free(raw);
    fw_idx idx;
    cr_assert_eq(fw_idx_load(path, &idx), FW_OK, "%s", fw_last_error());
    check_small_idx(&idx);
    fw_idx_free(&idx);
}

Test(data, idx_labels_and_4d_load) {
    uint8_t labels[5] = {3, 1, 4, 1, 5};
    idx_buf b = make_idx(0x08, 1, (const uint32_t[]){5}, labels, 5);
    write_file(tmp_path("labels.idx"), b.bytes, b.n);
    fw_idx idx;
    cr_assert_eq(fw_idx_load(tmp_path("labels.idx"), &idx), FW_OK, "%s", fw_last_error());
    cr_expect_eq(idx.ndim, 1);
    cr_expect_eq(idx.dims[0], 5);
    cr_expect_arr_eq(idx.data, labels, 5);
    fw_idx_free(&idx);

    uint8_t four[16] = {0};
    b = make_idx(0x08, 4, (const uint32_t[]){2, 1, 2, 4}, four, 16);
    write_file(tmp_path("four.idx"), b.bytes, b.n);
    cr_assert_eq(fw_idx_load(tmp_path("four.idx"), &idx), FW_OK, "%s", fw_last_error());
    cr_expect_eq(idx.ndim, 4);
    cr_expect_eq(idx.dims[3], 4);
    fw_idx_free(&idx);
}

Test(data, idx_free_is_safe) {
    fw_idx_free(NULL);
    fw_idx zero = {0};
    fw_idx_free(&zero);
    fw_idx_free(&zero);
}

/* ---------------------------------------------------------------- IDX: bad files */

Test(data, idx_missing_file) {
    const char *path = tmp_path("does-not-exist.idx");
    fw_idx idx;
    EXPECT_ERROR(fw_idx_load(path, &idx), FW_ERR_IO, path, strerror(ENOENT));
}

Test(data, idx_directory_is_io_error) {
    fw_idx idx;
    EXPECT_ERROR(fw_idx_load(tmp_dir, &idx), FW_ERR_IO, tmp_dir);
}

Test(data, idx_truncated_payload) {
    idx_buf b = small_idx(); /* 16 header + 24 data bytes */
    const char *path = tmp_path("truncated.idx");
    write_file(path, b.bytes, b.n - 5);
    EXPECT_FORMAT_ERROR(path, "truncated", "expected 40 bytes", "found 35", "2x3x4");
}

Test(data, idx_truncated_payload_gzip) {
    idx_buf b = small_idx();
    const char *path = tmp_path("truncated.idx.gz");
    write_gz(path, b.bytes, b.n - 1);
    EXPECT_FORMAT_ERROR(path, "truncated", "expected 40 bytes", "found 39");
}

Test(data, idx_cut_gzip_stream) {
    /* A valid gzip file cut in half: zlib sees the stream end early. */
    uint8_t data[2000];
    for (int i = 0; i < 2000; i++)
        data[i] = (uint8_t)(i * 131 + i / 7);
    idx_buf b = make_idx(0x08, 1, (const uint32_t[]){2000}, data, sizeof data);
    const char *full = tmp_path("full.idx.gz"), *cut = tmp_path("cut.idx.gz");
    write_gz(full, b.bytes, b.n);
    size_t n;
    uint8_t *gz = read_file(full, &n);
    write_file(cut, gz, n / 2);
    free(gz);
    EXPECT_FORMAT_ERROR(cut, "truncated");
}

Test(data, idx_corrupt_gzip_stream) {
    idx_buf b = small_idx();
    const char *path = tmp_path("corrupt.idx.gz");
    write_gz(path, b.bytes, b.n);
    size_t n;
    uint8_t *gz = read_file(path, &n);
    for (size_t i = 10; i < n; i++) /* keep the gzip header, destroy the deflate data */
        gz[i] = 0xff;
    write_file(path, gz, n);
    free(gz);
    EXPECT_FORMAT_ERROR(path, "gzip");
}

Test(data, idx_trailing_bytes) {
    idx_buf b = small_idx();
    b.bytes[b.n++] = 1;
    b.bytes[b.n++] = 2;
    b.bytes[b.n++] = 3;
    const char *path = tmp_path("trailing.idx");
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "3 trailing bytes", "expected 40 bytes", "found 43");
}

Test(data, idx_trailing_bytes_gzip) {
    idx_buf b = small_idx();
    b.bytes[b.n++] = 9;
    const char *path = tmp_path("trailing.idx.gz");
    write_gz(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "1 trailing bytes", "found 41");
}

Test(data, idx_wrong_magic) {
    idx_buf b = small_idx();
    b.bytes[0] = 0x01;
    const char *path = tmp_path("magic.idx");
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "not an IDX file", "0x01000803");

    b = small_idx();
    b.bytes[1] = 0x08;
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "not an IDX file");
}

Test(data, idx_wrong_type) {
    idx_buf b = small_idx();
    b.bytes[2] = 0x0D; /* float32 */
    const char *path = tmp_path("float.idx");
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "0x0d", "uint8");
}

Test(data, idx_bad_ndim) {
    idx_buf b = small_idx();
    const char *path = tmp_path("ndim.idx");
    b.bytes[3] = 0;
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "0 dimensions");
    b.bytes[3] = 5;
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "5 dimensions");
}

Test(data, idx_zero_dimension) {
    idx_buf b = make_idx(0x08, 3, (const uint32_t[]){2, 0, 4}, NULL, 0);
    const char *path = tmp_path("zero.idx");
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "dimension 1 is 0");
}

Test(data, idx_huge_dimensions) {
    /* A dimension beyond int, a product beyond size_t, and a plausible product that the file
     * does not hold: all format errors, never a giant allocation. */
    const char *path = tmp_path("huge.idx");
    idx_buf b = make_idx(0x08, 2, (const uint32_t[]){0x80000000u, 1}, NULL, 0);
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "dimension 0 is 2147483648");

    b = make_idx(0x08, 4, (const uint32_t[]){0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff},
                 NULL, 0);
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "overflow");

    b = make_idx(0x08, 3, (const uint32_t[]){0x7fffffff, 0x7fffffff, 2}, (const uint8_t[]){1, 2},
                 2);
    write_file(path, b.bytes, b.n);
    EXPECT_FORMAT_ERROR(path, "truncated", "found 18");
}

Test(data, idx_short_header) {
    const char *path = tmp_path("short.idx");
    write_file(path, (const uint8_t[]){0, 0}, 2);
    EXPECT_FORMAT_ERROR(path, "too short");
    write_file(path, "", 0);
    EXPECT_FORMAT_ERROR(path, "too short");
    /* Magic says 3 dimensions but only one is present. */
    write_file(path, (const uint8_t[]){0, 0, 8, 3, 0, 0, 0, 2}, 8);
    EXPECT_FORMAT_ERROR(path, "truncated IDX header");
}

/* ---------------------------------------------------------------- synthetic dataset */

/* 10 classes with labels 0..9; class k has 6+k images (105 in all) scattered over the file.
 * Image i (3x4 pixels) carries its label in pixel 0 and its file index in pixel 1, so tests can
 * check where every image went. */
enum { SYN_CLASSES = 10, SYN_H = 3, SYN_W = 4, SYN_N = 105 };

static void syn_labels(uint8_t *labels) {
    int n = 0;
    for (int k = 0; k < SYN_CLASSES; k++)
        for (int i = 0; i < 6 + k; i++)
            labels[n++] = (uint8_t)k;
    fw_rng r = fw_rng_for(7, FW_RNG_USER, 0, 0);
    for (int i = SYN_N - 1; i > 0; i--) {
        int j = (int)fw_rng_below(&r, (uint32_t)i + 1);
        uint8_t t = labels[i];
        labels[i] = labels[j];
        labels[j] = t;
    }
}

static void syn_pixels(const uint8_t *labels, uint8_t *pixels) {
    for (int i = 0; i < SYN_N; i++) {
        uint8_t *p = pixels + i * SYN_H * SYN_W;
        p[0] = labels[i];
        p[1] = (uint8_t)i;
        p[2] = 255;
        p[3] = 0;
        for (int j = 4; j < SYN_H * SYN_W; j++)
            p[j] = (uint8_t)(i * 31 + j * 17);
    }
}

/* Writes the synthetic images and labels IDX files; gz chooses gzip compression. */
static void write_syn_files(const char *images, const char *labels_path, bool gz) {
    uint8_t labels[SYN_N], pixels[SYN_N * SYN_H * SYN_W];
    syn_labels(labels);
    syn_pixels(labels, pixels);
    idx_buf li = make_idx(0x08, 1, (const uint32_t[]){SYN_N}, labels, SYN_N);
    idx_buf ii = make_idx(0x08, 3, (const uint32_t[]){SYN_N, SYN_H, SYN_W}, pixels, sizeof pixels);
    (gz ? write_gz : write_file)(images, ii.bytes, ii.n);
    (gz ? write_gz : write_file)(labels_path, li.bytes, li.n);
}

static void load_syn(fw_dataset *ds) {
    const char *images = tmp_path("syn-images.idx"), *labels = tmp_path("syn-labels.idx");
    write_syn_files(images, labels, false);
    cr_assert_eq(fw_dataset_from_idx(ds, images, labels), FW_OK, "%s", fw_last_error());
}

/* The split used by the sampler tests: labels listed out of order, on purpose. */
static const int split_labels[5] = {9, 3, 7, 1, 5};

static void load_split(fw_dataset *split) {
    fw_dataset all;
    load_syn(&all);
    cr_assert_eq(fw_dataset_subset(split, &all, split_labels, 5), FW_OK, "%s", fw_last_error());
    fw_dataset_free(&all);
}

/* ---------------------------------------------------------------- datasets */

Test(data, dataset_sorted_by_class_and_stable) {
    fw_dataset ds;
    load_syn(&ds);
    cr_assert_eq(ds.n_classes, SYN_CLASSES);
    cr_assert_eq(ds.n_images, SYN_N);
    cr_assert(ds.c == 1 && ds.h == SYN_H && ds.w == SYN_W, "shape %dx%dx%d", ds.c, ds.h, ds.w);
    bool seen[SYN_N] = {false};
    int expected_start = 0;
    for (int k = 0; k < ds.n_classes; k++) {
        cr_expect_eq(ds.class_label[k], k);
        cr_expect_eq(ds.class_count[k], 6 + k, "class %d has %d images", k, ds.class_count[k]);
        cr_expect_eq(ds.class_start[k], expected_start);
        expected_start += ds.class_count[k];
        int prev_index = -1;
        for (int i = ds.class_start[k]; i < ds.class_start[k] + ds.class_count[k]; i++) {
            const uint8_t *img = fw_dataset_image(&ds, i);
            cr_assert_eq(img[0], k, "image %d of class %d has label pixel %d", i, k, img[0]);
            cr_assert_gt(img[1], prev_index, "class %d is not in file order at image %d", k, i);
            prev_index = img[1];
            seen[img[1]] = true;
            for (int j = 4; j < SYN_H * SYN_W; j++)
                cr_assert_eq(img[j], (uint8_t)(img[1] * 31 + j * 17), "pixel %d of image %d", j,
                             i);
        }
    }
    for (int i = 0; i < SYN_N; i++)
        cr_expect(seen[i], "file image %d is missing from the dataset", i);
    fw_dataset_free(&ds);
    cr_expect_null(ds.pixels);
    fw_dataset_free(&ds); /* twice is harmless */
}

Test(data, dataset_keeps_original_labels) {
    uint8_t labels[6] = {200, 7, 42, 7, 200, 200};
    uint8_t pixels[6 * 2];
    for (int i = 0; i < 12; i++)
        pixels[i] = (uint8_t)i;
    idx_buf li = make_idx(0x08, 1, (const uint32_t[]){6}, labels, 6);
    idx_buf ii = make_idx(0x08, 3, (const uint32_t[]){6, 1, 2}, pixels, 12);
    write_file(tmp_path("i.idx"), ii.bytes, ii.n);
    write_file(tmp_path("l.idx"), li.bytes, li.n);
    fw_dataset ds;
    cr_assert_eq(fw_dataset_from_idx(&ds, tmp_path("i.idx"), tmp_path("l.idx")), FW_OK, "%s",
                 fw_last_error());
    cr_assert_eq(ds.n_classes, 3);
    int want_label[3] = {7, 42, 200}, want_count[3] = {2, 1, 3};
    cr_expect_arr_eq(ds.class_label, want_label, sizeof want_label);
    cr_expect_arr_eq(ds.class_count, want_count, sizeof want_count);
    /* File order within a class: label 7 is images 1 and 3, label 200 images 0, 4, 5. */
    uint8_t want_pixels[12] = {2, 3, 6, 7, 4, 5, 0, 1, 8, 9, 10, 11};
    cr_expect_arr_eq(ds.pixels, want_pixels, 12);
    fw_dataset_free(&ds);
}

Test(data, dataset_from_gzip_files) {
    const char *images = tmp_path("i.idx.gz"), *labels = tmp_path("l.idx.gz");
    write_syn_files(images, labels, true);
    fw_dataset ds;
    cr_assert_eq(fw_dataset_from_idx(&ds, images, labels), FW_OK, "%s", fw_last_error());
    cr_expect_eq(ds.n_images, SYN_N);
    cr_expect_eq(ds.n_classes, SYN_CLASSES);
    fw_dataset_free(&ds);
}

Test(data, dataset_count_mismatch) {
    uint8_t pixels[5 * 4] = {0}, labels[4] = {0, 1, 0, 1};
    idx_buf ii = make_idx(0x08, 3, (const uint32_t[]){5, 2, 2}, pixels, sizeof pixels);
    idx_buf li = make_idx(0x08, 1, (const uint32_t[]){4}, labels, 4);
    const char *images = tmp_path("images.idx"), *lpath = tmp_path("labels.idx");
    write_file(images, ii.bytes, ii.n);
    write_file(lpath, li.bytes, li.n);
    fw_dataset ds;
    EXPECT_ERROR(fw_dataset_from_idx(&ds, images, lpath), FW_ERR_FORMAT, images, lpath,
                 "5 images", "4 labels");
    cr_expect_null(ds.pixels);
    fw_dataset_free(&ds);
}

Test(data, dataset_wrong_dimensions) {
    uint8_t bytes[8] = {0};
    idx_buf two_d = make_idx(0x08, 2, (const uint32_t[]){2, 4}, bytes, 8);
    idx_buf labels = make_idx(0x08, 1, (const uint32_t[]){2}, bytes, 2);
    idx_buf images = make_idx(0x08, 3, (const uint32_t[]){2, 2, 2}, bytes, 8);
    write_file(tmp_path("2d.idx"), two_d.bytes, two_d.n);
    write_file(tmp_path("labels.idx"), labels.bytes, labels.n);
    write_file(tmp_path("images.idx"), images.bytes, images.n);
    fw_dataset ds;
    EXPECT_ERROR(fw_dataset_from_idx(&ds, tmp_path("2d.idx"), tmp_path("labels.idx")),
                 FW_ERR_FORMAT, tmp_path("2d.idx"), "expected 3");
    EXPECT_ERROR(fw_dataset_from_idx(&ds, tmp_path("images.idx"), tmp_path("2d.idx")),
                 FW_ERR_FORMAT, tmp_path("2d.idx"), "expected 1");
}

Test(data, dataset_missing_files) {
    const char *images = tmp_path("i.idx"), *labels = tmp_path("l.idx");
    write_syn_files(images, labels, false);
    const char *missing = tmp_path("nope.idx");
    fw_dataset ds;
    EXPECT_ERROR(fw_dataset_from_idx(&ds, missing, labels), FW_ERR_IO, missing);
    EXPECT_ERROR(fw_dataset_from_idx(&ds, images, missing), FW_ERR_IO, missing);
    cr_expect_null(ds.pixels);
}

Test(data, subset_copies_listed_classes) {
    fw_dataset all, split;
    load_syn(&all);
    cr_assert_eq(fw_dataset_subset(&split, &all, (const int[]){4, 0, 2}, 3), FW_OK, "%s",
                 fw_last_error());
    cr_assert_eq(split.n_classes, 3);
    cr_expect_eq(split.n_images, 6 + 8 + 10);
    int want_label[3] = {0, 2, 4};
    cr_expect_arr_eq(split.class_label, want_label, sizeof want_label);
    for (int k = 0; k < 3; k++) {
        int src_k = want_label[k];
        cr_expect_eq(split.class_count[k], all.class_count[src_k]);
        size_t bytes = (size_t)split.class_count[k] * SYN_H * SYN_W;
        cr_expect_arr_eq(fw_dataset_image(&split, split.class_start[k]),
                         fw_dataset_image(&all, all.class_start[src_k]), bytes,
                         "pixels of class %d differ from the source", k);
    }
    fw_dataset_free(&split);
    fw_dataset_free(&all);
}

Test(data, subset_rejects_bad_labels) {
    fw_dataset all, split;
    load_syn(&all);
    EXPECT_ERROR(fw_dataset_subset(&split, &all, (const int[]){1, 11}, 2), FW_ERR_ARG, "11");
    cr_expect_null(split.pixels);
    EXPECT_ERROR(fw_dataset_subset(&split, &all, (const int[]){3, 3}, 2), FW_ERR_ARG, "twice");
    EXPECT_ERROR(fw_dataset_subset(&split, &all, (const int[]){-1}, 1), FW_ERR_ARG, "-1");
    EXPECT_ERROR(fw_dataset_subset(&split, &all, NULL, 0), FW_ERR_ARG, "at least one");
    fw_dataset_free(&all);
}

Test(data, dataset_free_is_safe) {
    fw_dataset_free(NULL);
    fw_dataset zero = {0};
    fw_dataset_free(&zero);
}

/* ---------------------------------------------------------------- MNIST loader */

Test(data, mnist_missing_says_make_deps) {
    fw_dataset ds;
    EXPECT_ERROR(mnist_load(tmp_dir, true, &ds), FW_ERR_IO, tmp_dir, "train-images-idx3-ubyte",
                 "make deps");
    EXPECT_ERROR(mnist_load(tmp_dir, false, &ds), FW_ERR_IO, "t10k-images-idx3-ubyte",
                 "make deps");
}

Test(data, mnist_reads_gz_or_raw) {
    /* Test images compressed, test labels raw: each file is found in either form. */
    write_syn_files(tmp_path("t10k-images-idx3-ubyte.gz"), tmp_path("t10k-labels-idx1-ubyte"),
                    false);
    fw_dataset ds;
    cr_assert_eq(mnist_load(tmp_dir, false, &ds), FW_OK, "%s", fw_last_error());
    cr_expect_eq(ds.n_images, SYN_N);
    cr_expect_eq(ds.n_classes, SYN_CLASSES);
    fw_dataset_free(&ds);
    /* The training files are still missing. */
    EXPECT_ERROR(mnist_load(tmp_dir, true, &ds), FW_ERR_IO, "make deps");
}

Test(data, mnist_real_files) {
    const char *dir = "datasets/data/mnist";
    if (!file_exists("datasets/data/mnist/train-images-idx3-ubyte"))
        cr_skip_test("%s not fetched (run `make deps`)", dir);
    static const int train_counts[10] = {5923, 6742, 5958, 6131, 5842,
                                         5421, 5918, 6265, 5851, 5949};
    static const int test_counts[10] = {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009};
    fw_dataset train, test;
    cr_assert_eq(mnist_load(dir, true, &train), FW_OK, "%s", fw_last_error());
    cr_assert_eq(mnist_load(dir, false, &test), FW_OK, "%s", fw_last_error());
    cr_expect_eq(train.n_images, 60000);
    cr_expect_eq(test.n_images, 10000);
    cr_assert_eq(train.n_classes, 10);
    cr_assert_eq(test.n_classes, 10);
    cr_expect(train.c == 1 && train.h == 28 && train.w == 28, "train shape");
    for (int k = 0; k < 10; k++) {
        cr_expect_eq(train.class_label[k], k);
        cr_expect_eq(train.class_count[k], train_counts[k], "train digit %d", k);
        cr_expect_eq(test.class_count[k], test_counts[k], "test digit %d", k);
    }
    fw_dataset_free(&train);
    fw_dataset_free(&test);
}

/* ---------------------------------------------------------------- sampler */

static fw_sampler make_sampler(const fw_dataset *ds, int ways, int shots, int query) {
    return (fw_sampler){.ds = ds, .ways = ways, .shots = shots, .query = query, .seed = 1234,
                        .purpose = FW_RNG_TRAIN_TASK};
}

/* A deep copy of the episode's arrays, to compare draws. */
typedef struct snapshot {
    float *xs, *xq;
    int *ys, *yq, *classes, *src_s, *src_q;
    size_t n_s, n_q, chw;
    int ways;
} snapshot;

static void *dup_bytes(const void *p, size_t n) {
    void *q = malloc(n);
    cr_assert_not_null(q);
    memcpy(q, p, n);
    return q;
}

static snapshot take(const fw_episode *ep) {
    snapshot s = {.n_s = (size_t)ep->ways * ep->shots, .n_q = (size_t)ep->ways * ep->query,
                  .chw = (size_t)ep->c * ep->h * ep->w, .ways = ep->ways};
    s.xs = dup_bytes(ep->xs, s.n_s * s.chw * sizeof(float));
    s.xq = dup_bytes(ep->xq, s.n_q * s.chw * sizeof(float));
    s.ys = dup_bytes(ep->ys, s.n_s * sizeof(int));
    s.yq = dup_bytes(ep->yq, s.n_q * sizeof(int));
    s.classes = dup_bytes(ep->classes, (size_t)ep->ways * sizeof(int));
    s.src_s = dup_bytes(ep->src_s, s.n_s * sizeof(int));
    s.src_q = dup_bytes(ep->src_q, s.n_q * sizeof(int));
    return s;
}

static bool same_episode(const snapshot *a, const fw_episode *ep) {
    return !memcmp(a->xs, ep->xs, a->n_s * a->chw * sizeof(float)) &&
           !memcmp(a->xq, ep->xq, a->n_q * a->chw * sizeof(float)) &&
           !memcmp(a->ys, ep->ys, a->n_s * sizeof(int)) &&
           !memcmp(a->yq, ep->yq, a->n_q * sizeof(int)) &&
           !memcmp(a->classes, ep->classes, (size_t)a->ways * sizeof(int)) &&
           !memcmp(a->src_s, ep->src_s, a->n_s * sizeof(int)) &&
           !memcmp(a->src_q, ep->src_q, a->n_q * sizeof(int));
}

static void drop(snapshot *s) {
    free(s->xs);
    free(s->xq);
    free(s->ys);
    free(s->yq);
    free(s->classes);
    free(s->src_s);
    free(s->src_q);
}

Test(sampler, same_task_gives_identical_episode) {
    fw_dataset split;
    load_split(&split);
    fw_sampler s = make_sampler(&split, 3, 2, 4);
    fw_episode ep, other;
    cr_assert_eq(fw_episode_init(&ep, &s), FW_OK, "%s", fw_last_error());
    fw_sample(&s, 5, 2, &ep);
    snapshot first = take(&ep);
    /* Other draws in between, into the same episode: no hidden state may carry over. */
    fw_sample(&s, 5, 3, &ep);
    fw_sample(&s, 6, 2, &ep);
    fw_sample(&s, 5, 2, &ep);
    cr_expect(same_episode(&first, &ep), "redrawing (step 5, task 2) gave another episode");
    /* A fresh sampler and episode with the same seed agree too. */
    fw_sampler s2 = make_sampler(&split, 3, 2, 4);
    cr_assert_eq(fw_episode_init(&other, &s2), FW_OK, "%s", fw_last_error());
    fw_sample(&s2, 5, 2, &other);
    cr_expect(same_episode(&first, &other), "a second sampler drew another episode");
    drop(&first);
    fw_episode_free(&ep);
    fw_episode_free(&other);
    fw_dataset_free(&split);
}

Test(sampler, tasks_steps_seeds_and_purposes_differ) {
    fw_dataset split;
    load_split(&split);
    fw_sampler s = make_sampler(&split, 3, 2, 4);
    fw_episode ep;
    cr_assert_eq(fw_episode_init(&ep, &s), FW_OK, "%s", fw_last_error());
    enum { N = 8 };
    snapshot tasks[N];
    for (int t = 0; t < N; t++) {
        fw_sample(&s, 5, t, &ep);
        tasks[t] = take(&ep);
    }
    for (int a = 0; a < N; a++)
        for (int b = 0; b < a; b++) {
            fw_sample(&s, 5, a, &ep);
            cr_expect(!same_episode(&tasks[b], &ep), "tasks %d and %d drew the same episode", a,
                      b);
        }
    fw_sample(&s, 6, 0, &ep);
    cr_expect(!same_episode(&tasks[0], &ep), "steps 5 and 6 drew the same task 0");
    s.seed = 1235;
    fw_sample(&s, 5, 0, &ep);
    cr_expect(!same_episode(&tasks[0], &ep), "seeds 1234 and 1235 drew the same episode");
    s.seed = 1234;
    s.purpose = FW_RNG_EVAL_TASK;
    fw_sample(&s, 5, 0, &ep);
    cr_expect(!same_episode(&tasks[0], &ep), "train and eval purposes drew the same episode");
    for (int t = 0; t < N; t++)
        drop(&tasks[t]);
    fw_episode_free(&ep);
    fw_dataset_free(&split);
}

/* Checks one episode against the dataset: classes, labels, image indices and pixels. */
static void check_episode(const fw_dataset *ds, const fw_episode *ep) {
    size_t chw = (size_t)ds->c * ds->h * ds->w;
    for (int j = 0; j < ep->ways; j++) {
        int k = ep->classes[j];
        cr_assert(k >= 0 && k < ds->n_classes, "class %d out of range", k);
        for (int i = 0; i < j; i++)
            cr_assert_neq(ep->classes[i], k, "labels %d and %d share class %d", i, j, k);
        bool in_split = false;
        for (int i = 0; i < 5; i++)
            in_split = in_split || ds->class_label[k] == split_labels[i];
        cr_assert(in_split, "class label %d is not in the split", ds->class_label[k]);
    }
    int n_s = ep->ways * ep->shots, n_q = ep->ways * ep->query;
    for (int i = 0; i < n_s + n_q; i++) {
        bool support = i < n_s;
        int idx = support ? i : i - n_s;
        int label = support ? ep->ys[idx] : ep->yq[idx];
        int img = support ? ep->src_s[idx] : ep->src_q[idx];
        int want = idx / (support ? ep->shots : ep->query); /* label order, class by class */
        cr_assert_eq(label, want, "%s %d has label %d, expected %d", support ? "support" : "query",
                     idx, label, want);
        int k = ep->classes[label];
        cr_assert(img >= ds->class_start[k] && img < ds->class_start[k] + ds->class_count[k],
                  "image %d is not in class %d", img, k);
        const float *x = (support ? ep->xs : ep->xq) + (size_t)idx * chw;
        const uint8_t *p = fw_dataset_image(ds, img);
        cr_assert_eq(p[0], ds->class_label[k], "image %d carries label %d", img, p[0]);
        for (size_t q = 0; q < chw; q++)
            cr_assert_eq(x[q], (float)p[q] / 255.0f, "pixel %zu of image %d", q, img);
        for (int o = 0; o < i; o++) {
            int other = o < n_s ? ep->src_s[o] : ep->src_q[o - n_s];
            cr_assert_neq(other, img, "image %d drawn twice in one episode", img);
        }
    }
}

Test(sampler, episodes_are_well_formed) {
    fw_dataset split;
    load_split(&split);
    int want_label[5] = {1, 3, 5, 7, 9};
    cr_assert_eq(split.n_classes, 5);
    cr_assert_arr_eq(split.class_label, want_label, sizeof want_label);
    int shapes[][3] = {{2, 1, 1}, {3, 2, 4}, {5, 1, 6}, {5, 3, 3}, {4, 5, 2}};
    for (size_t sh = 0; sh < FW_COUNTOF(shapes); sh++) {
        fw_sampler s = make_sampler(&split, shapes[sh][0], shapes[sh][1], shapes[sh][2]);
        fw_episode ep;
        cr_assert_eq(fw_episode_init(&ep, &s), FW_OK, "%s", fw_last_error());
        for (int t = 0; t < 200; t++) {
            fw_sample(&s, (uint64_t)t / 7, t, &ep);
            check_episode(&split, &ep);
        }
        fw_episode_free(&ep);
    }
    fw_dataset_free(&split);
}

Test(sampler, pixels_in_unit_range) {
    fw_dataset split;
    load_split(&split);
    fw_sampler s = make_sampler(&split, 2, 1, 1);
    fw_episode ep;
    cr_assert_eq(fw_episode_init(&ep, &s), FW_OK, "%s", fw_last_error());
    fw_sample(&s, 0, 0, &ep);
    /* Pixel 2 of every synthetic image is 255 and pixel 3 is 0. */
    cr_expect_eq(ep.xs[2], 1.0f);
    cr_expect_eq(ep.xs[3], 0.0f);
    for (int i = 0; i < 2 * SYN_H * SYN_W; i++)
        cr_expect(ep.xq[i] >= 0.0f && ep.xq[i] <= 1.0f, "xq[%d]=%g", i, ep.xq[i]);
    fw_episode_free(&ep);
    fw_dataset_free(&split);
}

/* Frequencies over many tasks: classes, the class behind label 0, and images within a class
 * (and whether they land in support or query) must all be close to uniform. A biased shuffle
 * (e.g. sorted classes, or the first images favoured) fails here. */
Test(sampler, draws_are_uniform) {
    fw_dataset split;
    load_split(&split);
    fw_sampler s = make_sampler(&split, 2, 3, 4); /* 7 of 7 images in the smallest class */
    fw_episode ep;
    cr_assert_eq(fw_episode_init(&ep, &s), FW_OK, "%s", fw_last_error());
    enum { TASKS = 20000 };
    int class_hits[5] = {0}, first_hits[5] = {0}, support_hits[15] = {0};
    for (int t = 0; t < TASKS; t++) {
        fw_sample(&s, 0, t, &ep);
        for (int j = 0; j < 2; j++)
            class_hits[ep.classes[j]]++;
        first_hits[ep.classes[0]]++;
        for (int j = 0; j < 2; j++)
            if (ep.classes[j] == 4) /* largest class: 15 images */
                for (int i = 0; i < 3; i++)
                    support_hits[ep.src_s[j * 3 + i] - split.class_start[4]]++;
    }
    for (int k = 0; k < 5; k++) {
        cr_expect(abs(class_hits[k] - TASKS * 2 / 5) < TASKS * 2 / 5 / 10,
                  "class %d drawn %d times, expected about %d", k, class_hits[k], TASKS * 2 / 5);
        cr_expect(abs(first_hits[k] - TASKS / 5) < TASKS / 5 / 10,
                  "class %d behind label 0 %d times, expected about %d", k, first_hits[k],
                  TASKS / 5);
    }
    int expect_support = class_hits[4] * 3 / 15;
    for (int i = 0; i < 15; i++)
        cr_expect(abs(support_hits[i] - expect_support) < expect_support / 6,
                  "image %d of class 4 in support %d times, expected about %d", i,
                  support_hits[i], expect_support);
    fw_episode_free(&ep);
    fw_dataset_free(&split);
}

Test(sampler, whole_class_fits_exactly) {
    fw_dataset split;
    load_split(&split); /* smallest class (label 1) has 7 images */
    fw_sampler s = make_sampler(&split, 5, 3, 4);
    fw_episode ep;
    cr_assert_eq(fw_episode_init(&ep, &s), FW_OK, "%s", fw_last_error());
    fw_sample(&s, 9, 9, &ep);
    check_episode(&split, &ep);
    for (int j = 0; j < 5; j++)
        if (ep.classes[j] == 0) {
            bool used[7] = {false};
            for (int i = 0; i < 3; i++)
                used[ep.src_s[j * 3 + i]] = true;
            for (int i = 0; i < 4; i++)
                used[ep.src_q[j * 4 + i]] = true;
            for (int i = 0; i < 7; i++)
                cr_expect(used[i], "image %d of the smallest class unused", i);
        }
    fw_episode_free(&ep);
    fw_dataset_free(&split);
}

Test(sampler, check_rejects_impossible_shapes) {
    fw_dataset split;
    load_split(&split); /* 5 classes, smallest 7 images */
    fw_sampler ok = make_sampler(&split, 5, 3, 4);
    cr_expect_eq(fw_sampler_check(&ok), FW_OK, "%s", fw_last_error());

    fw_sampler s = make_sampler(&split, 5, 4, 4);
    EXPECT_ERROR(fw_sampler_check(&s), FW_ERR_ARG, "shots+query=8", "only 7");
    s = make_sampler(&split, 6, 1, 1);
    EXPECT_ERROR(fw_sampler_check(&s), FW_ERR_ARG, "ways=6", "5 classes");
    s = make_sampler(&split, 1, 1, 1);
    EXPECT_ERROR(fw_sampler_check(&s), FW_ERR_ARG, "ways=1");
    s = make_sampler(&split, 0, 1, 1);
    EXPECT_ERROR(fw_sampler_check(&s), FW_ERR_ARG, "ways=0");
    s = make_sampler(&split, 2, 0, 1);
    EXPECT_ERROR(fw_sampler_check(&s), FW_ERR_ARG, "shots=0");
    s = make_sampler(&split, 2, 1, 0);
    EXPECT_ERROR(fw_sampler_check(&s), FW_ERR_ARG, "query=0");
    s = make_sampler(&split, 2, 1, 2147483647);
    EXPECT_ERROR(fw_sampler_check(&s), FW_ERR_ARG, "shots+query");

    /* fw_episode_init checks too, and leaves an episode that is safe to free. */
    fw_episode ep;
    s = make_sampler(&split, 5, 4, 4);
    EXPECT_ERROR(fw_episode_init(&ep, &s), FW_ERR_ARG, "shots+query");
    cr_expect_null(ep.xs);
    fw_episode_free(&ep);
    fw_episode_free(NULL);
    fw_dataset_free(&split);
}

/* ---------------------------------------------------------------- fetch script */
/* The script runs through popen() before anything touches OpenMP or oneDNN (libgomp is not
 * fork-safe). Tests run from the repository root, beside ../shared/datasets. */

static const char *const mnist_names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

static const char *mirror_dir(void) {
    const char *env = getenv("DATA_MIRROR");
    return env && *env ? env : "../shared/datasets";
}

static void require_mirror(void) {
    char path[512];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/mnist/%s.gz", mirror_dir(), mnist_names[i]);
        if (!file_exists(path))
            cr_skip_test("dataset mirror not found (%s)", path);
    }
    cr_assert(file_exists("datasets/fetch_mnist.sh"), "run the tests from the repository root");
}

/* Runs the fetch script; returns its exit status and its stdout+stderr in out. */
static int run_fetch(const char *mirror, const char *dest, char *out, size_t size) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "sh datasets/fetch_mnist.sh '%s' '%s' 2>&1", mirror, dest);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen(%s) failed", cmd);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "fetch script did not exit normally (%d)", status);
    return WEXITSTATUS(status);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    uint8_t *bytes = read_file(from, &n);
    write_file(to, bytes, n);
    free(bytes);
}

/* Names of anything but the expected data files in dir (temporaries would show up here). */
static void expect_only_data_files(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot list %s", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        bool known = false;
        for (int i = 0; i < 4; i++)
            known = known || !strcmp(e->d_name, mnist_names[i]);
        cr_expect(known, "unexpected file %s/%s (a leftover temporary?)", dir, e->d_name);
    }
    closedir(d);
}

Test(fetch, corrupted_mirror_file_is_rejected) {
    require_mirror();
    char mirror[512], dest[512], from[1024], to[1024];
    snprintf(mirror, sizeof mirror, "%s/mirror", tmp_dir);
    snprintf(dest, sizeof dest, "%s/dest", tmp_dir);
    snprintf(to, sizeof to, "%s/mnist", mirror);
    cr_assert_eq(mkdir(mirror, 0755), 0);
    cr_assert_eq(mkdir(to, 0755), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(from, sizeof from, "%s/mnist/%s.gz", mirror_dir(), mnist_names[i]);
        snprintf(to, sizeof to, "%s/mnist/%s.gz", mirror, mnist_names[i]);
        copy_file(from, to);
    }
    /* Flip one byte of the test labels. */
    size_t n;
    snprintf(to, sizeof to, "%s/mnist/t10k-labels-idx1-ubyte.gz", mirror);
    uint8_t *gz = read_file(to, &n);
    gz[n / 2] ^= 0x5a;
    write_file(to, gz, n);
    free(gz);

    char out[8192];
    int rc = run_fetch(mirror, dest, out, sizeof out);
    cr_expect_neq(rc, 0, "the script accepted a corrupted file; output:\n%s", out);
    cr_expect(strstr(out, "t10k-labels-idx1-ubyte") != NULL,
              "the output does not name the corrupted file:\n%s", out);
    cr_expect(strstr(out, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
              "the output does not give the expected hash:\n%s", out);
    snprintf(to, sizeof to, "%s/t10k-labels-idx1-ubyte", dest);
    cr_expect(!file_exists(to), "%s was written from a corrupted download", to);
    for (int i = 0; i < 3; i++) {
        snprintf(to, sizeof to, "%s/%s", dest, mnist_names[i]);
        cr_expect(file_exists(to), "%s (a good file) was not fetched", to);
    }
    expect_only_data_files(dest);
}

static void stat_all(const char *dest, struct stat *st) {
    char path[1024];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dest, mnist_names[i]);
        cr_assert_eq(stat(path, &st[i]), 0, "%s missing: %s", path, strerror(errno));
    }
}

Test(fetch, second_run_is_a_no_op) {
    require_mirror();
    char dest[512], out[8192];
    snprintf(dest, sizeof dest, "%s/dest", tmp_dir);
    int rc = run_fetch(mirror_dir(), dest, out, sizeof out);
    cr_assert_eq(rc, 0, "first fetch failed:\n%s", out);
    struct stat before[4], after[4];
    stat_all(dest, before);
    cr_expect_eq(before[0].st_size, 47040016, "train images size");
    cr_expect_eq(before[3].st_size, 10008, "test labels size");

    double t0 = fw_now();
    rc = run_fetch(mirror_dir(), dest, out, sizeof out);
    double seconds = fw_now() - t0;
    cr_assert_eq(rc, 0, "second fetch failed:\n%s", out);
    cr_expect(strstr(out, "mnist: up to date") != NULL, "second run did not say up to date:\n%s",
              out);
    cr_expect(seconds < 20, "a no-op run took %.1f s", seconds);
    stat_all(dest, after);
    for (int i = 0; i < 4; i++) {
        cr_expect(before[i].st_ino == after[i].st_ino &&
                      before[i].st_mtim.tv_sec == after[i].st_mtim.tv_sec &&
                      before[i].st_mtim.tv_nsec == after[i].st_mtim.tv_nsec,
                  "%s was rewritten by a no-op run", mnist_names[i]);
    }
    expect_only_data_files(dest);
}

Test(fetch, damaged_dest_file_is_replaced) {
    require_mirror();
    char dest[512], out[8192], path[1024];
    snprintf(dest, sizeof dest, "%s/dest", tmp_dir);
    cr_assert_eq(run_fetch(mirror_dir(), dest, out, sizeof out), 0, "fetch failed:\n%s", out);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dest);
    write_file(path, "garbage", 7);
    int rc = run_fetch(mirror_dir(), dest, out, sizeof out);
    cr_assert_eq(rc, 0, "refetch failed:\n%s", out);
    cr_expect(strstr(out, "wrong checksum") != NULL, "no word about the damaged file:\n%s", out);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_size, 10008, "%s was not restored", path);
}

Test(fetch, usage_error) {
    cr_assert(file_exists("datasets/fetch_mnist.sh"), "run the tests from the repository root");
    char out[4096];
    FILE *p = popen("sh datasets/fetch_mnist.sh onlyone 2>&1", "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2, "status %d, output: %s", status, out);
    cr_expect(strstr(out, "usage") != NULL, "no usage message: %s", out);
}
