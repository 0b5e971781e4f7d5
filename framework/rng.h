/* rng.h: a counter-based random generator.
 *
 * Every random stream is a pure function of (seed, purpose, step, index): a stream's key is a hash
 * of the four, and its n-th number is a hash of (key, n). Any thread can draw any stream in any
 * order and get the same numbers, which is what makes runs independent of the thread count.
 * There is no global state: no rand(), no clock seeds.
 */
#ifndef FW_RNG_H
#define FW_RNG_H

#include <stdint.h>

/* Purposes keep streams for different jobs apart even when seed, step and index coincide. */
enum {
    FW_RNG_INIT = 1,      /* parameter initialisation            */
    FW_RNG_TRAIN_TASK,    /* meta-training episodes              */
    FW_RNG_EVAL_TASK,     /* evaluation episodes                 */
    FW_RNG_NOISE,         /* generator noise (MetaGAN)           */
    FW_RNG_USER = 100     /* first purpose free for experiments  */
};

typedef struct fw_rng {
    uint64_t key;
    uint64_t counter;
} fw_rng;

fw_rng fw_rng_for(uint64_t seed, uint64_t purpose, uint64_t step, uint64_t index);
uint64_t fw_rng_u64(fw_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float fw_rng_uniform(fw_rng *r);
/* Uniform integer in [0, n), without modulo bias. n > 0. */
uint32_t fw_rng_below(fw_rng *r, uint32_t n);
/* Standard normal (Box-Muller, computed in double). */
float fw_rng_normal(fw_rng *r);

#endif
