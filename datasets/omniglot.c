/* omniglot.c: reads and checks the Omniglot files, resizes the images, builds the splits. */
#include "datasets/omniglot.h"
#include "framework/rng.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

enum {
    HEADER_BYTES = 64,
    RECORD_BYTES = 72,        /* alphabet record: first_char, n_chars, name[64]         */
    VERSION = 1,
    /* Sanity limits for header fields, so that a damaged header cannot ask for absurd sizes
     * (the official files are far below them). */
    MAX_ALPHABETS = 1000,
    MAX_CHARS = 100000,
    MAX_DRAWINGS = 1000,
    MAX_SIDE = 4096,
    N_CLASS_LABELS = 4 * OMNIGLOT_CHARS
};

/* ================================ reading a file ================================ */

/* Reads up to n bytes; *got is what arrived before the end of the file. Read errors and
 * corrupt or cut gzip streams are errors naming the file. */
static fw_status read_some(gzFile f, const char *path, void *buf, size_t n, size_t *got) {
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > (1u << 30))
            want = 1u << 30;
        int r = gzread(f, (char *)buf + *got, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr == Z_ERRNO)
                return fw_errorf(FW_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            return fw_errorf(FW_ERR_FORMAT, "%s: corrupt gzip data: %s", path, msg);
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    int zerr;
    const char *msg = gzerror(f, &zerr);
    if (zerr == Z_BUF_ERROR)
        return fw_errorf(FW_ERR_FORMAT, "%s: gzip stream is truncated (%s)", path, msg);
    if (zerr != Z_OK)
        return fw_errorf(FW_ERR_FORMAT, "%s: corrupt gzip data: %s", path, msg);
    return FW_OK;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Checks one header field against [lo, hi] and stores it. */
static fw_status field(const char *path, const uint8_t *hdr, int offset, const char *name,
                       uint32_t lo, uint32_t hi, int *out) {
    uint32_t v = le32(hdr + offset);
    if (v < lo || v > hi)
        return fw_errorf(FW_ERR_FORMAT, "%s: header field %s (offset %d) is %u, expected %u..%u",
                         path, name, offset, (unsigned)v, (unsigned)lo, (unsigned)hi);
    *out = (int)v;
    return FW_OK;
}

/* A field that must equal a value the other fields determine. */
static fw_status field_equals(const char *path, const uint8_t *hdr, int offset, const char *name,
                              uint32_t want, const char *why, int *out) {
    uint32_t v = le32(hdr + offset);
    if (v != want)
        return fw_errorf(FW_ERR_FORMAT, "%s: header field %s (offset %d) is %u, expected %u (%s)",
                         path, name, offset, (unsigned)v, (unsigned)want, why);
    *out = (int)v;
    return FW_OK;
}

static fw_status parse_header(const char *path, const uint8_t *hdr, omniglot_file *f) {
    if (memcmp(hdr, "OMNIGLOT", 8) != 0)
        return fw_errorf(FW_ERR_FORMAT, "%s: not an Omniglot file (magic is not \"OMNIGLOT\")",
                         path);
    int version, alph_off, img_off;
    FW_TRY(field(path, hdr, 8, "version", VERSION, VERSION, &version));
    FW_TRY(field(path, hdr, 12, "split", 0, 1, &f->split));
    FW_TRY(field(path, hdr, 16, "n_alphabets", 1, MAX_ALPHABETS, &f->n_alphabets));
    FW_TRY(field(path, hdr, 20, "n_characters", (uint32_t)f->n_alphabets, MAX_CHARS,
                 &f->n_chars));
    FW_TRY(field(path, hdr, 24, "n_drawings", 1, MAX_DRAWINGS, &f->n_drawings));
    FW_TRY(field(path, hdr, 28, "height", 1, MAX_SIDE, &f->height));
    FW_TRY(field(path, hdr, 32, "width", 1, MAX_SIDE, &f->width));
    FW_TRY(field_equals(path, hdr, 36, "row_bytes", (uint32_t)(f->width + 7) / 8,
                        "ceil(width / 8)", &f->row_bytes));
    FW_TRY(field_equals(path, hdr, 40, "image_bytes", (uint32_t)(f->height * f->row_bytes),
                        "height * row_bytes", &f->image_bytes));
    FW_TRY(field(path, hdr, 44, "first_char_id", 1, MAX_CHARS, &f->first_char_id));
    FW_TRY(field_equals(path, hdr, 48, "alphabet_table_offset", HEADER_BYTES, "64", &alph_off));
    FW_TRY(field_equals(path, hdr, 52, "image_data_offset",
                        (uint32_t)(HEADER_BYTES + RECORD_BYTES * f->n_alphabets),
                        "64 + 72 * n_alphabets", &img_off));
    for (int i = 56; i < HEADER_BYTES; i++)
        if (hdr[i] != 0)
            return fw_errorf(FW_ERR_FORMAT, "%s: reserved header byte %d is %d, expected 0", path,
                             i, hdr[i]);
    return FW_OK;
}

static fw_status parse_alphabets(const char *path, const uint8_t *table, omniglot_file *f) {
    int next = 0;
    for (int a = 0; a < f->n_alphabets; a++) {
        const uint8_t *rec = table + (size_t)a * RECORD_BYTES;
        omniglot_alphabet *al = &f->alphabets[a];
        uint32_t first = le32(rec), count = le32(rec + 4);
        if (first != (uint32_t)next)
            return fw_errorf(FW_ERR_FORMAT,
                             "%s: alphabet record %d starts at character %u, expected %d "
                             "(records must be contiguous)",
                             path, a, (unsigned)first, next);
        if (count < 1 || count > (uint32_t)(f->n_chars - next))
            return fw_errorf(FW_ERR_FORMAT,
                             "%s: alphabet record %d has %u characters, expected 1..%d (the "
                             "header's n_characters is %d)",
                             path, a, (unsigned)count, f->n_chars - next, f->n_chars);
        const char *name = (const char *)rec + 8;
        size_t len = strnlen(name, OMNIGLOT_NAME_MAX);
        if (len == 0 || len == OMNIGLOT_NAME_MAX)
            return fw_errorf(FW_ERR_FORMAT,
                             "%s: alphabet record %d: the name is %s", path, a,
                             len == 0 ? "empty" : "not NUL-terminated within 64 bytes");
        for (size_t i = len; i < OMNIGLOT_NAME_MAX; i++)
            if (name[i] != 0)
                return fw_errorf(FW_ERR_FORMAT,
                                 "%s: alphabet record %d: bytes after the name's NUL must be 0",
                                 path, a);
        al->first_char = (int)first;
        al->n_chars = (int)count;
        memcpy(al->name, name, len + 1);
        next += (int)count;
    }
    if (next != f->n_chars)
        return fw_errorf(FW_ERR_FORMAT,
                         "%s: the alphabet records hold %d characters, the header says %d", path,
                         next, f->n_chars);
    return FW_OK;
}

/* Reads exactly `n` image bytes into a buffer that grows as data arrives (a damaged header
 * cannot make us allocate what the file does not hold), then checks that the file ends. */
static fw_status read_images(gzFile f, const char *path, const omniglot_file *of, size_t offset,
                             uint8_t **out) {
    size_t n = (size_t)of->n_chars * (size_t)of->n_drawings * (size_t)of->image_bytes;
    size_t cap = n < ((size_t)1 << 22) ? n : (size_t)1 << 22, have = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return fw_errorf(FW_ERR_NOMEM, "%s: out of memory", path);
    for (;;) {
        size_t got;
        fw_status s = read_some(f, path, buf + have, cap - have, &got);
        have += got;
        if (s != FW_OK) {
            free(buf);
            return s;
        }
        if (have < cap) {
            free(buf);
            return fw_errorf(FW_ERR_FORMAT,
                             "%s: truncated: %d characters x %d drawings x %d bytes need %zu "
                             "bytes of images after the %zu-byte header and table; the file "
                             "has %zu (%zu bytes in all, expected %zu)",
                             path, of->n_chars, of->n_drawings, of->image_bytes, n, offset, have,
                             offset + have, offset + n);
        }
        if (have == n)
            break;
        size_t next = cap > n / 2 ? n : 2 * cap;
        uint8_t *grown = realloc(buf, next);
        if (!grown) {
            free(buf);
            return fw_errorf(FW_ERR_NOMEM, "%s: out of memory for %zu bytes", path, next);
        }
        buf = grown;
        cap = next;
    }
    uint8_t scratch[4096];
    size_t extra = 0, got;
    do {
        fw_status s = read_some(f, path, scratch, sizeof scratch, &got);
        if (s != FW_OK) {
            free(buf);
            return s;
        }
        extra += got;
    } while (got == sizeof scratch);
    if (extra) {
        free(buf);
        return fw_errorf(FW_ERR_FORMAT,
                         "%s: %zu bytes after the last image (expected %zu bytes in all for %d "
                         "characters x %d drawings)",
                         path, extra, offset + n, of->n_chars, of->n_drawings);
    }
    /* The unused low bits of each row's last byte are 0 in a sound file. */
    int pad = of->row_bytes * 8 - of->width;
    if (pad > 0) {
        uint8_t mask = (uint8_t)((1u << pad) - 1);
        size_t rows = n / (size_t)of->row_bytes;
        for (size_t r = 0; r < rows; r++)
            if (buf[r * (size_t)of->row_bytes + (size_t)of->row_bytes - 1] & mask) {
                size_t img = r / (size_t)of->height;
                free(buf);
                return fw_errorf(FW_ERR_FORMAT,
                                 "%s: character %zu drawing %zu row %zu has padding bits set "
                                 "(corrupt image data)",
                                 path, img / (size_t)of->n_drawings, img % (size_t)of->n_drawings,
                                 r % (size_t)of->height);
            }
    }
    *out = buf;
    return FW_OK;
}

fw_status omniglot_file_read(const char *path, omniglot_file *out) {
    FW_ASSERT(path && out, "null argument");
    *out = (omniglot_file){0};
    errno = 0;
    gzFile gz = gzopen(path, "rb"); /* reads uncompressed files too */
    if (!gz)
        return fw_errorf(FW_ERR_IO, "%s: cannot open: %s", path,
                         errno ? strerror(errno) : "out of memory");
    omniglot_file f = {0};
    uint8_t hdr[HEADER_BYTES], *table = NULL;
    size_t got;
    fw_status s = read_some(gz, path, hdr, HEADER_BYTES, &got);
    if (s == FW_OK && got < HEADER_BYTES)
        s = fw_errorf(FW_ERR_FORMAT, "%s: too short for an Omniglot header (%zu of %d bytes)",
                      path, got, HEADER_BYTES);
    if (s == FW_OK)
        s = parse_header(path, hdr, &f);
    size_t table_bytes = (size_t)RECORD_BYTES * (size_t)f.n_alphabets;
    if (s == FW_OK) {
        table = malloc(table_bytes);
        f.alphabets = calloc((size_t)f.n_alphabets, sizeof *f.alphabets);
        if (!table || !f.alphabets)
            s = fw_errorf(FW_ERR_NOMEM, "%s: out of memory", path);
    }
    if (s == FW_OK)
        s = read_some(gz, path, table, table_bytes, &got);
    if (s == FW_OK && got < table_bytes)
        s = fw_errorf(FW_ERR_FORMAT, "%s: truncated in the alphabet table (%zu of %zu bytes)",
                      path, got, table_bytes);
    if (s == FW_OK)
        s = parse_alphabets(path, table, &f);
    if (s == FW_OK)
        s = read_images(gz, path, &f, HEADER_BYTES + table_bytes, &f.bits);
    free(table);
    gzclose(gz);
    if (s != FW_OK) {
        omniglot_file_free(&f);
        return s;
    }
    *out = f;
    return FW_OK;
}

void omniglot_file_free(omniglot_file *f) {
    if (!f)
        return;
    free(f->alphabets);
    free(f->bits);
    *f = (omniglot_file){0};
}

/* ================================ resize and rotate ================================ */

/* Overlap of source pixel x (covering [x*side, (x+1)*side)) with output pixel i (covering
 * [i*n, (i+1)*n)), both in units of 1/side source pixels: an output pixel spans n/side source
 * pixels, and its weights add up to n. */
static int overlap(int i, int x, int n, int side) {
    int lo = i * n > x * side ? i * n : x * side;
    int hi = (i + 1) * n < (x + 1) * side ? (i + 1) * n : (x + 1) * side;
    return hi > lo ? hi - lo : 0;
}

void omniglot_resize(const uint8_t *bits, int h, int w, int row_bytes, int side, uint8_t *out) {
    FW_ASSERT(h > 0 && w > 0 && side > 0 && side <= h && side <= w && row_bytes * 8 >= w,
              "resize %dx%d (row %d bytes) to %d", h, w, row_bytes, side);
    /* Rows first: cols[y][j] = sum over x of weight(j, x) * bit(y, x), at most w * side. */
    int *cols = malloc((size_t)h * (size_t)side * sizeof(int));
    FW_ASSERT(cols, "out of memory");
    for (int y = 0; y < h; y++) {
        const uint8_t *row = bits + (size_t)y * (size_t)row_bytes;
        for (int j = 0; j < side; j++) {
            int sum = 0, x0 = j * w / side, x1 = ((j + 1) * w - 1) / side;
            for (int x = x0; x <= x1; x++)
                if (row[x >> 3] >> (7 - (x & 7)) & 1)
                    sum += overlap(j, x, w, side);
            cols[(size_t)y * (size_t)side + (size_t)j] = sum;
        }
    }
    /* Then columns; the total weight of an output pixel is h * w. */
    long long full = (long long)h * w;
    for (int i = 0; i < side; i++) {
        int y0 = i * h / side, y1 = ((i + 1) * h - 1) / side;
        for (int j = 0; j < side; j++) {
            long long sum = 0;
            for (int y = y0; y <= y1; y++)
                sum += (long long)overlap(i, y, h, side) * cols[(size_t)y * (size_t)side + (size_t)j];
            out[(size_t)i * (size_t)side + (size_t)j] = (uint8_t)((255 * sum + full / 2) / full);
        }
    }
    free(cols);
}

void omniglot_rotate(const uint8_t *in, int side, int quarter_turns, uint8_t *out) {
    FW_ASSERT(in != out, "rotation in place");
    int k = ((quarter_turns % 4) + 4) % 4;
    size_t s = (size_t)side;
    for (size_t y = 0; y < s; y++)
        for (size_t x = 0; x < s; x++) {
            size_t src; /* numpy.rot90(in, k)[y][x] */
            if (k == 0)
                src = y * s + x;
            else if (k == 1)
                src = x * s + (s - 1 - y);
            else if (k == 2)
                src = (s - 1 - y) * s + (s - 1 - x);
            else
                src = (s - 1 - x) * s + y;
            out[y * s + x] = in[src];
        }
}

/* ================================ the whole set ================================ */

/* Sets path to <dir>/<name>, or <dir>/<name>.gz when only that exists. */
static fw_status find_file(const char *dir, const char *name, char *path, size_t size) {
    int len = snprintf(path, size, "%s/%s", dir, name);
    if (len < 0 || (size_t)len + 3 >= size)
        return fw_errorf(FW_ERR_ARG, "Omniglot directory path is too long: %s", dir);
    if (access(path, F_OK) == 0)
        return FW_OK;
    strcat(path, ".gz");
    if (access(path, F_OK) == 0)
        return FW_OK;
    return fw_errorf(FW_ERR_IO,
                     "Omniglot file %s/%s (or %s.gz) not found; run `make deps` to fetch Omniglot",
                     dir, name, name);
}

typedef struct official {
    const char *name;
    int split, n_alphabets, n_chars, first_char_id;
} official;

static const official OFFICIAL[2] = {
    {"omniglot_background.bin", 0, 30, 964, 1},
    {"omniglot_evaluation.bin", 1, 20, 659, 965},
};

static fw_status check_official(const char *path, const omniglot_file *f, const official *o) {
    struct { const char *what; int got, want; } checks[] = {
        {"split", f->split, o->split},
        {"n_alphabets", f->n_alphabets, o->n_alphabets},
        {"n_characters", f->n_chars, o->n_chars},
        {"n_drawings", f->n_drawings, OMNIGLOT_DRAWINGS},
        {"height", f->height, OMNIGLOT_SIDE},
        {"width", f->width, OMNIGLOT_SIDE},
        {"first_char_id", f->first_char_id, o->first_char_id},
    };
    for (size_t i = 0; i < FW_COUNTOF(checks); i++)
        if (checks[i].got != checks[i].want)
            return fw_errorf(FW_ERR_FORMAT,
                             "%s: %s is %d, but the official %s file has %d (a different or "
                             "damaged file; run `make deps` to fetch it again)",
                             path, checks[i].what, checks[i].got, o->name, checks[i].want);
    return FW_OK;
}

fw_status omniglot_load(const char *dir, int side, omniglot *o) {
    FW_ASSERT(dir && o, "null argument");
    *o = (omniglot){0};
    if (side < 1 || side > OMNIGLOT_SIDE)
        return fw_errorf(FW_ERR_ARG, "Omniglot image side %d, expected 1..%d", side,
                         OMNIGLOT_SIDE);
    size_t img = (size_t)side * (size_t)side;
    o->side = side;
    o->pixels = fw_alloc((size_t)OMNIGLOT_CHARS * OMNIGLOT_DRAWINGS * img);
    if (!o->pixels)
        return fw_errorf(FW_ERR_NOMEM, "out of memory for Omniglot");
    int ch = 0, alphabet = 0;
    for (int k = 0; k < 2; k++) {
        char path[4096];
        omniglot_file f;
        fw_status s = find_file(dir, OFFICIAL[k].name, path, sizeof path);
        if (s == FW_OK)
            s = omniglot_file_read(path, &f);
        if (s == FW_OK && (s = check_official(path, &f, &OFFICIAL[k])) != FW_OK)
            omniglot_file_free(&f);
        if (s != FW_OK) {
            omniglot_free(o);
            return s;
        }
        for (int a = 0; a < f.n_alphabets; a++, alphabet++) {
            const omniglot_alphabet *al = &f.alphabets[a];
            memcpy(o->alphabet_name[alphabet], al->name, sizeof al->name);
            o->alphabet_background[alphabet] = k == 0;
            for (int c = 0; c < al->n_chars; c++) {
                o->alphabet[ch + al->first_char + c] = alphabet;
                o->number[ch + al->first_char + c] = c + 1;
            }
        }
        for (int c = 0; c < f.n_chars; c++)
            for (int d = 0; d < OMNIGLOT_DRAWINGS; d++) {
                size_t i = (size_t)c * OMNIGLOT_DRAWINGS + (size_t)d;
                omniglot_resize(f.bits + i * (size_t)f.image_bytes, f.height, f.width,
                                f.row_bytes, side,
                                o->pixels + ((size_t)(ch + c) * OMNIGLOT_DRAWINGS + (size_t)d) * img);
            }
        ch += f.n_chars;
        omniglot_file_free(&f);
    }
    FW_ASSERT(ch == OMNIGLOT_CHARS && alphabet == OMNIGLOT_ALPHABETS, "%d characters, %d alphabets",
              ch, alphabet);
    return FW_OK;
}

void omniglot_free(omniglot *o) {
    if (!o)
        return;
    fw_free(o->pixels);
    *o = (omniglot){0};
}

const uint8_t *omniglot_char_images(const omniglot *o, int ch) {
    FW_ASSERT(ch >= 0 && ch < OMNIGLOT_CHARS, "character %d", ch);
    return o->pixels + (size_t)ch * OMNIGLOT_DRAWINGS * (size_t)o->side * (size_t)o->side;
}

/* ================================ splits ================================ */

void omniglot_maml_split(uint64_t seed, int train[OMNIGLOT_TRAIN_CHARS],
                         int test[OMNIGLOT_TEST_CHARS]) {
    int perm[OMNIGLOT_CHARS];
    bool in_train[OMNIGLOT_CHARS] = {false};
    for (int i = 0; i < OMNIGLOT_CHARS; i++)
        perm[i] = i;
    fw_rng r = fw_rng_for(seed, FW_RNG_USER, 0, 0);
    for (int i = 0; i < OMNIGLOT_TRAIN_CHARS; i++) { /* the first 1200 of a Fisher-Yates shuffle */
        int j = i + (int)fw_rng_below(&r, (uint32_t)(OMNIGLOT_CHARS - i));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        in_train[perm[i]] = true;
    }
    int a = 0, b = 0;
    for (int c = 0; c < OMNIGLOT_CHARS; c++) {
        if (in_train[c])
            train[a++] = c;
        else
            test[b++] = c;
    }
    FW_ASSERT(a == OMNIGLOT_TRAIN_CHARS && b == OMNIGLOT_TEST_CHARS, "split %d / %d", a, b);
}

fw_status omniglot_dataset(const omniglot *o, const int *labels, int n, fw_dataset *ds) {
    FW_ASSERT(o && o->pixels && ds && (labels || n == 0), "null argument");
    *ds = (fw_dataset){0};
    if (n < 1)
        return fw_errorf(FW_ERR_ARG, "an Omniglot dataset needs at least one class (got %d)", n);
    bool *seen = calloc(N_CLASS_LABELS, sizeof *seen);
    if (!seen)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        bool in_range = labels[k] >= 0 && labels[k] < N_CLASS_LABELS;
        if (!in_range || seen[labels[k]]) {
            fw_status s = fw_errorf(FW_ERR_ARG,
                                    "Omniglot class label %d is %s (labels are 4 * character + "
                                    "rotation, 0..%d, each once)",
                                    labels[k], in_range ? "repeated" : "out of range",
                                    N_CLASS_LABELS - 1);
            free(seen);
            return s;
        }
        seen[labels[k]] = true;
    }
    free(seen);
    size_t img = (size_t)o->side * (size_t)o->side;
    int n_images = n * OMNIGLOT_DRAWINGS;
    *ds = (fw_dataset){.n_classes = n, .c = 1, .h = o->side, .w = o->side, .n_images = n_images};
    ds->pixels = fw_alloc((size_t)n_images * img);
    ds->class_start = fw_alloc((size_t)n * sizeof(int));
    ds->class_count = fw_alloc((size_t)n * sizeof(int));
    ds->class_label = fw_alloc((size_t)n * sizeof(int));
    if (!ds->pixels || !ds->class_start || !ds->class_count || !ds->class_label) {
        fw_dataset_free(ds);
        return fw_errorf(FW_ERR_NOMEM, "out of memory for %d Omniglot classes", n);
    }
    for (int k = 0; k < n; k++) {
        ds->class_start[k] = k * OMNIGLOT_DRAWINGS;
        ds->class_count[k] = OMNIGLOT_DRAWINGS;
        ds->class_label[k] = labels[k];
        const uint8_t *src = omniglot_char_images(o, labels[k] / 4);
        for (int d = 0; d < OMNIGLOT_DRAWINGS; d++)
            omniglot_rotate(src + (size_t)d * img, o->side, labels[k] % 4,
                            ds->pixels + ((size_t)k * OMNIGLOT_DRAWINGS + (size_t)d) * img);
    }
    return FW_OK;
}

