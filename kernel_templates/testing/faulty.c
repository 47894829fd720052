/* y = 2x + 1, with planted faults. The template (faulty_cpu.py) defines FAULT, ROUNDS and UNROLL:
 * FAULT 0 computes, 1 writes far out of bounds (SIGSEGV), 2 never returns.
 *
 * ROUNDS > 0 makes a healthy run bound by arithmetic on a few kilobytes rather than by memory
 * bandwidth, which whatever else runs on the machine shares: v = 2x, then ROUNDS times
 * v = v/2 + x, which gives back 2x exactly (halving and doubling are exact in binary floating
 * point), though the compiler may not assume so. UNROLL unrolls that loop. */
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
    for (int64_t i = 0; i < n; i++) {
        float v = 2.0f * x[i];
        UNROLL_LOOP(UNROLL)
        for (int round = 0; round < ROUNDS; round++) v = 0.5f * v + x[i];
        y[i] = v + 1.0f;
    }
}
