/* progress.h: periodic progress lines for long loops (iteration, loss, accuracy, speed, ETA).
 * Plain text lines without control characters, so logs and CI output stay clean. */
#ifndef FW_PROGRESS_H
#define FW_PROGRESS_H

#include "framework/base.h"

typedef struct fw_progress {
    double start, last;  /* fw_now() at start and at the last printed line */
    double every;        /* seconds between lines                           */
    long total;
} fw_progress;

void fw_progress_start(fw_progress *p, long total, double every_seconds);
/* Prints a line when `every` seconds have passed since the last one, or at the last iteration. */
void fw_progress_update(fw_progress *p, long iter, double loss, double acc, FILE *f);

#endif
