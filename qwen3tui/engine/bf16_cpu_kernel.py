"""A small C kernel for one-row bf16 products on x86 CPUs (decode), built at first use.

A decode step multiplies one activation row by every weight matrix: pure memory streaming.
oneDNN's GEMV, even with pre-packed weights, read about 24 GB/s on Qwen3-1.7B's layer shapes on
a 2-core Xeon; this kernel reads the plain (out, in) matrix eight rows at a time with software
prefetch, one AVX512-BF16 dot-product instruction per 32 weights (or shifts and FMAs without
it), fp32 accumulation: about 27 GB/s, on the layers and on the 150k-row output head alike.
Because it reads the plain layout, the same matrix serves prefill (F.linear) and, with tied
embeddings, the token lookups: nothing is copied. A second entry point reads oneDNN's own packed
layout ([N/64][K/2][64][2] on AMX machines), so one pre-packed copy serves both oneDNN's
prefill matmuls and this kernel's decode products (29-30 GB/s against oneDNN's 23-24).

Built by native_build; `load()` returns None where it cannot be had.
"""

from __future__ import annotations

import ctypes

import torch

from .native_build import NativeUnavailable, OnceKernel, load_library

C_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <omp.h>
#include <immintrin.h>

#define ROWS 8        /* rows read at once: eight streams keep enough lines in flight */
#define PREFETCH 512  /* bytes ahead in each row */
#define PREFETCH4 1024 /* bytes ahead in each packed stream */

#if defined(__AVX512F__) && defined(__AVX512BW__)
typedef __m512 acc_t;
static inline acc_t acc_zero(void) { return _mm512_setzero_ps(); }
/* acc += x[0:32] . w[0:32] (bf16 pairs) */
static inline acc_t dot32(acc_t acc, __m512i x, const uint16_t* p) {
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
static inline __m512i load_x(const uint16_t* p) { return _mm512_loadu_si512(p); }
/* 16 rows x one k pair, bf16 pairs interleaved (64 bytes): acc[r] += x0 w[r][0] + x1 w[r][1] */
static inline acc_t dot_pairs(acc_t acc, uint32_t xpair, const uint16_t* p) {
  return dot32(acc, _mm512_set1_epi32((int)xpair), p);
}
typedef __m512i x_t;
static inline float acc_sum(acc_t a) { return _mm512_reduce_add_ps(a); }
static inline void acc_store(float* p, acc_t a) { _mm512_storeu_ps(p, a); }
static inline acc_t acc_add(acc_t a, acc_t b) { return _mm512_add_ps(a, b); }
#elif defined(__AVX2__) && defined(__FMA__)
typedef struct { __m256 a, b; } acc_t;
typedef struct { __m256i a, b; } x_t;
static inline acc_t acc_zero(void) {
  acc_t r = {_mm256_setzero_ps(), _mm256_setzero_ps()}; return r;
}
static inline __m256 dot16(__m256 acc, __m256i x, __m256i w) {
  const __m256i hi = _mm256_set1_epi32((int)0xffff0000);
  acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x, 16)),
                        _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), acc);
  return _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(x, hi)),
                         _mm256_castsi256_ps(_mm256_and_si256(w, hi)), acc);
}
static inline acc_t dot32(acc_t acc, x_t x, const uint16_t* p) {
  acc_t r = {dot16(acc.a, x.a, _mm256_loadu_si256((const __m256i*)p)),
             dot16(acc.b, x.b, _mm256_loadu_si256((const __m256i*)(p + 16)))};
  return r;
}
static inline x_t load_x(const uint16_t* p) {
  x_t r = {_mm256_loadu_si256((const __m256i*)p), _mm256_loadu_si256((const __m256i*)(p + 16))};
  return r;
}
static inline acc_t dot_pairs(acc_t acc, uint32_t xpair, const uint16_t* p) {
  x_t x = {_mm256_set1_epi32((int)xpair), _mm256_set1_epi32((int)xpair)};
  return dot32(acc, x, p);
}
static inline float acc_sum(acc_t a) {
  float t[8]; _mm256_storeu_ps(t, _mm256_add_ps(a.a, a.b));
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
static inline void acc_store(float* p, acc_t a) {
  _mm256_storeu_ps(p, a.a); _mm256_storeu_ps(p + 8, a.b);
}
static inline acc_t acc_add(acc_t a, acc_t b) {
  acc_t r = {_mm256_add_ps(a.a, b.a), _mm256_add_ps(a.b, b.b)}; return r;
}
#else
#error "needs AVX-512 (F, BW) or AVX2 with FMA"
#endif

static inline float bf16_to_f32(uint16_t b) {
  uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f;
}
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}

