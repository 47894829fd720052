/* Attention forward on Hopper (sm_90a), after FlashAttention-3's design: a producer warp loads Q once
 * per tile and K/V by TMA into a ring of STAGES stages (full/empty mbarriers, K and V apart), and
 * CONSUMERS warpgroups of 64 query rows each issue wgmma: S = Q·Kᵀ with Q and K from shared memory,
 * O += P·V with P in registers (the fp32 scores rounded to 16 bits in the accumulator layout, which
 * is the register-A layout) and V read MN-major. setmaxnreg moves registers from the producer to the
 * consumers. The online softmax runs in exp2 with the scale folded into one FMA; POLY_EVERY > 0 takes
 * every POLY_EVERY-th group of 8 score columns' exp2 off MUFU onto the FMA pipe (exp2_poly).
 *
 * OVERLAP_INTRA 1 issues tile j's Q·Kᵀ together with tile j-1's P·V and runs tile j's softmax while
 * that P·V is in flight (FA3's intra-warpgroup overlap); PINGPONG 1 makes the consumer warpgroups
 * take turns issuing their MMAs (named barriers), so one's softmax runs under another's MMAs.
 *
 * A persistent grid walks the tiles (one BLOCK_M x (b, h) each) in sections of `section` heads whose
 * K/V stay in L2; causal tiles go longest first inside a section. Causal: key tiles past the
 * diagonal are never loaded and only the tiles the diagonal crosses are masked. Any S: TMA
 * zero-fills the rows past S, keys >= S are masked and rows >= S are not stored. GQA: query head h
 * reads K/V head h / group.
 *
 * CLUSTER 2: the blocks of a cluster take the two adjacent query tiles 2p, 2p+1 of one (b, h) (the
 * scheduler hands out pairs) and share their K/V: each block's producer loads half the rows of every
 * K and V tile and multicasts them into both blocks, each block's full barrier expecting the whole
 * tile, and a stage is refilled only when the consumers of both blocks have released it (its empty
 * barrier counts the arrivals of every consumer of the cluster). Both blocks walk the pair's longer
 * key range (the second tile's when causal); a block whose tile needs fewer key tiles, or whose tile
 * lies past S (an odd number of m-blocks), waits for and releases the rest without computing.
 *
 * EPILOGUE_TMA 1: each consumer rounds its 64 x HEAD_DIM output into a shared buffer of 128-byte
 * swizzled 64-column chunks and one thread stores them by TMA (a 4-d map over [B, H, S, D] whose
 * boxes are clipped at S: rows past S are never written), while the warpgroup goes on to its next
 * tile; EPILOGUE_TMA 0 stores 4-byte pairs from registers.
 *
 * FP8 1: Q and K are e4m3 [B, H(_kv), S, HEAD_DIM] and V is e4m3 transposed, [B, H_kv, HEAD_DIM, S']
 * (S' = S rounded up to 32, zero-filled), with one fp32 scale each (`scales`: q, k, v); both
 * products run on e4m3 wgmma (k32 steps, both operands K-major: hence V transposed) and P is
 * rounded to e4m3 in registers. The fp32 score accumulators a thread holds for 32 keys are keys
 * 2q, 2q+1, 8+2q, 9+2q, 16+2q, ... (q = lane % 4), where the m64k32 register fragment of A wants
 * 4q..4q+3, 16+4q..16+4q+3: instead of moving P between threads, the pre-pass that transposes V
 * permutes each 32 keys the same way (attention_problem.V_KEY_ORDER), so P·V sums the same
 * products. O is 16-bit as without FP8. Rows of 64 bytes (HEAD_DIM 64) use the 64-byte swizzle.
 *
 * attention_hopper.py defines BLOCK_M, BLOCK_N, HEAD_DIM, STAGES, IS_BF16, FP8, OVERLAP_INTRA,
 * PINGPONG, EPILOGUE_TMA, CLUSTER and POLY_EVERY before this text. Q, K, V, O are [B, H(_kv), S, HEAD_DIM]
 * contiguous 16-bit tensors (but for FP8, above).
 */
#include "hopper.cuh"

using namespace hopper;

