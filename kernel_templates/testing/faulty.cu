// y = 2x + 1, with planted faults. The template (faulty_cuda.py) defines FAULT:
// 0 computes, 1 writes far out of bounds (an illegal address), 2 never returns.
extern "C" __global__ void faulty(const float *x, float *y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
#if FAULT == 1
    y[i + (1LL << 40)] = 1.0f;
#elif FAULT == 2
    for (;;) asm volatile("nanosleep.u32 1000;");  // a side effect the compiler must keep
#endif
    if (i < n) y[i] = 2.0f * x[i] + 1.0f;
}
