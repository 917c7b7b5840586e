/* int4 weight-only products with int8 activations: y (N) = x (K) @ dequantized(W)^T.

   Weights: 4-bit codes q in 0..15, one bf16 scale s (and, asymmetric, one bf16 minimum m) per
   group of G weights along K and per output row; w = s * q + m, or s * (q - 8) when symmetric.
   Each block of 16 output rows is one sequential stream of units, one unit per two groups
   (2G inputs): first 2G/8 chunks of 64 bytes, one per 8 k (byte 4r + i of a chunk holds row r's
   code for k + i in its low nibble and for k + 4 + i in its high nibble, so one load and two
   masks give two vectors of 16 rows x 4 k, what a u8 x s8 dot-product instruction - AVX-512
   VNNI, AVX-VNNI, or two multiply-adds - sums per lane), then one 64-byte line with the 16
   rows' bf16 scales of the unit's first group and then of its second, then (asymmetric) one
   line of minimums the same way. Scales beside their codes keep one stream per block: read as
   a separate array, one more stream per block cost 13-15% of the speed (measured, 1 thread).

   The activation row is quantized per group of G to int8 (quantize_x in simd.h), so each
   group's integer sum needs one conversion and two multiply-adds per 16 rows:
     sum_k w x = s * xs * sum(q * xq) + m * xs * sum(xq). */
#include <math.h>
#include <stdlib.h>
#include <omp.h>

#include "simd.h"

#define PREFETCH 2048 /* bytes ahead in each weight stream (1024: 5% slower) */
#define STREAMS 4     /* 16-row blocks one thread reads at once */
#define STACK_K 16384 /* activations up to this long are quantized on the stack, not malloc'd */
/* Activation rows one q4_gemm call takes: each call reads and unpacks the weights once, so
   64 rows a call ran 1.2-1.5x faster than 8 at 16 to 256 rows (Qwen3-1.7B layers, 2-core Zen 4). */
#define Q4_GEMM_ROWS 64
#define Q4_MAX_GROUP 256 /* inputs per scale q4_gemm takes (its unpacked codes stay in L1) */

const char* q4_simd(void) { return SIMD_NAME; }

/* Bytes of one unit (two groups of G inputs for 16 rows). */
static inline int64_t unit_bytes(int64_t G, int has_mins) { return 16 * G + (has_mins ? 128 : 64); }

static inline void store16(void* y, int bf16, int64_t n, vf v) {
  if (bf16) vstore_bf16((uint16_t*)y + n, v);
  else vstore((float*)y + n, v);
}

/* One group's integer sums for 16 rows, added one 16-input step at a time: four code vectors
   (16 rows x 4 inputs each) times the four broadcast int8 quadruples of the activations. */
typedef struct {
#ifdef DPBUSD_NATIVE
  vi a0, a1, a2, a3; /* four accumulators: more sums in flight */
#else
  vi a0, a1; /* a0 the int32 total; a1 the int16 pair sums of a step awaiting the next */
#endif
} group_sum;

static inline __attribute__((always_inline)) group_sum sum_zero(void) {
#ifdef DPBUSD_NATIVE
  group_sum z = {vi_zero(), vi_zero(), vi_zero(), vi_zero()};
#else
  group_sum z = {vi_zero(), vi_zero()};
#endif
  return z;
}

/* The step at input k of a group of G. */
static inline __attribute__((always_inline)) void sum_step(group_sum* a, vi c0, vi c1, vi c2,
                                                           vi c3, vi xv0, vi xv1, vi xv2,
                                                           vi xv3, int64_t k, int64_t G) {
#ifdef DPBUSD_NATIVE
  (void)k, (void)G;
  a->a0 = dpbusd(a->a0, c0, xv0);
  a->a1 = dpbusd(a->a1, c1, xv1);
  a->a2 = dpbusd(a->a2, c2, xv2);
  a->a3 = dpbusd(a->a3, c3, xv3);
#else
  /* Without a dpbusd instruction: the u8 x s8 pair sums (|.| <= 2 * 15 * 127) of two steps,
     eight a lane, are added in int16 (|.| <= 30,480: exact) and widened to int32 once, not
     each alone: the same integers, fewer instructions (1 thread x1.14 over widening each,
     x1.07 over widening per step; measured on AVX2). */
  const vi d = add16(add16(maddubs16(c0, xv0), maddubs16(c1, xv1)),
                     add16(maddubs16(c2, xv2), maddubs16(c3, xv3)));
  if (k & 16) a->a0 = widen_add16(a->a0, add16(a->a1, d));
  else if (k + 16 == G) a->a0 = widen_add16(a->a0, d);
  else a->a1 = d;
#endif
}

