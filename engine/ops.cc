// Kernel implementations: scalar reference versions, AVX2 and AVX-512 variants compiled with target
// attributes (the build itself stays plain x86-64), and run-time dispatch on CPU features.
#include "engine/ops.h"


#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/safetensors.h"
#include "engine/simd.h"

namespace conflux {

// ---------------------------------------------------------------- scalar twins
namespace scalar {

void dot_rows(DType t, const float* x, const void* w, size_t stride, int rows, int n, float* out) {
  for (int r = 0; r < rows; ++r) {
    double acc = 0.0;  // double: the reference the SIMD sums are compared against
    for (int i = 0; i < n; ++i) {
      float wv;
      switch (t) {
        case DType::F32: wv = static_cast<const float*>(w)[size_t(r) * stride + i]; break;
        case DType::BF16: wv = bf16_to_f32(static_cast<const uint16_t*>(w)[size_t(r) * stride + i]); break;
        default: wv = f16_to_f32(static_cast<const uint16_t*>(w)[size_t(r) * stride + i]); break;
      }
      acc += double(x[i]) * wv;
    }
    out[r] = float(acc);
  }
}

float dot_f32(const float* a, const float* b, int n) {
  double acc = 0.0;
  for (int i = 0; i < n; ++i) acc += double(a[i]) * b[i];
  return float(acc);
}

void axpy(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

void softcap(float* y, int n, float cap) {
  for (int i = 0; i < n; ++i) y[i] = cap * std::tanh(y[i] / cap);
}

void gelu_mul(float* a, const float* b, int n) {
  for (int i = 0; i < n; ++i) a[i] = gelu_tanh(a[i]) * b[i];
}

float stream_sum(const float* x, size_t n) {
  double acc = 0.0;
  for (size_t i = 0; i < n; ++i) acc += x[i];
  return float(acc);
}

int32_t argmax(const float* x, int n) {
  int32_t best = 0;
  float top = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i)
    if (x[i] > top) {  // false for NaN; strict, so the first of equal maxima stays
      top = x[i];
      best = i;
    }
  return best;
}

}  // namespace scalar

// ---------------------------------------------------------------- AVX2 + FMA + F16C
namespace {

using simd::hsum256;
using simd::kPrefetchBytes;

template <DType T>
CONFLUX_AVX2 inline __m256 load8(const void* w, size_t i) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + i);
  } else if constexpr (T == DType::BF16) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_cvtph_ps(h);
  }
}

template <DType T>
inline float load1(const void* w, size_t i) {
  if constexpr (T == DType::F32) return static_cast<const float*>(w)[i];
  else if constexpr (T == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
  else return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
}

template <DType T>
CONFLUX_AVX2 void dot_rows_avx2(const float* x, const void* w, size_t stride, int rows, int n, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    for (int r = 0; r < rows; ++r) acc[r] = _mm256_fmadd_ps(xv, load8<T>(w, size_t(r) * stride + i), acc[r]);
  }
  for (int r = 0; r < rows; ++r) {
    float s = hsum256(acc[r]);
    for (int j = i; j < n; ++j) s += x[j] * load1<T>(w, size_t(r) * stride + j);
    out[r] = s;
  }
}

// ---------------------------------------------------------------- AVX-512
template <DType T>
CONFLUX_AVX512 inline __m512 load16(const void* w, size_t i) {
  if constexpr (T == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + i);
  } else if constexpr (T == DType::BF16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
    return _mm512_cvtph_ps(h);
  }
}

template <DType T>
CONFLUX_AVX512 void dot_rows_avx512(const float* x, const void* w, size_t stride, int rows, int n, float* out) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xv = _mm512_loadu_ps(x + i);
    for (int r = 0; r < rows; ++r) acc[r] = _mm512_fmadd_ps(xv, load16<T>(w, size_t(r) * stride + i), acc[r]);
  }
  for (int r = 0; r < rows; ++r) {
    float s = _mm512_reduce_add_ps(acc[r]);
    for (int j = i; j < n; ++j) s += x[j] * load1<T>(w, size_t(r) * stride + j);
    out[r] = s;
  }
}

