/* The output layer's reductions on a CPU, every statistic of a row of logits at once (rsr_core/engine/cpu_head.py).
 *
 * For each row of fp32 logits [C, V] and its target: the max and the strict-greater count (one vectorised sweep),
 * the exponential sums of the log-sum-exp, the entropy and the squared probabilities (a second sweep, the row still
 * in cache, each lane summing in double, the exponential vectorised by glibc's libmvec), and the `lark` largest
 * logits (a third sweep that only looks inside a block of 64 whose maximum beats the current lark-th value). Rows
 * run in parallel (OpenMP). A row holding a NaN or +inf logit, or fewer finite logits than it keeps, is flagged
 * (`bad`) and left to the eager path.
 */
#include <math.h>
#include <stdint.h>
#include <omp.h>

/* glibc's vector expf (libmvec), declared as math.h does under -ffast-math, without -ffast-math itself: a fast-math
 * shared library would switch the whole process to flush-to-zero floats when it is loaded */
float expf(float) __attribute__((__simd__("notinbranch")));

#define BLOCK 64

static void keep_top(const float *x, int64_t v0, int64_t v1, float *hv, int64_t *hi, int64_t k, float *kth) {
    for (int64_t v = v0; v < v1; v++) {
        float xv = x[v];
        if (!(xv > *kth)) continue;
        int64_t j = k - 1;
        while (j > 0 && hv[j - 1] < xv) {  /* strict: among equal values the earlier id stays first */
            hv[j] = hv[j - 1];
            hi[j] = hi[j - 1];
            j--;
        }
        hv[j] = xv;
        hi[j] = v;
        *kth = hv[k - 1];
    }
}

void row_statistics(const float *logits, int64_t C, int64_t V, const int64_t *targets, int64_t top_k,
                    int64_t lark_k, int threads, float *surprisal, int64_t *rank, float *entropy,
                    int64_t *top_ids, float *top_probs, float *brier, float *lark_brier, int32_t *bad,
                    float *scratch_v, int64_t *scratch_i) {
    int64_t keep = lark_k > top_k ? lark_k : top_k;
    #pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int64_t r = 0; r < C; r++) {
        const float *x = logits + r * V;
        float *hv = scratch_v + (int64_t)omp_get_thread_num() * keep;
        int64_t *hi = scratch_i + (int64_t)omp_get_thread_num() * keep;
        float t = x[targets[r]];
        float m = -INFINITY;
        int64_t above = 0, odd = 0;
        #pragma omp simd reduction(max:m) reduction(+:above) reduction(+:odd)
        for (int64_t v = 0; v < V; v++) {
            float xv = x[v];
            m = xv > m ? xv : m;
            above += xv > t;
            odd += (xv != xv) | (xv == INFINITY);
        }
        if (odd || m == -INFINITY) {
            bad[r] = 1;
            continue;
        }
        double s0 = 0.0, s1 = 0.0, s2 = 0.0;
        if (lark_k > 0) {
            #pragma omp simd reduction(+:s0) reduction(+:s1) reduction(+:s2)
            for (int64_t v = 0; v < V; v++) {
                float d = x[v] - m;
                float e = expf(d);
                s0 += e;
                s1 += e > 0.0f ? (double)e * d : 0.0;  /* a -inf logit adds 0, not -inf * 0 */
                s2 += (double)e * e;
            }
        } else {  /* the statistics of RSR alone, without the Brier terms (to measure what they cost) */
            #pragma omp simd reduction(+:s0) reduction(+:s1)
            for (int64_t v = 0; v < V; v++) {
                float d = x[v] - m;
                float e = expf(d);
                s0 += e;
                s1 += e > 0.0f ? (double)e * d : 0.0;
            }
        }
        for (int64_t j = 0; j < keep; j++) {
            hv[j] = -INFINITY;
            hi[j] = -1;
        }
        float kth = -INFINITY;
        for (int64_t b = 0; b < V; b += BLOCK) {
            int64_t e = b + BLOCK < V ? b + BLOCK : V;
            float bmax = -INFINITY;
            #pragma omp simd reduction(max:bmax)
            for (int64_t v = b; v < e; v++) bmax = x[v] > bmax ? x[v] : bmax;
            if (bmax > kth) keep_top(x, b, e, hv, hi, keep, &kth);
        }
        if (hi[keep - 1] < 0 || hv[keep - 1] == -INFINITY) {  /* fewer finite logits than kept */
            bad[r] = 1;
            continue;
        }
        double logz = log(s0), lse = m + logz;
        surprisal[r] = (float)(lse - t);
        rank[r] = 1 + above;
        entropy[r] = (float)(logz - s1 / s0);
        if (lark_k > 0) {
            double p_true = exp(t - lse);
            brier[r] = (float)(1.0 - 2.0 * p_true + s2 / (s0 * s0));
            double q0 = 0.0, q2 = 0.0;
            for (int64_t j = 0; j < lark_k; j++) {
                double q = exp((double)hv[j] - hv[0]);
                q0 += q;
                q2 += q * q;
            }
            double p_lark = above < lark_k ? exp((double)t - hv[0]) / q0 : 0.0;  /* ties go in the target's favour */
            lark_brier[r] = (float)(1.0 - 2.0 * p_lark + q2 / (q0 * q0));
        } else {
            brier[r] = NAN;
            lark_brier[r] = NAN;
        }
        for (int64_t j = 0; j < top_k; j++) {
            top_ids[r * top_k + j] = hi[j];
            top_probs[r * top_k + j] = (float)exp(hv[j] - lse);
        }
        bad[r] = 0;
    }
}
