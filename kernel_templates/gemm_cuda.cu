/* C = A·B on Hopper (sm_90a): TMA loads into a ring of STAGES shared-memory stages, wgmma into fp32
 * registers, one producer warpgroup and CONSUMERS consumer warpgroups (warp specialization with
 * register reallocation), optional 2-block clusters sharing B through TMA multicast, and a
 * persistent grid walking output tiles in grouped order.
 *
 * A is [M, K] row-major; B is [K, N] row-major (B_KMAJOR 0: read MN-major by wgmma) or, for
 * x @ W.T, W = [N, K] row-major (B_KMAJOR 1). C is [M, N] row-major, fp16, bf16 or (OUT_BYTES 4)
 * fp32. M, N, K are run-time arguments: TMA zero-fills the loads past the edges and the stores are
 * clipped, so any size runs on the same binary.
 *
 * FP8 (IN_FP8 1): A and B are e4m3, both K-major (B_KMAJOR 1: 8-bit wgmma reads no transposed
 * operand), multiplied by k32 wgmma into fp32; the epilogue multiplies the accumulators by the
 * per-tensor scales a_scale[0] * b_scale[0] (device scalars, as cuBLASLt takes them). A 128-byte
 * swizzled row holds ATOM_K = 128 / IN_BYTES elements of K, and a wgmma k-step reads 32 bytes of it
 * whatever the type, so the shared-memory layout and descriptors are those of the 16-bit kernel.
 *
 * Two schedules of the consumers (PINGPONG): cooperative (0), both warpgroups on one tile, each on
 * BLOCK_M/CONSUMERS of its rows; ping-pong (1, two consumers), each warpgroup on a whole tile of its
 * own, the block's tiles taken in turn, so that one's epilogue runs under the other's MMAs. A named
 * barrier orders their mainloops: a warpgroup issues its tile's MMAs only after the other has
 * issued those of the tile before, so the tensor cores serve one mainloop at a time.
 *
 * The epilogue either stores the accumulators straight from registers (EPILOGUE_TMA 0, any N) or
 * writes them to a swizzled shared-memory buffer that TMA stores while the warpgroup goes on
 * (EPILOGUE_TMA 1, N a multiple of 8: TMA's 16-byte row rule). The buffer holds EPILOGUE_COLS
 * columns of the warpgroup's rows (the whole BLOCK_N, or half of it in two rounds, which leaves
 * room for one more stage).
 *
 * Split-K (SPLIT_K 2, where K is long against the tiles of M x N) runs each tile on a 2-block
 * cluster, each block over half of K; the second block leaves its fp32 partial sums in its
 * shared memory and the first adds them through distributed shared memory before its epilogue.
 * Then blocks own one tile each (no persistence) and no cluster shares B (CLUSTER 1).
 *
 * Stream-K (STREAM_K 1: persistent, cooperative, CLUSTER 1, SPLIT_K 1) splits the tiles of the last,
 * partial wave along K over the whole grid (hopper::StreamK: the whole tiles first, then each
 * block's contiguous range of the rest's K blocks). A block holding an earlier part of a tile
 * writes its fp32 partial sums to its slot of `workspace` (global memory the launcher zeroes once)
 * and sets its consumer's flag; the block holding the tile's last K block waits for the flags of
 * the blocks before it that hold the rest, adds their partial sums, clears the flags for the next
 * launch and stores the tile. Producer and consumers walk the same works (for_each_work); the ring
 * of stages carries on from one work to the next.
 *
 * The template (gemm_cuda.py) defines BLOCK_M, BLOCK_N, BLOCK_K, STAGES, CONSUMERS, CLUSTER,
 * SPLIT_K, STREAM_K, B_KMAJOR, IS_BF16, IN_FP8, OUT_BF16, OUT_BYTES, PINGPONG, EPILOGUE_TMA and
 * EPILOGUE_COLS before this text.
 */
#include "hopper.cuh"

using namespace hopper;

// A block's works in order, as work(tile index, first K block, end K block): its tiles first,
// first + step, ... (with split-K, its half of each), or stream-K's whole tiles and its range of
// the rest. A function object, not a generic lambda: NVRTC 13.0 (the GPU machine's) takes a
// generic lambda inside a kernel for a host function and refuses it.
struct BlockWorks {
  int first, step, count, k_begin, k_end;
#if STREAM_K
  StreamK stream_k;
#endif
  template <typename Work> __device__ __forceinline__ void operator()(Work &&work) const {
#if STREAM_K
    stream_k.for_each_work(blockIdx.x, work);
#else
    for (int index = first; index < count; index += step) work(index, k_begin, k_end);
#endif
  }
};

