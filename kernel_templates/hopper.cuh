/* Hopper (sm_90a) device primitives for the CUDA templates: TMA tensor-map loads, mbarriers,
 * warpgroup MMA (wgmma), register reallocation (setmaxnreg), thread-block clusters and a persistent
 * tile scheduler. Self-contained inline PTX with no host or system headers, so nvcc and NVRTC alike
 * compile it; a template includes it (a quoted include of hopper.cuh) and the template's render() inlines
 * it (kernel_templates/headers.py), so a source's digest covers the header's text.
 *
 * Shared-memory tiles follow the 128-byte swizzle that TMA writes (CU_TENSOR_MAP_SWIZZLE_128B) and
 * wgmma reads: rows of 128 bytes, the 16-byte chunks of row r XORed with r % 8, 8-row atoms of
 * 1024 bytes, each atom 1024-byte aligned.
 */
#pragma once

namespace hopper {

typedef unsigned int u32;
typedef unsigned long long u64;

/* A CUtensorMap by value (the driver's 128-byte opaque struct, 64-byte aligned): the type of a
 * `const __grid_constant__` kernel parameter the launcher fills with cuTensorMapEncodeTiled. */
struct alignas(64) TmaDescriptor {
  u64 opaque[16];
};

__device__ __forceinline__ u32 smem_addr(const void *pointer) {
  u32 address;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(address) : "l"(pointer));
  return address;
}

/* This thread's warpgroup (128 threads), read through a shuffle as CUTLASS's
 * canonical_warp_group_idx does: ptxas then knows the value is warp-uniform and keeps what derives
 * from it (shared-memory offsets, the wgmma descriptors) in uniform registers, stepped by UIADD3,
 * instead of moving each descriptor from ordinary registers (R2UR) before every HGMMA. */
__device__ __forceinline__ int warpgroup_index() { return __shfl_sync(0xffffffff, threadIdx.x / 128, 0); }

/* ---- thread-block clusters ---- */

__device__ __forceinline__ u32 cluster_rank() {
  u32 rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  return rank;
}

/* Every thread of every block of the cluster arrives and waits (orders shared memory across it). */
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

__device__ __forceinline__ void st_shared_f32x4(const void *pointer, float a, float b, float c, float d) {
  asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};" :: "r"(smem_addr(pointer)), "f"(a), "f"(b), "f"(c), "f"(d)
               : "memory");
}

/* Reads 4 floats at the same shared-memory offset as `pointer` in block `rank` of the cluster. */
__device__ __forceinline__ void ld_cluster_f32x4(const void *pointer, u32 rank, float (&v)[4]) {
  asm volatile("{ .reg .b32 remote; mapa.shared::cluster.u32 remote, %4, %5;\n"
               "ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [remote]; }"
               : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3]) : "r"(smem_addr(pointer)), "r"(rank) : "memory");
}

/* ---- mbarriers ---- */

__device__ __forceinline__ void mbar_init(u64 *bar, u32 arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(smem_addr(bar)), "r"(arrivals) : "memory");
}

/* Makes initialized barriers visible to the async proxy (TMA) and to the cluster's other blocks. */
__device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

/* Arrives once and tells the barrier to expect `bytes` more transaction bytes (TMA completions). */
__device__ __forceinline__ void mbar_arrive_expect_tx(u64 *bar, u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbar_arrive(u64 *bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(smem_addr(bar)) : "memory");
}

/* Arrives on the barrier at the same shared-memory offset in block `rank` of the cluster (with the
 * default release at CTA scope: a cluster-scope release fences every arrival, and the waits that
 * precede an arrival already order what it publishes). */
__device__ __forceinline__ void mbar_arrive_cluster(u64 *bar, u32 rank) {
  asm volatile("{ .reg .b32 remote; mapa.shared::cluster.u32 remote, %0, %1;\n"
               "mbarrier.arrive.shared::cluster.b64 _, [remote]; }"
               :: "r"(smem_addr(bar)), "r"(rank) : "memory");
}

