/* conv4.c: the conv4 backbone. */
#include "models/conv4.h"

#include <string.h>

fw_graph *conv4_new(int c, int h, int w, int filters, int ways, conv4_arch arch) {
    fw_graph *g = fw_graph_new();
    int x = fw_input(g, c, h, w);
    for (int block = 0; block < 4; block++) {
        x = fw_conv2d(g, x, filters, 3, arch == CONV4_STRIDED ? 2 : 1, 1, false);
        x = fw_batchnorm(g, x);
        x = fw_relu(g, x);
        if (arch == CONV4_POOL)
            x = fw_maxpool2(g, x);
    }
    x = arch == CONV4_STRIDED ? fw_global_avgpool(g, x) : fw_flatten(g, x);
    fw_linear(g, x, ways);
    return g;
}

bool conv4_arch_parse(const char *name, conv4_arch *out) {
    if (strcmp(name, "strided") == 0)
        *out = CONV4_STRIDED;
    else if (strcmp(name, "pool") == 0)
        *out = CONV4_POOL;
    else
        return false;
    return true;
}