template <DType T>
CONFLUX_AVX512 void widen_avx512(const void* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16<T>(src, i));
  for (; i < n; ++i) dst[i] = load1<T>(src, i);
}
template <DType T>
CONFLUX_AVX2 void widen_avx2(const void* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8<T>(src, i));
  for (; i < n; ++i) dst[i] = load1<T>(src, i);
}

// One row at a time, four accumulators over 64 elements per step: a sequential stream the hardware
// prefetchers keep ahead of. Interleaving four rows (dot_rows_avx512) reached about half the read
// bandwidth when W comes from memory. Each step asks for its lines simd::kPrefetchBytes ahead.
template <DType T>
CONFLUX_AVX512 void dot_rows_streaming_avx512(const float* x, const void* w, size_t stride, int rows, int n,
                                              float* out) {
  constexpr size_t kElemBytes = T == DType::F32 ? 4 : 2;
  const char* wb = static_cast<const char*>(w);
  for (int r = 0; r < rows; ++r) {
    const size_t base = size_t(r) * stride;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
      const char* ahead = wb + (base + i) * kElemBytes + kPrefetchBytes;
      for (size_t line = 0; line < 64 * kElemBytes; line += 64) __builtin_prefetch(ahead + line);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16<T>(w, base + i), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), load16<T>(w, base + i + 16), a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), load16<T>(w, base + i + 32), a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), load16<T>(w, base + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16<T>(w, base + i), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; ++i) s += x[i] * load1<T>(w, base + i);
    out[r] = s;
  }
}

template <DType T>
CONFLUX_AVX2 void dot_rows_streaming_avx2(const float* x, const void* w, size_t stride, int rows, int n, float* out) {
  for (int r = 0; r < rows; ++r) {
    const size_t base = size_t(r) * stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8<T>(w, base + i), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load8<T>(w, base + i + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load8<T>(w, base + i + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load8<T>(w, base + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8<T>(w, base + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i) s += x[i] * load1<T>(w, base + i);
    out[r] = s;
  }
}

// A 4 x 4 tile of dot products: 16 accumulators, 8 loads per 16 FMAs (dot_rows: 5 loads per 4), so the
// prefill GEMM runs at the FMA rate instead of the load rate. Tails use masked loads.
CONFLUX_AVX512 void dot_tile4x4_avx512(const float* x, const float* w, size_t ld, int n, float* y, size_t ldy) {
  // Sixteen named accumulators: an array of them would live on the stack (GCC does not unroll the
  // j/r loops at -O2), turning every FMA into a load-modify-store.
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
  const float *x0 = x, *x1 = x + ld, *x2 = x + 2 * ld, *x3 = x + 3 * ld;
  const float *w0 = w, *w1 = w + ld, *w2 = w + 2 * ld, *w3 = w + 3 * ld;
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 a0 = _mm512_maskz_loadu_ps(m, x0 + i), a1 = _mm512_maskz_loadu_ps(m, x1 + i);
    const __m512 a2 = _mm512_maskz_loadu_ps(m, x2 + i), a3 = _mm512_maskz_loadu_ps(m, x3 + i);
    __m512 b = _mm512_maskz_loadu_ps(m, w0 + i);
    c00 = _mm512_fmadd_ps(a0, b, c00);
    c10 = _mm512_fmadd_ps(a1, b, c10);
    c20 = _mm512_fmadd_ps(a2, b, c20);
    c30 = _mm512_fmadd_ps(a3, b, c30);
    b = _mm512_maskz_loadu_ps(m, w1 + i);
    c01 = _mm512_fmadd_ps(a0, b, c01);
    c11 = _mm512_fmadd_ps(a1, b, c11);
    c21 = _mm512_fmadd_ps(a2, b, c21);
    c31 = _mm512_fmadd_ps(a3, b, c31);
    b = _mm512_maskz_loadu_ps(m, w2 + i);
    c02 = _mm512_fmadd_ps(a0, b, c02);
    c12 = _mm512_fmadd_ps(a1, b, c12);
    c22 = _mm512_fmadd_ps(a2, b, c22);
    c32 = _mm512_fmadd_ps(a3, b, c32);
    b = _mm512_maskz_loadu_ps(m, w3 + i);
    c03 = _mm512_fmadd_ps(a0, b, c03);
    c13 = _mm512_fmadd_ps(a1, b, c13);
    c23 = _mm512_fmadd_ps(a2, b, c23);
    c33 = _mm512_fmadd_ps(a3, b, c33);
  }
  const __m512 rows[4][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}, {c30, c31, c32, c33}};
  for (int j = 0; j < 4; ++j)
    for (int r = 0; r < 4; ++r) y[size_t(j) * ldy + r] = _mm512_reduce_add_ps(rows[j][r]);
}

// Attention's q·k over one head (hd = 256 or 512): two accumulators in registers, masked tail.
CONFLUX_AVX512 float dot_f32_avx512(const float* a, const float* b, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
// Attention over one head: the kernel loops over the keys itself (one call per head, not per key).
template <DType T>
CONFLUX_AVX512 void attention_scores_avx512(const float* q, const void* k, size_t stride, int nk, int hd,
                                            float* scores) {
  for (int i = 0; i < nk; ++i) {
    const size_t base = size_t(i) * stride;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int c = 0;
    for (; c + 32 <= hd; c += 32) {
      s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), load16<T>(k, base + c), s0);
      s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 16), load16<T>(k, base + c + 16), s1);
    }
    for (; c + 16 <= hd; c += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), load16<T>(k, base + c), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; c < hd; ++c) s += q[c] * load1<T>(k, base + c);
    scores[i] = s;
  }
}