constexpr int CONSUMERS = BLOCK_M / 64;
constexpr int THREADS = (CONSUMERS + 1) * 128;
constexpr int ELEMENT_BYTES = FP8 ? 1 : 2;             // of Q, K and V (O is 16-bit)
constexpr int ROW_BYTES = HEAD_DIM * ELEMENT_BYTES;     // a row of Q or K
constexpr int SWIZZLE = ROW_BYTES < 128 ? ROW_BYTES : 128;  // bytes of a swizzled Q/K row chunk
constexpr int D_CHUNKS = ROW_BYTES / SWIZZLE;           // swizzled column chunks of a Q/K row
constexpr int CHUNK_COLS = SWIZZLE / ELEMENT_BYTES;
constexpr int QK_STEPS = ROW_BYTES / 32;                // k16 (16-bit) or k32 (e4m3) steps: 32 bytes each
constexpr int CHUNK_STEPS = SWIZZLE / 32;
constexpr int V_SWIZZLE = FP8 ? BLOCK_N : 128;          // FP8: a row of the transposed V tile, BLOCK_N keys
constexpr int O_CHUNKS = HEAD_DIM / 64;                 // 128-byte swizzled column chunks of an output row
constexpr int Q_BYTES = BLOCK_M * ROW_BYTES;
constexpr int KV_BYTES = BLOCK_N * ROW_BYTES;
constexpr int S_ACC = BLOCK_N / 2;                      // score accumulators of a thread
constexpr int O_ACC = HEAD_DIM / 2;                     // output accumulators of a thread
constexpr int P_STEPS = FP8 ? BLOCK_N / 32 : BLOCK_N / 16;  // k32 / k16 steps of P·V
// After reallocation (the block's pool: 128 x 512 registers with 3 consumers, 168 x 384 with 2):
// 3 consumers get 160, 2 get 240; with a cluster the producer needs 40 (it spills with 24 or 32),
// so 3 consumers get 152 and 2 get 232.
constexpr int PRODUCER_REGISTERS = CLUSTER > 1 ? 40 : CONSUMERS == 3 ? 32 : 24;
constexpr int CONSUMER_REGISTERS = (CONSUMERS == 3 ? 160 : 240) - (CLUSTER > 1 ? 8 : 0);
constexpr int PINGPONG_BARRIER = 1;                     // hardware barriers 1..CONSUMERS
constexpr int EPILOGUE_BARRIER = 4;                     // hardware barriers 4..3+CONSUMERS
constexpr int KV_ROWS = BLOCK_N / CLUSTER;              // the K/V rows of a tile one block loads
constexpr int O_CHUNK_BYTES = 64 * 128;                 // one 64-row x 64-column chunk of a consumer's output

static_assert(BLOCK_M % 64 == 0 && CONSUMERS <= 3, "64 query rows per consumer warpgroup, at most 3");
static_assert(BLOCK_N % 16 == 0 && HEAD_DIM % 64 == 0, "tile shape");
static_assert(CLUSTER == 1 || CLUSTER == 2, "one block, or a pair sharing K/V");
static_assert(!FP8 || (CLUSTER == 1 && (BLOCK_N == 64 || BLOCK_N == 128)),
              "FP8: one block; a transposed V tile row of 64 or 128 keys is one swizzled chunk");

#if FP8
typedef unsigned char Element;
typedef WgmmaE4m3<BLOCK_N> MmaS;
typedef WgmmaE4m3<HEAD_DIM> MmaO;
#else
typedef unsigned short Element;
typedef Wgmma<BLOCK_N, IS_BF16> MmaS;
typedef Wgmma<HEAD_DIM, IS_BF16> MmaO;
#endif

#define NEG_INF __int_as_float(0xff800000)

struct Tile {
  int m_block, b, h;
};

/* Tile `index` of `m_blocks` x B*H: sections of `section` heads, in each the m-blocks one after
 * another (last first when causal: the longest tiles lead), a section's heads side by side. */
__device__ __forceinline__ Tile tile_of(int index, int m_blocks, int heads, int batch_heads, int section,
                                        int causal) {
  // Unsigned: the divisions take fewer registers (the producer has 24-40).
  const u32 per_section = (u32)m_blocks * section;
  const u32 first = (u32)index / per_section * section;
  const u32 size = batch_heads - first < (u32)section ? batch_heads - first : section;
  const u32 within = (u32)index % per_section;
  const u32 bh = first + within % size, m = within / size;
  return Tile{causal ? m_blocks - 1 - (int)m : (int)m, (int)(bh / heads), (int)(bh % heads)};
}