constexpr int THREADS = (CONSUMERS + 1) * 128;
constexpr int WG_M = PINGPONG ? BLOCK_M : BLOCK_M / CONSUMERS;  // output rows of one consumer warpgroup
constexpr int M_ATOMS = WG_M / 64;         // m64 wgmma rows per consumer warpgroup
constexpr int IN_BYTES = IN_FP8 ? 1 : 2;
constexpr int ATOM_K = 128 / IN_BYTES;     // K elements of a 128-byte swizzled row
constexpr int K_ATOMS = BLOCK_K / ATOM_K;  // 128-byte swizzle atoms along K in an A tile
constexpr int K_STEPS = BLOCK_K * IN_BYTES / 32;  // wgmma k-steps of a stage (32 bytes of K each)
constexpr int ACC = BLOCK_N / 2;           // fp32 accumulators of one m64 atom per thread
constexpr int A_BYTES = BLOCK_M * BLOCK_K * IN_BYTES;
constexpr int B_BYTES = BLOCK_N * BLOCK_K * IN_BYTES;
constexpr int OUT_CHUNK = 128 / OUT_BYTES;  // output columns of a 128-byte row of the TMA epilogue
constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
// Registers after reallocation: the producer keeps few, the consumers take the rest of the file.
constexpr int PRODUCER_REGISTERS = 40, CONSUMER_REGISTERS = 232;

static_assert(!PINGPONG || (CONSUMERS == 2 && SPLIT_K == 1), "ping-pong: two consumers, each on its own tile");
static_assert(BLOCK_N % EPILOGUE_COLS == 0 && EPILOGUE_COLS % 64 == 0, "the epilogue buffer's columns");
static_assert(SPLIT_K == 1 || CLUSTER == 1, "split-K clusters along K, multicast along M: one or the other");
static_assert(SPLIT_K == 1 || BLOCK_M * BLOCK_N * 4 <= STAGES * STAGE_BYTES, "the partial sums reuse the stages");
static_assert(WG_M % 64 == 0 && BLOCK_K % ATOM_K == 0 && BLOCK_N % 64 == 0, "tile shape");
static_assert(!IN_FP8 || B_KMAJOR, "8-bit wgmma reads B K-major only");
static_assert(BLOCK_N % (64 * CLUSTER) == 0 || B_KMAJOR, "MN-major B is shared in 64-column chunks");
static_assert(!STREAM_K || (!PINGPONG && CLUSTER == 1 && SPLIT_K == 1), "stream-K: cooperative, no cluster, no split-K");

typedef Wgmma<BLOCK_N, IS_BF16> Mma;

__device__ __forceinline__ u32 pack2(float lo, float hi) {
  u32 packed;
#if OUT_BF16
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
#else
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
#endif
  return packed;
}

/* One stage's loads: the A tile of this block and its share of the B tile (the whole tile without
 * a cluster; with one, each block loads 1/CLUSTER of it and multicasts it to every block). */
__device__ __forceinline__ void load_stage(unsigned char *a_tile, unsigned char *b_tile, u64 *full,
                                           const TmaDescriptor *map_a, const TmaDescriptor *map_b,
                                           int m0, int n0, int k0, u32 rank /* in the multicast cluster */) {
  mbar_arrive_expect_tx(full, STAGE_BYTES);
#pragma unroll
  for (int ka = 0; ka < K_ATOMS; ka++)
    tma_load_2d(a_tile + ka * BLOCK_M * 128, map_a, full, k0 + ka * ATOM_K, m0);
#if B_KMAJOR
  constexpr int ROWS = BLOCK_N / CLUSTER;  // the TMA box of B is ATOM_K K x ROWS N
#pragma unroll
  for (int ka = 0; ka < K_ATOMS; ka++) {
    unsigned char *dst = b_tile + ka * BLOCK_N * 128 + rank * ROWS * 128;
    if (CLUSTER == 1) tma_load_2d(dst, map_b, full, k0 + ka * ATOM_K, n0);
    else tma_load_2d_multicast(dst, map_b, full, k0 + ka * ATOM_K, n0 + rank * ROWS, (1 << CLUSTER) - 1);
  }
#else
#pragma unroll
  for (int chunk = 0; chunk < BLOCK_N / 64; chunk++) {  // the TMA box of B is 64 N x BLOCK_K K
    if (CLUSTER == 1) tma_load_2d(b_tile + chunk * BLOCK_K * 128, map_b, full, n0 + chunk * 64, k0);
    else if (chunk % CLUSTER == (int)rank)
      tma_load_2d_multicast(b_tile + chunk * BLOCK_K * 128, map_b, full, n0 + chunk * 64, k0, (1 << CLUSTER) - 1);
  }
#endif
}