static float row_tail(const uint16_t* x, const uint16_t* w, int64_t k0, int64_t K) {
  float s = 0.f;
  for (int64_t k = k0; k < K; k++) s += bf16_to_f32(x[k]) * bf16_to_f32(w[k]);
  return s;
}

/* y (N) = w (N x K, row-major) @ x (K); bf16 in and out, fp32 accumulation. */
void bf16_gemv(const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t N, int64_t K,
               int nthreads) {
  const int64_t K32 = K / 32 * 32, groups = N / ROWS;
#pragma omp parallel num_threads(nthreads)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    for (int64_t g = groups * t / T; g < groups * (t + 1) / T; g++) {
      const uint16_t* base = w + g * ROWS * K;
      acc_t acc[ROWS];
      for (int r = 0; r < ROWS; r++) acc[r] = acc_zero();
      for (int64_t k = 0; k < K32; k += 32) {
        x_t xv = load_x(x + k);
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; r++) {
          const uint16_t* p = base + r * K + k;
          _mm_prefetch((const char*)p + PREFETCH, _MM_HINT_T0);
          acc[r] = dot32(acc[r], xv, p);
        }
      }
      for (int r = 0; r < ROWS; r++)
        y[g * ROWS + r] = f32_to_bf16(acc_sum(acc[r]) + row_tail(x, base + r * K, K32, K));
    }
    if (t == T - 1)
      for (int64_t n = groups * ROWS; n < N; n++) y[n] = f32_to_bf16(row_tail(x, w + n * K, 0, K));
  }
}

/* The same product on oneDNN's packed weight, [N/64][K/2][64][2]: each block of 64 rows is one
   stream of k pairs, 256 bytes (4 lines) per pair. Two blocks at once, two k-pair accumulators
   each (dot-product latency). */
