/* Row-wise softmax of a float32 [rows, cols] matrix on the GPU: one thread block per row,
 * y[r] = exp(x[r] - max x[r]) / sum.
 *
 * The template (softmax_cuda.py) defines before this text:
 *   THREADS    threads per block (a multiple of 32)
 *   VECTOR     floats per load and store (1, 2 or 4: float, float2, float4)
 *   CACHE_ROW  1: the row is read from global memory once and kept in dynamic shared memory
 *   FAST_EXP   1: the __expf intrinsic (one instruction, less exact) instead of expf
 * No #include: the CUDA compiler provides expf, fmaxf and the warp shuffles itself.
 */
#if VECTOR == 4
typedef float4 Vec;
#elif VECTOR == 2
typedef float2 Vec;
#else
typedef float Vec;
#endif

#if FAST_EXP
#define EXP(v) __expf(v)
#else
#define EXP(v) expf(v)
#endif

#define WARPS (THREADS / 32)

__device__ float combine(float a, float b, bool is_max) { return is_max ? fmaxf(a, b) : a + b; }

/* The max (or sum) of v over the block, in every thread: each warp reduces its own values with
 * shuffles, then every warp reduces the warps' partial results. */
__device__ float block_reduce(float v, bool is_max, float *scratch) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = combine(v, __shfl_xor_sync(0xffffffffu, v, offset), is_max);
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
    __syncthreads();
    v = threadIdx.x % 32 < WARPS ? scratch[threadIdx.x % 32] : (is_max ? -__int_as_float(0x7f800000) : 0.0f);
    for (int offset = 16; offset > 0; offset >>= 1)
        v = combine(v, __shfl_xor_sync(0xffffffffu, v, offset), is_max);
    __syncthreads(); /* scratch is written again by the next reduction */
    return v;
}

extern "C" __global__ void __launch_bounds__(THREADS)
softmax_rows(const float *x, float *y, long long cols) {
    extern __shared__ Vec cache[]; /* CACHE_ROW: this block's row; each thread reads back only its own */
    __shared__ float scratch[32];
    const long long n = cols / VECTOR;
    const Vec *in = reinterpret_cast<const Vec *>(x + blockIdx.x * cols);
    Vec *out = reinterpret_cast<Vec *>(y + blockIdx.x * cols);

    float max = -__int_as_float(0x7f800000);
    for (long long i = threadIdx.x; i < n; i += THREADS) {
        Vec pack = in[i];
        if (CACHE_ROW) cache[i] = pack;
        const float *f = reinterpret_cast<const float *>(&pack);
        for (int k = 0; k < VECTOR; k++) max = fmaxf(max, f[k]);
    }
    max = block_reduce(max, true, scratch);

    float sum = 0.0f;
    for (long long i = threadIdx.x; i < n; i += THREADS) {
        Vec pack = CACHE_ROW ? cache[i] : in[i];
        float *f = reinterpret_cast<float *>(&pack);
        for (int k = 0; k < VECTOR; k++) {
            f[k] = EXP(f[k] - max); /* subtracting the max keeps exp from overflowing */
            sum += f[k];
        }
        if (CACHE_ROW) cache[i] = pack;
    }
    const float inv = 1.0f / block_reduce(sum, false, scratch);

    for (long long i = threadIdx.x; i < n; i += THREADS) {
        Vec pack = CACHE_ROW ? cache[i] : in[i];
        float *f = reinterpret_cast<float *>(&pack);
        for (int k = 0; k < VECTOR; k++) f[k] = (CACHE_ROW ? f[k] : EXP(f[k] - max)) * inv;
        out[i] = pack;
    }
}
