/* Many-row bf16 products (prefill) on CPUs without a bf16 matrix unit oneDNN can use (AVX2):
   Y (M x N) = X (M x K) @ W (N x K)^T, bf16 in and out, fp32 accumulation, each output rounded
   once.

   PyTorch has no fast bf16 GEMM there (its fallback ran at 10-20 GFLOP/s on a 2-core Zen 3 whose
   FMA units give ~185): this one reads the plain row-major weight the decode kernel reads (no
   packed copy) and turns its bf16 pairs into fp32 in registers: a 32-bit lane holds (w[2i],
   w[2i+1]), so a shift left by 16 gives the even k and a mask the odd k of eight lanes, two
   cheap integer ops per 16 weights that run beside the FMAs. X is converted once per call into
   fp32 in the same even/odd order, so each k group of an output is 8 lanes of even products
   plus 8 of odd ones, summed across lanes at the end of each k block.

   Work: each thread takes chunks of NC weight rows (columns of Y) in turn; for each block of
   KC inputs it walks X in tiles of MR rows x NR columns (12 accumulators + the weights' two
   registers + X's one + the mask = 16 ymm registers), keeping the X tile's block in L1 and the
   chunk's weight block in L2, and adds each tile's sums into an fp32 buffer (M x NC) that is
   rounded to bf16 after the last block. An output's sum order does not depend on the thread
   that computes it. */
#include <stdlib.h>

#include <omp.h>

#include "simd.h"

#if !(defined(__AVX2__) && defined(__FMA__))
#error "bf16_gemm needs AVX2 with FMA"
#endif

#define MR 6   /* rows of X per tile */
#define NR 2   /* weight rows (columns of Y) per tile */
#define KC 512 /* inputs per block: a tile's 6 rows are 12 KB of fp32, kept in L1 */
#define NC 64  /* weight rows per chunk: 64 KB of bf16 per k block, kept in L2 */

/* X (M x K bf16) -> fp32 in panels of MR rows (the last may have fewer, R), each panel one
   contiguous run that its tiles read in order (rows K floats apart would share L1 sets: a
   stride of 8 KB at K = 2048): for each group of 16 k, each row's 8 even then 8 odd k; then
   each row's k tail (K % 16) as is. Row r of a panel, k < K16: panel + k * R + r * 16. */
static void convert_rows(const uint16_t* x, float* xf, int64_t M, int64_t K) {
  const int64_t K16 = K / 16 * 16;
  const __m256i hi = _mm256_set1_epi32((int)0xffff0000);
#pragma omp for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    const int64_t m0 = m / MR * MR, R = M - m0 < MR ? M - m0 : MR, r = m - m0;
    const uint16_t* src = x + m * K;
    float* panel = xf + m0 * K;
    for (int64_t k = 0; k < K16; k += 16) {
      const __m256i v = _mm256_loadu_si256((const __m256i*)(src + k));
      float* dst = panel + k * R + r * 16;
      _mm256_storeu_ps(dst, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
      _mm256_storeu_ps(dst + 8, _mm256_castsi256_ps(_mm256_and_si256(v, hi)));
    }
    for (int64_t k = K16; k < K; k++) panel[K16 * R + r * (K - K16) + k - K16] = bf16_to_f32(src[k]);
  }
}

static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* The four lane sums of a, b, c, d. */
static inline __m128 hsum4x8(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* acc (R x C tile, row stride ldc) += X's rows (panel xp of R rows) . w[c] over k in [k0, k1)
   (multiples of 16), plus the scalar tail [k1, kt) (empty but on the last block). `ahead`: prefetch the weights of
   the next block while the first tile of the chunk reads this one. */
static inline __attribute__((always_inline)) void tile(
    const int R, const int C, const float* xp, const uint16_t* w, int64_t K, int64_t k0,
    int64_t k1, int64_t kt, float* acc, int64_t ldc, int ahead) {
  __m256 s[MR][NR];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) s[r][c] = _mm256_setzero_ps();
  const __m256i hi = _mm256_set1_epi32((int)0xffff0000);
  for (int64_t k = k0; k < k1; k += 16) {
    __m256 b[NR];
    if (ahead)
      for (int c = 0; c < C; c++) PREFETCH_T0(w + c * K + k + KC);
    for (int c = 0; c < C; c++)
      b[c] = _mm256_castsi256_ps(
          _mm256_slli_epi32(_mm256_loadu_si256((const __m256i*)(w + c * K + k)), 16));
    for (int r = 0; r < R; r++) {
      __m256 a = _mm256_loadu_ps(xp + k * R + r * 16);
      __asm__("" : "+x"(a)); /* one load for both columns, not one folded into each FMA */
      for (int c = 0; c < C; c++) s[r][c] = _mm256_fmadd_ps(a, b[c], s[r][c]);
    }
    for (int c = 0; c < C; c++)
      b[c] = _mm256_castsi256_ps(
          _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(w + c * K + k)), hi));
    for (int r = 0; r < R; r++) {
      __m256 a = _mm256_loadu_ps(xp + k * R + r * 16 + 8);
      __asm__("" : "+x"(a));
      for (int c = 0; c < C; c++) s[r][c] = _mm256_fmadd_ps(a, b[c], s[r][c]);
    }
  }
  int r0 = 0;
  if (C == 2) /* two rows' four sums at once */
    for (; r0 + 1 < R; r0 += 2) {
      const __m128 t = hsum4x8(s[r0][0], s[r0][1], s[r0 + 1][0], s[r0 + 1][1]);
      float* p0 = acc + r0 * ldc;
      float* p1 = p0 + ldc;
      _mm_storel_pi((__m64*)p0, _mm_add_ps(_mm_loadl_pi(_mm_setzero_ps(), (const __m64*)p0), t));
      _mm_storel_pi((__m64*)p1, _mm_add_ps(_mm_loadl_pi(_mm_setzero_ps(), (const __m64*)p1),
                                           _mm_movehl_ps(t, t)));
    }
  for (int r = r0; r < R; r++)
    for (int c = 0; c < C; c++) acc[r * ldc + c] += hsum8(s[r][c]);
  for (int64_t k = k1; k < kt; k++)
    for (int r = 0; r < R; r++)
      for (int c = 0; c < C; c++)
        acc[r * ldc + c] += xp[k1 * R + r * (kt - k1) + k - k1] * bf16_to_f32(w[c * K + k]);
}