/* Key tiles tile `m_block` reads: up to the diagonal when causal (none past the last m-block). */
__device__ __forceinline__ int key_blocks(int m_block, int S, int causal) {
  if (m_block * BLOCK_M >= S) return 0;
  int keys = causal ? (m_block + 1) * BLOCK_M : S;
  if (keys > S) keys = S;
  return (keys + BLOCK_N - 1) / BLOCK_N;
}

/* Key tiles the blocks of work item `item` walk together: its last m-block's (causal ranges grow
 * with m; with an odd number of m-blocks the last pair has one). */
__device__ __forceinline__ int item_key_blocks(int item, int m_blocks, int S, int causal) {
  const int last = item * CLUSTER + CLUSTER - 1;
  return key_blocks(last < m_blocks ? last : m_blocks - 1, S, causal);
}

/* ---- the producer ---- */

__device__ __forceinline__ void load_rows(unsigned char *dst, const TmaDescriptor *map, u64 *bar, int rows,
                                          int row0, int h, int b) {
#pragma unroll
  for (int c = 0; c < D_CHUNKS; c++) tma_load_4d(dst + c * rows * SWIZZLE, map, bar, c * CHUNK_COLS, row0, h, b);
}

/* This block's KV_ROWS of a K or V tile (all of it, or with a cluster the half of rank `rank`,
 * multicast into both blocks). */
__device__ __forceinline__ void load_kv(unsigned char *dst, const TmaDescriptor *map, u64 *bar, int row0, int h,
                                        int b, u32 rank) {
  if (CLUSTER == 1) return load_rows(dst, map, bar, BLOCK_N, row0, h, b);
#pragma unroll
  for (int c = 0; c < D_CHUNKS; c++)
    tma_load_4d_multicast(dst + c * BLOCK_N * 128 + rank * KV_ROWS * 128, map, bar, c * 64, row0 + rank * KV_ROWS,
                          h, b, (1 << CLUSTER) - 1);
}

/* FP8: the transposed V tile of keys key0.. (HEAD_DIM rows of BLOCK_N keys, one box). */
__device__ __forceinline__ void load_v_transposed(unsigned char *dst, const TmaDescriptor *map, u64 *bar, int key0,
                                                  int h, int b) {
  tma_load_4d(dst, map, bar, key0, 0, h, b);
}

/* ---- a consumer warpgroup ---- */

struct Ring {
  int stage = 0;
  u32 phase = 0;
  __device__ __forceinline__ void advance() {
    if (++stage == STAGES) stage = 0, phase ^= 1;
  }
};

__device__ __forceinline__ void pingpong_begin(int consumer) {
  if (PINGPONG && CONSUMERS > 1) named_barrier(PINGPONG_BARRIER + consumer, 256);
}

__device__ __forceinline__ void pingpong_end(int consumer) {
  if (PINGPONG && CONSUMERS > 1) named_barrier_arrive(PINGPONG_BARRIER + (consumer + 1) % CONSUMERS, 256);
}

__device__ __forceinline__ void arrive_once(u64 *bar) {
  if (threadIdx.x % 128 == 0) mbar_arrive(bar);
}

/* A K/V stage is read: free it in every block whose producer multicasts into it. */
__device__ __forceinline__ void release(u64 *bar) { release_in_cluster<CLUSTER>(bar); }

/* Shared-memory descriptors step by adding a byte offset / 16 to the start-address field (every
 * tile lies below 256 KB, so the 14-bit field never carries): each is computed once per kernel. */
__host__ __device__ constexpr u64 desc_step(int bytes) { return (u64)(bytes >> 4); }

/* S = Q·Kᵀ over the head dim: Q rows of this warpgroup and the stage's K tile, both K-major. */
__device__ __forceinline__ void issue_scores(float (&s)[S_ACC], u64 q_desc, u64 k_desc) {
#pragma unroll
  for (int kk = 0; kk < QK_STEPS; kk++) {
    const u64 q = q_desc + desc_step(kk / CHUNK_STEPS * BLOCK_M * SWIZZLE + kk % CHUNK_STEPS * 32);
    const u64 k = k_desc + desc_step(kk / CHUNK_STEPS * BLOCK_N * SWIZZLE + kk % CHUNK_STEPS * 32);
#if FP8
    MmaS::ss(s, q, k, kk > 0);
#else
    MmaS::ss<0>(s, q, k, kk > 0);
#endif
  }
}

