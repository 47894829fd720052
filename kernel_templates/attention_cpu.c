/* Attention forward, flash style: O = softmax(Q K^T * scale [+ causal mask]) V.
 *
 * Q and O are float32 [batch, heads, seq, HEAD_DIM], K and V [batch, heads / group, seq, HEAD_DIM],
 * contiguous: query head h reads K/V head h / group (grouped-query attention; group 1 is plain
 * multi-head attention). Every (batch, head,
 * query tile) is independent: its BLOCK_M query rows stream over tiles of BLOCK_N keys and keep
 * a running row max and row sum, so the softmax never needs a whole row of scores (online
 * softmax). Ragged last tiles (seq not a multiple of the tile) are handled by the row and column
 * counts; padded key columns are masked.
 *
 * The renderer (attention_cpu.py) defines the tuning knobs before this text:
 *   BLOCK_M, BLOCK_N  query and key tile sizes
 *   HEAD_DIM          D, fixed at compile time so the D loops have a known trip count
 *   CAUSAL            1: key j > query i is masked and key tiles past the query tile are skipped
 *   THREADS           OpenMP threads over (batch, head, query tile)
 *   UNROLL            unroll-and-jam factor: D steps (Q K^T) or keys (P V) per pass over a row
 *   ACC               float or double: the type scores, softmax state and outputs accumulate in
 *   EXP_DEGREE        0: libm exp; 2 or 3: degree of the polynomial in the fast exp
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* The score of a masked key. Not -INFINITY: -ffast-math assumes there are no infinities. */
#define MASKED ((ACC)-1e30)

#if EXP_DEGREE > 0
/* exp(x) for x <= 0 as 2^n * p(f), with t = x*log2(e) = n + f, n = trunc(t), f in (-1, 0].
 * p fits 2^f on [-1, 0] with p(0) = 1 exactly (relative error 2.2e-3 for degree 2, 9e-5 for
 * degree 3): the online softmax rescales by exp(0) whenever a tile leaves the row max unchanged,
 * and any error there would compound over the tiles. Branch-free, so its loops vectorize. */
static inline float fast_exp(float x) {
    float t = x * 1.44269504f;
    t = t < -126.0f ? -126.0f : t; /* 2^-126 is the smallest normal float: close enough to 0 */
    int32_t n = (int32_t)t;
    float f = t - (float)n;
#if EXP_DEGREE == 2
    float p = 1.0f + f * (0.67242828f + f * 0.17353739f);
#else
    float p = 1.0f + f * (0.69158771f + f * (0.23115955f + f * 0.039616645f));
#endif
    int32_t bits = (n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return scale * p;
}
#define EXP(x) ((ACC)fast_exp((float)(x)))
#else
#define EXP(x) _Generic((ACC)0, float: expf, double: exp)(x)
#endif

/* One query tile's running state. */
typedef struct {
    ACC q[BLOCK_M][HEAD_DIM];        /* the query rows, pre-multiplied by the scale */
    ACC kt[HEAD_DIM][BLOCK_N];       /* the key tile, transposed so scores vectorize over keys */
    ACC s[BLOCK_M][BLOCK_N];         /* scores, then probabilities */
    ACC acc[BLOCK_M][HEAD_DIM];      /* unnormalized output rows */
    ACC row_max[BLOCK_M], row_sum[BLOCK_M];
} Tile;

static void load_queries(Tile *t, const float *q, int rows, ACC scale) {
    for (int i = 0; i < rows; i++) {
        for (int d = 0; d < HEAD_DIM; d++) t->q[i][d] = (ACC)q[i * HEAD_DIM + d] * scale;
        t->row_max[i] = MASKED;
        t->row_sum[i] = 0;
        memset(t->acc[i], 0, sizeof t->acc[i]);
    }
}

/* Keys past `cols` become zero columns; their scores are masked in compute_scores. */
static void load_keys(Tile *t, const float *k, int cols) {
    for (int d = 0; d < HEAD_DIM; d++)
        for (int j = 0; j < BLOCK_N; j++) t->kt[d][j] = j < cols ? (ACC)k[j * HEAD_DIM + d] : 0;
}

static void compute_scores(Tile *t, int rows, int cols, int m0, int n0) {
    for (int i = 0; i < rows; i++) {
        ACC *s = t->s[i];
        const ACC *q = t->q[i];
        for (int j = 0; j < BLOCK_N; j++) s[j] = 0;
        int d = 0;
        /* UNROLL steps of D per pass over the row of scores: one load and store of s[j] per
         * UNROLL multiply-adds instead of per one. */
        for (; d + UNROLL <= HEAD_DIM; d += UNROLL)
            for (int j = 0; j < BLOCK_N; j++) {
                ACC sum = s[j];
                for (int u = 0; u < UNROLL; u++) sum += q[d + u] * t->kt[d + u][j];
                s[j] = sum;
            }
        for (; d < HEAD_DIM; d++)
            for (int j = 0; j < BLOCK_N; j++) s[j] += q[d] * t->kt[d][j];
        /* Keys at or past `last` are masked: padding, or (causal) after query m0 + i. With
         * BLOCK_N < BLOCK_M a key tile can start after a row's query (m0 + i < n0): every key
         * of that row is masked, and `last` must not go below 0 (s[-1] is another row's). */
        int last = CAUSAL ? MAX(0, MIN(cols, m0 + i - n0 + 1)) : cols;
        for (int j = last; j < BLOCK_N; j++) s[j] = MASKED;
    }
}

/* Online softmax: rescale what was accumulated to the new row max, then add this tile's P V. */
static void accumulate(Tile *t, const float *v, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        ACC *s = t->s[i];
        ACC tile_max = t->row_max[i];
        for (int j = 0; j < cols; j++) tile_max = s[j] > tile_max ? s[j] : tile_max;
        ACC alpha = EXP(t->row_max[i] - tile_max);
        ACC sum = 0;
        for (int j = 0; j < BLOCK_N; j++) {
            s[j] = EXP(s[j] - tile_max);
            sum += s[j];
        }
        t->row_max[i] = tile_max;
        t->row_sum[i] = t->row_sum[i] * alpha + sum;
        ACC *acc = t->acc[i];
        for (int d = 0; d < HEAD_DIM; d++) acc[d] *= alpha;
        int j = 0;
        /* UNROLL keys per pass over the output row (unroll-and-jam), as in compute_scores. */
        for (; j + UNROLL <= cols; j += UNROLL)
            for (int d = 0; d < HEAD_DIM; d++) {
                ACC sum = acc[d];
                for (int u = 0; u < UNROLL; u++) sum += s[j + u] * (ACC)v[(j + u) * HEAD_DIM + d];
                acc[d] = sum;
            }
        for (; j < cols; j++)
            for (int d = 0; d < HEAD_DIM; d++) acc[d] += s[j] * (ACC)v[j * HEAD_DIM + d];
    }
}