/* One stage's MMAs of a consumer warpgroup: K_STEPS k-steps over its M_ATOMS m64 rows from `row0`. */
__device__ __forceinline__ void mma_stage(float (&acc)[M_ATOMS][ACC], const unsigned char *a_tile,
                                          const unsigned char *b_tile, int row0, int accumulate) {
#pragma unroll
  for (int kk = 0; kk < K_STEPS; kk++) {
#if B_KMAJOR
    const u64 b = smem_descriptor(b_tile + kk / 4 * BLOCK_N * 128 + kk % 4 * 32, 16, 1024);
#else
    const u64 b = smem_descriptor(b_tile + kk * 16 * 128, BLOCK_K * 128, 1024);
#endif
#pragma unroll
    for (int ma = 0; ma < M_ATOMS; ma++) {
      const u64 a = smem_descriptor(a_tile + kk / 4 * BLOCK_M * 128 + (row0 + ma * 64) * 128 + kk % 4 * 32,
                                    16, 1024);
#if IN_FP8
      WgmmaE4m3<BLOCK_N>::ss(acc[ma], a, b, accumulate || kk > 0);
#else
      Mma::ss<1 - B_KMAJOR>(acc[ma], a, b, accumulate || kk > 0);
#endif
    }
  }
}

/* Rounds the accumulators to the output type and stores the ones inside [M, N] (the m64nN
 * fragment: thread t of the warpgroup holds rows 16*(t/32) + (t%32)/4 (+8), column pairs
 * 8*j + 2*(t%4)). */
__device__ __forceinline__ void store_tile(float (&acc)[M_ATOMS][ACC], void *c, int M, int N, int row0,
                                           int col0) {
  const int t = threadIdx.x % 128;
  const bool paired = (N % 2) == 0;
#pragma unroll
  for (int ma = 0; ma < M_ATOMS; ma++) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int row = row0 + ma * 64 + 16 * (t / 32) + (t % 32) / 4 + 8 * half;
      if (row >= M) continue;
#pragma unroll
      for (int j = 0; j < BLOCK_N / 8; j++) {
        const int col = col0 + 8 * j + 2 * (t % 4);
        const float lo = acc[ma][4 * j + 2 * half], hi = acc[ma][4 * j + 2 * half + 1];
#if OUT_BYTES == 4
        float *line = static_cast<float *>(c) + (long long)row * N;
        if (paired && col + 1 < N) {
          st_global_f32x2(line + col, lo, hi);
        } else {
          if (col < N) line[col] = lo;
          if (col + 1 < N) line[col + 1] = hi;
        }
#else
        unsigned short *line = static_cast<unsigned short *>(c) + (long long)row * N;
        const u32 packed = pack2(lo, hi);
        if (paired && col + 1 < N) {
          *reinterpret_cast<u32 *>(line + col) = packed;
        } else {
          if (col < N) line[col] = (unsigned short)(packed & 0xFFFF);
          if (col + 1 < N) line[col + 1] = (unsigned short)(packed >> 16);
        }
#endif
      }
    }
  }
}

/* Split-K: the second block's partial sums, 4 consecutive floats per thread at a time, laid out
 * so that a warpgroup's 128 threads touch consecutive 16-byte words (no bank conflicts). */
__device__ __forceinline__ float *partial_slot(unsigned char *smem, int consumer, int ma, int i) {
  return reinterpret_cast<float *>(smem) + (((consumer * M_ATOMS + ma) * ACC + i) * 128 + 4 * (threadIdx.x % 128));
}