/* O += P·V: P from registers; V [keys, D] row-major read MN-major (64-column chunks BLOCK_N*128
 * apart), or for FP8 the transposed tile [D, keys] read K-major (k32 steps 32 bytes apart). */
__device__ __forceinline__ void issue_values(float (&o)[O_ACC], const u32 (&p)[P_STEPS][4], u64 v_desc) {
#pragma unroll
#if FP8
  for (int kk = 0; kk < P_STEPS; kk++) MmaO::rs(o, p[kk], v_desc + desc_step(kk * 32), 1);
#else
  for (int kk = 0; kk < P_STEPS; kk++) MmaO::rs<1>(o, p[kk], v_desc + desc_step(kk * 16 * 128), 1);
#endif
}

/* Scores of keys >= S or (causal) after the row become -inf. Rows are this thread's two (row, row + 8). */
__device__ __forceinline__ void mask_scores(float (&s)[S_ACC], int key0, int row, int S, int causal) {
  const int col0 = key0 + 2 * (threadIdx.x % 4);
#pragma unroll
  for (int j = 0; j < BLOCK_N / 8; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int key = col0 + 8 * j + e % 2, limit = causal ? min(S - 1, row + 8 * (e / 2)) : S - 1;
      if (key > limit) s[4 * j + e] = NEG_INF;
    }
}

/* The online softmax of one score tile, in place: the scores become unnormalized probabilities,
 * `max` and `sum` the running row maxima (unscaled) and this thread's partial row sums, `scale`
 * what O must be multiplied by before this tile's P·V. */
__device__ __forceinline__ void softmax(float (&s)[S_ACC], float (&max)[2], float (&sum)[2], float (&scale)[2],
                                        float scale_log2) {
#pragma unroll
  for (int half = 0; half < 2; half++) {
    float m = max[half];
#pragma unroll
    for (int j = 0; j < BLOCK_N / 8; j++) m = fmaxf(m, fmaxf(s[4 * j + 2 * half], s[4 * j + 2 * half + 1]));
    m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, 2));
    const float base = m == NEG_INF ? 0.f : m * scale_log2;  // a row with no key yet stays at 0
    scale[half] = exp2_approx(max[half] * scale_log2 - base);
    max[half] = m;
    float total = 0.f;
#pragma unroll
    for (int j = 0; j < BLOCK_N / 8; j++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        float &x = s[4 * j + 2 * half + e];
        const float power = fmaf(x, scale_log2, -base);
        x = POLY_EVERY && j % POLY_EVERY == POLY_EVERY - 1 ? exp2_poly(power) : exp2_approx(power);
        total += x;
      }
    sum[half] = sum[half] * scale[half] + total;
  }
}

/* The probabilities as the A fragments of P·V: k16 step kk is score columns 16kk..16kk+15, whose
 * accumulators 8kk..8kk+7 are already in register-A order. FP8: k32 step kk is the accumulators
 * 16kk..16kk+15 (score columns 32kk..32kk+31) of rows r and r + 8, four to a register in the order
 * the permuted keys of V (see the top of this file) expect. */
__device__ __forceinline__ void to_operand(u32 (&p)[P_STEPS][4], const float (&s)[S_ACC]) {
#pragma unroll
  for (int kk = 0; kk < P_STEPS; kk++)
#if FP8
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const float *x = s + 16 * kk + 8 * (i / 2) + 2 * (i % 2);
      p[kk][i] = pack_e4m3x4(x[0], x[1], x[4], x[5]);
    }
#else
#pragma unroll
    for (int i = 0; i < 4; i++) p[kk][i] = pack_pair<IS_BF16>(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]);
#endif
}

__device__ __forceinline__ void rescale(float (&o)[O_ACC], const float (&scale)[2]) {
#pragma unroll
  for (int i = 0; i < O_ACC; i++) o[i] *= scale[(i / 2) % 2];
}

