/* mnist.c: finds the MNIST IDX files of a split and loads them. */
#include "datasets/mnist.h"

#include <string.h>
#include <unistd.h>

/* Sets `path` to <dir>/<name>, or to <dir>/<name>.gz when only the compressed file exists. */
static fw_status find_idx(const char *dir, const char *name, char *path, size_t size) {
    int len = snprintf(path, size, "%s/%s", dir, name);
    if (len < 0 || (size_t)len + 3 >= size)
        return fw_errorf(FW_ERR_ARG, "MNIST directory path is too long: %s", dir);
    if (access(path, F_OK) == 0)
        return FW_OK;
    strcat(path, ".gz");
    if (access(path, F_OK) == 0)
        return FW_OK;
    return fw_errorf(FW_ERR_IO,
                     "MNIST file %s/%s (or %s.gz) not found; run `make deps` to fetch MNIST", dir,
                     name, name);
}

fw_status mnist_load(const char *dir, bool train, fw_dataset *ds) {
    FW_ASSERT(dir && ds, "null argument");
    *ds = (fw_dataset){0};
    const char *split = train ? "train" : "t10k";
    char images_name[64], labels_name[64], images[4096], labels[4096];
    snprintf(images_name, sizeof images_name, "%s-images-idx3-ubyte", split);
    snprintf(labels_name, sizeof labels_name, "%s-labels-idx1-ubyte", split);
    FW_TRY(find_idx(dir, images_name, images, sizeof images));
    FW_TRY(find_idx(dir, labels_name, labels, sizeof labels));
    return fw_dataset_from_idx(ds, images, labels);
}

fw_status mnist_load_digits(const char *dir, bool train, const int *digits, int n, fw_dataset *ds) {
    fw_dataset all;
    FW_TRY(mnist_load(dir, train, &all));
    fw_status s = fw_dataset_subset(ds, &all, digits, n);
    fw_dataset_free(&all);
    return s;
}