__device__ __forceinline__ void reduce_split_k(float (&acc)[M_ATOMS][ACC], unsigned char *smem, int consumer,
                                               u32 rank) {
  if (rank == 1) {
#pragma unroll
    for (int ma = 0; ma < M_ATOMS; ma++)
#pragma unroll
      for (int i = 0; i < ACC; i += 4)
        st_shared_f32x4(partial_slot(smem, consumer, ma, i), acc[ma][i], acc[ma][i + 1], acc[ma][i + 2], acc[ma][i + 3]);
  }
  cluster_sync();  // the partial sums are written (the producers arrive too)
  if (rank == 0) {
#pragma unroll
    for (int ma = 0; ma < M_ATOMS; ma++)
#pragma unroll
      for (int i = 0; i < ACC; i += 4) {
        float v[4];
        ld_cluster_f32x4(partial_slot(smem, consumer, ma, i), 1, v);
        acc[ma][i] += v[0], acc[ma][i + 1] += v[1], acc[ma][i + 2] += v[2], acc[ma][i + 3] += v[3];
      }
  }
}

/* Stream-K's workspace: a slot of BLOCK_M x BLOCK_N fp32 partial sums per block of the grid (laid
 * out as partial_slot's, consumer by consumer: each warp's stores are 512 contiguous bytes), then
 * a flag per block and consumer. */
__device__ __forceinline__ float *workspace_slot(float *workspace, int block, int consumer, int ma, int i) {
  return workspace + (long long)block * BLOCK_M * BLOCK_N + ((consumer * M_ATOMS + ma) * ACC + i) * 128
         + 4 * (threadIdx.x % 128);
}

__device__ __forceinline__ u32 *workspace_flag(float *workspace, int block, int consumer) {
  return reinterpret_cast<u32 *>(workspace + (long long)gridDim.x * BLOCK_M * BLOCK_N) + block * CONSUMERS + consumer;
}

/* An earlier part of a stream-K tile: the warpgroup's partial sums to this block's slot, then its flag. */
__device__ __forceinline__ void publish_partial(float (&acc)[M_ATOMS][ACC], float *workspace, int consumer) {
#pragma unroll
  for (int ma = 0; ma < M_ATOMS; ma++)
#pragma unroll
    for (int i = 0; i < ACC; i += 4)
      st_global_f32x4(workspace_slot(workspace, blockIdx.x, consumer, ma, i), acc[ma][i], acc[ma][i + 1],
                      acc[ma][i + 2], acc[ma][i + 3]);
  named_barrier(1 + consumer, 128);  // every thread's sums are written
  if (threadIdx.x % 128 == 0) flag_release(workspace_flag(workspace, blockIdx.x, consumer), 1);
}

/* The block finishing a stream-K tile adds block `peer`'s partial sums once its flag is set, and clears it. */
__device__ __forceinline__ void add_partial(float (&acc)[M_ATOMS][ACC], float *workspace, int peer, int consumer) {
  if (threadIdx.x % 128 == 0) {
    u32 *flag = workspace_flag(workspace, peer, consumer);
    while (!flag_acquire(flag)) {
    }
    flag_store(flag, 0);  // the slot is written again by the next launch alone
  }
  named_barrier(1 + consumer, 128);  // the acquire orders the warpgroup's reads after the peer's writes
#pragma unroll
  for (int ma = 0; ma < M_ATOMS; ma++)
#pragma unroll
    for (int i = 0; i < ACC; i += 4) {
      float v[4];
      ld_global_cg_f32x4(workspace_slot(workspace, peer, consumer, ma, i), v);
      acc[ma][i] += v[0], acc[ma][i + 1] += v[1], acc[ma][i + 2] += v[2], acc[ma][i + 3] += v[3];
    }
}

/* The TMA epilogue: the warpgroup's tile into shared memory as OUT_CHUNK-column chunks of 128-byte swizzled
 * rows (conflict-free: the 8 rows a store instruction touches XOR to 8 different 16-byte chunks),
 * EPILOGUE_COLS columns a round; one thread stores a round's chunks while the warpgroup writes the
 * next round (after the previous store has read the buffer) or goes on to its next tile. */