/* One chunk's columns [n0, n0 + nc) for all M rows, k in [k0, k1) (+ tail to kt). */
static void chunk_block(const float* xf, const uint16_t* w, float* acc, int64_t M, int64_t K,
                        int64_t nc, int64_t k0, int64_t k1, int64_t kt) {
  const int ahead = k1 + KC <= K;
  int64_t m = 0;
  for (; m + MR <= M; m += MR) {
    const int first = ahead && m == 0;
    int64_t n = 0;
    for (; n + NR <= nc; n += NR)
      tile(MR, NR, xf + m * K, w + n * K, K, k0, k1, kt, acc + m * NC + n, NC, first);
    if (n < nc) tile(MR, 1, xf + m * K, w + n * K, K, k0, k1, kt, acc + m * NC + n, NC, first);
  }
  if (m < M) {
    const int R = (int)(M - m), first = ahead && m == 0;
    for (int64_t n = 0; n < nc; n += NR) {
      const int C = n + NR <= nc ? NR : 1;
      const float* a = xf + m * K;
      float* o = acc + m * NC + n;
      const uint16_t* b = w + n * K;
      /* constant shapes, so each tile keeps its accumulators in registers */
#define TAIL(r, c) tile(r, c, a, b, K, k0, k1, kt, o, NC, first)
      switch (R * 2 + C - 1) { /* R < MR <= 6 */
        case 2: TAIL(1, 1); break;
        case 3: TAIL(1, 2); break;
        case 4: TAIL(2, 1); break;
        case 5: TAIL(2, 2); break;
        case 6: TAIL(3, 1); break;
        case 7: TAIL(3, 2); break;
        case 8: TAIL(4, 1); break;
        case 9: TAIL(4, 2); break;
        case 10: TAIL(5, 1); break;
        case 11: TAIL(5, 2); break;
        default: break;
      }
#undef TAIL
    }
  }
}

const char* bf16_gemm_simd(void) { return SIMD_NAME; }

/* y (M x N, rows ldy apart) = x (M x K) @ w (N x K)^T, all row-major bf16; with scale (N
   floats, or NULL) each output's fp32 sum is multiplied by scale[n] before its one rounding
   (int8 weights given as bf16 integers, their per-row scale applied here). Returns 0, or -1
   when the scratch memory cannot be had (the caller then computes it another way). */
int bf16_gemm(const uint16_t* x, const uint16_t* w, const float* scale, uint16_t* y, int64_t ldy,
              int64_t M, int64_t N, int64_t K, int nthreads) {
  /* X in fp32, then each thread's sums of one chunk */
  float* xf = (float*)malloc((size_t)(M * K + (int64_t)nthreads * M * NC) * sizeof(float));
  if (!xf) return -1;
  const int64_t chunks = (N + NC - 1) / NC, K16 = K / 16 * 16;
#pragma omp parallel num_threads(nthreads)
  {
    convert_rows(x, xf, M, K); /* ends in the for's barrier */
    float* acc = xf + M * K + (int64_t)omp_get_thread_num() * M * NC;
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; c++) {
      const int64_t n0 = c * NC, nc = n0 + NC <= N ? NC : N - n0;
      memset(acc, 0, (size_t)(M * NC) * sizeof(float));
      for (int64_t k0 = 0; k0 < K16 || k0 == 0; k0 += KC) {
        const int64_t k1 = k0 + KC < K16 ? k0 + KC : K16;
        chunk_block(xf, w + n0 * K, acc, M, K, nc, k0, k1, k1 == K16 ? K : k1);
      }
      for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < nc; j++) {
          const float sum = acc[m * NC + j];
          y[m * ldy + n0 + j] = f32_to_bf16(scale ? sum * scale[n0 + j] : sum);
        }
    }
  }
  free(xf);
  return 0;
}
