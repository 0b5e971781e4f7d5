/* data.h: IDX files, datasets indexed by class, class splits, and the episode sampler.
 *
 * An fw_dataset owns its pixels (uint8, one channel-major image after another) sorted by class.
 * A split (fw_dataset_subset) copies the images of some classes into a new dataset.
 * An episode is a pure function of (sampler seed, purpose, step, task): any thread may draw any
 * task, in any order, and get the same images and labels.
 */
#ifndef FW_DATA_H
#define FW_DATA_H

#include "framework/base.h"

/* ---- IDX (LeCun's MNIST format), gzip-compressed or raw ---- */
typedef struct fw_idx {
    int ndim;         /* 1 for labels, 3 for images                      */
    int dims[4];      /* e.g. (60000, 28, 28)                            */
    uint8_t *data;    /* owned; prod(dims) bytes                          */
} fw_idx;

/* Reads a uint8 IDX file (magic 0x0000080D, D = ndim in 1..4). Checks the magic number, the
 * dimensions and that the payload is exactly prod(dims) bytes; errors name the file and the
 * problem (FW_ERR_IO for a missing/unreadable file, FW_ERR_FORMAT for bad content). */
fw_status fw_idx_load(const char *path, fw_idx *out);
void fw_idx_free(fw_idx *idx);

/* ---- class-indexed dataset ---- */
typedef struct fw_dataset {
    int n_classes;
    int c, h, w;          /* image shape                                             */
    int n_images;
    uint8_t *pixels;      /* owned; (n_images, c, h, w), images grouped by class      */
    int *class_start;     /* owned; (n_classes,) index of each class's first image    */
    int *class_count;     /* owned; (n_classes,)                                      */
    int *class_label;     /* owned; (n_classes,) original label of each class (e.g. digit) */
} fw_dataset;

/* Builds a dataset from an images IDX (n, h, w) and a labels IDX (n). Classes are the distinct
 * labels in increasing order. Errors: mismatched counts, missing files (named in the message). */
fw_status fw_dataset_from_idx(fw_dataset *ds, const char *images_path, const char *labels_path);
/* A new dataset holding only the classes whose original labels are listed. A label that does not
 * exist in src is FW_ERR_ARG. */
fw_status fw_dataset_subset(fw_dataset *out, const fw_dataset *src, const int *labels, int n);
void fw_dataset_free(fw_dataset *ds);
/* Pixel i of image `img` as a float in [0, 1]. */
static inline const uint8_t *fw_dataset_image(const fw_dataset *ds, int img) {
    return ds->pixels + (size_t)img * (size_t)(ds->c * ds->h * ds->w);
}

/* ---- episodes ---- */
typedef struct fw_sampler {
    const fw_dataset *ds; /* borrowed */
    int ways, shots, query;
    uint64_t seed;
    uint64_t purpose;     /* FW_RNG_TRAIN_TASK or FW_RNG_EVAL_TASK, from rng.h */
    int unlabeled;        /* extra unlabeled images per class (semi-supervised); usually 0 */
} fw_sampler;

typedef struct fw_episode {
    int ways, shots, query, c, h, w;
    float *xs;        /* owned; (ways*shots, c, h, w) support images in [0, 1]        */
    float *xq;        /* owned; (ways*query, c, h, w) query images                    */
    int *ys, *yq;     /* owned; labels in [0, ways), a random permutation per task    */
    int *classes;     /* owned; (ways,) dataset class index behind label j            */
    int *src_s, *src_q; /* owned; dataset image index of each support / query image  */
    int unlabeled;    /* per class                                                     */
    float *xu;        /* owned; (ways*unlabeled, c, h, w) unlabeled images of the same classes */
    int *src_u;       /* owned; their dataset image indices                            */
    /* Identity: the episode is fw_sample(sampler with seed and purpose, step, task). Models
     * derive their own random streams (e.g. generator noise) from it. */
    uint64_t seed, purpose, step;
    int task;
} fw_episode;

/* Checks that the sampler can draw episodes: ways >= 2, ways <= n_classes, shots >= 1, query >= 1,
 * unlabeled >= 0 and shots + query + unlabeled <= the smallest class. FW_ERR_ARG otherwise. */
fw_status fw_sampler_check(const fw_sampler *s);
fw_status fw_episode_init(fw_episode *ep, const fw_sampler *s);
/* Draws task `task` of meta-iteration `step`. Support, query and unlabeled images are distinct;
 * images are ordered class by class (label order). Allocates nothing. */
void fw_sample(const fw_sampler *s, uint64_t step, int task, fw_episode *ep);
void fw_episode_free(fw_episode *ep);

#endif
