/* progress.c: progress lines. */
#include "framework/progress.h"

void fw_progress_start(fw_progress *p, long total, double every_seconds) {
    p->start = p->last = fw_now();
    p->every = every_seconds;
    p->total = total;
}

void fw_progress_update(fw_progress *p, long iter, double loss, double acc, FILE *f) {
    double now = fw_now();
    if (now - p->last < p->every && iter != p->total && iter != 1)
        return;
    p->last = now;
    double rate = iter / (now - p->start + 1e-9);
    double eta = (double)(p->total - iter) / (rate + 1e-12);
    fprintf(f, "iter %6ld/%ld | loss %.4f | train acc %6.2f%% | %.2f it/s | ETA %dm%02ds\n", iter,
            p->total, loss, 100.0 * acc, rate, (int)eta / 60, (int)eta % 60);
    fflush(f);
}