/* Waits until the phase of parity `parity` has completed. */
__device__ __forceinline__ void mbar_wait(u64 *bar, u32 parity) {
  const u32 address = smem_addr(bar);
  u32 done;
  do {
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done) : "r"(address), "r"(parity) : "memory");
  } while (!done);
}

/* ---- TMA: cp.async.bulk.tensor ---- */

/* Fetches a tensor map (a kernel parameter) into the cache before its first use. */
__device__ __forceinline__ void tma_prefetch(const TmaDescriptor *map) {
  asm volatile("prefetch.tensormap [%0];" :: "l"(map) : "memory");
}

/* Loads the box at coordinates (c0 innermost, c1) of `map` into `dst`, completing on `bar`. */
__device__ __forceinline__ void tma_load_2d(void *dst, const TmaDescriptor *map, u64 *bar, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
               " [%0], [%1, {%3, %4}], [%2];"
               :: "r"(smem_addr(dst)), "l"(map), "r"(smem_addr(bar)), "r"(c0), "r"(c1) : "memory");
}

/* The same load written to `dst` (and signalled on `bar`) in every block of `mask` in the cluster. */
__device__ __forceinline__ void tma_load_2d_multicast(void *dst, const TmaDescriptor *map, u64 *bar, int c0,
                                                      int c1, unsigned short mask) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
               " [%0], [%1, {%3, %4}], [%2], %5;"
               :: "r"(smem_addr(dst)), "l"(map), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "h"(mask) : "memory");
}

/* Stores the box at `src` to coordinates (c0 innermost, c1) of `map`, clipped at the tensor's
 * edges, as one bulk async-group of this thread (commit with bulk_commit). */
__device__ __forceinline__ void tma_store_2d(const TmaDescriptor *map, const void *src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];"
               :: "l"(map), "r"(smem_addr(src)), "r"(c0), "r"(c1) : "memory");
}

__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }

/* Waits until at most PENDING of this thread's bulk groups still read their shared memory. */
template <int PENDING> __device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;" :: "n"(PENDING) : "memory");
}

/* Waits until at most PENDING of this thread's bulk groups are still writing global memory. */
template <int PENDING> __device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;" :: "n"(PENDING) : "memory");
}

/* Orders this thread's ordinary shared-memory writes before later async-proxy (TMA) reads. */
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

/* A barrier of `threads` threads (whole warps) under hardware barrier `id` (0 is __syncthreads'). */
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" :: "r"(id), "r"(threads) : "memory");
}

/* Arrives at hardware barrier `id` of `threads` threads without waiting (the producer side of an
 * ordering between warpgroups: the others wait with named_barrier on the same id and count). */
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;" :: "r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void st_shared_u32(const void *pointer, u32 value) {
  asm volatile("st.shared.u32 [%0], %1;" :: "r"(smem_addr(pointer)), "r"(value) : "memory");
}

/* ---- register reallocation between warpgroups (needs a register cap at entry) ---- */

template <int REGISTERS> __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" :: "n"(REGISTERS));
}

template <int REGISTERS> __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" :: "n"(REGISTERS));
}

/* ---- wgmma ---- */

/* A shared-memory matrix descriptor for a 128-byte-swizzled tile at `pointer` (or `swizzle_bytes`
 * 64: rows of 64 bytes, 8-row atoms of 512). K-major tiles (rows of 64 16-bit K values) step 8-row
 * atoms by `stride_bytes` = 1024; MN-major tiles (rows of 64 M or N values, one row per K) step 8-K
 * atoms by `stride_bytes` = 1024 and 64-wide MN chunks by `leading_bytes`. */
__device__ __forceinline__ u64 smem_descriptor(const void *pointer, u32 leading_bytes, u32 stride_bytes,
                                               int swizzle_bytes = 128) {
  const u64 encode = 0x3FFFF;
  const u64 layout = swizzle_bytes == 128 ? 1 : swizzle_bytes == 64 ? 2 : 3;  // the descriptor's swizzle mode
  return ((smem_addr(pointer) & encode) >> 4) | (((leading_bytes & encode) >> 4) << 16) |
         (((stride_bytes & encode) >> 4) << 32) | (layout << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int PENDING> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(PENDING) : "memory");
}

