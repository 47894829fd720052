// FlashAttention-2-style attention forward (Dao, 2023): one thread block owns BLOCK_M query rows of
// one (batch, head), streams BLOCK_N-row tiles of K and V through shared memory with cp.async
// (STAGES tiles in flight), and keeps the online softmax in registers. Tensor cores via mma.sync
// m16n8k16, operands via ldmatrix from XOR-swizzled shared memory (conflict-free).
//
// attention_cuda.py renders the macros below in front of this file:
//   BLOCK_M, BLOCK_N, WARPS, STAGES, HEAD_DIM, IS_BF16, FAST_EXP2, PV_F16_ACC, LAZY_RESCALE, MIN_BLOCKS
// Q, O are [B, H, S, HEAD_DIM], K, V [B, H / kv_group, S, HEAD_DIM], contiguous 16-bit values;
// grid = (ceil(S / BLOCK_M), B * H).

#define THREADS (WARPS * 32)
#define WARP_ROWS (BLOCK_M / WARPS)  // query rows per warp
#define M_TILES (WARP_ROWS / 16)     // 16-row mma tiles per warp
#define N_TILES (BLOCK_N / 8)        // 8-key column tiles of the scores
#define D_TILES (HEAD_DIM / 8)       // 8-wide column tiles of the output (= 16-byte chunks a row)
#define ROW_BYTES (HEAD_DIM * 2)
#define KV_TILE_BYTES (BLOCK_N * ROW_BYTES)

#if IS_BF16
#define MMA_TYPE "bf16"
#else
#define MMA_TYPE "f16"
#endif

typedef unsigned short elem_t;  // raw fp16 / bf16 bits: no cuda_fp16.h needed
typedef unsigned int u32;

// -inf without math.h: NVRTC compiles with no host headers.
#define NEG_INF __int_as_float(0xff800000)

// Byte offset of 16-byte chunk `chunk` of row `row` in a tile: chunks XOR the row's low 3 bits, so
// the 8 rows one ldmatrix reads (same logical chunk) fall in 8 different bank groups.
__device__ __forceinline__ u32 swizzle(int row, int chunk) {
  return row * ROW_BYTES + ((chunk ^ (row & 7)) << 4);
}

