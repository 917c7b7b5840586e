/* SIMD helpers shared by the CPU decode kernels.

   vf is 16 fp32 lanes: one AVX-512 register, or two AVX2 registers. vi is 16 int32 lanes the
   same way; dpbusd adds four u8 x s8 products per lane (one VNNI instruction where the CPU has
   it, two multiply-add steps where not). Which instructions are used is settled when the file
   is compiled for the CPU it runs on (-march=native): native_build builds once per CPU. */
#ifndef QWEN3TUI_SIMD_H
#define QWEN3TUI_SIMD_H

#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#define PREFETCH_T0(p) _mm_prefetch((const char*)(p), _MM_HINT_T0)

/* Decode products hand their rows to the threads in chunks of about CHUNK_BYTES of weights,
   taken in turn (OpenMP dynamic schedule), not one fixed share per thread: when another thread
   or program preempts one compute thread, the others take its chunks, where a fixed share made
   the whole product wait for it at the barrier. The chunk count is a multiple of the thread
   count and the chunks are of one size, so on a quiet machine each thread still reads an equal
   share; one thread reads the whole product as one chunk. A chunk stays long enough for the
   streams one thread reads at once to run ahead in. Each row is computed by one thread the
   same way whichever thread takes it: the output does not depend on the schedule. */
#define CHUNK_BYTES (512 * 1024) /* measured against 256 KB and 1 MB */

typedef struct {
  int64_t n, units, multiple;
} chunks_t;

/* `units` rows or blocks of unit_bytes each; chunk boundaries fall on multiples of `multiple`. */
static inline chunks_t chunks_of(int64_t units, int64_t unit_bytes, int64_t multiple,
                                 int nthreads) {
  chunks_t s = {1, units, multiple};
  if (nthreads > 1) {
    int64_t per = CHUNK_BYTES / unit_bytes;
    per = per < multiple ? multiple : per;
    s.n = (units + per * nthreads - 1) / (per * nthreads) * nthreads;
  }
  return s;
}

/* First unit of chunk c; chunk c ends where c + 1 begins. */
static inline int64_t chunk_begin(chunks_t s, int64_t c) {
  return c >= s.n ? s.units : s.units * c / s.n / s.multiple * s.multiple;
}

