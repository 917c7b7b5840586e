/* int4 weight-only products with int8 activations: y (N) = x (K) @ dequantized(W)^T.

   Weights: 4-bit codes q in 0..15, one bf16 scale s (and, asymmetric, one bf16 minimum m) per
   group of G weights along K and per output row; w = s * q + m, or s * (q - 8) when symmetric.
   Each block of 16 output rows is one sequential stream of 64-byte chunks, one per 8 k: byte
   4r + i of a chunk holds row r's code for k + i in its low nibble and for k + 4 + i in its
   high nibble, so one load and two masks give two vectors of 16 rows x 4 k, what a
   u8 x s8 dot-product instruction (AVX-512 VNNI, AVX-VNNI, or two multiply-adds) sums per lane.
   Scales and minimums: [N/16][K/G][16] bf16 each.

   The activation row is quantized per group of G to int8 (scale = max |x| / 127), so each
   group's integer sum needs one conversion and two multiply-adds per 16 rows:
     sum_k w x = s * xs * sum(q * xq) + m * xs * sum(xq). */
#include <math.h>
#include <stdlib.h>
#include <omp.h>

#include "simd.h"

#define PREFETCH 2048      /* bytes ahead in each weight stream (1024: 5% slower) */
#define SCALE_PREFETCH 512 /* scales ahead in each scale stream (1 KB): 1.5x -> 1.75x int8 */
#define STREAMS 4          /* 16-row blocks one thread reads at once */

const char* q4_simd(void) { return SIMD_NAME; }

static inline float load_x(const void* x, int bf16, int64_t k) {
  return bf16 ? bf16_to_f32(((const uint16_t*)x)[k]) : ((const float*)x)[k];
}

/* xq (Kp int8) and, per group, xs (its scale) and xm (scale * sum of its codes); x is zero
   past K. */
static void quantize_x(const void* x, int bf16, int64_t K, int64_t Kp, int64_t G, int8_t* xq,
                       float* xs, float* xm) {
  for (int64_t g = 0; g < Kp / G; g++) {
    float amax = 0.f;
    for (int64_t k = g * G; k < (g + 1) * G && k < K; k++) {
      float v = load_x(x, bf16, k);
      amax = v > amax ? v : (-v > amax ? -v : amax);
    }
    const float scale = amax / 127.f, inv = amax > 0.f ? 127.f / amax : 0.f;
    int32_t sum = 0;
    for (int64_t k = g * G; k < (g + 1) * G; k++) {
      float v = k < K ? load_x(x, bf16, k) * inv : 0.f;
      int32_t q = (int32_t)(v + (v >= 0.f ? 0.5f : -0.5f));
      q = q > 127 ? 127 : (q < -127 ? -127 : q);
      xq[k] = (int8_t)q;
      sum += q;
    }
    xs[g] = scale;
    xm[g] = scale * (float)sum;
  }
}

static inline void store16(void* y, int bf16, int64_t n, vf v) {
  if (bf16) vstore_bf16((uint16_t*)y + n, v);
  else vstore((float*)y + n, v);
}

/* Blocks b0..b1 for one quantized row, S streams at once: stream s walks its own run of
   consecutive blocks (s * L .. s * L + L), so each stream stays one long sequential read that
   the prefetch runs ahead in, across block boundaries too. */