#define VBLOCK 64
void bf16_gemv_vnni64(const uint16_t* x, const uint16_t* wp, uint16_t* y, int64_t N, int64_t K,
                      int nthreads) {
  const uint32_t* xp = (const uint32_t*)x;
  const int64_t NB = N / VBLOCK, KP = K / 2;
#pragma omp parallel num_threads(nthreads)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t b1 = NB * (t + 1) / T;
    for (int64_t b = NB * t / T; b < b1; b += 2) {
      const int nb = b + 2 <= b1 ? 2 : 1;
      acc_t acc[2][2][4];
      for (int s = 0; s < 2; s++)
        for (int j = 0; j < 2; j++)
          for (int g = 0; g < 4; g++) acc[s][j][g] = acc_zero();
      if (nb == 2) {
        for (int64_t kp = 0; kp < KP; kp += 2) {
#pragma GCC unroll 2
          for (int s = 0; s < 2; s++) {
            const uint16_t* p = wp + (b + s) * VBLOCK * K + kp * 128;
            _mm_prefetch((const char*)p + PREFETCH4, _MM_HINT_T0);
            _mm_prefetch((const char*)p + PREFETCH4 + 64, _MM_HINT_T0);
            _mm_prefetch((const char*)p + PREFETCH4 + 128, _MM_HINT_T0);
            _mm_prefetch((const char*)p + PREFETCH4 + 192, _MM_HINT_T0);
            _mm_prefetch((const char*)p + PREFETCH4 + 256, _MM_HINT_T0);
            _mm_prefetch((const char*)p + PREFETCH4 + 320, _MM_HINT_T0);
            _mm_prefetch((const char*)p + PREFETCH4 + 384, _MM_HINT_T0);
            _mm_prefetch((const char*)p + PREFETCH4 + 448, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
              acc[s][0][g] = dot_pairs(acc[s][0][g], xp[kp], p + g * 32);
              acc[s][1][g] = dot_pairs(acc[s][1][g], xp[kp + 1], p + 128 + g * 32);
            }
          }
        }
      } else {
        for (int64_t kp = 0; kp < KP; kp++) {
          const uint16_t* p = wp + b * VBLOCK * K + kp * 128;
          for (int g = 0; g < 4; g++) acc[0][0][g] = dot_pairs(acc[0][0][g], xp[kp], p + g * 32);
        }
      }
      for (int s = 0; s < nb; s++)
        for (int g = 0; g < 4; g++) {
          float t16[16];
          acc_store(t16, acc_add(acc[s][0][g], acc[s][1][g]));
          for (int i = 0; i < 16; i++) y[(b + s) * VBLOCK + g * 16 + i] = f32_to_bf16(t16[i]);
        }
    }
  }
}
"""


class Bf16Kernel:
    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self._gemv = lib.bf16_gemv
        self._gemv_vnni64 = lib.bf16_gemv_vnni64
        for fn in (self._gemv, self._gemv_vnni64):
            fn.restype = None
            fn.argtypes = [ptr, ptr, ptr, i64, i64, ctypes.c_int]

    def gemv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (1, K) and weight (N, K), both contiguous bf16 -> (1, N)."""
        n, k = weight.shape
        y = torch.empty((1, n), dtype=torch.bfloat16)
        self._gemv(x.data_ptr(), weight.data_ptr(), y.data_ptr(), n, k, torch.get_num_threads())
        return y

    def gemv_vnni64(self, x: torch.Tensor, weight_ptr: int, n: int, k: int) -> torch.Tensor:
        """x (..., K) bf16 times a weight in oneDNN's [N/64][K/2][64][2] layout at weight_ptr
        (N a multiple of 64, K of 4) -> (..., N)."""
        x = x.contiguous()
        y = torch.empty((*x.shape[:-1], n), dtype=torch.bfloat16)
        self._gemv_vnni64(x.data_ptr(), weight_ptr, y.data_ptr(), n, k, torch.get_num_threads())
        return y


def load() -> Bf16Kernel | None:
    """The kernel, built on first use and cached on disk; None where it cannot be had."""
    return _once.get()


def why_unavailable() -> str | None:
    """Why load() returned None, for diagnostics."""
    return _once.unavailable_reason


def _load() -> Bf16Kernel:
    kernel = Bf16Kernel(load_library("bf16_kernel", C_SOURCE))
    # A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch.
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(45, 80, generator=gen).bfloat16()  # row and k tails included
    x = torch.randn(1, 80, generator=gen).bfloat16()
    want = (x.float() @ w.float().T).bfloat16()
    if not torch.allclose(kernel.gemv(x, w).float(), want.float(), rtol=2e-2, atol=2e-2):
        raise NativeUnavailable("self-test failed")
    w = torch.randn(192, 64, generator=gen).bfloat16()
    x = torch.randn(1, 64, generator=gen).bfloat16()
    vnni = w.view(3, 64, 32, 2).transpose(1, 2).contiguous()  # [N/64][K/2][64][2]
    got = kernel.gemv_vnni64(x, vnni.data_ptr(), 192, 64)
    if not torch.allclose(got.float(), (x.float() @ w.float().T), rtol=2e-2, atol=2e-2):
        raise NativeUnavailable("self-test failed (packed layout)")
    return kernel


_once = OnceKernel(_load)
