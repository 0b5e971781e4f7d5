/* test_omniglot.c: the Omniglot loader (datasets/omniglot.h): file checks and their errors on
 * small synthetic files, the area-averaging resize against a double-precision reference and
 * hand-computed values, rotations, the MAML and Vinyals splits (sizes, disjointness, rotation
 * classes) on the real data, the fetch script, and the Omniglot experiments' command line. */
#include "datasets/omniglot.h"
#include "framework/rng.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define REAL_DIR "datasets/data/omniglot"

/* ---------------------------------------------------------------- temporary files */

static char tmp_dir[64];

static void make_tmp_dir(void) {
    strcpy(tmp_dir, "/tmp/metagan_test_omniglot_XXXXXX");
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

TestSuite(omniglot, .init = make_tmp_dir, .fini = remove_tmp_dir);
TestSuite(omniglot_real);
TestSuite(omniglot_fetch, .init = make_tmp_dir, .fini = remove_tmp_dir);

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

/* Expects status `want` and a message holding every fragment. */
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

/* ---------------------------------------------------------------- synthetic .bin files */

/* A small file in the documented format: 2 alphabets ("Alpha" 2 characters, "Beta" 1), 3
 * drawings of w x h; pixel (y, x) of image i is ink where (x * 3 + y * 5 + i) % 7 == 0. */
enum { SYN_ALPHABETS = 2, SYN_CHARS = 3, SYN_DRAWINGS = 3, SYN_H = 9, SYN_W = 13 };

typedef struct syn_file {
    uint8_t *bytes;
    size_t n;
} syn_file;

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool syn_ink(int img, int y, int x) {
    return (x * 3 + y * 5 + img) % 7 == 0;
}

static syn_file syn_make(void) {
    int row = (SYN_W + 7) / 8, img_bytes = SYN_H * row;
    size_t data_off = 64 + 72 * SYN_ALPHABETS;
    syn_file f = {.n = data_off + (size_t)SYN_CHARS * SYN_DRAWINGS * (size_t)img_bytes};
    f.bytes = calloc(f.n, 1);
    cr_assert_not_null(f.bytes);
    uint8_t *h = f.bytes;
    memcpy(h, "OMNIGLOT", 8);
    uint32_t fields[] = {1, 0, SYN_ALPHABETS, SYN_CHARS, SYN_DRAWINGS, SYN_H, SYN_W,
                         (uint32_t)row, (uint32_t)img_bytes, 1, 64, (uint32_t)data_off};
    for (size_t i = 0; i < FW_COUNTOF(fields); i++)
        put32(h + 8 + 4 * i, fields[i]);
    put32(h + 64, 0);
    put32(h + 68, 2);
    strcpy((char *)h + 72, "Alpha");
    put32(h + 136, 2);
    put32(h + 140, 1);
    strcpy((char *)h + 144, "Beta");
    for (int i = 0; i < SYN_CHARS * SYN_DRAWINGS; i++)
        for (int y = 0; y < SYN_H; y++)
            for (int x = 0; x < SYN_W; x++)
                if (syn_ink(i, y, x))
                    h[data_off + (size_t)i * img_bytes + (size_t)y * row + (size_t)(x / 8)] |=
                        (uint8_t)(0x80 >> (x % 8));
    return f;
}

/* Writes f to name in the temp dir and expects omniglot_file_read to fail with FW_ERR_FORMAT
 * and a message naming the file and holding `fragment`. */
static void expect_bad(const syn_file *f, const char *name, const char *fragment) {
    const char *path = tmp_path(name);
    write_file(path, f->bytes, f->n);
    omniglot_file of;
    EXPECT_ERROR(omniglot_file_read(path, &of), FW_ERR_FORMAT, path, fragment);
    cr_expect_null(of.bits, "no data on error");
    cr_expect_null(of.alphabets, "no alphabets on error");
}

Test(omniglot, synthetic_file_reads_raw_and_gzip) {
    syn_file f = syn_make();
    write_file(tmp_path("a.bin"), f.bytes, f.n);
    write_gz(tmp_path("a.bin.gz"), f.bytes, f.n);
    for (int k = 0; k < 2; k++) {
        const char *path = tmp_path(k ? "a.bin.gz" : "a.bin");
        omniglot_file of;
        cr_assert_eq(omniglot_file_read(path, &of), FW_OK, "%s", fw_last_error());
        cr_expect_eq(of.split, 0);
        cr_expect_eq(of.n_alphabets, SYN_ALPHABETS);
        cr_expect_eq(of.n_chars, SYN_CHARS);
        cr_expect_eq(of.n_drawings, SYN_DRAWINGS);
        cr_expect(of.height == SYN_H && of.width == SYN_W && of.row_bytes == 2 &&
                      of.image_bytes == SYN_H * 2, "shape");
        cr_expect_str_eq(of.alphabets[0].name, "Alpha");
        cr_expect_str_eq(of.alphabets[1].name, "Beta");
        cr_expect(of.alphabets[1].first_char == 2 && of.alphabets[1].n_chars == 1, "records");
        int wrong = 0;
        for (int i = 0; i < SYN_CHARS * SYN_DRAWINGS; i++)
            for (int y = 0; y < SYN_H; y++)
                for (int x = 0; x < SYN_W; x++) {
                    const uint8_t *row = of.bits + (size_t)i * (size_t)of.image_bytes + (size_t)y * 2;
                    wrong += (bool)(row[x / 8] >> (7 - x % 8) & 1) != syn_ink(i, y, x);
                }
        cr_expect_eq(wrong, 0, "%d pixels differ", wrong);
        omniglot_file_free(&of);
        cr_expect_null(of.bits);
    }
    free(f.bytes);
}

Test(omniglot, missing_file_is_io_error) {
    omniglot_file of;
    EXPECT_ERROR(omniglot_file_read(tmp_path("nope.bin"), &of), FW_ERR_IO, "nope.bin");
}

Test(omniglot, truncated_files) {
    syn_file f = syn_make();
    size_t full = f.n;
    f.n = full - 1; /* one image byte short */
    expect_bad(&f, "short1.bin", "truncated");
    f.n = 64 + 72 + 10; /* inside the alphabet table */
    expect_bad(&f, "short2.bin", "alphabet table");
    f.n = 30; /* inside the header */
    expect_bad(&f, "short3.bin", "too short");
    f.n = 0;
    expect_bad(&f, "empty.bin", "too short");
    /* A gzip stream cut in the middle. */
    f.n = full;
    write_gz(tmp_path("cut.bin.gz"), f.bytes, f.n);
    size_t gz_n;
    uint8_t *gz = read_file(tmp_path("cut.bin.gz"), &gz_n);
    write_file(tmp_path("cut.bin.gz"), gz, gz_n / 2);
    omniglot_file of;
    fw_status s = omniglot_file_read(tmp_path("cut.bin.gz"), &of);
    cr_expect_eq(s, FW_ERR_FORMAT, "cut gzip: %s", fw_last_error());
    cr_expect(strstr(fw_last_error(), "cut.bin.gz"), "%s", fw_last_error());
    free(gz);
    free(f.bytes);
}

Test(omniglot, trailing_bytes) {
    syn_file f = syn_make();
    uint8_t *longer = calloc(f.n + 5, 1);
    memcpy(longer, f.bytes, f.n);
    syn_file g = {longer, f.n + 5};
    expect_bad(&g, "long.bin", "5 bytes after the last image");
    free(longer);
    free(f.bytes);
}

Test(omniglot, corrupt_gzip) {
    syn_file f = syn_make();
    /* Incompressible-enough content so that the flipped byte lands in compressed data. */
    write_gz(tmp_path("c.bin.gz"), f.bytes, f.n);
    size_t n;
    uint8_t *gz = read_file(tmp_path("c.bin.gz"), &n);
    for (size_t i = 12; i < n - 8; i += 3)
        gz[i] ^= 0xa5;
    write_file(tmp_path("c.bin.gz"), gz, n);
    omniglot_file of;
    fw_status s = omniglot_file_read(tmp_path("c.bin.gz"), &of);
    cr_expect_eq(s, FW_ERR_FORMAT, "corrupt gzip gave %s: %s", fw_status_str(s), fw_last_error());
    cr_expect_null(of.bits);
    free(gz);
    free(f.bytes);
}

/* One corrupted header or table field each. */
Test(omniglot, bad_headers) {
    struct { int offset; uint32_t value; const char *fragment; } cases[] = {
        {8, 2, "version"},
        {12, 2, "split"},
        {16, 0, "n_alphabets"},
        {20, 1, "n_characters"},           /* fewer characters than alphabets */
        {20, 4, "the header says 4"},      /* records hold 3 */
        {24, 0, "n_drawings"},
        {28, 0, "height"},
        {36, 3, "row_bytes"},
        {40, 100, "image_bytes"},
        {44, 0, "first_char_id"},
        {48, 65, "alphabet_table_offset"},
        {52, 64, "image_data_offset"},
        {60, 7, "reserved header byte 60"},
        {64, 1, "alphabet record 0 starts at character 1"},
        {68, 0, "alphabet record 0 has 0 characters"},
        {140, 2, "alphabet record 1 has 2 characters"},
    };
    for (size_t i = 0; i < FW_COUNTOF(cases); i++) {
        syn_file f = syn_make();
        if (cases[i].offset == 60)
            f.bytes[60] = (uint8_t)cases[i].value;
        else
            put32(f.bytes + cases[i].offset, cases[i].value);
        char name[32];
        snprintf(name, sizeof name, "h%zu.bin", i);
        expect_bad(&f, name, cases[i].fragment);
        free(f.bytes);
    }
    syn_file f = syn_make();
    memcpy(f.bytes, "OMNIGLOX", 8);
    expect_bad(&f, "magic.bin", "not an Omniglot file");
    free(f.bytes);
}

Test(omniglot, bad_alphabet_names_and_padding) {
    syn_file f = syn_make();
    memset(f.bytes + 72, 'A', 64); /* no NUL within the name */
    expect_bad(&f, "name1.bin", "not NUL-terminated");
    free(f.bytes);
    f = syn_make();
    f.bytes[72] = 0; /* empty name */
    expect_bad(&f, "name2.bin", "empty");
    free(f.bytes);
    f = syn_make();
    f.bytes[72 + 10] = 'x'; /* garbage after the NUL */
    expect_bad(&f, "name3.bin", "after the name");
    free(f.bytes);
    f = syn_make();
    /* width 13 leaves 3 padding bits in each row's second byte: set one in image 4, row 2 */
    f.bytes[64 + 72 * SYN_ALPHABETS + 4 * SYN_H * 2 + 2 * 2 + 1] |= 1;
    expect_bad(&f, "pad.bin", "character 1 drawing 1 row 2 has padding bits set");
    free(f.bytes);
}

/* omniglot_load checks the official counts: a sound file of the wrong size is refused. */
Test(omniglot, load_checks_official_counts) {
    syn_file f = syn_make();
    write_file(tmp_path("omniglot_background.bin"), f.bytes, f.n);
    write_file(tmp_path("omniglot_evaluation.bin"), f.bytes, f.n);
    omniglot o;
    EXPECT_ERROR(omniglot_load(tmp_dir, 28, &o), FW_ERR_FORMAT, "omniglot_background.bin",
                 "n_alphabets is 2", "has 30", "make deps");
    cr_expect_null(o.pixels);
    free(f.bytes);
}

Test(omniglot, load_missing_says_make_deps) {
    omniglot o;
    EXPECT_ERROR(omniglot_load(tmp_dir, 28, &o), FW_ERR_IO, tmp_dir, "omniglot_background.bin",
                 "make deps");
    cr_expect_null(o.pixels);
    EXPECT_ERROR(omniglot_load(tmp_dir, 0, &o), FW_ERR_ARG, "side 0");
}

/* ---------------------------------------------------------------- resize and rotate */

/* Packs a (h, w) 0/1 byte image into rows of (w + 7) / 8 bytes, most significant bit first. */
static uint8_t *pack(const uint8_t *img, int h, int w) {
    int row = (w + 7) / 8;
    uint8_t *bits = calloc((size_t)h * (size_t)row, 1);
    cr_assert_not_null(bits);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (img[y * w + x])
                bits[y * row + x / 8] |= (uint8_t)(0x80 >> (x % 8));
    return bits;
}

/* Double reference: the ink fraction of [i*h/s, (i+1)*h/s) x [j*w/s, (j+1)*w/s), by integrating
 * each source pixel's overlap in real arithmetic. */
static double ref_area(const uint8_t *img, int h, int w, int s, int i, int j) {
    double y0 = (double)i * h / s, y1 = (double)(i + 1) * h / s;
    double x0 = (double)j * w / s, x1 = (double)(j + 1) * w / s, ink = 0;
    for (int y = 0; y < h; y++) {
        double oy = fmin(y + 1.0, y1) - fmax((double)y, y0);
        if (oy <= 0)
            continue;
        for (int x = 0; x < w; x++) {
            double ox = fmin(x + 1.0, x1) - fmax((double)x, x0);
            if (ox > 0 && img[y * w + x])
                ink += ox * oy;
        }
    }
    return ink / ((y1 - y0) * (x1 - x0));
}

Test(omniglot, resize_matches_area_reference) {
    enum { N = OMNIGLOT_SIDE };
    static uint8_t img[N * N];
    int sides[] = {28, 14, 35, 105, 1};
    for (int pattern = 0; pattern < 3; pattern++) {
        fw_rng r = fw_rng_for(11, FW_RNG_USER, (uint64_t)pattern, 0);
        for (int k = 0; k < N * N; k++) /* random, sparse strokes, a filled disc */
            img[k] = pattern == 0   ? fw_rng_uniform(&r) < 0.5f
                     : pattern == 1 ? fw_rng_uniform(&r) < 0.08f
                                    : (k / N - 40) * (k / N - 40) + (k % N - 60) * (k % N - 60) < 900;
        uint8_t *bits = pack(img, N, N);
        for (size_t si = 0; si < FW_COUNTOF(sides); si++) {
            int s = sides[si];
            uint8_t out[N * N];
            omniglot_resize(bits, N, N, (N + 7) / 8, s, out);
            double worst = 0;
            for (int i = 0; i < s; i++)
                for (int j = 0; j < s; j++) {
                    double want = 255.0 * ref_area(img, N, N, s, i, j);
                    worst = fmax(worst, fabs(out[i * s + j] - want));
                }
            cr_expect_leq(worst, 0.5 + 1e-9, "pattern %d side %d: off by %g levels", pattern, s,
                          worst);
            if (s == N) /* identity size: the image itself */
                for (int k = 0; k < N * N; k++)
                    cr_assert_eq(out[k], img[k] ? 255 : 0, "side 105, pixel %d", k);
        }
        free(bits);
    }
}

Test(omniglot, resize_hand_computed) {
    enum { N = OMNIGLOT_SIDE };
    static uint8_t img[N * N];
    /* A 4x4 ink block in the top-left corner. Output pixels are 3.75 source pixels wide:
     * (0,0) is all ink; (0,1) overlaps the block in a 0.25 x 3.75 strip: 0.25/3.75 -> 17;
     * (1,1) overlaps 0.25 x 0.25: 0.0625/14.0625 -> 1.13 -> 1; (2,2) none. */
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            img[y * N + x] = 1;
    uint8_t *bits = pack(img, N, N), out[28 * 28];
    omniglot_resize(bits, N, N, (N + 7) / 8, 28, out);
    cr_expect_eq(out[0], 255);
    cr_expect_eq(out[1], 17);
    cr_expect_eq(out[28], 17);
    cr_expect_eq(out[29], 1);
    cr_expect_eq(out[2 * 28 + 2], 0);
    int others = 0;
    for (int k = 0; k < 28 * 28; k++)
        others += out[k] != 0;
    cr_expect_eq(others, 4, "exactly 4 output pixels see the block, %d do", others);
    /* All ink and no ink stay exact. */
    memset(img, 1, sizeof img);
    free(bits);
    bits = pack(img, N, N);
    omniglot_resize(bits, N, N, (N + 7) / 8, 28, out);
    for (int k = 0; k < 28 * 28; k++)
        cr_assert_eq(out[k], 255);
    memset(img, 0, sizeof img);
    free(bits);
    bits = pack(img, N, N);
    omniglot_resize(bits, N, N, (N + 7) / 8, 28, out);
    for (int k = 0; k < 28 * 28; k++)
        cr_assert_eq(out[k], 0);
    free(bits);
}

Test(omniglot, rotate_is_numpy_rot90) {
    /* 3x3: 0 1 2 / 3 4 5 / 6 7 8; numpy.rot90 (counterclockwise) gives 2 5 8 / 1 4 7 / 0 3 6. */
    uint8_t a[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8}, b[9];
    const uint8_t want1[9] = {2, 5, 8, 1, 4, 7, 0, 3, 6}, want2[9] = {8, 7, 6, 5, 4, 3, 2, 1, 0},
                  want3[9] = {6, 3, 0, 7, 4, 1, 8, 5, 2};
    omniglot_rotate(a, 3, 1, b);
    cr_expect_arr_eq(b, want1, 9);
    omniglot_rotate(a, 3, 2, b);
    cr_expect_arr_eq(b, want2, 9);
    omniglot_rotate(a, 3, 3, b);
    cr_expect_arr_eq(b, want3, 9);
    omniglot_rotate(a, 3, 0, b);
    cr_expect_arr_eq(b, a, 9);
    /* Four quarter turns are the identity, and turns add up. */
    uint8_t img[28 * 28], r1[28 * 28], r2[28 * 28], r3[28 * 28];
    for (int k = 0; k < 28 * 28; k++)
        img[k] = (uint8_t)(k * 37 % 251);
    omniglot_rotate(img, 28, 1, r1);
    omniglot_rotate(r1, 28, 1, r2);
    omniglot_rotate(img, 28, 2, r3);
    cr_expect_arr_eq(r2, r3, 28 * 28);
    omniglot_rotate(r2, 28, 2, r3);
    cr_expect_arr_eq(r3, img, 28 * 28);
}

/* The resize grid is symmetric, so rotating the 105 x 105 source then resizing equals resizing
 * then rotating the 28 x 28 result (what the loader does for rotation classes). */
Test(omniglot, resize_commutes_with_rotation) {
    enum { N = OMNIGLOT_SIDE };
    static uint8_t img[N * N], rot[N * N];
    fw_rng r = fw_rng_for(5, FW_RNG_USER, 0, 0);
    for (int k = 0; k < N * N; k++)
        img[k] = fw_rng_uniform(&r) < 0.3f;
    uint8_t *bits = pack(img, N, N), small[28 * 28], small_rot[28 * 28], from_rot[28 * 28];
    omniglot_resize(bits, N, N, (N + 7) / 8, 28, small);
    for (int q = 1; q < 4; q++) {
        omniglot_rotate(img, N, q, rot);
        uint8_t *rbits = pack(rot, N, N);
        omniglot_resize(rbits, N, N, (N + 7) / 8, 28, from_rot);
        omniglot_rotate(small, 28, q, small_rot);
        cr_expect_arr_eq(from_rot, small_rot, 28 * 28, "quarter turns %d", q);
        free(rbits);
    }
    free(bits);
}

/* ---------------------------------------------------------------- splits */

Test(omniglot, maml_split_sizes_disjoint_and_seeded) {
    static int tr[OMNIGLOT_TRAIN_CHARS], te[OMNIGLOT_TEST_CHARS];
    static int tr2[OMNIGLOT_TRAIN_CHARS], te2[OMNIGLOT_TEST_CHARS];
    omniglot_maml_split(1, tr, te);
    int seen[OMNIGLOT_CHARS] = {0};
    for (int i = 0; i < OMNIGLOT_TRAIN_CHARS; i++) {
        cr_assert(tr[i] >= 0 && tr[i] < OMNIGLOT_CHARS);
        cr_assert(i == 0 || tr[i] > tr[i - 1], "train list sorted and without repeats");
        seen[tr[i]]++;
    }
    for (int i = 0; i < OMNIGLOT_TEST_CHARS; i++) {
        cr_assert(te[i] >= 0 && te[i] < OMNIGLOT_CHARS);
        cr_assert(i == 0 || te[i] > te[i - 1], "test list sorted and without repeats");
        seen[te[i]]++;
    }
    for (int c = 0; c < OMNIGLOT_CHARS; c++)
        cr_assert_eq(seen[c], 1, "character %d is in %d splits", c, seen[c]);
    /* Irrespective of alphabet: both parts of the data (background < 964) feed both splits. */
    int bg_test = 0;
    for (int i = 0; i < OMNIGLOT_TEST_CHARS; i++)
        bg_test += te[i] < 964;
    cr_expect(bg_test > 150 && bg_test < 350, "%d of 423 test characters from background", bg_test);
    omniglot_maml_split(1, tr2, te2);
    cr_expect_arr_eq(tr, tr2, sizeof tr, "same seed, same split");
    omniglot_maml_split(2, tr2, te2);
    cr_expect(memcmp(te, te2, sizeof te) != 0, "another seed, another split");
}

/* A fake omniglot (no pixels) for the list parser: alphabet 0 "Latin" (26 characters) and
 * alphabet 1 "Greek" (24). */
static void fake_omniglot(omniglot *o) {
    memset(o, 0, sizeof *o);
    strcpy(o->alphabet_name[0], "Latin");
    strcpy(o->alphabet_name[1], "Greek");
    for (int c = 0; c < OMNIGLOT_CHARS; c++) {
        o->alphabet[c] = c < 26 ? 0 : c < 50 ? 1 : 2;
        o->number[c] = c < 26 ? c + 1 : c < 50 ? c - 25 : c;
    }
}

Test(omniglot, read_list) {
    omniglot o;
    fake_omniglot(&o);
    const char *good = "Latin/character01/rot000\nLatin/character01/rot090\r\n"
                       "Greek/character24/rot270\n\n";
    write_file(tmp_path("good.txt"), good, strlen(good));
    int *labels, n;
    cr_assert_eq(omniglot_read_list(&o, tmp_path("good.txt"), &labels, &n), FW_OK, "%s",
                 fw_last_error());
    cr_assert_eq(n, 3);
    cr_expect_eq(labels[0], 0);
    cr_expect_eq(labels[1], 1);
    cr_expect_eq(labels[2], 4 * 49 + 3);
    free(labels);

    struct { const char *text, *fragment; } bad[] = {
        {"Latin/character01/rot000\nKlingon/character01/rot000\n", ":2: 'Klingon/character01/rot000': unknown alphabet"},
        {"Latin/character27/rot000\n", "no such character"},
        {"Latin/character01/rot045\n", "rot000, rot090"},
        {"Latin/char01/rot000\n", "characterNN"},
        {"Latin/character01\n", "alphabet/characterNN/rotDDD"},
        {"Latin/character02/rot180\nLatin/character02/rot180\n", ":2:"},
        {"\n\n", "no classes"},
    };
    for (size_t i = 0; i < FW_COUNTOF(bad); i++) {
        write_file(tmp_path("bad.txt"), bad[i].text, strlen(bad[i].text));
        EXPECT_ERROR(omniglot_read_list(&o, tmp_path("bad.txt"), &labels, &n), FW_ERR_FORMAT,
                     "bad.txt", bad[i].fragment);
        cr_expect_null(labels);
    }
    EXPECT_ERROR(omniglot_read_list(&o, tmp_path("none.txt"), &labels, &n), FW_ERR_IO,
                 "none.txt", "make deps");
}

/* ---------------------------------------------------------------- the real data */

static omniglot real;

static void load_real(void) {
    if (!file_exists(REAL_DIR "/omniglot_background.bin") &&
        !file_exists(REAL_DIR "/omniglot_background.bin.gz"))
        cr_skip_test("%s not fetched (run `make deps`)", REAL_DIR);
    cr_assert_eq(omniglot_load(REAL_DIR, 28, &real), FW_OK, "%s", fw_last_error());
}

Test(omniglot_real, loads_all_characters) {
    load_real();
    cr_expect_eq(real.side, 28);
    cr_expect_str_eq(real.alphabet_name[0], "Arcadian");
    cr_expect_str_eq(real.alphabet_name[29], "Tifinagh");
    cr_expect_str_eq(real.alphabet_name[30], "Angelic");
    cr_expect_str_eq(real.alphabet_name[49], "ULOG");
    cr_expect(real.alphabet_background[29] && !real.alphabet_background[30], "splits");
    /* Malayalam/character05 is original id 1276 (README): index 1275. */
    cr_expect_str_eq(real.alphabet_name[real.alphabet[1275]], "Malayalam");
    cr_expect_eq(real.number[1275], 5);
    cr_expect_eq(real.number[0], 1);
    cr_expect_eq(real.number[1622], 26);
    /* Strokes on a background: a few percent ink on average, some pixels fully inked, no
     * image empty (except the known single-dot Braille drawings, which still have ink). */
    double total = 0;
    int empty = 0, full = 0;
    for (int c = 0; c < OMNIGLOT_CHARS; c++)
        for (int d = 0; d < OMNIGLOT_DRAWINGS; d++) {
            const uint8_t *im = omniglot_char_images(&real, c) + (size_t)d * 28 * 28;
            int sum = 0;
            for (int k = 0; k < 28 * 28; k++) {
                sum += im[k];
                full += im[k] == 255;
            }
            empty += sum == 0;
            total += sum / (255.0 * 28 * 28);
        }
    double mean = total / (OMNIGLOT_CHARS * OMNIGLOT_DRAWINGS);
    cr_expect(mean > 0.03 && mean < 0.3, "mean ink %g", mean);
    cr_expect_eq(empty, 0, "%d empty images", empty);
    cr_expect_gt(full, 1000);
    omniglot_free(&real);
}

/* Checks that every class of ds is 20 images, its label a distinct 4c + r, and its images the
 * character's resized drawings rotated by r quarter turns; returns per-character flags. */
static void check_classes(const fw_dataset *ds, bool *chars) {
    uint8_t want[28 * 28];
    for (int k = 0; k < ds->n_classes; k++) {
        int label = ds->class_label[k], c = label / 4;
        cr_assert(label >= 0 && c < OMNIGLOT_CHARS, "label %d", label);
        cr_assert_eq(ds->class_count[k], OMNIGLOT_DRAWINGS);
        chars[c] = true;
        for (int d = 0; d < OMNIGLOT_DRAWINGS; d += 7) {
            omniglot_rotate(omniglot_char_images(&real, c) + (size_t)d * 28 * 28, 28, label % 4,
                            want);
            cr_assert_arr_eq(fw_dataset_image(ds, ds->class_start[k] + d), want, 28 * 28,
                             "class %d (label %d) drawing %d", k, label, d);
        }
    }
}

static void check_split(const fw_dataset *train, const fw_dataset *test, int test_classes) {
    cr_expect_eq(train->n_classes, 4 * OMNIGLOT_TRAIN_CHARS);
    cr_expect_eq(test->n_classes, test_classes);
    cr_expect(train->c == 1 && train->h == 28 && train->w == 28, "train shape");
    cr_expect_eq(train->n_images, 20 * train->n_classes);
    static bool tr_chars[OMNIGLOT_CHARS], te_chars[OMNIGLOT_CHARS];
    memset(tr_chars, 0, sizeof tr_chars);
    memset(te_chars, 0, sizeof te_chars);
    check_classes(train, tr_chars);
    check_classes(test, te_chars);
    int n_tr = 0, n_te = 0, both = 0;
    for (int c = 0; c < OMNIGLOT_CHARS; c++) {
        n_tr += tr_chars[c];
        n_te += te_chars[c];
        both += tr_chars[c] && te_chars[c];
    }
    cr_expect_eq(n_tr, OMNIGLOT_TRAIN_CHARS);
    cr_expect_eq(n_te, OMNIGLOT_TEST_CHARS);
    cr_expect_eq(both, 0, "%d characters in both splits", both);
    /* Every training character has its 4 rotations as 4 classes. */
    int rot[OMNIGLOT_CHARS] = {0};
    for (int k = 0; k < train->n_classes; k++)
        rot[train->class_label[k] / 4] |= 1 << (train->class_label[k] % 4);
    int full = 0;
    for (int c = 0; c < OMNIGLOT_CHARS; c++)
        full += rot[c] == 15;
    cr_expect_eq(full, OMNIGLOT_TRAIN_CHARS, "%d characters have all 4 rotations", full);
}

Test(omniglot_real, maml_split) {
    load_real();
    fw_dataset train, test;
    cr_assert_eq(omniglot_split(&real, REAL_DIR, "maml", 1, 4, &train, &test), FW_OK, "%s",
                 fw_last_error());
    check_split(&train, &test, 4 * OMNIGLOT_TEST_CHARS);
    fw_dataset_free(&test);
    fw_dataset_free(&train);
    cr_assert_eq(omniglot_split(&real, REAL_DIR, "maml", 1, 1, &train, &test), FW_OK, "%s",
                 fw_last_error());
    check_split(&train, &test, OMNIGLOT_TEST_CHARS);
    for (int k = 0; k < test.n_classes; k++)
        cr_assert_eq(test.class_label[k] % 4, 0, "test_rotations 1: rotation 0 only");
    fw_dataset_free(&test);
    fw_dataset_free(&train);
    EXPECT_ERROR(omniglot_split(&real, REAL_DIR, "random", 1, 4, &train, &test), FW_ERR_ARG,
                 "random", "maml or vinyals");
    omniglot_free(&real);
}

Test(omniglot_real, vinyals_split) {
    load_real();
    fw_dataset train, test;
    cr_assert_eq(omniglot_split(&real, REAL_DIR, "vinyals", 0, 0, &train, &test), FW_OK, "%s",
                 fw_last_error());
    check_split(&train, &test, 4 * OMNIGLOT_TEST_CHARS);
    /* The README: test holds 423 evaluation characters; its first line is Gurmukhi/character42. */
    for (int k = 0; k < test.n_classes; k++)
        cr_assert(!real.alphabet_background[real.alphabet[test.class_label[k] / 4]],
                  "test class %d is from a background alphabet", k);
    int c0 = test.class_label[0] / 4;
    cr_expect_str_eq(real.alphabet_name[real.alphabet[c0]], "Gurmukhi");
    cr_expect_eq(real.number[c0], 42);
    cr_expect_eq(test.class_label[1], test.class_label[0] + 1, "rot090 follows rot000");
    fw_dataset_free(&test);
    fw_dataset_free(&train);
    omniglot_free(&real);
}

Test(omniglot_real, episodes_draw_from_the_split) {
    load_real();
    fw_dataset train, test;
    cr_assert_eq(omniglot_split(&real, REAL_DIR, "maml", 1, 4, &train, &test), FW_OK, "%s",
                 fw_last_error());
    omniglot_free(&real);
    fw_sampler s = {&train, 20, 5, 15, 3, FW_RNG_TRAIN_TASK, 0};
    cr_assert_eq(fw_sampler_check(&s), FW_OK, "%s", fw_last_error());
    s.query = 16; /* 5 + 16 > 20 drawings */
    cr_expect_eq(fw_sampler_check(&s), FW_ERR_ARG);
    s.query = 15;
    fw_episode ep;
    cr_assert_eq(fw_episode_init(&ep, &s), FW_OK);
    fw_sample(&s, 1, 0, &ep);
    for (int i = 0; i < 20 * 5 * 28 * 28; i++)
        cr_assert(ep.xs[i] >= 0 && ep.xs[i] <= 1, "pixels in [0, 1]");
    fw_episode_free(&ep);
    fw_dataset_free(&test);
    fw_dataset_free(&train);
}

/* ---------------------------------------------------------------- fetch script */
/* Run through popen() before anything touches OpenMP or oneDNN (libgomp is not fork-safe). */

static const char *mirror_dir(void) {
    const char *env = getenv("DATA_MIRROR");
    return env && *env ? env : "../shared/datasets";
}

static int run_cmd(const char *cmd, char *out, size_t size) {
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p, "popen(%s) failed", cmd);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "%s did not exit normally (%d)", cmd, status);
    return WEXITSTATUS(status);
}