__device__ __forceinline__ void store_tile_tma(float (&acc)[M_ATOMS][ACC], unsigned char *c_tile,
                                               const TmaDescriptor *map_c, int consumer, int row0, int col0) {
  const int t = threadIdx.x % 128;
#pragma unroll
  for (int round = 0; round < BLOCK_N / EPILOGUE_COLS; round++) {
    if (t == 0) bulk_wait_read<0>();  // the last store has read the buffer
    named_barrier(1 + consumer, 128);
#pragma unroll
    for (int ma = 0; ma < M_ATOMS; ma++) {
#pragma unroll
      for (int half = 0; half < 2; half++) {
        const int row = ma * 64 + 16 * (t / 32) + (t % 32) / 4 + 8 * half;
#pragma unroll
        for (int jj = 0; jj < EPILOGUE_COLS / 8; jj++) {
          const int j = round * (EPILOGUE_COLS / 8) + jj;
          const int byte = (8 * jj + 2 * (t % 4)) * OUT_BYTES;  // of the thread's pair in the round's row
          unsigned char *at = c_tile + byte / 128 * WG_M * 128 + row * 128 + ((byte % 128 / 16) ^ (row % 8)) * 16
                              + byte % 16;
          const float lo = acc[ma][4 * j + 2 * half], hi = acc[ma][4 * j + 2 * half + 1];
#if OUT_BYTES == 4
          st_shared_f32x2(at, lo, hi);
#else
          st_shared_u32(at, pack2(lo, hi));
#endif
        }
      }
    }
    fence_proxy_async();
    named_barrier(1 + consumer, 128);
    if (t == 0) {
#pragma unroll
      for (int chunk = 0; chunk < EPILOGUE_COLS / OUT_CHUNK; chunk++)
        tma_store_2d(map_c, c_tile + chunk * WG_M * 128, col0 + round * EPILOGUE_COLS + chunk * OUT_CHUNK, row0);
      bulk_commit();
    }
  }
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
gemm(const __grid_constant__ TmaDescriptor map_a, const __grid_constant__ TmaDescriptor map_b,
#if EPILOGUE_TMA
     const __grid_constant__ TmaDescriptor map_c,
#endif
     const void *a, const void *b,
#if IN_FP8
     const float *a_scale, const float *b_scale,
#endif
     void *c,
#if STREAM_K
     float *workspace,
#endif
     int M, int N, int K,
     int raster_along_m, int group) {
  extern __shared__ unsigned char dynamic_smem[];
  __shared__ u64 full[STAGES], empty[STAGES];
  // TMA's 128-byte swizzle needs 1024-byte aligned tiles; the launch asks for 1 KB of slack.
  unsigned char *smem = dynamic_smem + ((1024 - (smem_addr(dynamic_smem) & 1023)) & 1023);
  const int wg = warpgroup_index();
  const u32 rank = CLUSTER * SPLIT_K > 1 ? cluster_rank() : 0;
  const u32 m_rank = SPLIT_K > 1 ? 0 : rank;  // the block's tile row within a multicast cluster

  if (threadIdx.x == 0) {
    tma_prefetch(&map_a);
    tma_prefetch(&map_b);
#if EPILOGUE_TMA
    tma_prefetch(&map_c);
#endif
    for (int s = 0; s < STAGES; s++) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], (PINGPONG ? 1 : CONSUMERS) * CLUSTER);  // the stage's readers, in every block
    }
    mbar_fence_init();
  }
  if (CLUSTER * SPLIT_K > 1) cluster_sync();
  else __syncthreads();

  const int tiles_m = (M + BLOCK_M - 1) / BLOCK_M, tiles_n = (N + BLOCK_N - 1) / BLOCK_N;
  const TileScheduler tiles{(tiles_m + CLUSTER - 1) / CLUSTER, tiles_n, group, raster_along_m};
  const int k_blocks = (K + BLOCK_K - 1) / BLOCK_K, k_half = (k_blocks + 1) / 2;
  // This block's K blocks of a tile: all of them, or with split-K the first or the second half.
  const int split_begin = SPLIT_K > 1 && rank == 1 ? k_half : 0;
  const int split_end = SPLIT_K > 1 && rank == 0 ? k_half : k_blocks;
  const int first = blockIdx.x / (CLUSTER * SPLIT_K), step = gridDim.x / (CLUSTER * SPLIT_K);
#if STREAM_K
  const StreamK stream_k{tiles.count(), k_blocks, (int)gridDim.x};