// out[c .. c + 16V) += Σ_i p[i] · v_i[c .. c + 16V): V accumulators stay in registers over all keys.
template <DType T, int V>
CONFLUX_AVX512 void attention_values_chunk(const float* p, const void* v, size_t c0, size_t stride, int nk,
                                           float* out) {
  __m512 acc[V];
#pragma GCC unroll 16
  for (int c = 0; c < V; ++c) acc[c] = _mm512_loadu_ps(out + 16 * c);
  for (int i = 0; i < nk; ++i) {
    const __m512 pi = _mm512_set1_ps(p[i]);
    const size_t base = size_t(i) * stride + c0;
#pragma GCC unroll 16
    for (int c = 0; c < V; ++c) acc[c] = _mm512_fmadd_ps(pi, load16<T>(v, base + 16 * c), acc[c]);
  }
#pragma GCC unroll 16
  for (int c = 0; c < V; ++c) _mm512_storeu_ps(out + 16 * c, acc[c]);
}

template <DType T>
CONFLUX_AVX512 void attention_values_avx512(const float* p, const void* v, size_t stride, int nk, int hd, float* out) {
  int c = 0;
  for (; c + 256 <= hd; c += 256) attention_values_chunk<T, 16>(p, v, size_t(c), stride, nk, out + c);
  for (; c + 64 <= hd; c += 64) attention_values_chunk<T, 4>(p, v, size_t(c), stride, nk, out + c);
  for (; c + 16 <= hd; c += 16) attention_values_chunk<T, 1>(p, v, size_t(c), stride, nk, out + c);
  for (; c < hd; ++c)
    for (int i = 0; i < nk; ++i) out[c] += p[i] * load1<T>(v, size_t(i) * stride + size_t(c));
}

CONFLUX_AVX2 float dot_f32_avx2(const float* a, const float* b, int n) {
  float out;
  dot_rows_avx2<DType::F32>(a, b, 0, 1, n, &out);
  return out;
}

// exp(z) for z <= 0 (Cephes expf): z = k ln2 + r with |r| <= ln2 / 2, exp(r) by a degree-6 polynomial,
// 2^k put into the exponent bits. z is clamped at -87 so 2^k stays a normal float.
constexpr float kExpLow = -87.f, kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

