/* The small operations of a CPU decode step outside the projections: RMSNorm of a few rows and
   attention of one query per head over the KV cache. In PyTorch each is several tensor ops of
   a few microseconds of dispatch apiece, for a few thousand values; here each is one call.

   rmsnorm reproduces the reference (engine/model.py RMSNorm) bit for bit: the squares summed in
   the order of PyTorch's CPU sum (its cascade over `lanes`-wide vectors, see row_sum_squares;
   the caller finds the width that reproduces PyTorch here),
   mean, + eps, 1 / sqrt, x * that, rounded to the input dtype, then weight * it rounded again.
   It is built with -ffp-contract=off so no multiply and add fuse into one rounding.
   attend_step's q/k norms add the rotary embedding of engine/rope.py, rounded as it rounds.

   add_rmsnorm (the residual add, then the norm) and swiglu_bf16 (SiLU looked up in PyTorch's
   own table) are bit-identical too; attend_step does a layer's q/k norm + RoPE, the KV-cache
   write and the attention in one call.

   attention_one_query: scores in fp32 (dot products of bf16 or fp32 rows), softmax in fp32,
   the weighted sum of values in fp32, rounded once at the end; the kv heads are split over
   threads for long caches. See cpu_decode.py for measurements and tolerances. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "simd.h"

#define MAX_LANES 32   /* PyTorch's CPU vector of floats: 8 (AVX2) or 16 (AVX-512) */
#define MAX_GROUP 16   /* query heads per kv head */
#define MAX_HD 256     /* head_dim */
#define PARALLEL_MIN 64 /* cached positions below which one thread does all heads */
/* 16-value chunks of a V row summed per pass: 2 x 8 accumulators fill half of AVX-512's 32
   registers; AVX2's 16 (two per chunk) hold 2 x 4. */
#if defined(__AVX512F__) && defined(__AVX512BW__)
#define V_CHUNKS 8
#else
#define V_CHUNKS 4
#endif

const char* decode_ops_simd(void) { return SIMD_NAME; }

/* PyTorch's multi_row_sum (ReduceOps SumKernel) over `size` blocks of 4 vectors of `lanes`
   floats (squares of x): a cascade of 4 levels whose step is 16 blocks for any row up to
   2^16 vectors. acc[level][vector of the block][lane]. */
static inline __attribute__((always_inline)) void cascade_blocks(const float* x, int64_t size,
                                                                 int lanes,
                                                                 float out[4][MAX_LANES]) {
  enum { LEVELS = 4, ILP = 4 };
  float acc[LEVELS][ILP][MAX_LANES];
  memset(acc, 0, sizeof(acc));
  int64_t ceil_log2 = 1;
  if (size > 2) {
    ceil_log2 = 0;
    while (((int64_t)1 << ceil_log2) < size) ceil_log2++;
  }
  int64_t power = ceil_log2 / LEVELS > 4 ? ceil_log2 / LEVELS : 4;
  int64_t step = (int64_t)1 << power, mask = step - 1;
  int64_t i = 0;
  for (; i + step <= size;) {
    for (int64_t j = 0; j < step; j++, i++)
      for (int k = 0; k < ILP; k++)
        for (int l = 0; l < lanes; l++) {
          float v = x[(i * ILP + k) * lanes + l];
          acc[0][k][l] += v * v;
        }
    for (int j = 1; j < LEVELS; j++) {
      for (int k = 0; k < ILP; k++)
        for (int l = 0; l < lanes; l++) {
          acc[j][k][l] += acc[j - 1][k][l];
          acc[j - 1][k][l] = 0.f;
        }
      if ((i & (mask << (j * power))) != 0) break;
    }
  }
  for (; i < size; i++)
    for (int k = 0; k < ILP; k++)
      for (int l = 0; l < lanes; l++) {
        float v = x[(i * ILP + k) * lanes + l];
        acc[0][k][l] += v * v;
      }
  for (int j = 1; j < LEVELS; j++)
    for (int k = 0; k < ILP; k++)
      for (int l = 0; l < lanes; l++) acc[0][k][l] += acc[j][k][l];
  memcpy(out, acc[0], sizeof(float) * ILP * MAX_LANES);
}

/* sum(x * x) over n floats as PyTorch's vectorized inner sum adds it: vectors of `lanes`,
   four at a time through the cascade, the leftover vectors into the first partial, the four
   partials into one, then the leftover scalars and the partial's lanes in order. */