Test(omniglot_fetch, verifies_copies_and_rejects_corruption) {
    char src[512];
    snprintf(src, sizeof src, "%s/omniglot/omniglot_evaluation.bin.gz", mirror_dir());
    if (!file_exists(src))
        cr_skip_test("dataset mirror not found (%s)", src);
    char cmd[2048], out[8192], path[1024];
    /* A mirror copy with one byte of the evaluation file flipped. */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/m' && cp -r '%s/omniglot' '%s/m/' && chmod -R u+w '%s/m'",
             tmp_dir, mirror_dir(), tmp_dir, tmp_dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/m/omniglot/omniglot_evaluation.bin.gz", tmp_dir);
    size_t n;
    uint8_t *gz = read_file(path, &n);
    gz[n / 2] ^= 0x5a;
    write_file(path, gz, n);
    free(gz);
    snprintf(cmd, sizeof cmd, "sh datasets/fetch_omniglot.sh '%s/m' '%s/dest'", tmp_dir, tmp_dir);
    int rc = run_cmd(cmd, out, sizeof out);
    cr_expect_eq(rc, 1, "the script accepted a corrupted file:\n%s", out);
    cr_expect(strstr(out, "omniglot_evaluation.bin") && strstr(out, "checksum mismatch") &&
                  strstr(out, "8afc5e185cf74c4a1ca2e06ef7786a1e075f45f1240f3f5d5627621308c53f83"),
              "the output should name the file and its expected hash:\n%s", out);
    snprintf(path, sizeof path, "%s/dest/omniglot_evaluation.bin", tmp_dir);
    cr_expect(!file_exists(path), "%s written from a corrupted file", path);
    snprintf(path, sizeof path, "%s/dest/omniglot_background.bin", tmp_dir);
    cr_expect(file_exists(path), "the good file %s was not fetched", path);
    snprintf(path, sizeof path, "%s/dest/splits-vinyals/test.txt", tmp_dir);
    cr_expect(file_exists(path), "%s was not fetched", path);

    /* From the real mirror: complete, then a second run changes nothing. */
    snprintf(cmd, sizeof cmd, "sh datasets/fetch_omniglot.sh '%s' '%s/dest'", mirror_dir(),
             tmp_dir);
    rc = run_cmd(cmd, out, sizeof out);
    cr_assert_eq(rc, 0, "fetch failed:\n%s", out);
    struct stat st;
    snprintf(path, sizeof path, "%s/dest/omniglot_evaluation.bin", tmp_dir);
    cr_assert_eq(stat(path, &st), 0, "%s missing", path);
    cr_expect_eq(st.st_size, 19376104);
    rc = run_cmd(cmd, out, sizeof out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "omniglot: up to date"), "second run:\n%s", out);
    /* No temporaries left behind. */
    DIR *d = opendir(tmp_path("dest"));
    struct dirent *e;
    while (d && (e = readdir(d)))
        cr_expect(e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."),
                  "leftover %s", e->d_name);
    if (d)
        closedir(d);
}

