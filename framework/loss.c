/* loss.c: softmax cross-entropy and summary statistics. */
#include "framework/loss.h"

#include <math.h>

/* Per-row quantities shared by the loss, its gradient and its R-operator. */
typedef struct row_stats {
    double mx, lse, p_real, p_fake; /* max logit, log-sum-exp, sigmoid(LSE), sigmoid(-LSE) */
} row_stats;

static double softplus(double a) {
    return (a > 0 ? a : 0) + log1p(exp(-fabs(a)));
}

static row_stats stats_of(const float *z, int N) {
    row_stats r = {.mx = z[0]};
    for (int j = 1; j < N; j++)
        r.mx = z[j] > r.mx ? z[j] : r.mx;
    double sum = 0;
    for (int j = 0; j < N; j++)
        sum += exp(z[j] - r.mx);
    r.lse = r.mx + log(sum);
    r.p_real = 1.0 / (1.0 + exp(-r.lse));
    r.p_fake = 1.0 / (1.0 + exp(r.lse));
    return r;
}

static int argmax_of(const float *z, int N) {
    int arg = 0;
    for (int j = 1; j < N; j++)
        if (z[j] > z[arg])
            arg = j;
    return arg;
}

double fw_dloss(const float *logits, const int *labels, int B, int N, fw_dloss_w w,
                float *dlogits, int *n_correct) {
    double total = 0;
    int correct = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * (size_t)N;
        int y = labels ? labels[b] : -1;
        FW_ASSERT(y < N, "label %d outside [0, %d)", y, N);
        row_stats r = stats_of(z, N);
        double sup = y >= 0 ? w.sup : 0;
        if (y >= 0) {
            total += sup * (r.lse - z[y]);
            correct += argmax_of(z, N) == y;
        }
        total += w.real * softplus(-r.lse) + w.fake * softplus(r.lse);
        if (!dlogits)
            continue;
        double k_s = sup - w.real * r.p_fake + w.fake * r.p_real; /* coefficient of softmax */
        for (int j = 0; j < N; j++)
            dlogits[(size_t)b * (size_t)N + (size_t)j] =
                (float)(k_s * exp(z[j] - r.lse) - (j == y ? sup : 0));
    }
    if (n_correct)
        *n_correct = correct;
    return total;
}

/* One row of the R-operator, with the row's supervised weight already decided. */
static void dloss_r_row(const float *z, const float *rz, int N, double sup, fw_dloss_w w,
                        float *out) {
    row_stats r = stats_of(z, N);
    double d = 0; /* <softmax, R z> = R{LSE} */
    for (int j = 0; j < N; j++)
        d += exp(z[j] - r.lse) * rz[j];
    /* R softmax_j = s_j (R z_j - d); R p(real) = p(real) p(fake) d = -R p(fake). */
    double k_s = sup - w.real * r.p_fake + w.fake * r.p_real;
    double k_d = (w.real + w.fake) * r.p_real * r.p_fake * d;
    for (int j = 0; j < N; j++) {
        double s = exp(z[j] - r.lse);
        out[j] = (float)(k_s * s * (rz[j] - d) + s * k_d);
    }
}

void fw_dloss_r(const float *logits, const float *r_logits, const int *labels, int B, int N,
                fw_dloss_w w, float *r_dlogits) {
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * (size_t)N;
        dloss_r_row(logits + o, r_logits + o, N, labels && labels[b] >= 0 ? w.sup : 0, w,
                    r_dlogits + o);
    }
}

double fw_softmax_xent(const float *logits, const int *labels, int B, int N, float *dlogits,
                       int *n_correct) {
    return fw_dloss(logits, labels, B, N, (fw_dloss_w){.sup = 1.0 / B}, dlogits, n_correct);
}

void fw_softmax_xent_r(const float *logits, const float *r_logits, int B, int N, float *r_dlogits) {
    for (int b = 0; b < B; b++) { /* the R-operator does not depend on the labels */
        size_t o = (size_t)b * (size_t)N;
        dloss_r_row(logits + o, r_logits + o, N, 1.0 / B, (fw_dloss_w){0}, r_dlogits + o);
    }
}

void fw_mean_ci95(const float *x, int n, double *mean, double *ci95) {
    FW_ASSERT(n > 0, "no values");
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    double m = s / n;
    for (int i = 0; i < n; i++)
        ss += ((double)x[i] - m) * ((double)x[i] - m);
    *mean = m;
    *ci95 = 1.96 * sqrt(ss / n) / sqrt((double)n);
}