static inline __attribute__((always_inline)) float sum_squares(const float* x, int64_t n,
                                                                int lanes) {
  if (n < lanes) lanes = 1; /* its scalar inner sum: the same cascade over single values */
  int64_t vectors = n / lanes, blocks = vectors / 4;
  float part[4][MAX_LANES];
  cascade_blocks(x, blocks, lanes, part);
  for (int64_t v = blocks * 4; v < vectors; v++)
    for (int l = 0; l < lanes; l++) {
      float s = x[v * lanes + l];
      part[0][l] += s * s;
    }
  for (int k = 1; k < 4; k++)
    for (int l = 0; l < lanes; l++) part[0][l] += part[k][l];
  float total = 0.f;
  for (int64_t i = vectors * lanes; i < n; i++) total += x[i] * x[i];
  for (int l = 0; l < lanes; l++) total += part[0][l];
  return total;
}

/* The same with the common widths as constants, so the compiler vectorizes each lane loop
   (every lane is still summed in the same order). */
static float row_sum_squares(const float* x, int64_t n, int lanes) {
  if (n >= 16 && lanes == 16) return sum_squares(x, n, 16);
  if (n >= 8 && lanes == 8) return sum_squares(x, n, 8);
  return sum_squares(x, n, lanes);
}

static inline float bf16_rounded(float f) { return bf16_to_f32(f32_to_bf16(f)); }

/* One row's norm as the reference rounds it, left in `row` as floats (bf16 values for bf16). */
static void norm_row(float* row, const void* weight, int64_t dim, float eps, int is_bf16,
                     int lanes) {
  float mean = row_sum_squares(row, dim, lanes) / (float)dim;
  float inv = 1.f / sqrtf(mean + eps);
  if (is_bf16) {
    const uint16_t* w = (const uint16_t*)weight;
    for (int64_t i = 0; i < dim; i++) row[i] = bf16_rounded(bf16_to_f32(w[i]) * bf16_rounded(row[i] * inv));
  } else {
    const float* w = (const float*)weight;
    for (int64_t i = 0; i < dim; i++) row[i] = w[i] * (row[i] * inv);
  }
}

static void load_floats(float* row, const void* x, int64_t at, int64_t dim, int is_bf16) {
  if (is_bf16) {
    const uint16_t* src = (const uint16_t*)x + at;
    for (int64_t i = 0; i < dim; i++) row[i] = bf16_to_f32(src[i]);
  } else {
    memcpy(row, (const float*)x + at, sizeof(float) * (size_t)dim);
  }
}

static void store_floats(void* y, int64_t at, const float* row, int64_t dim, int is_bf16) {
  if (is_bf16) {
    uint16_t* out = (uint16_t*)y + at;
    for (int64_t i = 0; i < dim; i++) out[i] = f32_to_bf16(row[i]);  /* exact: bf16 values */
  } else {
    memcpy((float*)y + at, row, sizeof(float) * (size_t)dim);
  }
}

/* rows x dim values, each row times weight (dim); bf16 or fp32 (x, weight and y alike).
   `lanes`: the float vector width of PyTorch's sum here (8 or 16). */
int rmsnorm(const void* x, const void* weight, void* y, int64_t rows, int64_t dim, float eps,
            int is_bf16, int lanes) {
  float* row = malloc(sizeof(float) * (size_t)dim);
  if (!row) return -1;
  for (int64_t r = 0; r < rows; r++) {
    load_floats(row, x, r * dim, dim, is_bf16);
    norm_row(row, weight, dim, eps, is_bf16, lanes);
    store_floats(y, r * dim, row, dim, is_bf16);
  }
  free(row);
  return 0;
}

/* rmsnorm of each head's row, then the rotary embedding as engine/rope.py rounds it:
   x * cos + cat(-x[half:], x[:half]) * sin, each product and the sum rounded to the dtype.
   cos and sin: one position's dim values in the same dtype. Row r goes to y + r * y_stride. */