static inline __attribute__((always_inline)) void gemv_blocks_s(
    const int S, const int8_t* xq, const float* xs, const float* xm, const uint8_t* wp,
    const uint16_t* scales, const uint16_t* mins, void* y, int bf16, int64_t Kp, int64_t G,
    int64_t b0, int64_t L) {
  const int64_t KG = Kp / G;
  const vi low = vi_set1(0x0f0f0f0f);
  for (int64_t i = 0; i < L; i++) {
    int64_t blk[STREAMS];
    for (int s = 0; s < S; s++) blk[s] = b0 + s * L + i;
    vf acc[STREAMS];
    for (int s = 0; s < S; s++) acc[s] = vzero();
    for (int64_t g = 0; g < KG; g++) {
      /* Two chunks (16 k) per step, four accumulators per block: more sums in flight. */
      vi acc0[STREAMS], acc1[STREAMS], acc2[STREAMS], acc3[STREAMS];
      for (int s = 0; s < S; s++) acc0[s] = acc1[s] = acc2[s] = acc3[s] = vi_zero();
      for (int64_t k = g * G; k < (g + 1) * G; k += 16) {
        int32_t x4[4];
        memcpy(x4, xq + k, 16);
        const vi xv0 = vi_set1(x4[0]), xv1 = vi_set1(x4[1]);
        const vi xv2 = vi_set1(x4[2]), xv3 = vi_set1(x4[3]);
#pragma GCC unroll 4
        for (int s = 0; s < S; s++) {
          const uint8_t* p = wp + blk[s] * Kp * 8 + k * 8;
          PREFETCH_T0(p + PREFETCH);
          PREFETCH_T0(p + PREFETCH + 64);
          const vi v0 = vi_load(p), v1 = vi_load(p + 64);
          acc0[s] = dpbusd(acc0[s], vi_and(v0, low), xv0);
          acc1[s] = dpbusd(acc1[s], vi_and(vi_srli16(v0, 4), low), xv1);
          acc2[s] = dpbusd(acc2[s], vi_and(v1, low), xv2);
          acc3[s] = dpbusd(acc3[s], vi_and(vi_srli16(v1, 4), low), xv3);
        }
      }
      const vf gx = vset1(xs[g]), gm = vset1(xm[g]);
      for (int s = 0; s < S; s++) {
        PREFETCH_T0(scales + (blk[s] * KG + g) * 16 + SCALE_PREFETCH);
        if (mins) PREFETCH_T0(mins + (blk[s] * KG + g) * 16 + SCALE_PREFETCH);
      }
      for (int s = 0; s < S; s++) {
        const vf dot = vi_to_vf(vi_add(vi_add(acc0[s], acc1[s]), vi_add(acc2[s], acc3[s])));
        const vf sc = vload_bf16(scales + (blk[s] * KG + g) * 16);
        if (mins) {
          acc[s] = vfma(dot, vmul(sc, gx), acc[s]);
          acc[s] = vfma(vload_bf16(mins + (blk[s] * KG + g) * 16), gm, acc[s]);
        } else {
          /* s * (q - 8): s * (xs * dot - 8 * xm) */
          acc[s] = vfma(sc, vfma(dot, gx, vmul(gm, vset1(-8.f))), acc[s]);
        }
      }
    }
    for (int s = 0; s < S; s++) store16(y, bf16, blk[s] * 16, acc[s]);
  }
}

/* N a multiple of 16, Kp (the weights' padded K) of G, G of 16; x has K <= Kp values. Returns
   0, or -1 when the work buffer cannot be allocated. */
