/* conv4.h: the 4-block convolutional backbone of MAML (Finn et al. 2017, §5.2) with a linear
 * classification head.
 *   strided: 4 x [3x3 conv stride 2 pad 1, no bias -> batchnorm -> ReLU] -> global average ->
 *            linear (MAML's Omniglot network; 28x28 gives 14, 7, 4, 2)
 *   pool:    4 x [3x3 conv stride 1 pad 1, no bias -> batchnorm -> ReLU -> 2x2 max-pool] ->
 *            flatten -> linear (28x28 gives 14, 7, 3, 1)
 * Convolutions carry no bias: batchnorm right after makes it redundant. */
#ifndef MODELS_CONV4_H
#define MODELS_CONV4_H

#include "framework/fw.h"

typedef enum conv4_arch { CONV4_STRIDED, CONV4_POOL } conv4_arch;

/* Returns a graph for (c, h, w) inputs and `ways` logits. The caller frees it. */
fw_graph *conv4_new(int c, int h, int w, int filters, int ways, conv4_arch arch);
/* "strided" or "pool"; returns false for anything else. */
bool conv4_arch_parse(const char *name, conv4_arch *out);

#endif