Test(omniglot_fetch, missing_mirror_is_a_clear_error) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "sh datasets/fetch_omniglot.sh '%s/none' '%s/dest'", tmp_dir, tmp_dir);
    int rc = run_cmd(cmd, out, sizeof out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "not found") && strstr(out, "DATA_MIRROR"), "%s", out);
}

/* ---------------------------------------------------------------- experiments' command line */

Test(omniglot_fetch, experiments_reject_bad_keys_and_missing_data) {
    char out[8192];
    int rc = run_cmd("./build/exp/fewshot_omniglot wayz=5", out, sizeof out);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect(strstr(out, "wayz"), "%s", out);
    rc = run_cmd("./build/exp/fewshot_omniglot shots=10 query=11", out, sizeof out);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect(strstr(out, "drawings"), "%s", out);
    rc = run_cmd("./build/exp/fewshot_omniglot split=random", out, sizeof out);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect(strstr(out, "maml|vinyals"), "%s", out);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "./build/exp/fewshot_omniglot data=%s/none runs=%s/runs", tmp_dir,
             tmp_dir);
    rc = run_cmd(cmd, out, sizeof out);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "make deps"), "%s", out);
    rc = run_cmd("./build/exp/crossdomain_omniglot_mnist train_chars=none", out, sizeof out);
    cr_expect_eq(rc, 2, "%s", out);
    cr_expect(strstr(out, "background|maml|all"), "%s", out);
}