int q4_gemv(const void* x, int bf16, int64_t K, const uint8_t* wp, const uint16_t* scales,
            const uint16_t* mins, void* y, int64_t N, int64_t Kp, int64_t G, int nthreads) {
  const int64_t KG = Kp / G;
  int8_t* xq = (int8_t*)malloc((size_t)Kp + 2 * sizeof(float) * (size_t)KG);
  if (!xq) return -1;
  float* xs = (float*)(xq + Kp); /* Kp is a multiple of 16: aligned for floats */
  float* xm = xs + KG;
  quantize_x(x, bf16, K, Kp, G, xq, xs, xm);
  const int64_t NB = N / 16;
#pragma omp parallel num_threads(nthreads)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t b0 = NB * t / T, b1 = NB * (t + 1) / T;
    const int64_t L = (b1 - b0) / STREAMS, mid = b0 + L * STREAMS;
    gemv_blocks_s(STREAMS, xq, xs, xm, wp, scales, mins, y, bf16, Kp, G, b0, L);
    gemv_blocks_s(1, xq, xs, xm, wp, scales, mins, y, bf16, Kp, G, mid, b1 - mid);
  }
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
void q4_dequant_t(const uint8_t* wp, const uint16_t* scales, const uint16_t* mins, void* wt,
                  int bf16, int64_t ldw, int64_t n0, int64_t n1, int64_t Kp, int64_t G,
                  int nthreads) {
  const int64_t KG = Kp / G, first = n0 / 16, last = n1 / 16, steps = (last - first + 3) / 4;
  const vi low = vi_set1(0x0f0f0f0f), byte = vi_set1(0xff);
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t step = 0; step < steps; step++) {
    const int64_t b = first + 4 * step;
    const int nb = last - b < 4 ? (int)(last - b) : 4;
    for (int64_t g = 0; g < KG; g++) {
      vf sc[4], m[4];
      for (int j = 0; j < nb; j++) {
        sc[j] = vload_bf16(scales + ((b + j) * KG + g) * 16);
        m[j] = mins ? vload_bf16(mins + ((b + j) * KG + g) * 16) : vmul(sc[j], vset1(-8.f));
      }
      for (int64_t k = g * G; k < (g + 1) * G; k += 8) {
        vi codes[4][2];
        for (int j = 0; j < nb; j++) {
          const vi v = vi_load(wp + (b + j) * Kp * 8 + k * 8);
          codes[j][0] = vi_and(v, low);
          codes[j][1] = vi_and(vi_srli16(v, 4), low);
        }
        for (int half = 0; half < 2; half++)
          for (int i = 0; i < 4; i++) {
            const int64_t row = (k + 4 * half + i) * ldw + (b * 16 - n0);
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

/* Quantize rows r0..r1 of w (N x K, bf16 or fp32, row-major) into the packed layout: codes
   (NB x Kp/8 x 16 x 4 bytes), scales and, asymmetric, mins (NB x Kp/G x 16 bf16). The numbers
   are those of quantize._quantize_groups (fp32 arithmetic, bf16 scales, codes from the
   rounded scales); r0 a multiple of 16; rows past N and inputs past K are zero. */
void q4_quantize(const void* w, int bf16, int64_t N, int64_t K, int64_t Kp, int64_t G,
                 int symmetric, uint8_t* codes, uint16_t* scales, uint16_t* mins, int64_t r0,
                 int64_t r1, int nthreads) {
  const int64_t KG = Kp / G;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t r = r0; r < r1; r++) {
    float row[G];
    const int64_t b = r / 16, lane = r % 16;
    if (r >= N) { /* padding rows: code 0, scale 0, as PyTorch's packing pads them */
      for (int64_t c = 0; c < Kp / 8; c++) memset(codes + ((b * (Kp / 8) + c) * 16 + lane) * 4, 0, 4);
      for (int64_t g = 0; g < KG; g++) {
        scales[(b * KG + g) * 16 + lane] = 0;
        if (!symmetric) mins[(b * KG + g) * 16 + lane] = 0;
      }
      continue;
    }
    for (int64_t g = 0; g < KG; g++) {
      for (int64_t j = 0; j < G; j++) {
        const int64_t k = g * G + j;
        row[j] = k < K ? load_x(w, bf16, r * K + k) : 0.f;
      }
      float scale, lo = 0.f;
      if (symmetric) {
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
        mins[(b * KG + g) * 16 + lane] = f32_to_bf16(lo);
      }
      scales[(b * KG + g) * 16 + lane] = f32_to_bf16(scale);
      const float div = scale == 0.f ? 1.f : scale;
      for (int64_t j = 0; j < G; j++) {
        float q = symmetric ? round_even(row[j] / div) + 8.f : round_even((row[j] - lo) / div);
        q = q < 0.f ? 0.f : (q > 15.f ? 15.f : q);
        const int64_t k = g * G + j, chunk = k / 8, i = k % 8;
        uint8_t* byte = codes + ((b * (Kp / 8) + chunk) * 16 + lane) * 4 + (i % 4);
        const uint8_t code = (uint8_t)q;
        *byte = i < 4 ? (uint8_t)((*byte & 0xf0) | code) : (uint8_t)((*byte & 0x0f) | (code << 4));
      }
    }
  }
}