/* Keeps the compiler from moving accesses of accumulator registers across a wgmma wait. */
template <int COUNT> __device__ __forceinline__ void fence_registers(float (&d)[COUNT]) {
#pragma unroll
  for (int i = 0; i < COUNT; i++) asm volatile("" : "+f"(d[i]) :: "memory");
}

#define TUNER_F8(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), \
  "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define TUNER_F32(d) TUNER_F8(d, 0), TUNER_F8(d, 8), TUNER_F8(d, 16), TUNER_F8(d, 24)
#define TUNER_F64(d) TUNER_F32(d), TUNER_F8(d, 32), TUNER_F8(d, 40), TUNER_F8(d, 48), TUNER_F8(d, 56)
#define TUNER_F128(d) TUNER_F64(d), TUNER_F8(d, 64), TUNER_F8(d, 72), TUNER_F8(d, 80), TUNER_F8(d, 88), \
  TUNER_F8(d, 96), TUNER_F8(d, 104), TUNER_F8(d, 112), TUNER_F8(d, 120)
#define TUNER_R32 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define TUNER_R64 TUNER_R32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define TUNER_R128 TUNER_R64 ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"

/* Wgmma<N, BF16>::ss / ::rs: one m64nNk16 warpgroup MMA D(fp32) += A·B, fp16 (BF16=0) or bf16
 * inputs. `ss` reads A and B through shared-memory descriptors, `rs` takes A from registers (four
 * 16-bit pairs per thread, the m64k16 fragment). `scale_d` = 0 overwrites D instead of adding;
 * TRANS_B = 1 reads B MN-major (a row-major [K, N] tile) instead of K-major. */
template <int N, int BF16> struct Wgmma;

#define TUNER_WGMMA(N, BF16, TYPE, REGS, OUT, P0, P1, P2, P3, P4, P5, P6)                                       \
  template <> struct Wgmma<N, BF16> {                                                                      \
    template <int TRANS_B> __device__ __forceinline__ static void ss(float (&d)[N / 2], u64 a, u64 b,       \
                                                                     int scale_d) {                         \
      asm volatile("{ .reg .pred p; setp.ne.b32 p, " P2 ", 0;\n"                                             \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " {" REGS "}, " P0 ", " P1 \
                   ", p, 1, 1, 0, " P3 "; }"                                                                  \
                   : OUT(d) : "l"(a), "l"(b), "r"(scale_d), "n"(TRANS_B));                                   \
    }                                                                                                       \
    template <int TRANS_B> __device__ __forceinline__ static void rs(float (&d)[N / 2], const u32 (&a)[4],  \
                                                                     u64 b, int scale_d) {                  \
      asm volatile("{ .reg .pred p; setp.ne.b32 p, " P5 ", 0;\n"                                             \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " {" REGS "}, {" P0 ", " P1 \
                   ", " P2 ", " P3 "}, " P4 ", p, 1, 1, " P6 "; }"                                            \
                   : OUT(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d), "n"(TRANS_B)); \
    }                                                                                                       \
  };
#define TUNER_WGMMA_TYPES(N, REGS, OUT, P0, P1, P2, P3, P4, P5, P6)       \
  TUNER_WGMMA(N, 0, "f16", REGS, OUT, P0, P1, P2, P3, P4, P5, P6)         \
  TUNER_WGMMA(N, 1, "bf16", REGS, OUT, P0, P1, P2, P3, P4, P5, P6)
TUNER_WGMMA_TYPES(64, TUNER_R32, TUNER_F32, "%32", "%33", "%34", "%35", "%36", "%37", "%38")
TUNER_WGMMA_TYPES(128, TUNER_R64, TUNER_F64, "%64", "%65", "%66", "%67", "%68", "%69", "%70")
TUNER_WGMMA_TYPES(256, TUNER_R128, TUNER_F128, "%128", "%129", "%130", "%131", "%132", "%133", "%134")