static int norm_rope_rows(const void* x, const void* weight, const void* cos, const void* sin,
                          void* y, int64_t rows, int64_t dim, int64_t y_stride, float eps,
                          int is_bf16, int lanes) {
  float* row = malloc(sizeof(float) * (size_t)dim * 4);
  if (!row) return -1;
  float *c = row + dim, *s = row + 2 * dim, *out = row + 3 * dim;
  const int64_t half = dim / 2;
  load_floats(c, cos, 0, dim, is_bf16);
  load_floats(s, sin, 0, dim, is_bf16);
  for (int64_t r = 0; r < rows; r++) {
    load_floats(row, x, r * dim, dim, is_bf16);
    norm_row(row, weight, dim, eps, is_bf16, lanes);
    for (int64_t i = 0; i < dim; i++) {
      float rotated = i < half ? -row[i + half] : row[i - half];
      float a = row[i] * c[i], b = rotated * s[i];
      out[i] = is_bf16 ? bf16_rounded(bf16_rounded(a) + bf16_rounded(b)) : a + b;
    }
    store_floats(y, r * y_stride, out, dim, is_bf16);
  }
  free(row);
  return 0;
}

/* x + residual rounded to the dtype (PyTorch's add) into x_out, then its rmsnorm into y: the
   reference's `x = x + o; norm(x)` bit for bit. rows x dim values, bf16 or fp32. */
int add_rmsnorm(const void* x, const void* residual, const void* weight, void* x_out, void* y,
                int64_t rows, int64_t dim, float eps, int is_bf16, int lanes) {
  float* row = malloc(sizeof(float) * (size_t)dim * 2);
  if (!row) return -1;
  float* other = row + dim;
  for (int64_t r = 0; r < rows; r++) {
    load_floats(row, x, r * dim, dim, is_bf16);
    load_floats(other, residual, r * dim, dim, is_bf16);
    for (int64_t i = 0; i < dim; i++) row[i] = is_bf16 ? bf16_rounded(row[i] + other[i]) : row[i] + other[i];
    store_floats(x_out, r * dim, row, dim, is_bf16);
    norm_row(row, weight, dim, eps, is_bf16, lanes);
    store_floats(y, r * dim, row, dim, is_bf16);
  }
  free(row);
  return 0;
}

/* out + y * w, each product and sum rounded to the dtype as PyTorch rounds its bf16 (or fp32)
   ops; `first`: out is taken as +0 (a mixture of experts' sum starts from zeros). One routed
   expert's weighted output added to the layer's (moe.routed_on_host), bit for bit. */
void scale_add(const void* y, void* out, int64_t n, int is_bf16, float w, int first) {
  if (is_bf16) {
    const uint16_t* src = (const uint16_t*)y;
    uint16_t* dst = (uint16_t*)out;
    for (int64_t i = 0; i < n; i++) {
      float base = first ? 0.f : bf16_to_f32(dst[i]);
      dst[i] = f32_to_bf16(base + bf16_rounded(bf16_to_f32(src[i]) * w));
    }
  } else {
    const float* src = (const float*)y;
    float* dst = (float*)out;
    for (int64_t i = 0; i < n; i++) dst[i] = (first ? 0.f : dst[i]) + src[i] * w;
  }
}

/* SwiGLU of bf16 rows [gate | up] (rows x 2 * inner) -> silu(gate) * up (rows x inner).
   `silu` holds PyTorch's own bf16 SiLU of every bf16 bit pattern as fp32 (made by the caller),
   so the result is the reference's bit for bit: the product of two bf16 values is exact in
   fp32 and is rounded once, as PyTorch's bf16 multiply rounds it. */
void swiglu_bf16(const uint16_t* gate_up, const float* silu, uint16_t* y, int64_t rows,
                 int64_t inner) {
  enum { BLOCK = 256 };
  float looked_up[BLOCK];
  for (int64_t r = 0; r < rows; r++) {
    const uint16_t *gate = gate_up + r * 2 * inner, *up = gate + inner;
    uint16_t* out = y + r * inner;
    /* Scalar look-ups into a block, then vector products: faster than gather instructions. */
    for (int64_t b = 0; b < inner; b += BLOCK) {
      const int64_t n = inner - b < BLOCK ? inner - b : BLOCK;
      for (int64_t i = 0; i < n; i++) looked_up[i] = silu[gate[b + i]];
      int64_t i = 0;
      for (; i + 16 <= n; i += 16)
        vstore_bf16(out + b + i, vmul(vload(looked_up + i), vload_bf16(up + b + i)));
      for (; i < n; i++) out[b + i] = f32_to_bf16(looked_up[i] * bf16_to_f32(up[b + i]));
    }
  }
}

