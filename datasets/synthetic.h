/* synthetic.h: a tiny in-memory task family for tests and quick experiments.
 * Each class is a random binary prototype image (half the pixels ink); its examples are the
 * prototype with each pixel flipped with probability `flip`. Learnable in seconds, and a
 * pure function of the seed. */
#ifndef DATASETS_SYNTHETIC_H
#define DATASETS_SYNTHETIC_H

#include "framework/data.h"

fw_status synthetic_prototypes(fw_dataset *ds, int n_classes, int per_class, int h, int w,
                               float flip, uint64_t seed);

#endif