/* ---- more wgmma N (added for the attention family: score tiles of 80-192 keys) ---- */
#define TUNER_R40 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39"
#define TUNER_F40(d) TUNER_F8(d, 0), TUNER_F8(d, 8), TUNER_F8(d, 16), TUNER_F8(d, 24), TUNER_F8(d, 32)
TUNER_WGMMA_TYPES(80, TUNER_R40, TUNER_F40, "%40", "%41", "%42", "%43", "%44", "%45", "%46")
#define TUNER_R48 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47"
#define TUNER_F48(d) TUNER_F8(d, 0), TUNER_F8(d, 8), TUNER_F8(d, 16), TUNER_F8(d, 24), TUNER_F8(d, 32), TUNER_F8(d, 40)
TUNER_WGMMA_TYPES(96, TUNER_R48, TUNER_F48, "%48", "%49", "%50", "%51", "%52", "%53", "%54")
#define TUNER_R56 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55"
#define TUNER_F56(d) TUNER_F8(d, 0), TUNER_F8(d, 8), TUNER_F8(d, 16), TUNER_F8(d, 24), TUNER_F8(d, 32), TUNER_F8(d, 40), TUNER_F8(d, 48)
TUNER_WGMMA_TYPES(112, TUNER_R56, TUNER_F56, "%56", "%57", "%58", "%59", "%60", "%61", "%62")
#define TUNER_R72 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, " \
  "%59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71"
#define TUNER_F72(d) TUNER_F8(d, 0), TUNER_F8(d, 8), TUNER_F8(d, 16), TUNER_F8(d, 24), TUNER_F8(d, 32), TUNER_F8(d, 40), TUNER_F8(d, 48), TUNER_F8(d, 56), TUNER_F8(d, 64)
TUNER_WGMMA_TYPES(144, TUNER_R72, TUNER_F72, "%72", "%73", "%74", "%75", "%76", "%77", "%78")
#define TUNER_R80 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, " \
  "%59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, " \
  "%78, %79"
#define TUNER_F80(d) TUNER_F8(d, 0), TUNER_F8(d, 8), TUNER_F8(d, 16), TUNER_F8(d, 24), TUNER_F8(d, 32), TUNER_F8(d, 40), TUNER_F8(d, 48), TUNER_F8(d, 56), TUNER_F8(d, 64), TUNER_F8(d, 72)
TUNER_WGMMA_TYPES(160, TUNER_R80, TUNER_F80, "%80", "%81", "%82", "%83", "%84", "%85", "%86")
#define TUNER_R88 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, " \
  "%59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, " \
  "%78, %79, %80, %81, %82, %83, %84, %85, %86, %87"
#define TUNER_F88(d) TUNER_F8(d, 0), TUNER_F8(d, 8), TUNER_F8(d, 16), TUNER_F8(d, 24), TUNER_F8(d, 32), TUNER_F8(d, 40), TUNER_F8(d, 48), TUNER_F8(d, 56), TUNER_F8(d, 64), TUNER_F8(d, 72), TUNER_F8(d, 80)
TUNER_WGMMA_TYPES(176, TUNER_R88, TUNER_F88, "%88", "%89", "%90", "%91", "%92", "%93", "%94")
#define TUNER_R96 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, " \
  "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, " \
  "%59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, " \
  "%78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define TUNER_F96(d) TUNER_F8(d, 0), TUNER_F8(d, 8), TUNER_F8(d, 16), TUNER_F8(d, 24), TUNER_F8(d, 32), TUNER_F8(d, 40), TUNER_F8(d, 48), TUNER_F8(d, 56), TUNER_F8(d, 64), TUNER_F8(d, 72), TUNER_F8(d, 80), TUNER_F8(d, 88)
TUNER_WGMMA_TYPES(192, TUNER_R96, TUNER_F96, "%96", "%97", "%98", "%99", "%100", "%101", "%102")

/* ---- added for the attention family ---- */

/* Loads the box at coordinates (c0 innermost .. c3) of a 4-d `map` into `dst`, completing on `bar`
 * (a [B, H, S, D] tensor: c0 along D, c1 along S, c2 the head, c3 the batch). */