static inline __attribute__((always_inline)) vf sum_total(group_sum a) {
#ifdef DPBUSD_NATIVE
  return vi_to_vf(vi_add(vi_add(a.a0, a.a1), vi_add(a.a2, a.a3)));
#else
  return vi_to_vf(a.a0);
#endif
}

/* Blocks for one quantized row, S streams at once: stream s walks its own run of consecutive
   blocks (b0 + s * L .. b0 + s * L + L), so each stream stays one long sequential read that
   the prefetch runs ahead in, across block boundaries too. */
static inline __attribute__((always_inline)) void gemv_blocks_s(
    const int S, const int8_t* xq, const float* xs, const float* xm, const uint8_t* wp,
    int has_mins, void* y, int bf16, int64_t Kp, int64_t G, int64_t b0, int64_t L) {
  const int64_t KU = Kp / (2 * G), U = unit_bytes(G, has_mins), block_bytes = KU * U;
  const vi low = vi_set1(0x0f0f0f0f);
  const vf minus8 = vset1(-8.f);
  for (int64_t i = 0; i < L; i++) {
    const uint8_t* base[STREAMS];
    for (int s = 0; s < S; s++) base[s] = wp + (b0 + s * L + i) * block_bytes;
    vf acc[STREAMS];
    for (int s = 0; s < S; s++) acc[s] = vzero();
    for (int64_t u = 0; u < KU; u++) {
      for (int64_t h = 0; h < 2; h++) {
        const int64_t g = 2 * u + h;
        group_sum sums[STREAMS];
        for (int s = 0; s < S; s++) sums[s] = sum_zero();
        for (int64_t k = 0; k < G; k += 16) {
          int32_t x4[4];
          memcpy(x4, xq + g * G + k, 16);
          const vi xv0 = vi_set1(x4[0]), xv1 = vi_set1(x4[1]);
          const vi xv2 = vi_set1(x4[2]), xv3 = vi_set1(x4[3]);
#pragma GCC unroll 4
          for (int s = 0; s < S; s++) {
            const uint8_t* p = base[s] + u * U + (h * G + k) * 8;
            PREFETCH_T0(p + PREFETCH);
            PREFETCH_T0(p + PREFETCH + 64);
            const vi v0 = vi_load(p), v1 = vi_load(p + 64);
            const vi c0 = vi_and(v0, low), c1 = vi_and(vi_srli16(v0, 4), low);
            const vi c2 = vi_and(v1, low), c3 = vi_and(vi_srli16(v1, 4), low);
            sum_step(&sums[s], c0, c1, c2, c3, xv0, xv1, xv2, xv3, k, G);
          }
        }
        const vf gx = vset1(xs[g]), gm = vset1(xm[g]);
        for (int s = 0; s < S; s++) {
          const vf dot = sum_total(sums[s]);
          const uint16_t* sc = (const uint16_t*)(base[s] + u * U + 16 * G) + 16 * h;
          if (has_mins) {
            acc[s] = vfma(dot, vmul(vload_bf16(sc), gx), acc[s]);
            acc[s] = vfma(vload_bf16(sc + 32), gm, acc[s]);
          } else {
            /* s * (q - 8): s * (xs * dot - 8 * xm) */
            acc[s] = vfma(vload_bf16(sc), vfma(dot, gx, vmul(gm, minus8)), acc[s]);
          }
        }
      }
    }
    for (int s = 0; s < S; s++) store16(y, bf16, (b0 + s * L + i) * 16, acc[s]);
  }
}

/* Chunk c of a quantized row's product (`ch` over the weight's 16-row blocks): its blocks
   in STREAMS runs at once, then the leftover blocks one at a time. */
static inline __attribute__((always_inline)) void gemv_chunk(
    chunks_t ch, int64_t c, const int8_t* xq, const float* xs, const float* xm, const uint8_t* wp,
    int has_mins, void* y, int bf16, int64_t Kp, int64_t G) {
  const int64_t b0 = chunk_begin(ch, c), b1 = chunk_begin(ch, c + 1);
  const int64_t L = (b1 - b0) / STREAMS, mid = b0 + L * STREAMS;
  gemv_blocks_s(STREAMS, xq, xs, xm, wp, has_mins, y, bf16, Kp, G, b0, L);
  gemv_blocks_s(1, xq, xs, xm, wp, has_mins, y, bf16, Kp, G, mid, b1 - mid);
}

/* N a multiple of 16, Kp (the weights' padded K) of 2G, G of 16; x has K <= Kp values.
   Returns 0, or -1 when the work buffer cannot be allocated. */