static inline float bf16_to_f32(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Round to nearest even; a NaN stays a quiet NaN. */
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define SIMD_NAME "avx512"
typedef __m512 vf;
typedef __m512i vi;
static inline vf vzero(void) { return _mm512_setzero_ps(); }
static inline vf vset1(float x) { return _mm512_set1_ps(x); }
static inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
static inline float vsum(vf v) { return _mm512_reduce_add_ps(v); }
/* 16 bf16 values -> fp32 */
static inline vf vload_bf16(const uint16_t* p) {
  __m256i h = _mm256_loadu_si256((const __m256i*)p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline void vstore_bf16(uint16_t* p, vf v) {
  __m512i u = _mm512_castps_si512(v);
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                 _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q),
                            _mm512_set1_epi32(0x7fc00000));
  _mm256_storeu_si256((__m256i*)p, _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
}
/* 16 int8 -> fp32 */
static inline vf vload_i8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
}
static inline vf vabs(vf a) { return _mm512_abs_ps(a); }
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline float vhmax(vf v) { return _mm512_reduce_max_ps(v); }
/* fp32 -> int32, rounding to nearest even; then 16 int32 (within int8's range) -> 16 int8 */
static inline vi vf_to_vi(vf a) { return _mm512_cvtps_epi32(a); }
static inline void vi_store_i8(int8_t* p, vi a) {
  _mm_storeu_si128((__m128i*)p, _mm512_cvtsepi32_epi8(a));
}
static inline vi vi_zero(void) { return _mm512_setzero_si512(); }
static inline vf vi_to_vf(vi a) { return _mm512_cvtepi32_ps(a); }
static inline vi vi_load(const void* p) { return _mm512_loadu_si512(p); }
static inline vi vi_set1(int32_t x) { return _mm512_set1_epi32(x); }
/* The 4 bytes at p in every lane: a load that broadcasts (through a general register, the
   broadcasts held the integer kernels' dot products to half their rate) */
static inline vi vi_bcast4(const void* p) { return _mm512_broadcastd_epi32(_mm_loadu_si32(p)); }
static inline vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
static inline vi vi_srli16(vi a, int n) { return _mm512_srli_epi16(a, (unsigned)n); }
static inline vi vi_srli32(vi a, int n) { return _mm512_srli_epi32(a, (unsigned)n); }
static inline vi vi_add(vi a, vi b) { return _mm512_add_epi32(a, b); }
static inline vi vi_sub(vi a, vi b) { return _mm512_sub_epi32(a, b); }
/* acc (int32 lanes) += a (u8) . b (s8), four products per lane. The fallback sums pairs in
   int16: exact for a <= 15 (4-bit weights) and |b| <= 127. */
static inline vi dpbusd(vi acc, vi a, vi b) {
#ifdef __AVX512VNNI__
  return _mm512_dpbusd_epi32(acc, a, b);
#else
  /* u8 x s8 pairs to s16 (no saturation for a <= 15), then pairs of s16 to s32 */
  vi pairs = _mm512_maddubs_epi16(a, b);
  return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
#endif
}
#ifdef __AVX512VNNI__
#define DPBUSD_NATIVE 1
#endif
/* dpbusd's two steps without VNNI, for kernels that add several pair sums in int16 before
   widening them once (int4_matmul.c) */
static inline vi maddubs16(vi a, vi b) { return _mm512_maddubs_epi16(a, b); }
static inline vi add16(vi a, vi b) { return _mm512_add_epi16(a, b); }
static inline vi widen_add16(vi acc, vi s16) {
  return _mm512_add_epi32(acc, _mm512_madd_epi16(s16, _mm512_set1_epi16(1)));
}

#elif defined(__AVX2__) && defined(__FMA__)
#define SIMD_NAME "avx2"
typedef struct { __m256 a, b; } vf;
typedef struct { __m256i a, b; } vi;
static inline vf vzero(void) { vf r = {_mm256_setzero_ps(), _mm256_setzero_ps()}; return r; }
static inline vf vset1(float x) { vf r = {_mm256_set1_ps(x), _mm256_set1_ps(x)}; return r; }
static inline vf vfma(vf a, vf b, vf c) {
  vf r = {_mm256_fmadd_ps(a.a, b.a, c.a), _mm256_fmadd_ps(a.b, b.b, c.b)};
  return r;
}
static inline vf vadd(vf a, vf b) {
  vf r = {_mm256_add_ps(a.a, b.a), _mm256_add_ps(a.b, b.b)};
  return r;
}
static inline vf vmul(vf a, vf b) {
  vf r = {_mm256_mul_ps(a.a, b.a), _mm256_mul_ps(a.b, b.b)};
  return r;
}
static inline vf vload(const float* p) {
  vf r = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
  return r;
}
static inline void vstore(float* p, vf v) {
  _mm256_storeu_ps(p, v.a);
  _mm256_storeu_ps(p + 8, v.b);
}
static inline float vsum(vf v) {
  float t[8];
  _mm256_storeu_ps(t, _mm256_add_ps(v.a, v.b));
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
static inline __m256 bf16x8_to_ps(__m128i h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline vf vload_bf16(const uint16_t* p) {
  vf r = {bf16x8_to_ps(_mm_loadu_si128((const __m128i*)p)),
          bf16x8_to_ps(_mm_loadu_si128((const __m128i*)(p + 8)))};
  return r;
}
static inline __m256i round_bf16(__m256 v) {
  __m256i u = _mm256_castps_si256(v);
  __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                 _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1))));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc00000),
                         _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  return _mm256_srli_epi32(r, 16);
}
static inline void vstore_bf16(uint16_t* p, vf v) {
  __m256i packed = _mm256_packus_epi32(round_bf16(v.a), round_bf16(v.b));
  _mm256_storeu_si256((__m256i*)p, _mm256_permute4x64_epi64(packed, 0xd8));
}
static inline vf vload_i8(const int8_t* p) {
  vf r = {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p))),
          _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(p + 8))))};
  return r;
}
static inline vf vabs(vf a) {
  const __m256 mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  vf r = {_mm256_and_ps(a.a, mask), _mm256_and_ps(a.b, mask)};
  return r;
}
static inline vf vmax(vf a, vf b) {
  vf r = {_mm256_max_ps(a.a, b.a), _mm256_max_ps(a.b, b.b)};
  return r;
}
static inline float vhmax(vf v) {
  float t[8];
  _mm256_storeu_ps(t, _mm256_max_ps(v.a, v.b));
  float m = t[0];
  for (int i = 1; i < 8; i++) m = t[i] > m ? t[i] : m;
  return m;
}
static inline vi vf_to_vi(vf a) {
  vi r = {_mm256_cvtps_epi32(a.a), _mm256_cvtps_epi32(a.b)};
  return r;
}
static inline void vi_store_i8(int8_t* p, vi a) {
  /* int32 -> int16 -> int8 with saturation; packs works within 128-bit lanes, hence the
     permute that puts the four 4-byte groups back in order */
  const __m256i w = _mm256_packs_epi32(a.a, a.b);        /* a0-3 b0-3 a4-7 b4-7 (int16) */
  const __m256i b = _mm256_packs_epi16(w, w);            /* per lane: those 8, twice */
  const __m256i o = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
  _mm_storeu_si128((__m128i*)p, _mm256_castsi256_si128(o));
}
static inline vi vi_zero(void) {
  vi r = {_mm256_setzero_si256(), _mm256_setzero_si256()};
  return r;
}
static inline vf vi_to_vf(vi a) {
  vf r = {_mm256_cvtepi32_ps(a.a), _mm256_cvtepi32_ps(a.b)};
  return r;
}
static inline vi vi_load(const void* p) {
  vi r = {_mm256_loadu_si256((const __m256i*)p), _mm256_loadu_si256((const __m256i*)p + 1)};
  return r;
}
static inline vi vi_set1(int32_t x) {
  vi r = {_mm256_set1_epi32(x), _mm256_set1_epi32(x)};
  return r;
}
static inline vi vi_bcast4(const void* p) {
  const __m256i v = _mm256_broadcastd_epi32(_mm_loadu_si32(p));
  vi r = {v, v};
  return r;
}
static inline vi vi_and(vi a, vi b) {
  vi r = {_mm256_and_si256(a.a, b.a), _mm256_and_si256(a.b, b.b)};
  return r;
}
static inline vi vi_srli16(vi a, int n) {
  vi r = {_mm256_srli_epi16(a.a, n), _mm256_srli_epi16(a.b, n)};
  return r;
}
static inline vi vi_srli32(vi a, int n) {
  vi r = {_mm256_srli_epi32(a.a, n), _mm256_srli_epi32(a.b, n)};
  return r;
}
static inline vi vi_add(vi a, vi b) {
  vi r = {_mm256_add_epi32(a.a, b.a), _mm256_add_epi32(a.b, b.b)};
  return r;
}
static inline vi vi_sub(vi a, vi b) {
  vi r = {_mm256_sub_epi32(a.a, b.a), _mm256_sub_epi32(a.b, b.b)};
  return r;
}
static inline __m256i dpbusd8(__m256i acc, __m256i a, __m256i b) {
#ifdef __AVXVNNI__
  return _mm256_dpbusd_avx_epi32(acc, a, b);
#else
  __m256i pairs = _mm256_maddubs_epi16(a, b);
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
#endif
}
static inline vi dpbusd(vi acc, vi a, vi b) {
  vi r = {dpbusd8(acc.a, a.a, b.a), dpbusd8(acc.b, a.b, b.b)};
  return r;
}
#ifdef __AVXVNNI__
#define DPBUSD_NATIVE 1
#endif
static inline vi maddubs16(vi a, vi b) {
  vi r = {_mm256_maddubs_epi16(a.a, b.a), _mm256_maddubs_epi16(a.b, b.b)};
  return r;
}
static inline vi add16(vi a, vi b) {
  vi r = {_mm256_add_epi16(a.a, b.a), _mm256_add_epi16(a.b, b.b)};
  return r;
}
static inline vi widen_add16(vi acc, vi s16) {
  const __m256i one = _mm256_set1_epi16(1);
  vi r = {_mm256_add_epi32(acc.a, _mm256_madd_epi16(s16.a, one)),
          _mm256_add_epi32(acc.b, _mm256_madd_epi16(s16.b, one))};
  return r;
}