__device__ __forceinline__ void cp_async16(u32 dst, const void* src, bool valid) {
  // src-size 0 fills the 16 bytes with zeros: rows past the sequence end stay finite.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

__device__ __forceinline__ void mma_f32(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32." MMA_TYPE "." MMA_TYPE ".f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one packed pair of the input type (lo in the low half), rounded to nearest.
__device__ __forceinline__ u32 pack(float lo, float hi) {
  u32 r;
  asm("cvt.rn." MMA_TYPE "x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

__device__ __forceinline__ float exp2_(float x) {
#if FAST_EXP2
  float y;  // one MUFU instruction; flushes denormals, ~2 ulp
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);
#endif
}

#if PV_F16_ACC
// P·V of one K/V tile accumulated in fp16 (half the accumulator registers and MMA precision);
// the running output stays fp32 across tiles.
__device__ __forceinline__ void mma_f16(u32 (&d)[2], const u32 (&a)[4], u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 "
      "{%0,%1}, {%2,%3,%4,%5}, {%6,%7}, {%0,%1};\n"
      : "+r"(d[0]), "+r"(d[1]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void add_f16x2(float& lo, float& hi, u32 v) {
  float x, y;
  asm("{.reg .f16 l, h;\n mov.b32 {l, h}, %2;\n cvt.f32.f16 %0, l;\n cvt.f32.f16 %1, h;}\n"
      : "=f"(x), "=f"(y) : "r"(v));
  lo += x;
  hi += y;
}
#endif

// Copies rows [row0, row0 + ROWS) of a [seq, HEAD_DIM] matrix into a swizzled shared tile. Each
// thread copies one fixed chunk column every THREADS / D_TILES rows, a multiple of 8, so its swizzle
// term is the same on every row it copies and all its addresses are one base plus constants: no
// per-chunk address registers stay live across the main loop.
template <int ROWS>
__device__ __forceinline__ void load_tile(u32 tile, const elem_t* src, int row0, int seq) {
  constexpr int STEP = THREADS / D_TILES;  // rows between one thread's consecutive chunks
  static_assert(ROWS % STEP == 0 && STEP % 8 == 0, "every thread copies the same swizzled column");
  const int r = threadIdx.x / D_TILES, c = threadIdx.x % D_TILES;
  const u32 dst = tile + swizzle(r, c);
  const elem_t* from = src + (size_t)(row0 + r) * HEAD_DIM + c * 8;
#pragma unroll
  for (int it = 0; it < ROWS / STEP; ++it) {
    const bool valid = row0 + r + it * STEP < seq;
    cp_async16(dst + it * STEP * ROW_BYTES, valid ? from + it * STEP * HEAD_DIM : src, valid);
  }
}

// S = Q Kᵀ for this warp's rows against one K tile; Q is re-read from shared memory each tile
// (as FlashAttention-2 does) so its fragments cost no registers across the loop.
__device__ __forceinline__ void scores(float (&s)[M_TILES][N_TILES][4], u32 sq, u32 sk, int row0,
                                       int lane) {
#pragma unroll
  for (int mi = 0; mi < M_TILES; ++mi)
#pragma unroll
    for (int j = 0; j < N_TILES; ++j) s[mi][j][0] = s[mi][j][1] = s[mi][j][2] = s[mi][j][3] = 0.f;
  const int quad = lane / 8, r8 = lane % 8;
#pragma unroll
  for (int kk = 0; kk < HEAD_DIM / 16; ++kk) {
    u32 a[M_TILES][4];
#pragma unroll
    for (int mi = 0; mi < M_TILES; ++mi)
      ldsm_x4(a[mi], sq + swizzle(row0 + mi * 16 + r8 + (quad & 1) * 8, kk * 2 + (quad >> 1)));
#pragma unroll
    for (int j = 0; j < N_TILES; j += 2) {
      u32 b[4];
      ldsm_x4(b, sk + swizzle(j * 8 + r8 + (quad >> 1) * 8, kk * 2 + (quad & 1)));
#pragma unroll
      for (int mi = 0; mi < M_TILES; ++mi) {
        mma_f32(s[mi][j], a[mi], b[0], b[1]);
        mma_f32(s[mi][j + 1], a[mi], b[2], b[3]);
      }
    }
  }
}

// Keys past the sequence end, and (causal) keys after the query, get -inf.
__device__ __forceinline__ void apply_mask(float (&s)[M_TILES][N_TILES][4], int q0, int n0, int seq,
                                           int causal, int lane) {
#pragma unroll
  for (int mi = 0; mi < M_TILES; ++mi)
#pragma unroll
    for (int j = 0; j < N_TILES; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = q0 + mi * 16 + lane / 4 + (e >> 1) * 8;
        const int col = n0 + j * 8 + (lane % 4) * 2 + (e & 1);
        if (col >= seq || (causal && col > row)) s[mi][j][e] = NEG_INF;
      }
}

// Online softmax step: new row maxima, rescale of the running sum and output, s := exp2 of the
// scaled scores. The 1/sqrt(d)·log2(e) scale is folded into one FMA per score.
// LAZY_RESCALE (FlashAttention-4's conditional rescale) keeps each row's old maximum until some row
// of the warp sees a score past its kept one by more than 2^8: until then every exp2 stays <= 256,
// exact after the final division by the same-referenced sum, and the warp skips the O rescale (the
// bulk of the softmax's instructions) on most tiles. The vote keeps the branch warp-uniform.
__device__ __forceinline__ void softmax_step(float (&s)[M_TILES][N_TILES][4], float (&row_max)[M_TILES][2],
                                             float (&row_sum)[M_TILES][2],
                                             float (&acc)[M_TILES][D_TILES][4], float scale_log2) {
  float tile_max[M_TILES][2];
  bool grows = false;
#pragma unroll
  for (int mi = 0; mi < M_TILES; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = NEG_INF;
#pragma unroll
      for (int j = 0; j < N_TILES; ++j) mx = fmaxf(mx, fmaxf(s[mi][j][2 * h], s[mi][j][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));  // the 4 lanes sharing a row
      tile_max[mi][h] = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      grows |= (tile_max[mi][h] - row_max[mi][h]) * scale_log2 > 8.f;  // -inf - -inf: NaN, false
    }
  if (!LAZY_RESCALE || __any_sync(0xffffffffu, grows)) {
#pragma unroll
    for (int mi = 0; mi < M_TILES; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float mx = fmaxf(row_max[mi][h], tile_max[mi][h]);
        const float m_scaled = mx == NEG_INF ? 0.f : mx * scale_log2;  // all-masked row: no NaN
        const float alpha = exp2_(row_max[mi][h] * scale_log2 - m_scaled);
        row_max[mi][h] = mx;
        row_sum[mi][h] *= alpha;
#pragma unroll
        for (int d = 0; d < D_TILES; ++d) {
          acc[mi][d][2 * h] *= alpha;
          acc[mi][d][2 * h + 1] *= alpha;
        }
      }
  }
#pragma unroll
  for (int mi = 0; mi < M_TILES; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m_scaled = row_max[mi][h] == NEG_INF ? 0.f : row_max[mi][h] * scale_log2;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < N_TILES; ++j)
#pragma unroll
        for (int e = 2 * h; e < 2 * h + 2; ++e) {
          s[mi][j][e] = exp2_(fmaf(s[mi][j][e], scale_log2, -m_scaled));
          sum += s[mi][j][e];
        }
      row_sum[mi][h] += sum;  // this lane's share; summed over the quad at the end
    }
}

// O += P V for one V tile. The score accumulators' layout is the A-operand layout of the next mma,
// so P goes from registers to the tensor cores without touching shared memory.
__device__ __forceinline__ void accumulate_pv(float (&acc)[M_TILES][D_TILES][4],
                                              const float (&s)[M_TILES][N_TILES][4], u32 sv, int lane) {
  u32 p[M_TILES][BLOCK_N / 16][4];
#pragma unroll
  for (int mi = 0; mi < M_TILES; ++mi)
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
      p[mi][kk][0] = pack(s[mi][2 * kk][0], s[mi][2 * kk][1]);
      p[mi][kk][1] = pack(s[mi][2 * kk][2], s[mi][2 * kk][3]);
      p[mi][kk][2] = pack(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
      p[mi][kk][3] = pack(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
    }
  const int quad = lane / 8, r8 = lane % 8;
#pragma unroll
  for (int d = 0; d < D_TILES; d += 2) {
#if PV_F16_ACC
    u32 part[M_TILES][2][2] = {};
#endif
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
      u32 b[4];
      ldsm_x4_trans(b, sv + swizzle(kk * 16 + r8 + (quad & 1) * 8, d + (quad >> 1)));
#pragma unroll
      for (int mi = 0; mi < M_TILES; ++mi) {
#if PV_F16_ACC
        mma_f16(part[mi][0], p[mi][kk], b[0], b[1]);
        mma_f16(part[mi][1], p[mi][kk], b[2], b[3]);
#else
        mma_f32(acc[mi][d], p[mi][kk], b[0], b[1]);
        mma_f32(acc[mi][d + 1], p[mi][kk], b[2], b[3]);
#endif
      }
    }
#if PV_F16_ACC
#pragma unroll
    for (int mi = 0; mi < M_TILES; ++mi)
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        add_f16x2(acc[mi][d + t][0], acc[mi][d + t][1], part[mi][t][0]);
        add_f16x2(acc[mi][d + t][2], acc[mi][d + t][3], part[mi][t][1]);
      }
#endif
  }
}

// Divides by the softmax denominators and writes this warp's rows that lie inside the sequence.
__device__ __forceinline__ void store_output(elem_t* o, const float (&acc)[M_TILES][D_TILES][4],
                                             const float (&row_sum)[M_TILES][2], int q0, int seq, int lane) {
#pragma unroll
  for (int mi = 0; mi < M_TILES; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float l = row_sum[mi][h];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = 1.f / l;
      const int row = q0 + mi * 16 + lane / 4 + h * 8;
      if (row >= seq) continue;
      u32* dst = reinterpret_cast<u32*>(o + (size_t)row * HEAD_DIM + (lane % 4) * 2);
#pragma unroll
      for (int d = 0; d < D_TILES; ++d) dst[d * 4] = pack(acc[mi][d][2 * h] * inv, acc[mi][d][2 * h + 1] * inv);
    }
}

// MIN_BLOCKS resident blocks per SM: ptxas caps a thread's registers at 65536 / (THREADS * MIN_BLOCKS)
// (255 at most), trading registers for warps to hide the mma -> softmax -> mma latency chain.
extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
attention_fwd(const elem_t* __restrict__ q, const elem_t* __restrict__ k, const elem_t* __restrict__ v,
              elem_t* __restrict__ o, int seq, int causal, float scale_log2, int kv_group) {
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sq = (u32)__cvta_generic_to_shared(smem);
  const u32 sk = sq + BLOCK_M * ROW_BYTES;
  const u32 sv = sk + STAGES * KV_TILE_BYTES;
  const int m0 = (gridDim.x - 1 - blockIdx.x) * BLOCK_M;  // longest causal blocks start first
  // Grouped-query attention: kv_group consecutive query heads share one K/V head (1: multi-head).
  const size_t head = (size_t)blockIdx.y * seq * HEAD_DIM;
  const size_t kv_head = (size_t)(blockIdx.y / kv_group) * seq * HEAD_DIM;
  q += head, o += head, k += kv_head, v += kv_head;
  const int lane = threadIdx.x % 32, row0 = (threadIdx.x / 32) * WARP_ROWS;
  const int key_end = causal ? min(seq, m0 + BLOCK_M) : seq;  // later tiles are fully masked
  const int n_blocks = (key_end + BLOCK_N - 1) / BLOCK_N;

  load_tile<BLOCK_M>(sq, q, m0, seq);  // joins the first K/V group
#pragma unroll
  for (int t = 0; t < STAGES - 1; ++t) {
    if (t < n_blocks) {
      load_tile<BLOCK_N>(sk + t * KV_TILE_BYTES, k, t * BLOCK_N, seq);
      load_tile<BLOCK_N>(sv + t * KV_TILE_BYTES, v, t * BLOCK_N, seq);
    }
    cp_async_commit();
  }

  float acc[M_TILES][D_TILES][4] = {};
  float row_max[M_TILES][2], row_sum[M_TILES][2];
#pragma unroll
  for (int mi = 0; mi < M_TILES; ++mi) row_max[mi][0] = row_max[mi][1] = NEG_INF, row_sum[mi][0] = row_sum[mi][1] = 0.f;

  for (int nb = 0; nb < n_blocks; ++nb) {
    const int ahead = nb + STAGES - 1;  // refills the buffer every thread finished with last iteration
    if (ahead < n_blocks) {
      load_tile<BLOCK_N>(sk + (ahead % STAGES) * KV_TILE_BYTES, k, ahead * BLOCK_N, seq);
      load_tile<BLOCK_N>(sv + (ahead % STAGES) * KV_TILE_BYTES, v, ahead * BLOCK_N, seq);
    }
    cp_async_commit();  // an empty group past the end keeps the wait count uniform
    cp_async_wait<STAGES - 1>();
    __syncthreads();
    float s[M_TILES][N_TILES][4];
    scores(s, sq, sk + (nb % STAGES) * KV_TILE_BYTES, row0, lane);
    const int n0 = nb * BLOCK_N;
    if (n0 + BLOCK_N > seq || (causal && n0 + BLOCK_N - 1 > m0 + row0)) apply_mask(s, m0 + row0, n0, seq, causal, lane);
    softmax_step(s, row_max, row_sum, acc, scale_log2);
    accumulate_pv(acc, s, sv + (nb % STAGES) * KV_TILE_BYTES, lane);
    __syncthreads();
  }
  store_output(o, acc, row_sum, m0 + row0, seq, lane);
}