CONFLUX_AVX512 inline __m512 exp_neg16(__m512 z) {
  z = _mm512_max_ps(z, _mm512_set1_ps(kExpLow));
  const __m512 k =
      _mm512_roundscale_ps(_mm512_mul_ps(z, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Hi), z);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpP[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP[i]));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}
// tanh(v) = sign(v) (1 - e) / (1 + e), e = exp(-2|v|): no overflow, absolute error ~1e-7.
CONFLUX_AVX512 inline __m512 tanh16(__m512 v) {
  const __m512 a = _mm512_abs_ps(v);
  const __m512 e = exp_neg16(_mm512_mul_ps(a, _mm512_set1_ps(-2.f)));
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(int(0x80000000u)));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}
CONFLUX_AVX2 inline __m256 exp_neg8(__m256 z) {
  z = _mm256_max_ps(z, _mm256_set1_ps(kExpLow));
  const __m256 k =
      _mm256_round_ps(_mm256_mul_ps(z, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Hi), z);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpP[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP[i]));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
CONFLUX_AVX2 inline __m256 tanh8(__m256 v) {
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(int(0x80000000u)));
  const __m256 a = _mm256_andnot_ps(sign_mask, v);
  const __m256 e = exp_neg8(_mm256_mul_ps(a, _mm256_set1_ps(-2.f)));
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  return _mm256_or_ps(t, _mm256_and_ps(v, sign_mask));
}

// The tail goes through the same vector code (masked), so every value gets the same result wherever it
// sits in the call: the head's matmul soft-caps each task's rows separately, and logits must not depend
// on how the rows were cut into tasks (the thread count).
CONFLUX_AVX512 void softcap_avx512(float* y, int n, float cap) {
  const __m512 c = _mm512_set1_ps(cap), inv = _mm512_set1_ps(1.f / cap);
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(c, tanh16(_mm512_mul_ps(_mm512_loadu_ps(y + i), inv))));
  if (i == n) return;
  const __mmask16 tail = __mmask16((1u << (n - i)) - 1);
  const __m512 v = _mm512_maskz_loadu_ps(tail, y + i);
  _mm512_mask_storeu_ps(y + i, tail, _mm512_mul_ps(c, tanh16(_mm512_mul_ps(v, inv))));
}
CONFLUX_AVX2 void softcap_avx2(float* y, int n, float cap) {
  const __m256 c = _mm256_set1_ps(cap), inv = _mm256_set1_ps(1.f / cap);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(c, tanh8(_mm256_mul_ps(_mm256_loadu_ps(y + i), inv))));
  if (i == n) return;
  // Lanes below n - i: all bits set (the sign bit selects them for maskload / maskstore).
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), lane);
  const __m256 v = _mm256_maskload_ps(y + i, tail);
  _mm256_maskstore_ps(y + i, tail, _mm256_mul_ps(c, tanh8(_mm256_mul_ps(v, inv))));
}

// gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
constexpr float kSqrt2OverPi = 0.7978845608028654f, kGeluCubic = 0.044715f;
CONFLUX_AVX512 void gelu_mul_avx512(float* a, const float* b, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(a + i);
    const __m512 inner =
        _mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi),
                      _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(kGeluCubic), x), _mm512_mul_ps(x, x), x));
    const __m512 g =
        _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.f), tanh16(inner)));
    _mm512_storeu_ps(a + i, _mm512_mul_ps(g, _mm512_loadu_ps(b + i)));
  }
  scalar::gelu_mul(a + i, b + i, n - i);
}
CONFLUX_AVX2 void gelu_mul_avx2(float* a, const float* b, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(a + i);
    const __m256 inner =
        _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi),
                      _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(kGeluCubic), x), _mm256_mul_ps(x, x), x));
    const __m256 g =
        _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.f), tanh8(inner)));
    _mm256_storeu_ps(a + i, _mm256_mul_ps(g, _mm256_loadu_ps(b + i)));
  }
  scalar::gelu_mul(a + i, b + i, n - i);
}

// Four accumulators of 16 floats: 256 bytes per step keep enough loads in flight to saturate memory.
CONFLUX_AVX512 float stream_sum_avx512(const float* x, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; ++i) s += x[i];
  return s;
}
CONFLUX_AVX2 float stream_sum_avx2(const float* x, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
  }
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) s += x[i];
  return s;
}