/* 1 / the row sums of this thread's two rows (a row without keys gets 0). */
__device__ __forceinline__ float inverse_sum(const float (&sum)[2], int half) {
  float total = sum[half];
  total += __shfl_xor_sync(0xffffffff, total, 1);
  total += __shfl_xor_sync(0xffffffff, total, 2);
  return total > 0.f ? 1.f / total : 0.f;
}

/* O / row sum, rounded and stored for the rows below S (the m64nD fragment: row 16*warp + lane/4
 * (+8), column pairs 8j + 2*(lane%4)). */
__device__ __forceinline__ void store_rows(float (&o)[O_ACC], float (&sum)[2], unsigned short *out, int row,
                                           int S) {
  const int col = 2 * (threadIdx.x % 4);
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const float inverse = inverse_sum(sum, half);
    if (row + 8 * half >= S) continue;
    unsigned short *line = out + (long long)(row + 8 * half) * HEAD_DIM;
#pragma unroll
    for (int j = 0; j < HEAD_DIM / 8; j++)
      *reinterpret_cast<u32 *>(line + 8 * j + col) =
          pack_pair<IS_BF16>(o[4 * j + 2 * half] * inverse, o[4 * j + 2 * half + 1] * inverse);
  }
}

/* The TMA epilogue: O / row sum rounded into this warpgroup's 64 rows of `o_tile` (HEAD_DIM / 64
 * chunks of 128-byte swizzled rows: the 8 rows one store instruction touches XOR to 8 different
 * 16-byte chunks), once the previous tile's store has read them; then one thread stores the chunks
 * at rows first_row.. of head (b, h): TMA clips the box at S, so rows past S are never written. */
__device__ __forceinline__ void store_rows_tma(float (&o)[O_ACC], float (&sum)[2], unsigned char *o_tile,
                                               const TmaDescriptor *map_o, int consumer, int first_row, int h,
                                               int b) {
  const int t = threadIdx.x % 128;
  float inverse[2];
#pragma unroll
  for (int half = 0; half < 2; half++) inverse[half] = inverse_sum(sum, half);
  if (t == 0) bulk_wait_read<0>();
  named_barrier(EPILOGUE_BARRIER + consumer, 128);
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int r = 16 * (t / 32) + (t % 32) / 4 + 8 * half;
#pragma unroll
    for (int j = 0; j < HEAD_DIM / 8; j++)
      st_shared_u32(o_tile + j / 8 * O_CHUNK_BYTES + r * 128 + ((j % 8) ^ (r % 8)) * 16 + 4 * (t % 4),
                    pack_pair<IS_BF16>(o[4 * j + 2 * half] * inverse[half], o[4 * j + 2 * half + 1] * inverse[half]));
  }
  fence_proxy_async();
  named_barrier(EPILOGUE_BARRIER + consumer, 128);
  if (t == 0) {
#pragma unroll
    for (int c = 0; c < O_CHUNKS; c++) tma_store_4d(map_o, o_tile + c * O_CHUNK_BYTES, c * 64, first_row, h, b);
    bulk_commit();
  }
}

/* Key tiles this block's tile does not need (the pair's other tile does): their loads land all the
 * same, so wait for them and free the stages. */
__device__ __forceinline__ void skip_tiles(int count, Ring &ring, u64 *k_full, u64 *k_empty, u64 *v_full,
                                           u64 *v_empty) {
  for (int j = 0; j < count; j++, ring.advance()) {
    mbar_wait(&k_full[ring.stage], ring.phase);
    release(&k_empty[ring.stage]);
    mbar_wait(&v_full[ring.stage], ring.phase);
    release(&v_empty[ring.stage]);
  }
}

/* What a consumer warpgroup's key-tile steps read: the barriers, descriptors and its tile's rows. */
struct Consumer {
  u64 *k_full, *k_empty, *v_full, *v_empty, *q_empty;
  u64 q_desc, k_desc0, v_desc0;
  int consumer, n_blocks, row, S, causal;
  float scale_log2;
};

/* Key tile j (> 0) with intra-warpgroup overlap: its scores issued with tile j-1's P·V, its softmax
 * under that P·V. */
