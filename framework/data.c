/* data.c: IDX loading, class-sorted datasets, class splits and the episode sampler. */
#include "framework/data.h"
#include "framework/rng.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <zlib.h>

/* ================================ IDX files ================================ */

enum { IDX_TYPE_UBYTE = 0x08, IDX_MAX_DIMS = 4 };

/* Reads up to n bytes; *got is what arrived before EOF. A read error (not EOF) is reported. */
static fw_status gz_read_full(gzFile f, const char *path, void *buf, size_t n, size_t *got) {
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > (1u << 30)) /* gzread takes an unsigned and returns an int */
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
    /* zlib reports a cut-off gzip stream as a short read plus an error, not as r < 0. */
    int zerr;
    const char *msg = gzerror(f, &zerr);
    if (zerr != Z_OK && zerr != Z_BUF_ERROR)
        return fw_errorf(FW_ERR_FORMAT, "%s: corrupt gzip data: %s", path, msg);
    if (zerr == Z_BUF_ERROR)
        return fw_errorf(FW_ERR_FORMAT, "%s: gzip stream is truncated (%s)", path, msg);
    return FW_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* "60000x28x28", for error messages. */
static const char *dims_str(const fw_idx *idx, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < idx->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? "x%d" : "%d", idx->dims[i]);
    return buf;
}

/* Parses and checks the magic number and the dimensions; *payload is prod(dims). */
static fw_status idx_read_header(gzFile f, const char *path, fw_idx *out, size_t *payload) {
    uint8_t magic[4];
    size_t got;
    FW_TRY(gz_read_full(f, path, magic, 4, &got));
    if (got < 4)
        return fw_errorf(FW_ERR_FORMAT, "%s: too short for an IDX header (%zu bytes)", path, got);
    if (magic[0] != 0 || magic[1] != 0)
        return fw_errorf(FW_ERR_FORMAT,
                         "%s: not an IDX file (magic 0x%02x%02x%02x%02x, expected 0x000008NN)",
                         path, magic[0], magic[1], magic[2], magic[3]);
    if (magic[2] != IDX_TYPE_UBYTE)
        return fw_errorf(FW_ERR_FORMAT, "%s: IDX data type 0x%02x is not uint8 (0x08)", path,
                         magic[2]);
    if (magic[3] < 1 || magic[3] > IDX_MAX_DIMS)
        return fw_errorf(FW_ERR_FORMAT, "%s: IDX file has %d dimensions, expected 1..%d", path,
                         magic[3], IDX_MAX_DIMS);
    out->ndim = magic[3];

    uint8_t raw[4 * IDX_MAX_DIMS];
    size_t dims_bytes = 4 * (size_t)out->ndim;
    FW_TRY(gz_read_full(f, path, raw, dims_bytes, &got));
    if (got < dims_bytes)
        return fw_errorf(FW_ERR_FORMAT, "%s: truncated IDX header: %zu of %zu dimension bytes",
                         path, got, dims_bytes);
    size_t prod = 1;
    for (int i = 0; i < out->ndim; i++) {
        uint32_t d = be32(raw + 4 * i);
        if (d == 0 || d > INT_MAX)
            return fw_errorf(FW_ERR_FORMAT, "%s: dimension %d is %u, expected 1..%d", path, i,
                             (unsigned)d, INT_MAX);
        if (prod > SIZE_MAX / d)
            return fw_errorf(FW_ERR_FORMAT, "%s: dimensions overflow the address space", path);
        prod *= d;
        out->dims[i] = (int)d;
    }
    *payload = prod;
    return FW_OK;
}

/* Reads exactly n payload bytes into a buffer that grows as data arrives, so a header that
 * promises far more than the file holds gives a clear "truncated" error, not a huge allocation. */
