/* int8 weight-only products: y (M x N) = x (M x K) @ (q * scale)^T, M up to 8, fp32 sums;
   q8_gemm, for prefill, the same with int8 activations and integer dot products.

   Each block of 16 output rows is one sequential stream ([N/16][K][16] int8: a 64-byte line is
   4 k x 16 rows); one activation row reads four blocks at once with software prefetch and
   applies the per-channel scale once per output. q8_dequant_t writes dequantized rows
   transposed, what a prefill matmul reads. See int8_cpu_kernel.py for the measurements. */
#include <stdlib.h>
#include <omp.h>

#include "simd.h"

#define PREFETCH 2048 /* bytes ahead in each stream: enough lines in flight for DRAM latency */
#define STREAMS 4     /* 16-row blocks one thread reads at once for a single activation row */

const char* q8_simd(void) { return SIMD_NAME; }

static inline void store16(void* y, int bf16, int64_t ldy, int64_t m, int64_t n, vf v) {
  if (bf16) vstore_bf16((uint16_t*)y + m * ldy + n, v);
  else vstore((float*)y + m * ldy + n, v);
}

/* One activation row: STREAMS blocks at once, four k-accumulators each (FMA latency). Stream
   s walks its own run of L consecutive blocks, one long sequential read that the prefetch runs
   ahead in across block ends. */
static inline __attribute__((always_inline)) void gemv_blocks_s(
    const int S, const float* x, const int8_t* wp, const float* scale, void* y, int bf16,
    int64_t K, int64_t b0, int64_t L) {
  for (int64_t i = 0; i < L; i++) {
    int64_t blk[STREAMS];
    for (int s = 0; s < S; s++) blk[s] = b0 + s * L + i;
    vf acc[STREAMS][4];
    for (int s = 0; s < S; s++)
      for (int j = 0; j < 4; j++) acc[s][j] = vzero();
    for (int64_t k = 0; k < K; k += 4) {
      vf x0 = vset1(x[k]), x1 = vset1(x[k + 1]), x2 = vset1(x[k + 2]), x3 = vset1(x[k + 3]);
#pragma GCC unroll 4
      for (int s = 0; s < S; s++) {
        const int8_t* p = wp + blk[s] * K * 16 + k * 16;
        PREFETCH_T0(p + PREFETCH);
        acc[s][0] = vfma(x0, vload_i8(p), acc[s][0]);
        acc[s][1] = vfma(x1, vload_i8(p + 16), acc[s][1]);
        acc[s][2] = vfma(x2, vload_i8(p + 32), acc[s][2]);
        acc[s][3] = vfma(x3, vload_i8(p + 48), acc[s][3]);
      }
    }
    for (int s = 0; s < S; s++) {
      vf sum = vadd(vadd(acc[s][0], acc[s][1]), vadd(acc[s][2], acc[s][3]));
      store16(y, bf16, 0, 0, blk[s] * 16, vmul(sum, vload(scale + blk[s] * 16)));
    }
  }
}

static void gemv_blocks(const float* x, const int8_t* wp, const float* scale, void* y, int bf16,
                        int64_t K, int64_t b0, int64_t b1) {
  const int64_t L = (b1 - b0) / STREAMS, mid = b0 + L * STREAMS;
  gemv_blocks_s(STREAMS, x, wp, scale, y, bf16, K, b0, L);
  gemv_blocks_s(1, x, wp, scale, y, bf16, K, mid, b1 - mid);
}

/* M (2..8) activation rows: each converted weight vector serves every row. */
static inline __attribute__((always_inline)) void gemm_blocks_m(
    const int M, const float* x, const int8_t* wp, const float* scale, void* y, int bf16,
    int64_t ldy, int64_t K, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; b += 2) {
    const int ns = b + 2 <= b1 ? 2 : 1;
    vf acc[2][8];
    for (int s = 0; s < 2; s++)
      for (int m = 0; m < 8; m++) acc[s][m] = vzero();
    for (int s = 0; s < ns; s++) {
      const int8_t* p = wp + (b + s) * K * 16;
      for (int64_t k = 0; k < K; k++, p += 16) {
        if ((k & 3) == 0) PREFETCH_T0(p + PREFETCH);
        vf w = vload_i8(p);
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) acc[s][m] = vfma(vset1(x[m * K + k]), w, acc[s][m]);
      }
    }
    for (int s = 0; s < ns; s++) {
      vf sc = vload(scale + (b + s) * 16);
      for (int m = 0; m < M; m++) store16(y, bf16, ldy, m, (b + s) * 16, vmul(acc[s][m], sc));
    }
  }
}