template <bool MASK>
__device__ __forceinline__ void intra_step(int j, float (&o)[O_ACC], float (&s)[S_ACC], u32 (&p)[P_STEPS][4],
                                            float (&max)[2], float (&sum)[2], float (&scale)[2], Ring &ring,
                                            const Consumer &c) {
  const Ring previous = ring;
  ring.advance();
  mbar_wait(&c.k_full[ring.stage], ring.phase);
  pingpong_begin(c.consumer);
  wgmma_fence();
  issue_scores(s, c.q_desc, c.k_desc0 + desc_step(ring.stage * KV_BYTES));
  wgmma_commit();
  rescale(o, scale);
  mbar_wait(&c.v_full[previous.stage], previous.phase);
  wgmma_fence();
  issue_values(o, p, c.v_desc0 + desc_step(previous.stage * KV_BYTES));
  wgmma_commit();
  pingpong_end(c.consumer);
  wgmma_wait<1>();  // the scores are done
  fence_registers(s);
  release(&c.k_empty[ring.stage]);
  if (j == c.n_blocks - 1) arrive_once(c.q_empty);
  if (MASK) mask_scores(s, j * BLOCK_N, c.row, c.S, c.causal);
  softmax(s, max, sum, scale, c.scale_log2);
  wgmma_wait<0>();  // P·V of the previous tile is done: its V and P registers are free
  fence_registers(o);
  release(&c.v_empty[previous.stage]);
  to_operand(p, s);
}

