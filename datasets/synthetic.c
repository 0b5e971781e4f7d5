/* synthetic.c: prototype-plus-noise classes. */
#include "datasets/synthetic.h"
#include "framework/rng.h"

fw_status synthetic_prototypes(fw_dataset *ds, int n_classes, int per_class, int h, int w,
                               float flip, uint64_t seed) {
    FW_ASSERT(n_classes > 0 && per_class > 0 && h > 0 && w > 0, "bad synthetic shape");
    int n = n_classes * per_class, d = h * w;
    *ds = (fw_dataset){.n_classes = n_classes, .c = 1, .h = h, .w = w, .n_images = n};
    ds->pixels = fw_alloc((size_t)n * (size_t)d);
    ds->class_start = fw_alloc((size_t)n_classes * sizeof(int));
    ds->class_count = fw_alloc((size_t)n_classes * sizeof(int));
    ds->class_label = fw_alloc((size_t)n_classes * sizeof(int));
    if (!ds->pixels || !ds->class_start || !ds->class_count || !ds->class_label) {
        fw_dataset_free(ds);
        return fw_errorf(FW_ERR_NOMEM, "out of memory for a synthetic dataset");
    }
    for (int c = 0; c < n_classes; c++) {
        ds->class_start[c] = c * per_class;
        ds->class_count[c] = per_class;
        ds->class_label[c] = c;
        fw_rng proto = fw_rng_for(seed, FW_RNG_USER, (uint64_t)c, 0);
        uint8_t *first = ds->pixels + (size_t)c * (size_t)per_class * (size_t)d;
        for (int i = 0; i < d; i++)
            first[i] = fw_rng_uniform(&proto) < 0.5f ? 255 : 0;
        for (int k = 1; k < per_class; k++) {
            fw_rng noise = fw_rng_for(seed, FW_RNG_USER, (uint64_t)c, (uint64_t)k);
            uint8_t *img = first + (size_t)k * (size_t)d;
            for (int i = 0; i < d; i++)
                img[i] = fw_rng_uniform(&noise) < flip ? (uint8_t)(255 - first[i]) : first[i];
        }
    }
    return FW_OK;
}