__device__ __forceinline__ void tma_load_4d(void *dst, const TmaDescriptor *map, u64 *bar, int c0, int c1, int c2,
                                            int c3) {
  asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
               " [%0], [%1, {%3, %4, %5, %6}], [%2];"
               :: "r"(smem_addr(dst)), "l"(map), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
               : "memory");
}

/* The same load written to `dst` (and signalled on `bar`) in every block of `mask` in the cluster. */
__device__ __forceinline__ void tma_load_4d_multicast(void *dst, const TmaDescriptor *map, u64 *bar, int c0, int c1,
                                                      int c2, int c3, unsigned short mask) {
  asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
               " [%0], [%1, {%3, %4, %5, %6}], [%2], %7;"
               :: "r"(smem_addr(dst)), "l"(map), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "h"(mask)
               : "memory");
}

/* Stores the box at `src` to coordinates (c0 innermost .. c3) of a 4-d `map`, clipped at the
 * tensor's edges (box elements outside a dimension's extent are not written), as one bulk
 * async-group of this thread (commit with bulk_commit). */
__device__ __forceinline__ void tma_store_4d(const TmaDescriptor *map, const void *src, int c0, int c1, int c2,
                                             int c3) {
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];"
               :: "l"(map), "r"(smem_addr(src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3) : "memory");
}

/* A warpgroup is done reading a stage: its first thread arrives once on `bar` in every one of the
 * first BLOCKS blocks of the cluster (whose producers may all multicast into this block's stage). */
template <int BLOCKS> __device__ __forceinline__ void release_in_cluster(u64 *bar) {
  if (threadIdx.x % 128 != 0) return;
#pragma unroll
  for (int r = 0; r < BLOCKS; r++) {
    if (BLOCKS > 1) mbar_arrive_cluster(bar, r);
    else mbar_arrive(bar);
  }
}

/* Two floats rounded to one fp16x2 (BF16 = 0) or bf16x2 (BF16 = 1) register, `lo` in the low half. */
template <int BF16> __device__ __forceinline__ u32 pack_pair(float lo, float hi) {
  u32 packed;
  if (BF16) asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
  else asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
  return packed;
}

/* 2^x in one instruction (MUFU.EX2; 2^-inf = 0). */
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/* 2^x for x <= 0 on the FMA pipe, where MUFU is the softmax's bound (FlashAttention-4's trick):
 * 2^x = 2^j * 2^f with j = round(x) (the 1.5 * 2^23 shift leaves j in the low mantissa bits) and
 * f in [-0.5, 0.5], 2^f by a degree-3 polynomial (relative error 7.5e-5, fitted for this range);
 * j is added to the exponent field. x is clamped at -125, where the result (p >= 0.707) is still a
 * normal float (at -126 the sum would land in the denormals, which this addition does not make),
 * so 2^-inf is 2.4e-38, not 0: below what a 16-bit or e4m3 probability can hold. */
__device__ __forceinline__ float exp2_poly(float x) {
  x = fmaxf(x, -125.f);
  const float shifted = x + 12582912.f;
  const float f = x - (shifted - 12582912.f);
  const float p = fmaf(fmaf(fmaf(0.0551715f, f, 0.24261096f), f, 0.69326099f), f, 0.99992808f);
  return __int_as_float(__float_as_int(p) + (__float_as_int(shifted) << 23));
}

/* ---- FP8 wgmma (added for the FP8 GEMM) ---- */

/* WgmmaE4m3<N>::ss: one m64nNk32 warpgroup MMA D(fp32) += A·B of e4m3 inputs, both read K-major
 * from shared memory (8-bit wgmma has no transposed forms): a k32 step spans 32 bytes of a
 * 128-byte swizzled row, as a k16 step of 16-bit inputs does. ::rs takes A from registers: four
 * registers of four e4m3 each, the m64k32 fragment (a thread's row r and r + 8, columns 4(lane%4)..+3
 * and 16 + 4(lane%4)..+3). `scale_d` = 0 overwrites D. */
template <int N> struct WgmmaE4m3;

