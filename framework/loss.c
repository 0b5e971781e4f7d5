/* loss.c: softmax cross-entropy and summary statistics. */
#include "framework/loss.h"

#include <math.h>

double fw_softmax_xent(const float *logits, const int *labels, int B, int N, float *dlogits,
                       int *n_correct) {
    double total = 0;
    int correct = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * (size_t)N;
        int y = labels[b];
        FW_ASSERT(y >= 0 && y < N, "label %d outside [0, %d)", y, N);
        int arg = 0;
        for (int j = 1; j < N; j++)
            if (z[j] > z[arg])
                arg = j;
        correct += arg == y;
        double lse = 0;
        for (int j = 0; j < N; j++)
            lse += exp((double)z[j] - z[arg]);
        double log_z = z[arg] + log(lse);
        total += log_z - z[y];
        if (dlogits)
            for (int j = 0; j < N; j++)
                dlogits[(size_t)b * (size_t)N + (size_t)j] =
                    (float)((exp((double)z[j] - log_z) - (j == y)) / B);
    }
    if (n_correct)
        *n_correct = correct;
    return total / B;
}

void fw_softmax_xent_r(const float *logits, const float *r_logits, int B, int N, float *r_dlogits) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * (size_t)N, *rz = r_logits + (size_t)b * (size_t)N;
        double mx = z[0], sum = 0, dot = 0;
        for (int j = 1; j < N; j++)
            mx = z[j] > mx ? z[j] : mx;
        for (int j = 0; j < N; j++)
            sum += exp(z[j] - mx);
        for (int j = 0; j < N; j++)
            dot += exp(z[j] - mx) / sum * rz[j];
        for (int j = 0; j < N; j++)
            r_dlogits[(size_t)b * (size_t)N + (size_t)j] =
                (float)(exp(z[j] - mx) / sum * (rz[j] - dot) / B);
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
