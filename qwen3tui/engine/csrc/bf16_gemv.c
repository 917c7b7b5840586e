/* One-row bf16 products (decode): y (N) = W (N x K) @ x (K), fp32 accumulation.

   Pure memory streaming: the plain (out, in) matrix is read eight rows at a time with software
   prefetch, one AVX512-BF16 dot-product instruction per 32 weights where the CPU has it (shifts
   and FMAs where not). bf16_gemv_vnni64 reads oneDNN's own packed layout instead
   ([N/64][K/2][64][2], its choice on AMX machines), so one packed copy serves oneDNN's prefill
   matmuls and this kernel's decode products. See bf16_cpu_kernel.py for the measurements. */
#include <omp.h>

#include "simd.h"

#define ROWS 8           /* rows read at once: eight streams keep enough lines in flight */
#define PREFETCH 512     /* bytes ahead in each row */
#define PREFETCH4 1024   /* bytes ahead in each packed stream */
#define VBLOCK 64        /* rows per block of oneDNN's packed layout */

/* x as 32 bf16 values, in whatever registers dot32 wants */
#if defined(__AVX512F__) && defined(__AVX512BW__)
typedef __m512i x_t;
static inline x_t load_x(const uint16_t* p) { return _mm512_loadu_si512(p); }
static inline x_t broadcast_pair(uint32_t pair) { return _mm512_set1_epi32((int)pair); }
/* acc += x[0:32] . w[0:32], as 16 lanes of bf16 pairs */
static inline vf dot32(vf acc, x_t x, const uint16_t* p) {
  __m512i w = _mm512_loadu_si512(p);
#ifdef __AVX512BF16__
  return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)w);
#else
  const __m512i hi = _mm512_set1_epi32((int)0xffff0000);
  acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(x, 16)),
                        _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), acc);
  return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(x, hi)),
                         _mm512_castsi512_ps(_mm512_and_si512(w, hi)), acc);
#endif
}
#else
typedef struct { __m256i a, b; } x_t;
static inline x_t load_x(const uint16_t* p) {
  x_t r = {_mm256_loadu_si256((const __m256i*)p), _mm256_loadu_si256((const __m256i*)(p + 16))};
  return r;
}
static inline x_t broadcast_pair(uint32_t pair) {
  x_t r = {_mm256_set1_epi32((int)pair), _mm256_set1_epi32((int)pair)};
  return r;
}
static inline __m256 dot16(__m256 acc, __m256i x, __m256i w) {
  const __m256i hi = _mm256_set1_epi32((int)0xffff0000);
  acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x, 16)),
                        _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), acc);
  return _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(x, hi)),
                         _mm256_castsi256_ps(_mm256_and_si256(w, hi)), acc);
}
static inline vf dot32(vf acc, x_t x, const uint16_t* p) {
  vf r = {dot16(acc.a, x.a, _mm256_loadu_si256((const __m256i*)p)),
          dot16(acc.b, x.b, _mm256_loadu_si256((const __m256i*)(p + 16)))};
  return r;
}
#endif

/* 16 rows x one k pair, interleaved (64 bytes): acc[r] += x0 w[r][0] + x1 w[r][1] */
static inline vf dot_pairs(vf acc, uint32_t xpair, const uint16_t* p) {
  return dot32(acc, broadcast_pair(xpair), p);
}

static float row_tail(const uint16_t* x, const uint16_t* w, int64_t k0, int64_t K) {
  float s = 0.f;
  for (int64_t k = k0; k < K; k++) s += bf16_to_f32(x[k]) * bf16_to_f32(w[k]);
  return s;
}

const char* bf16_simd(void) { return SIMD_NAME; }

/* R rows at once: row r of the set is row r0 + r * L + i of the caller's range, so each of the
   R streams walks L consecutive rows, one long sequential read that the prefetch runs ahead in
   across row ends (eight adjacent rows left the first PREFETCH bytes of every row to DRAM
   latency). */