#define TUNER_WGMMA_E4M3(N, REGS, OUT, P0, P1, P2, P3, P4, P5)                                                   \
  template <> struct WgmmaE4m3<N> {                                                                              \
    __device__ __forceinline__ static void ss(float (&d)[N / 2], u64 a, u64 b, int scale_d) {                    \
      asm volatile("{ .reg .pred p; setp.ne.b32 p, " P2 ", 0;\n"                                                  \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k32.f32.e4m3.e4m3 {" REGS "}, " P0 ", " P1 ", p, 1, 1; }" \
                   : OUT(d) : "l"(a), "l"(b), "r"(scale_d));                                                     \
    }                                                                                                            \
    __device__ __forceinline__ static void rs(float (&d)[N / 2], const u32 (&a)[4], u64 b, int scale_d) {        \
      asm volatile("{ .reg .pred p; setp.ne.b32 p, " P5 ", 0;\n"                                                  \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k32.f32.e4m3.e4m3 {" REGS "}, {" P0 ", " P1 ", " P2   \
                   ", " P3 "}, " P4 ", p, 1, 1; }"                                                                \
                   : OUT(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));                 \
    }                                                                                                            \
  };
TUNER_WGMMA_E4M3(64, TUNER_R32, TUNER_F32, "%32", "%33", "%34", "%35", "%36", "%37")
TUNER_WGMMA_E4M3(128, TUNER_R64, TUNER_F64, "%64", "%65", "%66", "%67", "%68", "%69")
TUNER_WGMMA_E4M3(256, TUNER_R128, TUNER_F128, "%128", "%129", "%130", "%131", "%132", "%133")

/* Four floats rounded (saturating) to four e4m3 in one register, `a` in the lowest byte. */
__device__ __forceinline__ u32 pack_e4m3x4(float a, float b, float c, float d) {
  unsigned short lo, hi;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lo) : "f"(b), "f"(a));
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hi) : "f"(d), "f"(c));
  return (u32)lo | ((u32)hi << 16);
}

/* Two floats to shared (or global) memory at an 8-byte aligned address (an fp32 output's pair). */
__device__ __forceinline__ void st_shared_f32x2(const void *pointer, float a, float b) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};" :: "r"(smem_addr(pointer)), "f"(a), "f"(b) : "memory");
}

__device__ __forceinline__ void st_global_f32x2(float *pointer, float a, float b) {
  asm volatile("st.global.v2.f32 [%0], {%1, %2};" :: "l"(pointer), "f"(a), "f"(b) : "memory");
}

/* ---- a persistent tile scheduler ---- */

/* Tiles of a rows x cols grid in grouped ("swizzled") order: `group` rows at a time, walking a
 * group's rows before its next column, so consecutive tiles share operand panels in L2. With
 * `along_rows` false the roles of rows and columns swap. A persistent grid takes tile
 * first, first + step, ... until `count`. */
struct TileScheduler {
  int rows, cols, group, along_rows;

  __device__ __forceinline__ int count() const { return rows * cols; }

  __device__ __forceinline__ void tile(int index, int &row, int &col) const {
    const int major = along_rows ? rows : cols, minor = along_rows ? cols : rows;
    const int per_group = group * minor;
    const int first = index / per_group * group;
    const int size = major - first < group ? major - first : group;
    const int within = index % per_group;
    const int a = first + within % size, b = within / size;
    row = along_rows ? a : b;
    col = along_rows ? b : a;
  }
};

/* ---- stream-K (added for the GEMM): a persistent grid's last wave split along K ---- */

/* Four floats to global memory at a 16-byte aligned address, and four back through L2 (.cg: never
 * a line another block's writes left stale in this SM's L1). */
__device__ __forceinline__ void st_global_f32x4(float *pointer, float a, float b, float c, float d) {
  asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" :: "l"(pointer), "f"(a), "f"(b), "f"(c), "f"(d) : "memory");
}

__device__ __forceinline__ void ld_global_cg_f32x4(const float *pointer, float (&v)[4]) {
  asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3])
               : "l"(pointer) : "memory");
}

/* A flag in global memory set for other blocks: what this thread's block wrote before (ordered by a
 * barrier among its writers) is visible to whoever reads the flag with flag_acquire. */