// argmax in two passes: the maximum (ordered compares, so NaN never wins), then its first index.
CONFLUX_AVX512 int32_t argmax_avx512(const float* x, int n) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  __m512 top = _mm512_set1_ps(neg_inf);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    top = _mm512_mask_mov_ps(top, _mm512_cmp_ps_mask(v, top, _CMP_GT_OQ), v);
  }
  float best = _mm512_reduce_max_ps(top);
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  if (best == neg_inf) return 0;  // nothing above -inf: the scalar twin's answer
  const __m512 want = _mm512_set1_ps(best);
  for (i = 0; i + 16 <= n; i += 16)
    if (const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), want, _CMP_EQ_OQ))
      return i + __builtin_ctz(hit);
  for (; i < n; ++i)
    if (x[i] == best) return i;
  return 0;
}
CONFLUX_AVX2 int32_t argmax_avx2(const float* x, int n) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  __m256 top = _mm256_set1_ps(neg_inf);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    top = _mm256_blendv_ps(top, v, _mm256_cmp_ps(v, top, _CMP_GT_OQ));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, top);
  float best = neg_inf;
  for (float v : lanes) best = v > best ? v : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  if (best == neg_inf) return 0;
  const __m256 want = _mm256_set1_ps(best);
  for (i = 0; i + 8 <= n; i += 8)
    if (const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), want, _CMP_EQ_OQ)))
      return i + __builtin_ctz(unsigned(hit));
  for (; i < n; ++i)
    if (x[i] == best) return i;
  return 0;
}

CONFLUX_AVX512 void axpy_avx512(float a, const float* x, float* y, int n) {
  const __m512 av = _mm512_set1_ps(a);
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}
CONFLUX_AVX2 void axpy_avx2(float a, const float* x, float* y, int n) {
  const __m256 av = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

// ---------------------------------------------------------------- dispatch
using detail::Isa;

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) return Isa::Avx2;
  return Isa::Scalar;
}

const Isa kDetectedIsa = detect_isa();
const bool kHasVnni = kDetectedIsa == Isa::Avx512 && __builtin_cpu_supports("avx512vnni");
Isa g_isa = kDetectedIsa;

}  // namespace

namespace detail {
Isa active_isa() { return g_isa; }
bool cpu_has_avx512_vnni() { return kHasVnni; }
Isa detected_isa() { return kDetectedIsa; }
Isa force_isa(Isa isa) {
  g_isa = std::min(isa, kDetectedIsa);
  return g_isa;
}
}  // namespace detail