static inline __attribute__((always_inline)) void gemv_rows(
    const int R, const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t K, int64_t r0,
    int64_t L) {
  const int64_t K32 = K / 32 * 32;
  for (int64_t i = 0; i < L; i++) {
    const uint16_t* row[ROWS];
    for (int r = 0; r < R; r++) row[r] = w + (r0 + r * L + i) * K;
    vf acc[ROWS];
    for (int r = 0; r < R; r++) acc[r] = vzero();
    for (int64_t k = 0; k < K32; k += 32) {
      x_t xv = load_x(x + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) {
        PREFETCH_T0((const char*)(row[r] + k) + PREFETCH);
        acc[r] = dot32(acc[r], xv, row[r] + k);
      }
    }
    for (int r = 0; r < R; r++)
      y[r0 + r * L + i] = f32_to_bf16(vsum(acc[r]) + row_tail(x, row[r], K32, K));
  }
}

/* y (N) = w (N x K, row-major) @ x (K); bf16 in and out. */
void bf16_gemv(const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t N, int64_t K,
               int nthreads) {
  const chunks_t ch = chunks_of(N, K * 2, ROWS, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t c = 0; c < ch.n; c++) {
    const int64_t r0 = chunk_begin(ch, c), r1 = chunk_begin(ch, c + 1), L = (r1 - r0) / ROWS;
    gemv_rows(ROWS, x, w, y, K, r0, L);
    gemv_rows(1, x, w, y, K, r0 + L * ROWS, r1 - r0 - L * ROWS);
  }
}

/* The same product on [N/64][K/2][64][2]: each block of 64 rows is one stream of k pairs,
   256 bytes (4 lines) per pair. Two blocks at once, two k-pair accumulators each (dot-product
   latency). N a multiple of 64, K of 4. */
void bf16_gemv_vnni64(const uint16_t* x, const uint16_t* wp, uint16_t* y, int64_t N, int64_t K,
                      int nthreads) {
  const uint32_t* xp = (const uint32_t*)x;
  const int64_t NB = N / VBLOCK, KP = K / 2;
  const chunks_t ch = chunks_of(NB, VBLOCK * K * 2, 2, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t c = 0; c < ch.n; c++) {
    const int64_t b1 = chunk_begin(ch, c + 1);
    for (int64_t b = chunk_begin(ch, c); b < b1; b += 2) {
      const int nb = b + 2 <= b1 ? 2 : 1;
      vf acc[2][2][4];
      for (int s = 0; s < 2; s++)
        for (int j = 0; j < 2; j++)
          for (int g = 0; g < 4; g++) acc[s][j][g] = vzero();
      if (nb == 2) {
        for (int64_t kp = 0; kp < KP; kp += 2) {
#pragma GCC unroll 2
          for (int s = 0; s < 2; s++) {
            const uint16_t* p = wp + (b + s) * VBLOCK * K + kp * 128;
            for (int line = 0; line < 8; line++) PREFETCH_T0((const char*)p + PREFETCH4 + line * 64);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
              acc[s][0][g] = dot_pairs(acc[s][0][g], xp[kp], p + g * 32);
              acc[s][1][g] = dot_pairs(acc[s][1][g], xp[kp + 1], p + 128 + g * 32);
            }
          }
        }
      } else { /* the last block alone, summed in the same order as a pair's */
        for (int64_t kp = 0; kp < KP; kp++) {
          const uint16_t* p = wp + b * VBLOCK * K + kp * 128;
          for (int g = 0; g < 4; g++)
            acc[0][kp & 1][g] = dot_pairs(acc[0][kp & 1][g], xp[kp], p + g * 32);
        }
      }
      for (int s = 0; s < nb; s++)
        for (int g = 0; g < 4; g++)
          vstore_bf16(y + (b + s) * VBLOCK + g * 16, vadd(acc[s][0][g], acc[s][1][g]));
    }
  }
}
