/* metagan.h: MetaGAN on MAML (Zhang et al., NeurIPS 2018; docs/metagan-notes.md §1).
 *
 * D is the few-shot classifier: conv4 with N logits and an implicit fake logit of 0
 * (fw_dloss). G(z, h) makes images of the task's shape from noise z ~ N(0, I) and a task code h,
 * the mean over the support images of a small conv instance encoder E.
 * Inner loop: D alone adapts, on the support set (supervised + real terms), the unlabeled images
 * if any (real term only) and N*fakes generated images (fake term).
 * Outer loop: D's meta-loss is the same three-term loss on the query and N*Q fresh fakes at the
 * adapted weights (second-order meta-gradient unless first_order); G and E minimise feature
 * matching between the query's and the fakes' features in the adapted D's penultimate layer,
 * reached through D's backward-to-input. The path from G through D's inner loop is dropped, as in
 * the faithful re-implementations (metagan-notes §1.6).
 * Parameters: one flat vector theta = [D | E | G]; D and G+E keep separate Adam states.
 * gan = false is plain MAML through the same code: no G, no fakes, supervised terms only.
 */
#ifndef MODELS_METAGAN_H
#define MODELS_METAGAN_H

#include "framework/fw.h"
#include "models/conv4.h"

typedef struct metagan_cfg {
    int ways, shots, query, unlabeled; /* episode shape (unlabeled images per class)         */
    int c, h, w;                       /* image shape; h and w divisible by 4                */
    conv4_arch arch;
    int filters;                       /* D's conv filters (64)                              */
    int inner_steps, test_inner_steps;
    float inner_lr;
    bool first_order;
    bool gan;
    int z_dim, code_dim, g_filters;    /* noise size, task-code size, G's width              */
    int fakes;                         /* generated images per class in the inner loop       */
    float gan_weight;                  /* weight of D's real and fake terms (1 = paper)      */
} metagan_cfg;

typedef struct metagan {
    metagan_cfg cfg;
    fw_graph *d, *enc, *gen;           /* owned                                              */
    size_t nd, ne, ng, n_params;       /* theta = [D (nd) | E (ne) | G (ng)]                 */
    int d_feat;                        /* D's penultimate node: features for matching        */
} metagan;

void metagan_new(metagan *m, const metagan_cfg *cfg);
void metagan_free(metagan *m);
/* Xavier init of all three networks, a pure function of seed. */
void metagan_init_params(const metagan *m, float *theta, uint64_t seed);

extern const fw_meta_ops metagan_ops;

/* n generated images (n, c, h, w) in [0, 1] for episode ep, with noise fixed by `noise_seed`:
 * the same task and the same noise at every call, to watch G evolve. Main thread only. */
fw_status metagan_samples(const metagan *m, const float *theta, const fw_episode *ep, int n,
                          uint64_t noise_seed, float *out);

#endif
