/* progress.h: progress of a long loop (iteration, loss, accuracy, speed, ETA).
 *
 * On a terminal: one bar redrawn in place (carriage return) a few times a second,
 *   [#########...........]  45/150  30% | loss 0.6958 | acc 79.54% | 2.35 it/s | ETA 0m45s
 * Otherwise (a file, a pipe, CI): plain lines every `every` seconds and at the first and last
 * iteration, with no control characters,
 *   iter     45/150 | loss 0.6958 | train acc  79.54% | 2.35 it/s | ETA 0m45s
 * TERM=dumb counts as not a terminal.
 */
#ifndef FW_PROGRESS_H
#define FW_PROGRESS_H

#include "framework/base.h"

typedef struct fw_progress {
    FILE *f;
    bool tty;           /* bar mode                                         */
    bool bar_open;      /* a bar is on screen without its line end          */
    double start, last; /* fw_now() at start and at the last output          */
    double every;       /* seconds between plain lines                       */
    long first, total;  /* iterations first..total; a resumed run starts late */
} fw_progress;

/* Iterations first..total (first = 1, or the one after a checkpoint); output goes to f. */
void fw_progress_start(fw_progress *p, long first, long total, double every_seconds, FILE *f);
/* Reports iteration `iter` when it is time to (always at the first and the last one). */
void fw_progress_update(fw_progress *p, long iter, double loss, double acc);
/* Ends the bar's line, so other output starts on a fresh line. Safe to call any time. */
void fw_progress_end(fw_progress *p);

#endif