fw_status omniglot_dataset_chars(const omniglot *o, const int *chars, int n, int rotations,
                                 fw_dataset *ds) {
    FW_ASSERT(rotations >= 1 && rotations <= 4, "rotations=%d, expected 1..4", rotations);
    *ds = (fw_dataset){0};
    int *labels = malloc((size_t)(n > 0 ? n : 1) * (size_t)rotations * sizeof(int));
    if (!labels)
        return fw_errorf(FW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rotations; r++)
            labels[i * rotations + r] = 4 * chars[i] + r;
    fw_status s = omniglot_dataset(o, labels, n * rotations, ds);
    free(labels);
    return s;
}

/* Parses "alphabet/characterNN/rotDDD" into a class label; false if malformed or unknown. */
static bool parse_list_line(const omniglot *o, char *line, int *label, const char **why) {
    char *slash1 = strchr(line, '/'), *slash2 = slash1 ? strchr(slash1 + 1, '/') : NULL;
    if (!slash1 || !slash2 || strchr(slash2 + 1, '/')) {
        *why = "expected alphabet/characterNN/rotDDD";
        return false;
    }
    *slash1 = *slash2 = '\0';
    const char *alpha = line, *chr = slash1 + 1, *rot = slash2 + 1;
    int a = 0;
    while (a < OMNIGLOT_ALPHABETS && strcmp(o->alphabet_name[a], alpha) != 0)
        a++;
    if (a == OMNIGLOT_ALPHABETS) {
        *why = "unknown alphabet";
        return false;
    }
    int number, degrees, used = 0;
    if (sscanf(chr, "character%d%n", &number, &used) != 1 || chr[used] != '\0') {
        *why = "expected characterNN";
        return false;
    }
    if (strlen(rot) != 6 || sscanf(rot, "rot%d%n", &degrees, &used) != 1 || rot[used] != '\0' ||
        degrees % 90 != 0 || degrees < 0 || degrees > 270) {
        *why = "expected rot000, rot090, rot180 or rot270";
        return false;
    }
    for (int c = 0; c < OMNIGLOT_CHARS; c++)
        if (o->alphabet[c] == a && o->number[c] == number) {
            *label = 4 * c + degrees / 90;
            return true;
        }
    *why = "no such character in that alphabet";
    return false;
}