int q4_gemv(const void* x, int bf16, int64_t K, const uint8_t* wp, int has_mins, void* y,
            int64_t N, int64_t Kp, int64_t G, int nthreads) {
  const int64_t KG = Kp / G;
  float stack_xs[2 * STACK_K / 16];
  int8_t stack_xq[STACK_K];
  int8_t* xq = stack_xq;
  float* xs = stack_xs;
  if (Kp > STACK_K) {
    xq = (int8_t*)malloc((size_t)Kp + 2 * sizeof(float) * (size_t)KG);
    if (!xq) return -1;
    xs = (float*)(xq + Kp); /* Kp is a multiple of 16: aligned for floats */
  }
  float* xm = xs + KG;
  quantize_x(x, bf16, K, Kp, G, xq, xs, xm, NULL);
  const chunks_t ch = chunks_of(N / 16, Kp / (2 * G) * unit_bytes(G, has_mins), STREAMS, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t c = 0; c < ch.n; c++) gemv_chunk(ch, c, xq, xs, xm, wp, has_mins, y, bf16, Kp, G);
  if (xq != stack_xq) free(xq);
  return 0;
}

/* q4_gemv of `count` weights of one shape, each with its own activation row x[i] and output
   y[i], in one parallel region: the routed experts of a mixture of experts, whose weights of a
   few MB each took ~1.45x the time as separate calls (each call's threads start and finish
   their streams again). Each output equals q4_gemv's bit for bit. The shape comes first, so a
   caller can bind it once. Returns 0, or -1 when the work buffer cannot be allocated. */
int q4_gemv_many(int bf16, int64_t K, int has_mins, int64_t N, int64_t Kp, int64_t G, int count,
                 const void* const* x, const uint8_t* const* wp, void* const* y, int nthreads) {
  const int64_t KG = Kp / G, row = Kp + 2 * (int64_t)sizeof(float) * KG;
  int8_t* work = (int8_t*)malloc((size_t)(count * row));
  if (!work) return -1;
  for (int i = 0; i < count; i++) {
    float* xs = (float*)(work + i * row + Kp); /* Kp is a multiple of 16: aligned for floats */
    quantize_x(x[i], bf16, K, Kp, G, work + i * row, xs, xs + KG, NULL);
  }
  const chunks_t ch = chunks_of(N / 16, Kp / (2 * G) * unit_bytes(G, has_mins), STREAMS, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t t = 0; t < count * ch.n; t++) {
    const int64_t i = t / ch.n;
    const int8_t* xq = work + i * row;
    const float* xs = (const float*)(xq + Kp);
    gemv_chunk(ch, t % ch.n, xq, xs, xs + KG, wp[i], has_mins, y[i], bf16, Kp, G);
  }
  free(work);
  return 0;
}

/* The sum over one group of codes (4 vectors per 16 k, unpacked) times an activation row's
   int8 group xg: the same integers gemv_blocks_s forms, in the same way. */
static inline __attribute__((always_inline)) vf group_dot(const vi* codes, const int8_t* xg,
                                                            int64_t G) {
  group_sum sums = sum_zero();
  for (int64_t k = 0, j = 0; k < G; k += 16, j += 4) {
    sum_step(&sums, codes[j], codes[j + 1], codes[j + 2], codes[j + 3], vi_bcast4(xg + k),
             vi_bcast4(xg + k + 4), vi_bcast4(xg + k + 8), vi_bcast4(xg + k + 12), k, G);
  }
  return sum_total(sums);
}

/* M activation rows over blocks b0..b1: each group's codes are unpacked once into a buffer in
   L1 that every row then reads, so the weights come from memory once for all M rows (the row
   loop read them once a row). Per row the numbers are gemv_blocks_s's, bit for bit. */