#endif
  const BlockWorks for_each_work{first, step, tiles.count(), split_begin, split_end
#if STREAM_K
                                 , stream_k
#endif
  };

  if (wg == 0) {  // the producer: one thread issues every load
    if (CONSUMERS > 1) setmaxnreg_dec<PRODUCER_REGISTERS>();
    if (threadIdx.x == 0) {
      int stage = 0;
      u32 phase = 0;
      for_each_work([&](int index, int kb_begin, int kb_end) {
        int tm, tn;
        tiles.tile(index, tm, tn);
        const int m0 = (tm * CLUSTER + m_rank) * BLOCK_M, n0 = tn * BLOCK_N;
        for (int kb = kb_begin; kb < kb_end; kb++) {
          mbar_wait(&empty[stage], phase ^ 1);
          unsigned char *a_tile = smem + stage * STAGE_BYTES;
          load_stage(a_tile, a_tile + A_BYTES, &full[stage], &map_a, &map_b, m0, n0, kb * BLOCK_K, m_rank);
          if (++stage == STAGES) stage = 0, phase ^= 1;
        }
      });
    }
    __syncwarp();
    if (SPLIT_K > 1) cluster_sync();  // the consumers' reduction barrier (reduce_split_k)
  } else {  // a consumer: MMAs of WG_M rows of its tiles, then its part of the output
    if (CONSUMERS > 1) setmaxnreg_inc<CONSUMER_REGISTERS>();
    const int consumer = wg - 1;
    // Ping-pong: consumer c takes the block's tiles c, c + 2, ...; cooperative: every tile, rows apart.
    const int a_row0 = PINGPONG ? 0 : consumer * WG_M;
#if IN_FP8
    const float scale = a_scale[0] * b_scale[0];  // dequantizes the product in the epilogue
#endif
    float acc[M_ATOMS][ACC];
    int local = 0;     // the work's place among the block's
    u32 position = 0;  // the ring's position at the work's first K block: the K blocks of the works before
    for_each_work([&](int index, int kb_begin, int kb_end) {
      const int work = local++;
      int stage = position % STAGES;
      u32 phase = position / STAGES % 2;
      position += kb_end - kb_begin;
      if (PINGPONG && work % 2 != consumer) return;  // the other consumer's tile
      int tm, tn;
      tiles.tile(index, tm, tn);
      if (PINGPONG && work > 0) named_barrier(3 + consumer, 256);  // the other has issued the tile before
      int previous = -1;
      for (int kb = kb_begin; kb < kb_end; kb++) {
        const int accumulate = kb > kb_begin;
        mbar_wait(&full[stage], phase);
        const unsigned char *a_tile = smem + stage * STAGE_BYTES;
        wgmma_fence();
        mma_stage(acc, a_tile, a_tile + A_BYTES, a_row0, accumulate);
        wgmma_commit();
        wgmma_wait<1>();  // the previous stage's MMAs are done: hand its buffers back
        if (previous >= 0) release_in_cluster<CLUSTER>(&empty[previous]);
        previous = stage;
        if (++stage == STAGES) stage = 0, phase ^= 1;
      }
      if (PINGPONG && index + step < tiles.count()) named_barrier_arrive(3 + (1 - consumer), 256);  // its turn
      wgmma_wait<0>();
#pragma unroll
      for (int ma = 0; ma < M_ATOMS; ma++) fence_registers(acc[ma]);
      if (previous >= 0) release_in_cluster<CLUSTER>(&empty[previous]);
      if (SPLIT_K > 1) {
        reduce_split_k(acc, smem, consumer, rank);
        if (rank != 0) return;
      }
#if STREAM_K
      if (kb_end < k_blocks) {  // not the end of a stream-K tile: its sums go to the block that finishes it
        publish_partial(acc, workspace, consumer);
        return;
      }
      if (kb_begin > 0)  // the end of a stream-K tile: the earlier parts' sums added, then the epilogue
        stream_k.for_each_peer(blockIdx.x, index, [&](int peer) { add_partial(acc, workspace, peer, consumer); });
#endif
#if IN_FP8
#pragma unroll
      for (int ma = 0; ma < M_ATOMS; ma++)
#pragma unroll
        for (int i = 0; i < ACC; i++) acc[ma][i] *= scale;
#endif
      const int row0 = (tm * CLUSTER + m_rank) * BLOCK_M + a_row0, col0 = tn * BLOCK_N;
#if EPILOGUE_TMA
      store_tile_tma(acc, smem + STAGES * STAGE_BYTES + consumer * WG_M * EPILOGUE_COLS * OUT_BYTES, &map_c, consumer,
                     row0, col0);
#else
      store_tile(acc, c, M, N, row0, col0);
#endif
    });
#if EPILOGUE_TMA
    if (threadIdx.x % 128 == 0) bulk_wait<0>();  // the last store is done before the block exits
#endif
  }
  // No block of a cluster may exit while another can still use its shared memory or barriers.
  if (CLUSTER * SPLIT_K > 1) cluster_sync();
}