/* Key tile j alone: scores, softmax, P·V. */
template <bool MASK>
__device__ __forceinline__ void serial_step(int j, float (&o)[O_ACC], float (&s)[S_ACC], u32 (&p)[P_STEPS][4],
                                            float (&max)[2], float (&sum)[2], float (&scale)[2], Ring &ring,
                                            const Consumer &c) {
  mbar_wait(&c.k_full[ring.stage], ring.phase);
  pingpong_begin(c.consumer);
  wgmma_fence();
  issue_scores(s, c.q_desc, c.k_desc0 + desc_step(ring.stage * KV_BYTES));
  wgmma_commit();
  pingpong_end(c.consumer);
  wgmma_wait<0>();
  fence_registers(s);
  release(&c.k_empty[ring.stage]);
  if (j == c.n_blocks - 1) arrive_once(c.q_empty);
  if (MASK) mask_scores(s, j * BLOCK_N, c.row, c.S, c.causal);
  softmax(s, max, sum, scale, c.scale_log2);
  to_operand(p, s);
  rescale(o, scale);
  mbar_wait(&c.v_full[ring.stage], ring.phase);
  pingpong_begin(c.consumer);
  wgmma_fence();
  issue_values(o, p, c.v_desc0 + desc_step(ring.stage * KV_BYTES));
  wgmma_commit();
  pingpong_end(c.consumer);
  wgmma_wait<0>();
  fence_registers(o);
  release(&c.v_empty[ring.stage]);
  ring.advance();
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
attention_fwd(const __grid_constant__ TmaDescriptor map_q, const __grid_constant__ TmaDescriptor map_k,
              const __grid_constant__ TmaDescriptor map_v,
#if EPILOGUE_TMA
              const __grid_constant__ TmaDescriptor map_o,
#endif
              const Element *q, const Element *k, const Element *v,
#if FP8
              const float *scales,
#endif
              unsigned short *out, int B, int H, int S, int group, int causal, int section, float scale_log2) {
  extern __shared__ unsigned char dynamic_smem[];
  __shared__ u64 q_full, q_empty, k_full[STAGES], k_empty[STAGES], v_full[STAGES], v_empty[STAGES];
  // TMA's 128-byte swizzle needs 1024-byte aligned tiles; the launch asks for 1 KB of slack.
  unsigned char *smem = dynamic_smem + ((1024 - (smem_addr(dynamic_smem) & 1023)) & 1023);
  unsigned char *q_tile = smem, *k_tiles = smem + Q_BYTES, *v_tiles = k_tiles + STAGES * KV_BYTES;
  const int wg = warpgroup_index();

  if (threadIdx.x == 0) {
    tma_prefetch(&map_q), tma_prefetch(&map_k), tma_prefetch(&map_v);
#if EPILOGUE_TMA
    tma_prefetch(&map_o);
#endif
    mbar_init(&q_full, 1);
    mbar_init(&q_empty, CONSUMERS);
    for (int s = 0; s < STAGES; s++) {
      mbar_init(&k_full[s], 1), mbar_init(&v_full[s], 1);
      mbar_init(&k_empty[s], CONSUMERS * CLUSTER), mbar_init(&v_empty[s], CONSUMERS * CLUSTER);
    }
    mbar_fence_init();
  }
  if (CLUSTER > 1) cluster_sync();  // the peer's barriers are initialized before anything reaches them
  else __syncthreads();

  // Work items: pairs of adjacent m-blocks with a cluster (the block of rank r takes m-block 2p + r).
  // The block's rank and first item are read after setmaxnreg: values live across it are spilled.
  const int m_blocks = (S + BLOCK_M - 1) / BLOCK_M, m_items = (m_blocks + CLUSTER - 1) / CLUSTER;
  const int items = m_items * B * H;

  if (wg == 0) {  // the producer: one thread issues every load
    if (CONSUMERS > 1) setmaxnreg_dec<PRODUCER_REGISTERS>();
    if (threadIdx.x == 0) {
      Ring ring;
      u32 q_phase = 0;
      const u32 rank = CLUSTER > 1 ? cluster_rank() : 0;
      for (int index = blockIdx.x / CLUSTER; index < items; index += gridDim.x / CLUSTER) {
        const Tile item = tile_of(index, m_items, H, B * H, section, causal);
        const int m_block = item.m_block * CLUSTER + rank, kv_head = item.h / group;
        const int n_blocks = item_key_blocks(item.m_block, m_blocks, S, causal);
        if (key_blocks(m_block, S, causal) > 0) {
          mbar_wait(&q_empty, q_phase ^ 1);
          q_phase ^= 1;
          mbar_arrive_expect_tx(&q_full, Q_BYTES);
          load_rows(q_tile, &map_q, &q_full, BLOCK_M, m_block * BLOCK_M, item.h, item.b);
        }
        for (int j = 0; j < n_blocks; j++, ring.advance()) {
          mbar_wait(&k_empty[ring.stage], ring.phase ^ 1);
          mbar_arrive_expect_tx(&k_full[ring.stage], KV_BYTES);
          load_kv(k_tiles + ring.stage * KV_BYTES, &map_k, &k_full[ring.stage], j * BLOCK_N, kv_head, item.b, rank);
          mbar_wait(&v_empty[ring.stage], ring.phase ^ 1);
          mbar_arrive_expect_tx(&v_full[ring.stage], KV_BYTES);
#if FP8
          load_v_transposed(v_tiles + ring.stage * KV_BYTES, &map_v, &v_full[ring.stage], j * BLOCK_N, kv_head, item.b);
#else
          load_kv(v_tiles + ring.stage * KV_BYTES, &map_v, &v_full[ring.stage], j * BLOCK_N, kv_head, item.b, rank);
#endif
        }
      }
    }
  } else {  // a consumer: 64 query rows of every tile
    if (CONSUMERS > 1) setmaxnreg_inc<CONSUMER_REGISTERS>();
    const int consumer = wg - 1, t = threadIdx.x % 128;
    const u64 q_desc = smem_descriptor(q_tile + consumer * 64 * SWIZZLE, 16, 8 * SWIZZLE, SWIZZLE);
    const u64 k_desc0 = smem_descriptor(k_tiles, 16, 8 * SWIZZLE, SWIZZLE);
#if FP8
    const u64 v_desc0 = smem_descriptor(v_tiles, 16, 8 * V_SWIZZLE, V_SWIZZLE);
    // The e4m3 scales: Q's and K's fold into the softmax's, V's into the row sums.
    scale_log2 *= scales[0] * scales[1];
    const float v_unscale = 1.f / scales[2];
#else
    const u64 v_desc0 = smem_descriptor(v_tiles, BLOCK_N * 128, 1024);
#endif
    Ring ring;
    u32 q_phase = 0;
    if (PINGPONG && CONSUMERS > 1 && consumer == CONSUMERS - 1) named_barrier_arrive(PINGPONG_BARRIER, 256);
    const u32 rank = CLUSTER > 1 ? cluster_rank() : 0;
    for (int index = blockIdx.x / CLUSTER; index < items; index += gridDim.x / CLUSTER) {
      const Tile item = tile_of(index, m_items, H, B * H, section, causal);
      const int m_block = item.m_block * CLUSTER + rank, n_blocks = key_blocks(m_block, S, causal);
      if (CLUSTER > 1 && n_blocks == 0) {  // the pair's second m-block lies past S: only the loads to free
        skip_tiles(item_key_blocks(item.m_block, m_blocks, S, causal), ring, k_full, k_empty, v_full, v_empty);
        continue;
      }
      const int first_row = m_block * BLOCK_M + consumer * 64, row = first_row + 16 * (t / 32) + (t % 32) / 4;
      float o[O_ACC], s[S_ACC], max[2] = {NEG_INF, NEG_INF}, sum[2] = {0.f, 0.f}, scale[2];
      u32 p[P_STEPS][4];
#pragma unroll
      for (int i = 0; i < O_ACC; i++) o[i] = 0.f;
      mbar_wait(&q_full, q_phase);
      q_phase ^= 1;
      // Key tiles below this warpgroup's diagonal and inside S need no mask: a loop of their own
      // (a run-time test per tile would be if-converted into selects on every score).
      int unmasked = S / BLOCK_N;
      if (causal) unmasked = min(unmasked, (first_row + 1) / BLOCK_N);
      unmasked = min(unmasked, n_blocks);
      const Consumer ctx{k_full, k_empty, v_full, v_empty, &q_empty, q_desc, k_desc0, v_desc0,
                         consumer, n_blocks, row, S, causal, scale_log2};
#if OVERLAP_INTRA
      // The first key tile: its scores alone.
      mbar_wait(&k_full[ring.stage], ring.phase);
      pingpong_begin(consumer);
      wgmma_fence();
      issue_scores(s, q_desc, k_desc0 + desc_step(ring.stage * KV_BYTES));
      wgmma_commit();
      pingpong_end(consumer);
      wgmma_wait<0>();
      fence_registers(s);
      release(&k_empty[ring.stage]);
      if (n_blocks == 1) arrive_once(&q_empty);
      if (unmasked == 0) mask_scores(s, 0, row, S, causal);
      softmax(s, max, sum, scale, scale_log2);
      to_operand(p, s);
      // Tile j's scores issued with tile j-1's P·V; its softmax under that P·V.
      int j = 1;
      for (; j < unmasked; j++) intra_step<false>(j, o, s, p, max, sum, scale, ring, ctx);
      for (; j < n_blocks; j++) intra_step<true>(j, o, s, p, max, sum, scale, ring, ctx);
      rescale(o, scale);
      mbar_wait(&v_full[ring.stage], ring.phase);
      wgmma_fence();
      issue_values(o, p, v_desc0 + desc_step(ring.stage * KV_BYTES));
      wgmma_commit();
      wgmma_wait<0>();
      fence_registers(o);
      release(&v_empty[ring.stage]);
      ring.advance();
#else
      // One key tile at a time: scores, softmax, P·V.
      int j = 0;
      for (; j < unmasked; j++) serial_step<false>(j, o, s, p, max, sum, scale, ring, ctx);
      for (; j < n_blocks; j++) serial_step<true>(j, o, s, p, max, sum, scale, ring, ctx);
#endif
      if (CLUSTER > 1)  // the rest of the pair's longer key range
        skip_tiles(item_key_blocks(item.m_block, m_blocks, S, causal) - n_blocks, ring, k_full, k_empty, v_full,
                   v_empty);
#if FP8
      sum[0] *= v_unscale, sum[1] *= v_unscale;
#endif
#if EPILOGUE_TMA
      store_rows_tma(o, sum, v_tiles + STAGES * KV_BYTES + consumer * 64 * HEAD_DIM * 2, &map_o, consumer, first_row,
                     item.h, item.b);
#else
      store_rows(o, sum, out + ((long long)item.b * H + item.h) * S * HEAD_DIM, row, S);
#endif
    }
    // The first consumer takes the last turn handed to it, so no barrier is left half-arrived.
    if (PINGPONG && CONSUMERS > 1 && consumer == 0) named_barrier(PINGPONG_BARRIER, 256);
#if EPILOGUE_TMA
    if (t == 0) bulk_wait<0>();  // the last store is complete before the block exits
#endif
  }
  // No block of a cluster exits while its peer may still multicast into it or arrive on its barriers.
  if (CLUSTER > 1) cluster_sync();
}