static inline __attribute__((always_inline)) void gemm_blocks(
    int M, const int8_t* xq, const float* xs, const float* xm, const uint8_t* wp, int has_mins,
    void* y, int bf16, int64_t ldy, int64_t Kp, int64_t G, int64_t b0, int64_t b1) {
  const int64_t KU = Kp / (2 * G), KG = Kp / G, U = unit_bytes(G, has_mins);
  const int64_t block_bytes = KU * U;
  const vi low = vi_set1(0x0f0f0f0f);
  const vf minus8 = vset1(-8.f);
  vi codes[4 * (Q4_MAX_GROUP / 16)];
  for (int64_t b = b0; b < b1; b++) {
    const uint8_t* base = wp + b * block_bytes;
    vf acc[Q4_GEMM_ROWS];
    for (int m = 0; m < M; m++) acc[m] = vzero();
    for (int64_t g = 0; g < KG; g++) {
      const int64_t u = g / 2, h = g % 2;
      for (int64_t k = 0, j = 0; k < G; k += 16, j += 4) {
        const uint8_t* p = base + u * U + (h * G + k) * 8;
        PREFETCH_T0(p + PREFETCH);
        PREFETCH_T0(p + PREFETCH + 64);
        const vi v0 = vi_load(p), v1 = vi_load(p + 64);
        codes[j] = vi_and(v0, low);
        codes[j + 1] = vi_and(vi_srli16(v0, 4), low);
        codes[j + 2] = vi_and(v1, low);
        codes[j + 3] = vi_and(vi_srli16(v1, 4), low);
      }
      const uint16_t* sc = (const uint16_t*)(base + u * U + 16 * G) + 16 * h;
      const vf scale = vload_bf16(sc), mins = has_mins ? vload_bf16(sc + 32) : vzero();
      for (int m = 0; m < M; m++) {
        const vf dot = group_dot(codes, xq + m * Kp + g * G, G);
        const vf gx = vset1(xs[m * KG + g]), gm = vset1(xm[m * KG + g]);
        if (has_mins) {
          acc[m] = vfma(dot, vmul(scale, gx), acc[m]);
          acc[m] = vfma(mins, gm, acc[m]);
        } else {
          acc[m] = vfma(scale, vfma(dot, gx, vmul(gm, minus8)), acc[m]);
        }
      }
    }
    for (int m = 0; m < M; m++) store16(y, bf16, m * ldy + b * 16, acc[m]);
  }
}

/* y (M x N) = x (M x K) @ W^T for 1 <= M <= Q4_GEMM_ROWS activation rows (prefill), each row
   equal to q4_gemv's; G at most Q4_MAX_GROUP. Returns 0, -1 when the work buffer cannot be
   allocated, -2 for arguments out of range. */
int q4_gemm(const void* x, int64_t M, int bf16, int64_t K, const uint8_t* wp, int has_mins,
            void* y, int64_t N, int64_t Kp, int64_t G, int nthreads) {
  if (M < 1 || M > Q4_GEMM_ROWS || G > Q4_MAX_GROUP) return -2;
  const int64_t KG = Kp / G;
  int8_t* xq = (int8_t*)malloc((size_t)(M * Kp) + 2 * sizeof(float) * (size_t)(M * KG));
  if (!xq) return -1;
  float* xs = (float*)(xq + M * Kp); /* Kp is a multiple of 16: aligned for floats */
  float* xm = xs + M * KG;
  const size_t row_bytes = (size_t)K * (bf16 ? 2 : 4);
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t m = 0; m < M; m++)
    quantize_x((const char*)x + m * row_bytes, bf16, K, Kp, G, xq + m * Kp, xs + m * KG,
               xm + m * KG, NULL);
  const int64_t NB = N / 16;
  const chunks_t ch = chunks_of(NB, Kp / (2 * G) * unit_bytes(G, has_mins), 1, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t c = 0; c < ch.n; c++)
    if (G == 64) /* the default groups: their codes stay in registers for every row */
      gemm_blocks((int)M, xq, xs, xm, wp, has_mins, y, bf16, N, Kp, 64, chunk_begin(ch, c),
                  chunk_begin(ch, c + 1));
    else
      gemm_blocks((int)M, xq, xs, xm, wp, has_mins, y, bf16, N, Kp, G, chunk_begin(ch, c),
                  chunk_begin(ch, c + 1));
  free(xq);
  return 0;
}

static inline void store16_at(void* wt, int bf16, int64_t at, vf v) {
  if (bf16) vstore_bf16((uint16_t*)wt + at, v);
  else vstore((float*)wt + at, v);
}

/* wt (Kp x (n1 - n0), row stride ldw) = (dequantized weight rows n0..n1)^T, what a prefill
   matmul reads; n0, n1 multiples of 16. Four blocks per step write 64 contiguous values of a
   row (one block at a time wrote a quarter of that and ran at half the speed). */