static void gemm_blocks(int M, const float* x, const int8_t* wp, const float* scale, void* y,
                        int bf16, int64_t ldy, int64_t K, int64_t b0, int64_t b1) {
  switch (M) {
    case 2: gemm_blocks_m(2, x, wp, scale, y, bf16, ldy, K, b0, b1); break;
    case 3: gemm_blocks_m(3, x, wp, scale, y, bf16, ldy, K, b0, b1); break;
    case 4: gemm_blocks_m(4, x, wp, scale, y, bf16, ldy, K, b0, b1); break;
    case 5: gemm_blocks_m(5, x, wp, scale, y, bf16, ldy, K, b0, b1); break;
    case 6: gemm_blocks_m(6, x, wp, scale, y, bf16, ldy, K, b0, b1); break;
    case 7: gemm_blocks_m(7, x, wp, scale, y, bf16, ldy, K, b0, b1); break;
    default: gemm_blocks_m(8, x, wp, scale, y, bf16, ldy, K, b0, b1); break;
  }
}

/* N a multiple of 16, K of 4, 1 <= M <= 8. Returns 0, or -1 when the work buffer cannot be
   allocated. */
int q8_matmul(const void* x, int64_t M, int bf16, const int8_t* wp, const float* scale, void* y,
              int64_t N, int64_t K, int nthreads) {
  float* xf = (float*)malloc(sizeof(float) * M * K);
  if (!xf) return -1;
  for (int64_t i = 0; i < M * K; i++)
    xf[i] = bf16 ? bf16_to_f32(((const uint16_t*)x)[i]) : ((const float*)x)[i];
  const int64_t NB = N / 16;
  const chunks_t ch = chunks_of(NB, 16 * K, STREAMS, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t c = 0; c < ch.n; c++) {
    const int64_t b0 = chunk_begin(ch, c), b1 = chunk_begin(ch, c + 1);
    if (M == 1) gemv_blocks(xf, wp, scale, y, bf16, K, b0, b1);
    else gemm_blocks((int)M, xf, wp, scale, y, bf16, N, K, b0, b1);
  }
  free(xf);
  return 0;
}

/* Prefill with int8 activations (where the CPU has a u8 x s8 dot-product instruction: AVX-512
   VNNI or AVX-VNNI): y (M x N) = x (M x K) @ (q * scale)^T, each activation row quantized per
   group of Q8_GROUP inputs to int8 (quantize_x, as the int4 kernel's), so each group's sum is
   exact in int32: sum_k q xq = sum_k (q + 128) xq - 128 sum_k xq, the weights made unsigned
   for the instruction. Each group of a block's weights is read from memory once for all M rows
   and rearranged once (line_u8) into registers that every row's products then use. */
#define Q8_GROUP 64     /* activation inputs per scale: a group's 16 lines fit in registers */
#define Q8_GEMM_ROWS 64 /* activation rows one q8_gemm call takes */

#ifdef DPBUSD_NATIVE
/* A packed line (4 k x 16 rows, k-major) as dpbusd takes weights: lane r holds row r's four k
   (k-minor), each plus 128 (unsigned). */
static inline vi line_u8(const int8_t* p) {
#if defined(__AVX512F__)
  /* dword (k, rows 4q..4q+3) to lane q's k-th, then bytes (k, r) to (r, k) within each lane */
  const __m512i d = _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
      _mm512_loadu_si512(p));
  const __m512i t = _mm512_shuffle_epi8(
      d, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)));
  return _mm512_xor_si512(t, _mm512_set1_epi8((char)0x80));
#else
  /* the same in two halves: rows 0-7 (dwords 0, 4, 8, 12, 1, 5, 9, 13) and rows 8-15 */
  const __m256i h0 = _mm256_loadu_si256((const __m256i*)p);
  const __m256i h1 = _mm256_loadu_si256((const __m256i*)(p + 32));
  const __m256i bytes = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                         0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i flip = _mm256_set1_epi8((char)0x80);
  const __m256i lo = _mm256_blend_epi32(
      _mm256_permutevar8x32_epi32(h0, _mm256_setr_epi32(0, 4, 0, 0, 1, 5, 0, 0)),
      _mm256_permutevar8x32_epi32(h1, _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 1, 5)), 0xcc);
  const __m256i hi = _mm256_blend_epi32(
      _mm256_permutevar8x32_epi32(h0, _mm256_setr_epi32(2, 6, 0, 0, 3, 7, 0, 0)),
      _mm256_permutevar8x32_epi32(h1, _mm256_setr_epi32(0, 0, 2, 6, 0, 0, 3, 7)), 0xcc);
  vi r = {_mm256_xor_si256(_mm256_shuffle_epi8(lo, bytes), flip),
          _mm256_xor_si256(_mm256_shuffle_epi8(hi, bytes), flip)};
  return r;
#endif
}

