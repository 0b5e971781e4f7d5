/* omniglot.h: Omniglot (Lake, Salakhutdinov & Tenenbaum 2015), all 1623 characters of 50
 * alphabets, 20 drawings each, as class-indexed datasets of 28x28 images.
 *
 * Files: omniglot_background.bin and omniglot_evaluation.bin (or their .gz), in the binary
 * format of ../shared/datasets/omniglot/README.md (`make deps` copies, checks and unpacks them
 * into datasets/data/omniglot/). Each holds 105x105 one-bit images, 1 = ink.
 *
 * Resize (at load time): area averaging. Output pixel (i, j) of an s x s image is the fraction
 * of ink in the square [i*105/s, (i+1)*105/s) x [j*105/s, (j+1)*105/s) of the source, each
 * source pixel weighted by the area it shares with that square (105/28 = 3.75 source pixels per
 * output pixel, so border pixels count in part). Computed in integers and rounded to the nearest
 * of 0..255: pixel 255 = all ink (the MNIST polarity), 0 = background. The grid is symmetric,
 * so resizing commutes with rotations by multiples of 90 degrees.
 *
 * Characters are numbered 0..1622 by their original id - 1: background (964) first, then
 * evaluation (659). A class is one character at one rotation r (0, 1, 2, 3 for 0, 90, 180, 270
 * degrees counterclockwise); its dataset label is 4 * character + r.
 *
 * Splits:
 *  - MAML (Finn et al. 2017): a seeded random permutation of the 1623 characters, irrespective
 *    of alphabet; the first 1200 meta-train, the other 423 meta-test. Every character comes in
 *    its 4 rotations, each its own class (4800 training classes), as in the MAML code, which also
 *    rotates the test characters (1692 test classes; omniglot_split's test_rotations = 1 keeps
 *    only rotation 0).
 *  - Vinyals et al. 2016: the class lists of splits-vinyals/ (lines alphabet/characterNN/rotDDD);
 *    trainval.txt (1200 characters x 4) to meta-train, test.txt (423 x 4) to meta-test.
 */
#ifndef DATASETS_OMNIGLOT_H
#define DATASETS_OMNIGLOT_H

#include "framework/data.h"

enum {
    OMNIGLOT_CHARS = 1623,
    OMNIGLOT_ALPHABETS = 50,
    OMNIGLOT_DRAWINGS = 20,
    OMNIGLOT_SIDE = 105,      /* source images are 105 x 105                       */
    OMNIGLOT_TRAIN_CHARS = 1200,
    OMNIGLOT_TEST_CHARS = 423,
    OMNIGLOT_NAME_MAX = 64    /* alphabet names, without the terminating NUL       */
};

/* ---- one .bin file, as stored ---- */
typedef struct omniglot_alphabet {
    int first_char;                     /* 0-based character index in its file */
    int n_chars;
    char name[OMNIGLOT_NAME_MAX + 1];
} omniglot_alphabet;

typedef struct omniglot_file {
    int split;                          /* 0 background, 1 evaluation                     */
    int n_alphabets, n_chars, n_drawings;
    int height, width, row_bytes, image_bytes;
    int first_char_id;                  /* original id of character 0 (1 or 965)          */
    omniglot_alphabet *alphabets;       /* owned; (n_alphabets,)                          */
    uint8_t *bits;                      /* owned; (n_chars, n_drawings, image_bytes) packed */
} omniglot_file;

/* Reads one file (raw or gzip-compressed) and checks it: the magic "OMNIGLOT", version 1, every
 * header field against the others (row and image sizes, table and data offsets, zero reserved
 * bytes), the alphabet table (contiguous, adding up to n_chars, NUL-terminated names) and the
 * size: exactly n_chars * n_drawings images, no byte missing or left over. Does not check the
 * official counts (omniglot_load does). FW_ERR_IO (cannot open or read) or FW_ERR_FORMAT, the
 * message naming the file and what is wrong; *f stays empty on error. */
fw_status omniglot_file_read(const char *path, omniglot_file *f);
void omniglot_file_free(omniglot_file *f);

/* Area-averaging resize (see the top of this file) of one packed one-bit image (h x w, rows of
 * row_bytes, most significant bit first, 1 = ink) to side x side uint8 (255 = ink). */
void omniglot_resize(const uint8_t *bits, int h, int w, int row_bytes, int side, uint8_t *out);
/* out = in rotated by 90 degrees counterclockwise `quarter_turns` times (numpy.rot90); side x
 * side images, in != out. */
void omniglot_rotate(const uint8_t *in, int side, int quarter_turns, uint8_t *out);

/* ---- all of Omniglot, resized ---- */
typedef struct omniglot {
    int side;                            /* resized image side (28)                        */
    uint8_t *pixels;                     /* owned; (1623, 20, side, side), 255 = ink        */
    int alphabet[OMNIGLOT_CHARS];        /* alphabet index of each character (0..49)        */
    int number[OMNIGLOT_CHARS];          /* its characterNN, 1-based within the alphabet    */
    char alphabet_name[OMNIGLOT_ALPHABETS][OMNIGLOT_NAME_MAX + 1];
    bool alphabet_background[OMNIGLOT_ALPHABETS]; /* from the background file            */
} omniglot;

/* Loads <dir>/omniglot_background.bin and <dir>/omniglot_evaluation.bin (each may be .gz; the
 * uncompressed one wins), checks them with omniglot_file_read and against the official counts
 * (30 + 20 alphabets, 964 + 659 characters, 20 drawings of 105 x 105, first ids 1 and 965), and
 * resizes every image to side x side. FW_ERR_IO telling to run `make deps` when a file is
 * missing. */
fw_status omniglot_load(const char *dir, int side, omniglot *o);
void omniglot_free(omniglot *o);
/* The images of character `ch` (0..1622): OMNIGLOT_DRAWINGS images of side x side. */
const uint8_t *omniglot_char_images(const omniglot *o, int ch);

/* The MAML split of the 1623 characters: a Fisher-Yates shuffle drawn from (seed, FW_RNG_USER),
 * the first 1200 to train[] and the other 423 to test[], each list in increasing order. */
void omniglot_maml_split(uint64_t seed, int train[OMNIGLOT_TRAIN_CHARS],
                         int test[OMNIGLOT_TEST_CHARS]);

/* A dataset of the listed classes (labels 4 * character + rotation, each distinct), in the
 * listed order, 20 images each. FW_ERR_ARG for a bad or repeated label. */
fw_status omniglot_dataset(const omniglot *o, const int *labels, int n, fw_dataset *ds);
/* A dataset of the listed characters, each at rotations 0 .. rotations-1 (1..4): labels
 * 4c, 4c+1, ... in character order. */
fw_status omniglot_dataset_chars(const omniglot *o, const int *chars, int n, int rotations,
                                 fw_dataset *ds);
/* Reads a Vinyals list file (lines "alphabet/characterNN/rotDDD", DDD one of 000, 090, 180, 270)
 * into labels (*labels malloc'd; the caller frees it). FW_ERR_IO or FW_ERR_FORMAT naming the file
 * and line. */
fw_status omniglot_read_list(const omniglot *o, const char *path, int **labels, int *n);

/* Meta-train and meta-test datasets of a named split: "maml" (seeded by split_seed; the test
 * characters at test_rotations rotations, 4 as in the MAML code, 1 for none) or "vinyals"
 * (<dir>/splits-vinyals/trainval.txt and test.txt; split_seed and test_rotations unused). */
fw_status omniglot_split(const omniglot *o, const char *dir, const char *split, uint64_t split_seed,
                         int test_rotations, fw_dataset *train, fw_dataset *test);

#endif