void q4_dequant_t(const uint8_t* wp, int has_mins, void* wt, int bf16, int64_t ldw, int64_t n0,
                  int64_t n1, int64_t Kp, int64_t G, int nthreads) {
  const int64_t KU = Kp / (2 * G), U = unit_bytes(G, has_mins), block_bytes = KU * U;
  const int64_t first = n0 / 16, last = n1 / 16, steps = (last - first + 3) / 4;
  const vi low = vi_set1(0x0f0f0f0f), byte = vi_set1(0xff);
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t step = 0; step < steps; step++) {
    const int64_t b = first + 4 * step;
    const int nb = last - b < 4 ? (int)(last - b) : 4;
    for (int64_t g = 0; g < 2 * KU; g++) {
      const int64_t u = g / 2, h = g % 2;
      vf sc[4], m[4];
      for (int j = 0; j < nb; j++) {
        const uint16_t* p = (const uint16_t*)(wp + (b + j) * block_bytes + u * U + 16 * G) + 16 * h;
        sc[j] = vload_bf16(p);
        m[j] = has_mins ? vload_bf16(p + 32) : vmul(sc[j], vset1(-8.f));
      }
      for (int64_t k = 0; k < G; k += 8) {
        vi codes[4][2];
        for (int j = 0; j < nb; j++) {
          const vi v = vi_load(wp + (b + j) * block_bytes + u * U + (h * G + k) * 8);
          codes[j][0] = vi_and(v, low);
          codes[j][1] = vi_and(vi_srli16(v, 4), low);
        }
        for (int half = 0; half < 2; half++)
          for (int i = 0; i < 4; i++) {
            const int64_t row = (g * G + k + 4 * half + i) * ldw + (b * 16 - n0);
            for (int j = 0; j < nb; j++) {
              const vf q = vi_to_vf(vi_and(vi_srli32(codes[j][half], 8 * i), byte));
              store16_at(wt, bf16, row + j * 16, vfma(q, sc[j], m[j]));
            }
          }
      }
    }
  }
}

static inline float round_even(float v) {
  /* Round half to even, as torch.round, without libm: exact for |v| < 2^22. */
  const float magic = 12582912.f; /* 1.5 * 2^23 */
  const float t = v + magic;
  return t - magic;
}

/* Quantize rows r0..r1 of w (N x K, bf16 or fp32, row-major) into the packed layout (see the
   top of this file). The numbers are those of quantize._quantize_groups (fp32 arithmetic, bf16
   scales, codes from the rounded scales); r0 a multiple of 16; rows past N and inputs past K
   are zero. */
void q4_quantize(const void* w, int bf16, int64_t N, int64_t K, int64_t Kp, int64_t G,
                 int symmetric, uint8_t* wp, int64_t r0, int64_t r1, int nthreads) {
  const int64_t KG = Kp / G, U = unit_bytes(G, !symmetric), block_bytes = Kp / (2 * G) * U;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t r = r0; r < r1; r++) {
    float row[G];
    const int64_t b = r / 16, lane = r % 16;
    uint8_t* blk = wp + b * block_bytes;
    for (int64_t g = 0; g < KG; g++) {
      uint8_t* unit = blk + (g / 2) * U;
      uint16_t* sp = (uint16_t*)(unit + 16 * G) + 16 * (g % 2) + lane;
      for (int64_t j = 0; j < G; j++) {
        const int64_t k = g * G + j;
        row[j] = r < N && k < K ? x_value(w, bf16, r * K + k) : 0.f;
      }
      float scale, lo = 0.f;
      if (r >= N) { /* padding rows: code 0, scale 0, as PyTorch's packing pads them */
        scale = 0.f;
        if (!symmetric) sp[32] = 0;
      } else if (symmetric) {
        float ext = row[0];
        for (int64_t j = 1; j < G; j++)
          if (fabsf(row[j]) > fabsf(ext)) ext = row[j];
        scale = bf16_to_f32(f32_to_bf16(ext / -8.f));
      } else {
        float hi = row[0];
        lo = row[0];
        for (int64_t j = 1; j < G; j++) {
          lo = row[j] < lo ? row[j] : lo;
          hi = row[j] > hi ? row[j] : hi;
        }
        scale = bf16_to_f32(f32_to_bf16((hi - lo) / 15.f));
        lo = bf16_to_f32(f32_to_bf16(lo));
        sp[32] = f32_to_bf16(lo);
      }
      sp[0] = f32_to_bf16(scale);
      const float div = scale == 0.f ? 1.f : scale;
      for (int64_t j = 0; j < G; j++) {
        float q = r >= N ? 0.f
                  : symmetric ? round_even(row[j] / div) + 8.f
                              : round_even((row[j] - lo) / div);
        q = q < 0.f ? 0.f : (q > 15.f ? 15.f : q);
        const int64_t i = j % 8;
        uint8_t* byte = unit + ((g % 2) * G + j - i) * 8 + lane * 4 + (i % 4);
        const uint8_t code = (uint8_t)q;
        *byte = i < 4 ? (uint8_t)((*byte & 0xf0) | code) : (uint8_t)((*byte & 0x0f) | (code << 4));
      }
    }
  }
}