/* M activation rows (xq, scales xs, code sums xsum) over blocks b0..b1. */
static void gemm_blocks_i8(int M, const int8_t* xq, const float* xs, const int32_t* xsum,
                           const int8_t* wp, const float* scale, void* y, int bf16, int64_t ldy,
                           int64_t K, int64_t Kp, int64_t b0, int64_t b1) {
  const int64_t KG = Kp / Q8_GROUP;
  enum { LINES = Q8_GROUP / 4 };
  for (int64_t b = b0; b < b1; b++) {
    const int8_t* blk = wp + b * K * 16;
    vf acc[Q8_GEMM_ROWS];
    for (int m = 0; m < M; m++) acc[m] = vzero();
    for (int64_t g = 0; g < KG; g++) {
      const int64_t k0 = g * Q8_GROUP, lines = (K - k0 < Q8_GROUP ? K - k0 : Q8_GROUP) / 4;
      vi c[LINES];
      for (int j = 0; j < LINES; j++) { /* past K (the last group's tail): codes 0, xq 0 */
        if (j < lines) {
          PREFETCH_T0(blk + (k0 + 4 * j) * 16 + PREFETCH);
          c[j] = line_u8(blk + (k0 + 4 * j) * 16);
        } else {
          c[j] = vi_zero();
        }
      }
      for (int m = 0; m < M; m++) {
        /* four sums in flight (two rows at once, eight sums, measured no faster) */
        const int8_t* xg = xq + m * Kp + k0;
        vi s0 = vi_zero(), s1 = vi_zero(), s2 = vi_zero(), s3 = vi_zero();
#pragma GCC unroll 4
        for (int j = 0; j < LINES; j += 4) {
          s0 = dpbusd(s0, c[j], vi_bcast4(xg + 4 * j));
          s1 = dpbusd(s1, c[j + 1], vi_bcast4(xg + 4 * j + 4));
          s2 = dpbusd(s2, c[j + 2], vi_bcast4(xg + 4 * j + 8));
          s3 = dpbusd(s3, c[j + 3], vi_bcast4(xg + 4 * j + 12));
        }
        const vi dot = vi_add(vi_add(s0, s1), vi_add(s2, s3));
        acc[m] = vfma(vi_to_vf(vi_sub(dot, vi_set1(128 * xsum[m * KG + g]))),
                      vset1(xs[m * KG + g]), acc[m]);
      }
    }
    const vf sc = vload(scale + b * 16);
    for (int m = 0; m < M; m++) store16(y, bf16, ldy, m, b * 16, vmul(acc[m], sc));
  }
}
#endif

/* Rows this build's q8_gemm takes a call; 0 where the CPU has no dot-product instruction (the
   int16 steps of int4's fallback would overflow on 8-bit weights). */
int q8_gemm_rows(void) {
#ifdef DPBUSD_NATIVE
  return Q8_GEMM_ROWS;
#else
  return 0;
#endif
}

/* N a multiple of 16, K of 4, 1 <= M <= q8_gemm_rows(). Returns 0, -1 when the work buffer
   cannot be allocated, -2 for arguments out of range. */
int q8_gemm(const void* x, int64_t M, int bf16, const int8_t* wp, const float* scale, void* y,
            int64_t N, int64_t K, int nthreads) {
#ifdef DPBUSD_NATIVE
  if (M < 1 || M > Q8_GEMM_ROWS) return -2;
  const int64_t Kp = (K + Q8_GROUP - 1) / Q8_GROUP * Q8_GROUP, KG = Kp / Q8_GROUP;
  int8_t* xq = (int8_t*)malloc((size_t)(M * Kp) + 2 * sizeof(float) * (size_t)(M * KG));
  if (!xq) return -1;
  float* xs = (float*)(xq + M * Kp); /* Kp is a multiple of 64: aligned for floats */
  int32_t* xsum = (int32_t*)(xs + M * KG);
  const size_t row_bytes = (size_t)K * (bf16 ? 2 : 4);
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t m = 0; m < M; m++)
    quantize_x((const char*)x + m * row_bytes, bf16, K, Kp, Q8_GROUP, xq + m * Kp, xs + m * KG,
               NULL, xsum + m * KG);
  const chunks_t ch = chunks_of(N / 16, 16 * K, 1, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t c = 0; c < ch.n; c++)
    gemm_blocks_i8((int)M, xq, xs, xsum, wp, scale, y, bf16, N, K, Kp, chunk_begin(ch, c),
                   chunk_begin(ch, c + 1));
  free(xq);
  return 0;
#else
  (void)x, (void)M, (void)bf16, (void)wp, (void)scale, (void)y, (void)N, (void)K, (void)nthreads;
  return -2;
#endif
}