#else
#error "the CPU kernels need AVX-512 (F, BW) or AVX2 with FMA"
#endif

static inline float x_value(const void* x, int bf16, int64_t k) {
  return bf16 ? bf16_to_f32(((const uint16_t*)x)[k]) : ((const float*)x)[k];
}

/* 16 activations from k on, zero past K */
static inline vf load_x16(const void* x, int bf16, int64_t k, int64_t K) {
  if (k + 16 <= K) return bf16 ? vload_bf16((const uint16_t*)x + k) : vload((const float*)x + k);
  float t[16];
  for (int i = 0; i < 16; i++) t[i] = k + i < K ? x_value(x, bf16, k + i) : 0.f;
  return vload(t);
}

/* An activation row as the integer kernels take it: xq (Kp int8, zero past K) and, per group
   of G, xs (its scale, max |x| / 127), and xm (scale * sum of its codes) or xsum (the sum)
   where not NULL. Vectorized: at K = 6144 the scalar loop took about 10 us a call, as long as
   reading a 2048-row weight slice. */
static inline void quantize_x(const void* x, int bf16, int64_t K, int64_t Kp, int64_t G,
                              int8_t* xq, float* xs, float* xm, int32_t* xsum) {
  for (int64_t g = 0; g < Kp / G; g++) {
    vf amax = vzero();
    for (int64_t k = g * G; k < (g + 1) * G; k += 16) amax = vmax(amax, vabs(load_x16(x, bf16, k, K)));
    const float top = vhmax(amax);
    /* A group of denormals would make 127 / top infinite and 0 * inf a NaN code: zero it. */
    const float scale = top / 127.f, inv = top > 1e-30f ? 127.f / top : 0.f;
    vf sum = vzero();
    for (int64_t k = g * G; k < (g + 1) * G; k += 16) {
      const vi q = vf_to_vi(vmul(load_x16(x, bf16, k, K), vset1(inv))); /* |q| <= 127 */
      vi_store_i8(xq + k, q);
      sum = vadd(sum, vi_to_vf(q)); /* exact: small integers */
    }
    xs[g] = scale;
    if (xm) xm[g] = scale * vsum(sum);
    if (xsum) xsum[g] = (int32_t)vsum(sum); /* |sum| <= 127 G: exact in fp32 */
  }
}

#endif