static fw_status idx_read_payload(gzFile f, const char *path, const fw_idx *idx, size_t n,
                                  uint8_t **data) {
    size_t header = 4 + 4 * (size_t)idx->ndim;
    size_t cap = n < ((size_t)1 << 20) ? n : (size_t)1 << 20;
    size_t have = 0;
    uint8_t *buf = malloc(cap);
    char dims[64];
    if (!buf)
        return fw_errorf(FW_ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
    for (;;) {
        size_t got;
        fw_status s = gz_read_full(f, path, buf + have, cap - have, &got);
        have += got;
        if (s != FW_OK) {
            free(buf);
            return s;
        }
        if (have < cap) {
            free(buf);
            return fw_errorf(FW_ERR_FORMAT,
                             "%s: truncated: expected %zu bytes (%zu header + %zu data for %s), "
                             "found %zu",
                             path, header + n, header, n, dims_str(idx, dims, sizeof dims),
                             header + have);
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
    *data = buf;
    return FW_OK;
}

/* Counts the bytes after the payload; any is a format error (a wrong header or a wrong file). */
static fw_status idx_check_end(gzFile f, const char *path, const fw_idx *idx, size_t n) {
    uint8_t scratch[4096];
    size_t extra = 0, got;
    do {
        FW_TRY(gz_read_full(f, path, scratch, sizeof scratch, &got));
        extra += got;
    } while (got == sizeof scratch);
    if (extra == 0)
        return FW_OK;
    size_t header = 4 + 4 * (size_t)idx->ndim;
    char dims[64];
    return fw_errorf(FW_ERR_FORMAT,
                     "%s: %zu trailing bytes: expected %zu bytes (%zu header + %zu data for %s), "
                     "found %zu",
                     path, extra, header + n, header, n, dims_str(idx, dims, sizeof dims),
                     header + n + extra);
}

fw_status fw_idx_load(const char *path, fw_idx *out) {
    FW_ASSERT(path && out, "null argument");
    *out = (fw_idx){0};
    errno = 0;
    gzFile f = gzopen(path, "rb"); /* also reads uncompressed files, transparently */
    if (!f)
        return fw_errorf(FW_ERR_IO, "%s: cannot open: %s", path,
                         errno ? strerror(errno) : "out of memory");

    fw_idx idx = {0};
    size_t n = 0;
    fw_status s = idx_read_header(f, path, &idx, &n);
    if (s == FW_OK)
        s = idx_read_payload(f, path, &idx, n, &idx.data);
    if (s == FW_OK)
        s = idx_check_end(f, path, &idx, n);
    gzclose(f);
    if (s != FW_OK) {
        free(idx.data);
        return s;
    }
    *out = idx;
    return FW_OK;
}

void fw_idx_free(fw_idx *idx) {
    if (!idx)
        return;
    free(idx->data);
    *idx = (fw_idx){0};
}

/* ================================ datasets ================================ */

/* Allocates the per-class arrays and the pixels of an empty dataset of the given shape. */
static fw_status dataset_alloc(fw_dataset *ds, int n_classes, int n_images, int c, int h, int w) {
    *ds = (fw_dataset){.n_classes = n_classes, .n_images = n_images, .c = c, .h = h, .w = w};
    size_t bytes = (size_t)n_images * (size_t)c * (size_t)h * (size_t)w;
    ds->pixels = fw_alloc(bytes);
    ds->class_start = fw_alloc((size_t)n_classes * sizeof(int));
    ds->class_count = fw_alloc((size_t)n_classes * sizeof(int));
    ds->class_label = fw_alloc((size_t)n_classes * sizeof(int));
    if (!ds->pixels || !ds->class_start || !ds->class_count || !ds->class_label) {
        fw_dataset_free(ds);
        return fw_errorf(FW_ERR_NOMEM, "out of memory for a dataset of %d images (%zu bytes)",
                         n_images, bytes);
    }
    return FW_OK;
}

/* Sorts the images by label with a counting sort, which keeps the file order within a class. */
static fw_status dataset_from_arrays(fw_dataset *ds, const fw_idx *images, const fw_idx *labels) {
    int n = images->dims[0], h = images->dims[1], w = images->dims[2];
    size_t image_bytes = (size_t)h * (size_t)w;
    int count[256] = {0};
    for (int i = 0; i < n; i++)
        count[labels->data[i]]++;
    int n_classes = 0;
    for (int l = 0; l < 256; l++)
        n_classes += count[l] > 0;
    FW_TRY(dataset_alloc(ds, n_classes, n, 1, h, w));

    int next[256]; /* where the next image of each label goes */
    int k = 0, start = 0;
    for (int l = 0; l < 256; l++) {
        if (!count[l])
            continue;
        ds->class_start[k] = start;
        ds->class_count[k] = count[l];
        ds->class_label[k] = l;
        next[l] = start;
        start += count[l];
        k++;
    }
    for (int i = 0; i < n; i++) {
        int dst = next[labels->data[i]]++;
        memcpy(ds->pixels + (size_t)dst * image_bytes, images->data + (size_t)i * image_bytes,
               image_bytes);
    }
    return FW_OK;
}

fw_status fw_dataset_from_idx(fw_dataset *ds, const char *images_path, const char *labels_path) {
    FW_ASSERT(ds && images_path && labels_path, "null argument");
    *ds = (fw_dataset){0};
    fw_idx images = {0}, labels = {0};
    FW_TRY(fw_idx_load(images_path, &images));
    fw_status s = fw_idx_load(labels_path, &labels);
    if (s == FW_OK && images.ndim != 3)
        s = fw_errorf(FW_ERR_FORMAT, "%s: images file has %d dimensions, expected 3 (n, h, w)",
                      images_path, images.ndim);
    else if (s == FW_OK && (size_t)images.dims[1] * (size_t)images.dims[2] > INT_MAX)
        s = fw_errorf(FW_ERR_FORMAT, "%s: images of %dx%d pixels are too large", images_path,
                      images.dims[1], images.dims[2]);
    else if (s == FW_OK && labels.ndim != 1)
        s = fw_errorf(FW_ERR_FORMAT, "%s: labels file has %d dimensions, expected 1 (n)",
                      labels_path, labels.ndim);
    else if (s == FW_OK && labels.dims[0] != images.dims[0])
        s = fw_errorf(FW_ERR_FORMAT, "%s has %d images but %s has %d labels", images_path,
                      images.dims[0], labels_path, labels.dims[0]);
    if (s == FW_OK)
        s = dataset_from_arrays(ds, &images, &labels);
    fw_idx_free(&images);
    fw_idx_free(&labels);
    return s;
}

static int find_class(const fw_dataset *ds, int label) {
    for (int k = 0; k < ds->n_classes; k++)
        if (ds->class_label[k] == label)
            return k;
    return -1;
}

/* Checks the label list: not empty, every label in src, no repeats. */
static fw_status check_subset_labels(const fw_dataset *src, const int *labels, int n) {
    if (n <= 0)
        return fw_errorf(FW_ERR_ARG, "a class split needs at least one label (got %d)", n);
    for (int i = 0; i < n; i++) {
        if (find_class(src, labels[i]) < 0)
            return fw_errorf(FW_ERR_ARG, "class split: label %d is not in the dataset", labels[i]);
        for (int j = 0; j < i; j++)
            if (labels[j] == labels[i])
                return fw_errorf(FW_ERR_ARG, "class split: label %d is listed twice", labels[i]);
    }
    return FW_OK;
}

/* The split keeps src's class order (increasing label), whatever the order of `labels`. */
fw_status fw_dataset_subset(fw_dataset *out, const fw_dataset *src, const int *labels, int n) {
    FW_ASSERT(out && src && (labels || n == 0), "null argument");
    FW_ASSERT(out != src, "subset into its own source");
    *out = (fw_dataset){0};
    FW_TRY(check_subset_labels(src, labels, n));

    int n_images = 0;
    for (int k = 0; k < src->n_classes; k++)
        for (int i = 0; i < n; i++)
            if (src->class_label[k] == labels[i])
                n_images += src->class_count[k];
    FW_TRY(dataset_alloc(out, n, n_images, src->c, src->h, src->w));

    size_t image_bytes = (size_t)src->c * (size_t)src->h * (size_t)src->w;
    int dst_class = 0, dst_image = 0;
    for (int k = 0; k < src->n_classes; k++) {
        bool wanted = false;
        for (int i = 0; i < n; i++)
            wanted = wanted || src->class_label[k] == labels[i];
        if (!wanted)
            continue;
        out->class_start[dst_class] = dst_image;
        out->class_count[dst_class] = src->class_count[k];
        out->class_label[dst_class] = src->class_label[k];
        memcpy(out->pixels + (size_t)dst_image * image_bytes,
               fw_dataset_image(src, src->class_start[k]),
               (size_t)src->class_count[k] * image_bytes);
        dst_image += src->class_count[k];
        dst_class++;
    }
    return FW_OK;
}

void fw_dataset_free(fw_dataset *ds) {
    if (!ds)
        return;
    fw_free(ds->pixels);
    fw_free(ds->class_start);
    fw_free(ds->class_count);
    fw_free(ds->class_label);
    *ds = (fw_dataset){0};
}

/* ================================ episodes ================================ */

fw_status fw_sampler_check(const fw_sampler *s) {
    FW_ASSERT(s && s->ds, "sampler without a dataset");
    const fw_dataset *ds = s->ds;
    if (ds->n_classes < 1)
        return fw_errorf(FW_ERR_ARG, "sampler: the dataset has no classes");
    if (s->ways < 2)
        return fw_errorf(FW_ERR_ARG, "sampler: ways=%d, an episode needs at least 2 classes",
                         s->ways);
    if (s->ways > ds->n_classes)
        return fw_errorf(FW_ERR_ARG, "sampler: ways=%d but the split has only %d classes", s->ways,
                         ds->n_classes);
    if (s->shots < 1 || s->query < 1)
        return fw_errorf(FW_ERR_ARG, "sampler: shots=%d and query=%d must both be >= 1", s->shots,
                         s->query);
    if (s->unlabeled < 0)
        return fw_errorf(FW_ERR_ARG, "sampler: unlabeled=%d must be >= 0", s->unlabeled);
    int smallest = 0;
    for (int k = 1; k < ds->n_classes; k++)
        if (ds->class_count[k] < ds->class_count[smallest])
            smallest = k;
    /* Written as a difference so that huge shots/query cannot overflow. */
    if (s->shots > ds->class_count[smallest] - s->query - s->unlabeled)
        return fw_errorf(FW_ERR_ARG,
                         "sampler: shots+query=%lld (+ unlabeled=%d) images per class, but class "
                         "%d (label %d) has only %d",
                         (long long)s->shots + s->query, s->unlabeled, smallest,
                         ds->class_label[smallest], ds->class_count[smallest]);
    return FW_OK;
}

fw_status fw_episode_init(fw_episode *ep, const fw_sampler *s) {
    FW_ASSERT(ep, "null episode");
    *ep = (fw_episode){0};
    FW_TRY(fw_sampler_check(s));
    const fw_dataset *ds = s->ds;
    size_t n_s = (size_t)s->ways * (size_t)s->shots, n_q = (size_t)s->ways * (size_t)s->query;
    size_t chw = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    size_t n_u = (size_t)s->ways * (size_t)s->unlabeled;
    *ep = (fw_episode){.ways = s->ways, .shots = s->shots, .query = s->query,
                       .c = ds->c, .h = ds->h, .w = ds->w, .unlabeled = s->unlabeled};
    ep->xu = fw_alloc((n_u ? n_u : 1) * chw * sizeof(float));
    ep->src_u = fw_alloc((n_u ? n_u : 1) * sizeof(int));
    ep->xs = fw_alloc(n_s * chw * sizeof(float));
    ep->xq = fw_alloc(n_q * chw * sizeof(float));
    ep->ys = fw_alloc(n_s * sizeof(int));
    ep->yq = fw_alloc(n_q * sizeof(int));
    ep->classes = fw_alloc((size_t)s->ways * sizeof(int));
    ep->src_s = fw_alloc(n_s * sizeof(int));
    ep->src_q = fw_alloc(n_q * sizeof(int));
    if (!ep->xs || !ep->xq || !ep->ys || !ep->yq || !ep->classes || !ep->src_s || !ep->src_q ||
        !ep->xu || !ep->src_u) {
        fw_episode_free(ep);
        return fw_errorf(FW_ERR_NOMEM, "out of memory for a %d-way %d-shot %d-query episode",
                         s->ways, s->shots, s->query);
    }
    return FW_OK;
}

/* The k slots of one draw, which may be split over three arrays (support, query, unlabeled). */
typedef struct draw_slots {
    int *a, na;
    int *b, nb;
    int *c;
} draw_slots;

static int *slot(const draw_slots *d, int t) {
    if (t < d->na)
        return &d->a[t];
    return t < d->na + d->nb ? &d->b[t - d->na] : &d->c[t - d->na - d->nb];
}

/* Fills k slots with distinct values from [0, n) in the order of a partial Fisher-Yates shuffle
 * of the virtual array 0..n-1. Step t swaps positions t and u_t >= t; only the u_t are stored
 * (in the slots themselves), and the value each step takes out is found by replaying the earlier
 * swaps backwards. No memory, O(k^2) time: k is a few dozen at most. */
static void draw_distinct(fw_rng *r, int n, const draw_slots *d, int k) {
    FW_ASSERT(k <= n, "drawing %d distinct values from %d", k, n);
    for (int t = 0; t < k; t++)
        *slot(d, t) = t + (int)fw_rng_below(r, (uint32_t)(n - t));
    /* Backwards, so slots 0..t-1 still hold swap positions while slot t is resolved. */
    for (int t = k - 1; t >= 0; t--) {
        int p = *slot(d, t);
        for (int u = t - 1; u >= 0; u--)
            if (*slot(d, u) == p) /* step u moved the value at position u to p */
                p = u;
        *slot(d, t) = p;
    }
}

static void copy_image(const fw_dataset *ds, int img, float *dst) {
    const uint8_t *src = fw_dataset_image(ds, img);
    size_t chw = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    for (size_t i = 0; i < chw; i++)
        dst[i] = (float)src[i] / 255.0f;
}

void fw_sample(const fw_sampler *s, uint64_t step, int task, fw_episode *ep) {
    FW_ASSERT(s && s->ds && ep && ep->xs, "sampler or episode not initialised");
    const fw_dataset *ds = s->ds;
    FW_ASSERT(ep->ways == s->ways && ep->shots == s->shots && ep->query == s->query &&
                  ep->unlabeled == s->unlabeled &&
                  ep->c == ds->c && ep->h == ds->h && ep->w == ds->w,
              "episode was initialised for another sampler");
    FW_ASSERT(s->ways <= ds->n_classes, "ways=%d > %d classes", s->ways, ds->n_classes);
    FW_ASSERT(task >= 0, "task=%d", task);
    FW_ASSERT(s->ways < 65535, "ways=%d", s->ways);
    fw_rng r = fw_rng_for(s->seed, s->purpose, step, (uint64_t)task << 16);
    ep->seed = s->seed;
    ep->purpose = s->purpose;
    ep->step = step;
    ep->task = task;
    size_t chw = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;

    /* The draw order of the classes is the label permutation: label j is class classes[j]. */
    draw_distinct(&r, ds->n_classes, &(draw_slots){.a = ep->classes, .na = s->ways}, s->ways);
    for (int j = 0; j < s->ways; j++) {
        /* Each label draws from its own stream, unlabeled images last: asking for unlabeled
         * images leaves the labeled episode exactly as it was. */
        r = fw_rng_for(s->seed, s->purpose, step, ((uint64_t)task << 16) | (uint64_t)(j + 1));
        int k = ep->classes[j];
        int *src_s = ep->src_s + (size_t)j * s->shots, *src_q = ep->src_q + (size_t)j * s->query;
        int *src_u = ep->src_u + (size_t)j * s->unlabeled;
        int n = s->shots + s->query + s->unlabeled;
        FW_ASSERT(n <= ds->class_count[k], "class %d too small", k);
        /* The first `shots` draws are the support images, then the query, then the unlabeled. */
        draw_distinct(&r, ds->class_count[k],
                      &(draw_slots){src_s, s->shots, src_q, s->query, src_u}, n);
        for (int t = 0; t < s->shots; t++) {
            src_s[t] += ds->class_start[k];
            ep->ys[(size_t)j * s->shots + t] = j;
            copy_image(ds, src_s[t], ep->xs + ((size_t)j * s->shots + t) * chw);
        }
        for (int t = 0; t < s->query; t++) {
            src_q[t] += ds->class_start[k];
            ep->yq[(size_t)j * s->query + t] = j;
            copy_image(ds, src_q[t], ep->xq + ((size_t)j * s->query + t) * chw);
        }
        for (int t = 0; t < s->unlabeled; t++) {
            src_u[t] += ds->class_start[k];
            copy_image(ds, src_u[t], ep->xu + ((size_t)j * s->unlabeled + t) * chw);
        }
    }
}

void fw_episode_free(fw_episode *ep) {
    if (!ep)
        return;
    fw_free(ep->xs);
    fw_free(ep->xq);
    fw_free(ep->ys);
    fw_free(ep->yq);
    fw_free(ep->classes);
    fw_free(ep->src_s);
    fw_free(ep->src_q);
    fw_free(ep->xu);
    fw_free(ep->src_u);
    *ep = (fw_episode){0};
}
