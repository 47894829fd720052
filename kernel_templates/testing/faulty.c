/* y = 2x + 1, with planted faults. The template (faulty_cpu.py) defines FAULT and UNROLL:
 * FAULT 0 computes, 1 writes far out of bounds (SIGSEGV), 2 never returns. */
#include <stdint.h>

#define PRAGMA(text) _Pragma(#text)
#define UNROLL_LOOP(n) PRAGMA(GCC unroll n)

void faulty(const float *x, float *y, int64_t n) {
#if FAULT == 1
    volatile float *far = y + ((int64_t)1 << 40);
    far[0] = 1.0f;
#elif FAULT == 2
    for (;;) __asm__ volatile("");
#endif
    UNROLL_LOOP(UNROLL)
    for (int64_t i = 0; i < n; i++) y[i] = 2.0f * x[i] + 1.0f;
}