/* e^x for x <= 0 (scores less their maximum), about 2 ulp: 2^n * p(r), r = x - n ln 2. */
#if defined(__AVX512F__) && defined(__AVX512BW__)
static inline vf vexp_neg(vf x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}
#else
static inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
static inline vf vexp_neg(vf x) {
  vf r = {exp8(x.a), exp8(x.b)};
  return r;
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
/* Lane i of the result: the sum of v[i]'s 16 lanes (a transposing tree of 15 adds). */
static inline vf sum16(const vf v[16]) {
  vf w[8], z[4];
  for (int k = 0; k < 8; k++)
    w[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]),
                         _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  for (int m = 0; m < 4; m++)
    z[m] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * m], w[2 * m + 1], 0x44),
                         _mm512_shuffle_ps(w[2 * m], w[2 * m + 1], 0xEE));
  vf u0 = _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x44), _mm512_shuffle_f32x4(z[0], z[1], 0xEE));
  vf u1 = _mm512_add_ps(_mm512_shuffle_f32x4(z[2], z[3], 0x44), _mm512_shuffle_f32x4(z[2], z[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, 0x88), _mm512_shuffle_f32x4(u0, u1, 0xDD));
}
#endif

static inline vf load_row(const void* base, int64_t at, int is_bf16) {
  return is_bf16 ? vload_bf16((const uint16_t*)base + at) : vload((const float*)base + at);
}

/* One kv head g: its `group` query heads over `len` cached positions. */
static void attend_kv_head(const void* q, const void* k, const void* v, void* out, int64_t g,
                           int64_t group, int64_t len, int64_t hd, int64_t head_stride,
                           float scale, int is_bf16, float* scores) {
  const int64_t chunks = hd / 16;
  vf qv[MAX_GROUP * MAX_HD / 16];
  for (int64_t h = 0; h < group; h++)
    for (int64_t c = 0; c < chunks; c++) qv[h * chunks + c] = load_row(q, (g * group + h) * hd + c * 16, is_bf16);
  const int64_t kv0 = g * head_stride;
  int64_t j0 = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  /* 16 positions at a time: their 16 dot-product vectors summed across lanes together
     (sum16), where one reduction each costs as much as the products. */
  for (; j0 + 16 <= len; j0 += 16)
    for (int64_t h = 0; h < group; h++) {
      vf dot[16];
      for (int jj = 0; jj < 16; jj++) {
        const int64_t row = kv0 + (j0 + jj) * hd;
        vf acc = vmul(qv[h * chunks], load_row(k, row, is_bf16));
        for (int64_t c = 1; c < chunks; c++) acc = vfma(qv[h * chunks + c], load_row(k, row + c * 16, is_bf16), acc);
        dot[jj] = acc;
      }
      vstore(scores + h * len + j0, vmul(sum16(dot), vset1(scale)));
    }
#endif
  for (int64_t j = j0; j < len; j++) {
    vf kr[MAX_HD / 16];
    for (int64_t c = 0; c < chunks; c++) kr[c] = load_row(k, kv0 + j * hd + c * 16, is_bf16);
    for (int64_t h = 0; h < group; h++) {
      vf acc = vmul(qv[h * chunks], kr[0]);
      for (int64_t c = 1; c < chunks; c++) acc = vfma(qv[h * chunks + c], kr[c], acc);
      scores[h * len + j] = vsum(acc) * scale;
    }
  }
  float total[MAX_GROUP];
  for (int64_t h = 0; h < group; h++) {
    float* s = scores + h * len;
    float m = -INFINITY;
    for (int64_t j = 0; j < len; j++) m = s[j] > m ? s[j] : m;
    vf sum = vzero(), mv = vset1(m);
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
      vf e = vexp_neg(vadd(vload(s + j), vmul(mv, vset1(-1.f))));
      vstore(s + j, e);
      sum = vadd(sum, e);
    }
    float t = vsum(sum);
    for (; j < len; j++) {
      s[j] = expf(s[j] - m);
      t += s[j];
    }
    total[h] = t;
  }
  /* The weighted sum of values: a pair of heads and V_CHUNKS x 16 of the head's values at a
     time in registers, through every position (independent sums, no stores in the loop).
     With AVX-512 that is a whole 128-value row: each V row is read once, in order. */
  float acc[MAX_GROUP * MAX_HD];
  for (int64_t h = 0; h < group; h += 2) {
    const int pair = h + 1 < group;
    const float *s0 = scores + h * len, *s1 = scores + (h + pair) * len;
    for (int64_t c = 0; c < chunks; c += V_CHUNKS) {
      const int64_t n = chunks - c < V_CHUNKS ? chunks - c : V_CHUNKS;
      vf a[V_CHUNKS], b[V_CHUNKS];
      for (int i = 0; i < V_CHUNKS; i++) a[i] = b[i] = vzero();
      for (int64_t j = 0; j < len; j++) {
        const int64_t row = kv0 + j * hd + c * 16;
        vf w0 = vset1(s0[j]), w1 = vset1(s1[j]);
        for (int64_t i = 0; i < n; i++) {
          vf vr = load_row(v, row + i * 16, is_bf16);
          a[i] = vfma(w0, vr, a[i]);
          b[i] = vfma(w1, vr, b[i]);
        }
      }
      for (int64_t i = 0; i < n; i++) {
        vstore(acc + h * hd + (c + i) * 16, a[i]);
        if (pair) vstore(acc + (h + 1) * hd + (c + i) * 16, b[i]);
      }
    }
  }
  for (int64_t h = 0; h < group; h++) {
    vf inv = vset1(1.f / total[h]);
    for (int64_t c = 0; c < chunks; c++) {
      vf o = vmul(vload(acc + h * hd + c * 16), inv);
      int64_t at = (g * group + h) * hd + c * 16;
      if (is_bf16)
        vstore_bf16((uint16_t*)out + at, o);
      else
        vstore((float*)out + at, o);
    }
  }
}