__device__ __forceinline__ void flag_release(u32 *flag, u32 value) {
  asm volatile("fence.acq_rel.gpu;\nst.relaxed.gpu.global.u32 [%0], %1;" :: "l"(flag), "r"(value) : "memory");
}

__device__ __forceinline__ u32 flag_acquire(const u32 *flag) {
  u32 value;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(value) : "l"(flag) : "memory");
  return value;
}

__device__ __forceinline__ void flag_store(u32 *flag, u32 value) {
  asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" :: "l"(flag), "r"(value) : "memory");
}

/* The work of each block of a persistent grid of `grid` blocks over `tiles` output tiles of
 * `k_blocks` K blocks each. The first tiles - tiles % grid tiles are data-parallel: block b takes
 * tiles b, b + grid, ... whole. The tiles % grid tiles of the last, partial wave (every tile when
 * tiles < grid) are stream-K: their K blocks, tile after tile, are `units` units cut into `grid`
 * contiguous ranges of balanced length (floor(units * b / grid) starts range b), range b going to
 * block b after its whole tiles. A range is at most ceil(units / grid) <= k_blocks units long
 * (tiles % grid < grid), so it is at most two segments: the end of one tile and the start of the
 * next. The segment that holds a tile's last K block finishes the tile: it waits for the partial
 * sums of the blocks before it that hold the rest (for_each_peer), adds them and stores the tile;
 * any other segment publishes its partial sums. A block takes its publishing segment first (the
 * start of the next tile before the end of this one), so it publishes before it may wait, and it
 * waits only on blocks of lower index, in its last work. So the waits cannot cycle and end whether
 * the grid is resident at once or blocks start in index order; and no block's publishing waits
 * on another's fixup (no chain through the grid).
 * Indices are 32-bit: the template admits stream-K where units * grid < 2^31.
 * Host and device: the decomposition's CPU test compiles it as host code. */
struct StreamK {
  int tiles, k_blocks, grid;

  __host__ __device__ __forceinline__ int whole_tiles() const { return tiles - tiles % grid; }

  /* The first stream-K unit of block `block`'s range (of `grid`: the end of the last). */
  __host__ __device__ __forceinline__ int range_begin(int block) const {
    const int units = tiles % grid * k_blocks;
    return units / grid * block + units % grid * block / grid;
  }

  /* Calls work(tile index, first K block, end K block) for the block's works, in order (from one
   * call site: the kernel's body is inlined once). */
  template <typename Work> __host__ __device__ __forceinline__ void for_each_work(int block, Work &&work) const {
    const int whole = whole_tiles(), begin = range_begin(block), end = range_begin(block + 1);
    // Where the range enters its second tile (end if it has one tile): [cut, end) goes first.
    const int next = (begin / k_blocks + 1) * k_blocks;
    const int cut = begin % k_blocks && next < end ? next : end;
    int tile = block, part = cut < end ? 0 : 1;  // part 0: [cut, end), 1: [begin, cut), 2: done
    while (tile < whole || (part < 2 && begin < end)) {
      int index = tile, kb_begin = 0, kb_end = k_blocks;
      if (tile < whole) {
        tile += grid;
      } else {
        const int from = part == 0 ? cut : begin, to = part == 0 ? end : cut;
        index = whole + from / k_blocks, kb_begin = from % k_blocks, kb_end = kb_begin + (to - from);
        part++;
      }
      work(index, kb_begin, kb_end);
    }
  }

  /* Calls peer(block) for each block before `finisher` that holds K blocks of stream-K tile `tile`
   * (whose last K block `finisher` holds): the blocks whose (non-empty) ranges end inside it. */
  template <typename Peer>
  __host__ __device__ __forceinline__ void for_each_peer(int finisher, int tile, Peer &&peer) const {
    const int start = (tile - whole_tiles()) * k_blocks;
    for (int block = finisher - 1; block >= 0 && range_begin(block + 1) > start; block--)
      if (range_begin(block + 1) > range_begin(block)) peer(block);
  }
};

}  // namespace hopper
