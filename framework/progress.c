/* progress.c: a bar on terminals, plain lines elsewhere (see progress.h). */
#include "framework/progress.h"

#include <string.h>
#include <unistd.h>

#define BAR_WIDTH 20
#define BAR_REDRAW 0.25 /* seconds between redraws of the bar */

static bool is_terminal(FILE *f) {
    const char *term = getenv("TERM");
    return isatty(fileno(f)) && !(term && strcmp(term, "dumb") == 0);
}

void fw_progress_start(fw_progress *p, long first, long total, double every_seconds, FILE *f) {
    FW_ASSERT(p && f && first >= 1 && every_seconds >= 0, "bad arguments");
    memset(p, 0, sizeof *p);
    p->f = f;
    p->tty = is_terminal(f);
    p->start = p->last = fw_now();
    p->every = every_seconds;
    p->first = first;
    p->total = total;
}

/* Iterations per second in this session, and seconds left. */
static void speed(const fw_progress *p, long iter, double now, double *rate, double *eta) {
    *rate = (double)(iter - p->first + 1) / (now - p->start + 1e-9);
    *eta = (double)(p->total - iter) / (*rate + 1e-12);
}

static void draw_bar(fw_progress *p, long iter, double loss, double acc, double rate,
                     double eta) {
    char bar[BAR_WIDTH + 1];
    int filled = p->total > 0 ? (int)(BAR_WIDTH * iter / p->total) : BAR_WIDTH;
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    int width = snprintf(NULL, 0, "%ld", p->total);
    /* \r back to the line start, \033[K clears what a longer previous bar left */
    fprintf(p->f, "\r[%s] %*ld/%ld %3d%% | loss %.4f | acc %6.2f%% | %.2f it/s | ETA %dm%02ds\033[K",
            bar, width, iter, p->total, p->total > 0 ? (int)(100 * iter / p->total) : 100, loss,
            100.0 * acc, rate, (int)eta / 60, (int)eta % 60);
    p->bar_open = true;
    if (iter >= p->total)
        fw_progress_end(p);
}

void fw_progress_update(fw_progress *p, long iter, double loss, double acc) {
    FW_ASSERT(p && p->f, "progress not started");
    double now = fw_now();
    bool edge = iter == p->first || iter >= p->total;
    if (!edge && now - p->last < (p->tty ? BAR_REDRAW : p->every))
        return;
    p->last = now;
    double rate, eta;
    speed(p, iter, now, &rate, &eta);
    if (p->tty)
        draw_bar(p, iter, loss, acc, rate, eta);
    else
        fprintf(p->f, "iter %6ld/%ld | loss %.4f | train acc %6.2f%% | %.2f it/s | ETA %dm%02ds\n",
                iter, p->total, loss, 100.0 * acc, rate, (int)eta / 60, (int)eta % 60);
    fflush(p->f);
}

void fw_progress_end(fw_progress *p) {
    if (p && p->bar_open) {
        fputc('\n', p->f);
        fflush(p->f);
        p->bar_open = false;
    }
}