fw_status omniglot_read_list(const omniglot *o, const char *path, int **labels, int *n) {
    FW_ASSERT(o && path && labels && n, "null argument");
    *labels = NULL;
    *n = 0;
    errno = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return fw_errorf(FW_ERR_IO, "%s: cannot open: %s (run `make deps` to fetch Omniglot)",
                         path, strerror(errno));
    int cap = 1024, count = 0, line_no = 0;
    int *out = malloc((size_t)cap * sizeof(int));
    bool *seen = calloc(N_CLASS_LABELS, sizeof *seen);
    char line[512];
    fw_status s = out && seen ? FW_OK : fw_errorf(FW_ERR_NOMEM, "out of memory");
    while (s == FW_OK && fgets(line, sizeof line, f)) {
        line_no++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            s = fw_errorf(FW_ERR_FORMAT, "%s:%d: line too long", path, line_no);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (len == 0)
            continue;
        char copy[512];
        memcpy(copy, line, len + 1);
        int label;
        const char *why = "";
        if (!parse_list_line(o, line, &label, &why)) {
            s = fw_errorf(FW_ERR_FORMAT, "%s:%d: '%s': %s", path, line_no, copy, why);
            break;
        }
        if (seen[label]) {
            s = fw_errorf(FW_ERR_FORMAT, "%s:%d: '%s' is listed twice", path, line_no, copy);
            break;
        }
        seen[label] = true;
        if (count == cap) {
            int *grown = realloc(out, (size_t)cap * 2 * sizeof(int));
            if (!grown) {
                s = fw_errorf(FW_ERR_NOMEM, "out of memory");
                break;
            }
            out = grown;
            cap *= 2;
        }
        out[count++] = label;
    }
    if (s == FW_OK && ferror(f))
        s = fw_errorf(FW_ERR_IO, "%s: read failed", path);
    if (s == FW_OK && count == 0)
        s = fw_errorf(FW_ERR_FORMAT, "%s: no classes listed", path);
    fclose(f);
    free(seen);
    if (s != FW_OK) {
        free(out);
        return s;
    }
    *labels = out;
    *n = count;
    return FW_OK;
}