const char* kernel_isa() {
  switch (g_isa) {
    case Isa::Avx512: return kHasVnni ? "avx512-vnni" : "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

void force_scalar_kernels(bool on) { g_isa = on ? Isa::Scalar : kDetectedIsa; }

void dot_rows(DType t, const float* x, const void* w, size_t stride, int rows, int n, float* out) {
  switch (g_isa) {
    case Isa::Avx512:
      switch (t) {
        case DType::F32: return dot_rows_avx512<DType::F32>(x, w, stride, rows, n, out);
        case DType::BF16: return dot_rows_avx512<DType::BF16>(x, w, stride, rows, n, out);
        case DType::F16: return dot_rows_avx512<DType::F16>(x, w, stride, rows, n, out);
        default: break;  // quantized types go through dot_rows_quant
      }
      break;
    case Isa::Avx2:
      switch (t) {
        case DType::F32: return dot_rows_avx2<DType::F32>(x, w, stride, rows, n, out);
        case DType::BF16: return dot_rows_avx2<DType::BF16>(x, w, stride, rows, n, out);
        case DType::F16: return dot_rows_avx2<DType::F16>(x, w, stride, rows, n, out);
        default: break;
      }
      break;
    case Isa::Scalar: break;
  }
  scalar::dot_rows(t, x, w, stride, rows, n, out);
}

void dot_rows_streaming(DType t, const float* x, const void* w, size_t stride, int rows, int n, float* out) {
  switch (g_isa) {
    case Isa::Avx512:
      switch (t) {
        case DType::F32: return dot_rows_streaming_avx512<DType::F32>(x, w, stride, rows, n, out);
        case DType::BF16: return dot_rows_streaming_avx512<DType::BF16>(x, w, stride, rows, n, out);
        case DType::F16: return dot_rows_streaming_avx512<DType::F16>(x, w, stride, rows, n, out);
        default: break;
      }
      break;
    case Isa::Avx2:
      switch (t) {
        case DType::F32: return dot_rows_streaming_avx2<DType::F32>(x, w, stride, rows, n, out);
        case DType::BF16: return dot_rows_streaming_avx2<DType::BF16>(x, w, stride, rows, n, out);
        case DType::F16: return dot_rows_streaming_avx2<DType::F16>(x, w, stride, rows, n, out);
        default: break;
      }
      break;
    case Isa::Scalar: break;
  }
  scalar::dot_rows(t, x, w, stride, rows, n, out);
}

void widen_to_f32(DType t, const void* src, float* dst, size_t n) {
  if (t == DType::BF16 || t == DType::F16) {
    const bool bf16 = t == DType::BF16;
    switch (g_isa) {
      case Isa::Avx512: return bf16 ? widen_avx512<DType::BF16>(src, dst, n) : widen_avx512<DType::F16>(src, dst, n);
      case Isa::Avx2: return bf16 ? widen_avx2<DType::BF16>(src, dst, n) : widen_avx2<DType::F16>(src, dst, n);
      case Isa::Scalar: break;
    }
  }
  convert_to_f32(t, src, dst, n);
}

void dot_tile(const float* x, int nx, const float* w, int nw, size_t ld, int n, float* y, size_t ldy) {
  if (g_isa == Isa::Avx512 && nx == 4 && nw == 4) return dot_tile4x4_avx512(x, w, ld, n, y, ldy);
  for (int j = 0; j < nx; ++j) dot_rows(DType::F32, x + size_t(j) * ld, w, ld, nw, n, y + size_t(j) * ldy);
}

float dot_f32(const float* a, const float* b, int n) {
  switch (g_isa) {
    case Isa::Avx512: return dot_f32_avx512(a, b, n);
    case Isa::Avx2: return dot_f32_avx2(a, b, n);
    default: return scalar::dot_f32(a, b, n);
  }
}

void attention_scores(const float* q, const void* k, DType t, size_t stride, int nk, int hd, float* scores) {
  if (g_isa == Isa::Avx512) {
    if (t == DType::BF16) return attention_scores_avx512<DType::BF16>(q, k, stride, nk, hd, scores);
    return attention_scores_avx512<DType::F32>(q, k, stride, nk, hd, scores);
  }
  const size_t elem = dtype_size(t);
  for (int i = 0; i < nk; ++i) {
    const uint8_t* ki = static_cast<const uint8_t*>(k) + size_t(i) * stride * elem;
    dot_rows(t, q, ki, 0, 1, hd, scores + i);
  }
}

void attention_values(const float* p, const void* v, DType t, size_t stride, int nk, int hd, float* out) {
  if (g_isa == Isa::Avx512) {
    if (t == DType::BF16) return attention_values_avx512<DType::BF16>(p, v, stride, nk, hd, out);
    return attention_values_avx512<DType::F32>(p, v, stride, nk, hd, out);
  }
  if (t == DType::F32) {
    for (int i = 0; i < nk; ++i) axpy(p[i], static_cast<const float*>(v) + size_t(i) * stride, out, hd);
    return;
  }
  const uint16_t* vb = static_cast<const uint16_t*>(v);
  for (int i = 0; i < nk; ++i)
    for (int c = 0; c < hd; ++c) out[c] += p[i] * bf16_to_f32(vb[size_t(i) * stride + size_t(c)]);
}

int32_t argmax(const float* x, int n) {
  switch (g_isa) {
    case Isa::Avx512: return argmax_avx512(x, n);
    case Isa::Avx2: return argmax_avx2(x, n);
    default: return scalar::argmax(x, n);
  }
}

float stream_sum(const float* x, size_t n) {
  switch (g_isa) {
    case Isa::Avx512: return stream_sum_avx512(x, n);
    case Isa::Avx2: return stream_sum_avx2(x, n);
    default: return scalar::stream_sum(x, n);
  }
}

void axpy(float a, const float* x, float* y, int n) {
  switch (g_isa) {
    case Isa::Avx512: return axpy_avx512(a, x, y, n);
    case Isa::Avx2: return axpy_avx2(a, x, y, n);
    default: return scalar::axpy(a, x, y, n);
  }
}

// ---------------------------------------------------------------- small ops
void rms_norm(const float* x, const float* w, float* y, int n, float eps) {
  // Four independent partial sums: one chain of n double additions waits ~4 cycles on each, which was
  // ~4 us per decode layer of the 270M (4096 normed values: input, post-attention, pre- and post-MLP,
  // q/k/v heads); four chains let the compiler keep them in two SSE2 registers.
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) part[k] += double(x[i + k]) * x[i + k];
  for (; i < n; ++i) part[0] += double(x[i]) * x[i];
  const double ss = (part[0] + part[1]) + (part[2] + part[3]);
  const float scale = float(1.0 / std::sqrt(ss / n + eps));
  if (w) {
    for (int i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
  } else {
    for (int i = 0; i < n; ++i) y[i] = x[i] * scale;
  }
}

void layer_norm(const float* x, const float* w, const float* b, float* y, int n, float eps) {
  double mean = 0.0;
  for (int i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  double var = 0.0;
  for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= n;
  const double inv = 1.0 / std::sqrt(var + eps);
  for (int i = 0; i < n; ++i) y[i] = float((x[i] - mean) * inv) * w[i] + b[i];
}

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

void gelu_mul(float* a, const float* b, int n) {
  switch (g_isa) {
    case Isa::Avx512: return gelu_mul_avx512(a, b, n);
    case Isa::Avx2: return gelu_mul_avx2(a, b, n);
    default: return scalar::gelu_mul(a, b, n);
  }
}

void rope_angles(int n_pairs, const float* inv_freq, int64_t pos, float* cos_sin) {
  for (int i = 0; i < n_pairs; ++i) {
    // Angle in double: positions reach 262144 and f32 would lose the phase.
    const double angle = double(pos) * inv_freq[i];
    cos_sin[2 * i] = float(std::cos(angle));
    cos_sin[2 * i + 1] = float(std::sin(angle));
  }
}

void rope_neox_table(float* x, int hd, int n_pairs, const float* cos_sin) {
  const int half = hd / 2;
  for (int i = 0; i < n_pairs; ++i) {
    const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

void rope_neox(float* x, int hd, int n_pairs, const float* inv_freq, int64_t pos) {
  constexpr int kPairsPerStep = 64;  // angles of a few pairs at a time, on the stack
  float cos_sin[2 * kPairsPerStep];
  const int half = hd / 2;
  for (int i0 = 0; i0 < n_pairs; i0 += kPairsPerStep) {
    const int k = std::min(kPairsPerStep, n_pairs - i0);
    rope_angles(k, inv_freq + i0, pos, cos_sin);
    for (int i = 0; i < k; ++i) {
      const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
      const float a = x[i0 + i], b = x[i0 + i + half];
      x[i0 + i] = a * c - b * s;
      x[i0 + i + half] = b * c + a * s;
    }
  }
}

void softcap(float* y, int n, float cap) {
  switch (g_isa) {
    case Isa::Avx512: return softcap_avx512(y, n, cap);
    case Isa::Avx2: return softcap_avx2(y, n, cap);
    default: return scalar::softcap(y, n, cap);
  }
}

float softmax(float* x, int n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  if (mx == -std::numeric_limits<float>::infinity()) {
    for (int i = 0; i < n; ++i) x[i] = 0.f;
    return mx;
  }
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
  return mx + float(std::log(sum));
}

}  // namespace conflux