/* wt (K x (n1 - n0), row stride ldw) = (dequantized weight rows n0..n1)^T; n0, n1 multiples
   of 16. Four blocks per step write 128 contiguous bytes of a row (measured 1.6x faster than
   two). */
void q8_dequant_t(const int8_t* wp, const float* scale, void* wt, int bf16, int64_t ldw,
                  int64_t n0, int64_t n1, int64_t K, int nthreads) {
  const int64_t first = n0 / 16, last = n1 / 16, steps = (last - first + 3) / 4;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t i = 0; i < steps; i++) {
    const int64_t b = first + 4 * i;
    const int nb = last - b < 4 ? (int)(last - b) : 4;
    vf s[4];
    const int8_t* p[4];
    for (int j = 0; j < nb; j++) {
      s[j] = vload(scale + (b + j) * 16);
      p[j] = wp + (b + j) * K * 16;
    }
    if (nb == 4) {
      for (int64_t k = 0; k < K; k++) {
        if ((k & 3) == 0)
          for (int j = 0; j < 4; j++) PREFETCH_T0(p[j] + k * 16 + PREFETCH);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
          store16(wt, bf16, ldw, k, (b + j) * 16 - n0, vmul(vload_i8(p[j] + k * 16), s[j]));
      }
    } else {
      for (int64_t k = 0; k < K; k++)
        for (int j = 0; j < nb; j++)
          store16(wt, bf16, ldw, k, (b + j) * 16 - n0, vmul(vload_i8(p[j] + k * 16), s[j]));
    }
  }
}

/* 16 int8 weights of row r at k0..k0+7 (in the packed block's 8 vectors) -> 8 bf16 of the
   plain row: integers up to 127 are exact in bf16 (the top 16 bits of their fp32). */
static inline void store_row8(uint16_t* dst, __m128i bytes8) {
  const __m256i bits = _mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(bytes8))), 16);
  _mm_storeu_si128((__m128i*)dst, _mm_packus_epi32(_mm256_castsi256_si128(bits),
                                                   _mm256_extracti128_si256(bits, 1)));
}

/* Packed blocks b0..b1 -> their rows in the plain layout (16 rows a block, K bf16 each, the
   int8 values unscaled), what the bf16 GEMM reads for a prefill (the scale goes to its sums).
   Eight k at a time: the block's eight 16-byte vectors (k, rows 0..15) transposed into 16 rows
   of eight bytes by three rounds of byte, word and dword interleaves. */
void q8_unpack_bf16(const int8_t* wp, uint16_t* out, int64_t b0, int64_t b1, int64_t K,
                    int nthreads) {
  const int64_t K8 = K / 8 * 8;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t b = b0; b < b1; b++) {
    const int8_t* p = wp + b * K * 16;
    uint16_t* o = out + (b - b0) * 16 * K;
    for (int64_t k = 0; k < K8; k += 8) {
      __m128i v[8], a[8], c[8], d[8];
      for (int i = 0; i < 8; i++) v[i] = _mm_loadu_si128((const __m128i*)(p + (k + i) * 16));
      for (int i = 0; i < 4; i++) { /* (k 2i, 2i+1) byte pairs: rows 0-7, then 8-15 */
        a[2 * i] = _mm_unpacklo_epi8(v[2 * i], v[2 * i + 1]);
        a[2 * i + 1] = _mm_unpackhi_epi8(v[2 * i], v[2 * i + 1]);
      }
      for (int h = 0; h < 2; h++) /* four k a row: rows 0-3, 4-7, 8-11, 12-15 */
        for (int i = 0; i < 2; i++) {
          c[4 * h + 2 * i] = _mm_unpacklo_epi16(a[4 * h + i], a[4 * h + i + 2]);
          c[4 * h + 2 * i + 1] = _mm_unpackhi_epi16(a[4 * h + i], a[4 * h + i + 2]);
        }
      /* c[0..3]: k 0-3 of rows 0-3, 4-7, 8-11, 12-15; c[4..7]: k 4-7 of the same rows */
      for (int q = 0; q < 4; q++) {
        d[2 * q] = _mm_unpacklo_epi32(c[q], c[q + 4]);     /* rows 4q, 4q+1: k 0-7 */
        d[2 * q + 1] = _mm_unpackhi_epi32(c[q], c[q + 4]); /* rows 4q+2, 4q+3 */
      }
      for (int j = 0; j < 8; j++) {
        store_row8(o + (2 * j) * K + k, d[j]);
        store_row8(o + (2 * j + 1) * K + k, _mm_srli_si128(d[j], 8));
      }
    }
    for (int64_t k = K8; k < K; k++)
      for (int r = 0; r < 16; r++) o[r * K + k] = f32_to_bf16((float)p[k * 16 + r]);
  }
}