static fw_status dataset_from_list(const omniglot *o, const char *dir, const char *name,
                                   fw_dataset *ds) {
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/splits-vinyals/%s", dir, name);
    if (len < 0 || (size_t)len >= sizeof path)
        return fw_errorf(FW_ERR_ARG, "Omniglot directory path is too long: %s", dir);
    int *labels, n;
    FW_TRY(omniglot_read_list(o, path, &labels, &n));
    fw_status s = omniglot_dataset(o, labels, n, ds);
    free(labels);
    return s;
}

fw_status omniglot_split(const omniglot *o, const char *dir, const char *split, uint64_t split_seed,
                         int test_rotations, fw_dataset *train, fw_dataset *test) {
    FW_ASSERT(o && dir && split && train && test, "null argument");
    *train = *test = (fw_dataset){0};
    fw_status s;
    if (strcmp(split, "maml") == 0) {
        if (test_rotations < 1 || test_rotations > 4)
            return fw_errorf(FW_ERR_ARG, "test_rotations=%d, expected 1..4", test_rotations);
        int tr[OMNIGLOT_TRAIN_CHARS], te[OMNIGLOT_TEST_CHARS];
        omniglot_maml_split(split_seed, tr, te);
        s = omniglot_dataset_chars(o, tr, OMNIGLOT_TRAIN_CHARS, 4, train);
        if (s == FW_OK)
            s = omniglot_dataset_chars(o, te, OMNIGLOT_TEST_CHARS, test_rotations, test);
    } else if (strcmp(split, "vinyals") == 0) {
        s = dataset_from_list(o, dir, "trainval.txt", train);
        if (s == FW_OK)
            s = dataset_from_list(o, dir, "test.txt", test);
    } else {
        return fw_errorf(FW_ERR_ARG, "unknown Omniglot split '%s' (maml or vinyals)", split);
    }
    if (s != FW_OK) {
        fw_dataset_free(train);
        fw_dataset_free(test);
    }
    return s;
}