static void store_outputs(const Tile *t, float *o, int rows) {
    for (int i = 0; i < rows; i++) {
        ACC inv = (ACC)1 / t->row_sum[i];
        for (int d = 0; d < HEAD_DIM; d++) o[i * HEAD_DIM + d] = (float)(t->acc[i][d] * inv);
    }
}

/* q, k, v, o point at one (batch, head): [seq, HEAD_DIM]. */
static void attend_tile(const float *q, const float *k, const float *v, float *o, int seq, int m0,
                        ACC scale) {
    Tile t;
    int rows = MIN(BLOCK_M, seq - m0);
    /* Causal: keys past the tile's last query are masked for every row, so stop there. */
    int key_end = CAUSAL ? m0 + rows : seq;
    load_queries(&t, q + (int64_t)m0 * HEAD_DIM, rows, scale);
    for (int n0 = 0; n0 < key_end; n0 += BLOCK_N) {
        int cols = MIN(BLOCK_N, key_end - n0);
        load_keys(&t, k + (int64_t)n0 * HEAD_DIM, cols);
        compute_scores(&t, rows, cols, m0, n0);
        accumulate(&t, v + (int64_t)n0 * HEAD_DIM, rows, cols);
    }
    store_outputs(&t, o + (int64_t)m0 * HEAD_DIM, rows);
}

void attention_fwd(const float *q, const float *k, const float *v, float *o, int32_t batch,
                   int32_t heads, int32_t seq, float scale, int32_t group) {
    int64_t tiles = (seq + BLOCK_M - 1) / BLOCK_M;
    int64_t work = (int64_t)batch * heads * tiles;
    /* Dynamic: causal tiles near the end of the sequence cost more than those at the start. */
    #pragma omp parallel for num_threads(THREADS) schedule(dynamic, 1)
    for (int64_t w = 0; w < work; w++) {
        int64_t head = w / tiles;
        int m0 = (int)(w % tiles) * BLOCK_M;
        int64_t offset = head * seq * HEAD_DIM, kv_offset = head / group * seq * HEAD_DIM;
        attend_tile(q + offset, k + kv_offset, v + kv_offset, o + offset, seq, m0, (ACC)scale);
    }
}
