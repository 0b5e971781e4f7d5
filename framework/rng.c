/* rng.c: splitmix64-style hashing of (key, counter). */
#include "framework/rng.h"
#include "framework/base.h"

#include <math.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

fw_rng fw_rng_for(uint64_t seed, uint64_t purpose, uint64_t step, uint64_t index) {
    /* Chained hashing: each field passes through the mixer, so nearby tuples such as
     * (1, 2) and (2, 1) give unrelated keys. */
    uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = mix64(k ^ (purpose + 0x632be59bd9b4e019ULL));
    k = mix64(k ^ (step + 0x85157af5a1c3b3e5ULL));
    k = mix64(k ^ (index + 0xd6e8feb86659fd93ULL));
    return (fw_rng){.key = k, .counter = 0};
}

uint64_t fw_rng_u64(fw_rng *r) {
    return mix64(r->key + 0x9e3779b97f4a7c15ULL * ++r->counter);
}

float fw_rng_uniform(fw_rng *r) {
    return (float)(fw_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

uint32_t fw_rng_below(fw_rng *r, uint32_t n) {
    FW_ASSERT(n > 0, "empty range");
    /* Rejection sampling removes the bias of a plain modulo. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = fw_rng_u64(r);
    } while (x >= limit);
    return (uint32_t)(x % n);
}

float fw_rng_normal(fw_rng *r) {
    double u1 = ((double)(fw_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0); /* (0, 1] */
    double u2 = (double)(fw_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
