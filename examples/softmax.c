/* Row-wise softmax of a float32 [rows, cols] matrix: y[r] = exp(x[r] - max x[r]) / sum.
 *
 * The template (softmax_spec.py) defines THREADS (OpenMP threads over rows) and UNROLL
 * (unroll factor of the loops over a row) before this text.
 */
#include <math.h>
#include <stdint.h>

#define PRAGMA(text) _Pragma(#text)
#define UNROLL_LOOP(n) PRAGMA(GCC unroll n)

void softmax_rows(const float *x, float *y, int64_t rows, int64_t cols) {
    #pragma omp parallel for num_threads(THREADS)
    for (int64_t r = 0; r < rows; r++) {
        const float *in = x + r * cols;
        float *out = y + r * cols;
        float max = in[0];
        for (int64_t c = 1; c < cols; c++) max = in[c] > max ? in[c] : max;
        float sum = 0.0f;
        UNROLL_LOOP(UNROLL)
        for (int64_t c = 0; c < cols; c++) {
            out[c] = expf(in[c] - max); /* subtracting the max keeps expf from overflowing */
            sum += out[c];
        }
        float inv = 1.0f / sum;
        UNROLL_LOOP(UNROLL)
        for (int64_t c = 0; c < cols; c++) out[c] *= inv;
    }
}
