/* mnist.h: the MNIST digits (LeCun et al. 1998) as a class-indexed dataset. */
#ifndef DATASETS_MNIST_H
#define DATASETS_MNIST_H

#include "framework/data.h"

/* Loads the training set (60,000 images) or the test set (10,000) from `dir`, normally
 * datasets/data/mnist as filled by `make deps`. Each IDX file may be decompressed
 * (train-images-idx3-ubyte) or gzip-compressed (train-images-idx3-ubyte.gz); the decompressed one
 * wins when both exist. Images are 1x28x28 and the 10 classes have labels 0..9.
 * FW_ERR_IO (telling to run `make deps`) when a file is missing. */
fw_status mnist_load(const char *dir, bool train, fw_dataset *ds);
/* The same split restricted to the listed digits (a class split, e.g. 0-4 for meta-training). */
fw_status mnist_load_digits(const char *dir, bool train, const int *digits, int n, fw_dataset *ds);

#endif