/* q and out: heads x hd. k, v: kv_heads blocks `head_stride` elements apart, each len rows of
   hd (the cache's layout). hd a multiple of 16 up to MAX_HD, heads / kv_heads up to MAX_GROUP
   (the caller checks). Returns 0, or -1 when scratch memory could not be had. */
int attention_one_query(const void* q, const void* k, const void* v, void* out, int64_t heads,
                        int64_t kv_heads, int64_t len, int64_t hd, int64_t head_stride,
                        float scale, int is_bf16, int threads) {
  const int64_t group = heads / kv_heads;
  int failed = 0;
  int nt = len >= PARALLEL_MIN && threads > 1 ? threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1) reduction(| : failed)
  for (int64_t g = 0; g < kv_heads; g++) {
    float* scores = malloc(sizeof(float) * (size_t)(group * len));
    if (!scores) {
      failed = 1;
      continue;
    }
    attend_kv_head(q, k, v, out, g, group, len, hd, head_stride, scale, is_bf16, scores);
    free(scores);
  }
  return failed ? -1 : 0;
}

/* A decode layer's attention from its q/k/v projection of one position: q and k normed and
   rotated (norm_rope_rows, as the reference's q/k norms and apply_rope), k and v written into
   the cache at `pos`, then attention_one_query over positions 0..pos. qkv: heads + 2 kv_heads
   rows of hd; the caches: kv_heads blocks `head_stride` elements apart, rows of hd; out:
   heads x hd; cos and sin: the position's hd values. The arguments that change from step to
   step come last, so a caller can bind the rest once. Returns 0, or -1 when scratch memory
   could not be had. */
int attend_step(const void* qkv, const void* q_weight, const void* k_weight, void* k_cache,
                void* v_cache, void* out, int64_t heads, int64_t kv_heads, int64_t hd,
                int64_t head_stride, float q_eps, float k_eps, float scale, int is_bf16,
                int lanes, const void* cos, const void* sin, int64_t pos, int threads) {
  const size_t size = is_bf16 ? 2 : 4;
  const char* src = (const char*)qkv;
  void* q = malloc(size * (size_t)(heads * hd));
  if (!q) return -1;
  int failed = norm_rope_rows(src, q_weight, cos, sin, q, heads, hd, hd, q_eps, is_bf16, lanes);
  char* k_at = (char*)k_cache + size * (size_t)(pos * hd);
  failed |= norm_rope_rows(src + size * (size_t)(heads * hd), k_weight, cos, sin, k_at, kv_heads,
                           hd, head_stride, k_eps, is_bf16, lanes);
  const char* v = src + size * (size_t)((heads + kv_heads) * hd);
  for (int64_t g = 0; g < kv_heads; g++)
    memcpy((char*)v_cache + size * (size_t)(g * head_stride + pos * hd), v + size * (size_t)(g * hd),
           size * (size_t)hd);
  if (!failed)
    failed = attention_one_query(q, k_cache, v_cache, out, heads, kv_heads, pos + 1, hd,
                                 head_stride, scale, is_bf16, threads);
  free(q);
  return failed ? -1 : 0;
}
