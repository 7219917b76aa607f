// Kernels for block-quantized weights (Q8_0 / Q4_0): activation quantization and the integer
// matrix-vector dot. Scalar twins first, then AVX2 (maddubs) and AVX-512 VNNI (vpdpbusd) variants
// compiled with target attributes; dispatch follows ops.cc's run-time choice. Products of one block
// are exact in int32 (32 · 127 · 127 < 2^31), so the ISAs differ only in the f32 sums across blocks.

#include <algorithm>
#include <cmath>

#include "engine/ops.h"
#include "engine/simd.h"

namespace conflux {

namespace {
constexpr int kBlock = kQuantBlock;     // 32 weights per block
constexpr int kHalfBlock = kBlock / 2;  // Q4_0: bytes per block
constexpr float kQ8Max = 127.f;         // activations use [-127, 127], so negation never overflows

// The activation block's scale inverse, computed the same way by every variant so that all of them
// produce identical int8 values.
inline float inverse_scale(float amax) { return amax > 0.f ? kQ8Max / amax : 0.f; }
}  // namespace

// ---------------------------------------------------------------- scalar twins
namespace scalar {

void quantize_activation(const float* x, int n, int8_t* q, float* d) {
  for (int b = 0; b < n / kBlock; ++b) {
    const float* xb = x + size_t(b) * kBlock;
    float amax = 0.f;
    for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(xb[i]));
    d[b] = amax / kQ8Max;
    const float inv = inverse_scale(amax);
    for (int i = 0; i < kBlock; ++i) q[size_t(b) * kBlock + i] = int8_t(std::nearbyint(xb[i] * inv));
  }
}

void dot_rows_quant(DType t, const int8_t* xq, const float* xd, const void* w, const uint16_t* scales, int rows, int n,
                    float* out) {
  const int nb = n / kBlock;
  const size_t rb = row_bytes(t, n);
  for (int r = 0; r < rows; ++r) {
    const uint8_t* wr = static_cast<const uint8_t*>(w) + size_t(r) * rb;
    double acc = 0.0;  // double: the reference the SIMD sums are compared against
    for (int b = 0; b < nb; ++b) {
      const int8_t* xb = xq + size_t(b) * kBlock;
      int32_t s = 0;
      if (t == DType::Q8_0) {
        const int8_t* wb = reinterpret_cast<const int8_t*>(wr) + size_t(b) * kBlock;
        for (int i = 0; i < kBlock; ++i) s += int32_t(wb[i]) * xb[i];
      } else {
        const uint8_t* wb = wr + size_t(b) * kHalfBlock;
        for (int j = 0; j < kHalfBlock; ++j)
          s += (int32_t(wb[j] & 0x0f) - 8) * xb[j] + (int32_t(wb[j] >> 4) - 8) * xb[j + kHalfBlock];
      }
      acc += double(f16_to_f32(scales[size_t(r) * nb + b])) * xd[b] * s;
    }
    out[r] = float(acc);
  }
}

}  // namespace scalar

namespace {

using simd::hsum256;
using simd::kPrefetchBytes;

// ---------------------------------------------------------------- AVX2 + FMA + F16C

CONFLUX_AVX2 void quantize_activation_avx2(const float* x, int n, int8_t* q, float* d) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  // packs interleave 128-bit lanes; this permutation puts the 32 bytes back in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int b = 0; b < n / kBlock; ++b) {
    const float* xb = x + size_t(b) * kBlock;
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(xb + 8 * k);
      m = _mm256_max_ps(m, _mm256_and_ps(v[k], abs_mask));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    d[b] = amax / kQ8Max;
    const __m256 inv = _mm256_set1_ps(inverse_scale(amax));
    __m256i i32[4];
    for (int k = 0; k < 4; ++k) i32[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], inv));  // round to nearest even
    const __m256i i16a = _mm256_packs_epi32(i32[0], i32[1]), i16b = _mm256_packs_epi32(i32[2], i32[3]);
    const __m256i i8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(i16a, i16b), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + size_t(b) * kBlock), i8);
  }
}

// Q8_0: |x| (unsigned) times w with x's sign moved onto it, so maddubs' u8 x s8 form applies; pairs of
// products stay below 2 · 127 · 127 < 2^15.
CONFLUX_AVX2 void dot_q8_avx2(const int8_t* xq, const float* xd, const void* w, const uint16_t* scales, int rows, int n,
                              float* out) {
  const int nb = n / kBlock;
  const int8_t* wq = static_cast<const int8_t*>(w);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int b = 0; b < nb; ++b) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + size_t(b) * kBlock));
    const __m256i ax = _mm256_abs_epi8(xv);
    for (int r = 0; r < rows; ++r) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + size_t(r) * n + size_t(b) * kBlock));
      const __m256i p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv)), ones);
      const float scale = _cvtsh_ss(scales[size_t(r) * nb + b]) * xd[b];
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(scale), acc[r]);
    }
  }
  for (int r = 0; r < rows; ++r) out[r] = hsum256(acc[r]);
}

// Q4_0: nibbles are unsigned 0..15, so maddubs takes them directly; the offset 8 comes off as
// 8 · Σx, computed once per block for all rows.
CONFLUX_AVX2 void dot_q4_avx2(const int8_t* xq, const float* xd, const void* w, const uint16_t* scales, int rows, int n,
                              float* out) {
  const int nb = n / kBlock;
  const uint8_t* wq = static_cast<const uint8_t*>(w);
  const size_t rb = size_t(n) / 2;
  const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0f), eights = _mm256_set1_epi8(8);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int b = 0; b < nb; ++b) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + size_t(b) * kBlock));
    const __m256i offset = _mm256_maddubs_epi16(eights, xv);
    for (int r = 0; r < rows; ++r) {
      const __m128i raw =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(wq + size_t(r) * rb + size_t(b) * kHalfBlock));
      // Low half: weights 0..15 (low nibbles); high half: weights 16..31 (high nibbles).
      const __m256i wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low4);
      const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(wv, xv), offset);
      const __m256i p32 = _mm256_madd_epi16(p16, ones);
      const float scale = _cvtsh_ss(scales[size_t(r) * nb + b]) * xd[b];
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(scale), acc[r]);
    }
  }
  for (int r = 0; r < rows; ++r) out[r] = hsum256(acc[r]);
}

// ---------------------------------------------------------------- AVX-512 VNNI
CONFLUX_VNNI void quantize_activation_avx512(const float* x, int n, int8_t* q, float* d) {
  for (int b = 0; b < n / kBlock; ++b) {
    const float* xb = x + size_t(b) * kBlock;
    const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    d[b] = amax / kQ8Max;
    const __m512 inv = _mm512_set1_ps(inverse_scale(amax));
    const __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)));
    const __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + size_t(b) * kBlock), _mm256_set_m128i(q1, q0));
  }
}

// dw · dx of 16 consecutive blocks: one f16 conversion and one multiply for 8 block pairs.
CONFLUX_VNNI inline __m512 block_scales16(const uint16_t* dw, const float* dx) {
  return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(dw))), _mm512_loadu_ps(dx));
}

// The same for the last `count` (< 16) blocks of a row, the lanes past them zero: the row's remainder
// then runs through the same spread as the whole groups, not a conversion per pair.
CONFLUX_VNNI inline __m512 block_scales_partial(const uint16_t* dw, const float* dx, int count) {
  const auto lanes = __mmask16((1u << count) - 1);
  return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, dw)), _mm512_maskz_loadu_ps(lanes, dx));
}

// Lanes 0-7 get scale 2p of d, lanes 8-15 scale 2p + 1 (the lane layout of a two-block dot).
alignas(64) constexpr int32_t kSpreadPair[8][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                                    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
                                                    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
                                                    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
                                                    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
                                                    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
                                                    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
                                                    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};
CONFLUX_VNNI inline __m512 spread_pair(__m512 d, int p) {
  return _mm512_permutexvar_ps(_mm512_load_si512(kSpreadPair[p]), d);
}

// Q8_0: vpdpbusd multiplies u8 by s8, so |x| meets w with x's sign (w is never -128, so negating is exact).
// |x| and x's sign masks depend on x alone, so they are prepared once per call for all its rows (up to
// kPreparedPairs block pairs at a time, 16 KiB on the stack), which leaves per 64 weights a masked
// negate, the dot and the scaled accumulate: 5 vector operations instead of 7 (the kernel was
// compute-bound on one core, at ~80% of its read bandwidth). Rows go one at a time, front to back: a
// purely sequential stream, which the hardware prefetchers keep ahead of (interleaving four rows
// left one thread at a third of the read bandwidth).
constexpr int kPreparedPairs = 256;  // in_dim up to 16384 in one segment (the 12B's widest is 15360)

// The int32 dot of pair p of a segment (lanes 0-7 and 8-15: its two blocks) from the prepared |x| and
// sign masks: w negated where x < 0, then u8 |x| times s8 w.
CONFLUX_VNNI inline __m512i prepared_pair_dot(const int8_t* wseg, const int8_t* ax, const __mmask64* negative, int p) {
  const __m512i zero = _mm512_setzero_si512();
  __builtin_prefetch(wseg + size_t(p) * 2 * kBlock + kPrefetchBytes);
  const __m512i wv = _mm512_loadu_si512(wseg + size_t(p) * 2 * kBlock);
  return _mm512_dpbusd_epi32(zero, _mm512_load_si512(ax + size_t(p) * 2 * kBlock),
                             _mm512_mask_sub_epi8(wv, negative[p], zero, wv));
}

CONFLUX_VNNI void dot_q8_vnni(const int8_t* xq, const float* xd, const void* w, const uint16_t* scales, int rows, int n,
                              float* out) {
  const int nb = n / kBlock;
  const int8_t* wq = static_cast<const int8_t*>(w);
  alignas(64) int8_t ax[kPreparedPairs * 2 * kBlock];  // |x| of the segment's pairs
  __mmask64 negative[kPreparedPairs];                   // lanes where x < 0
  for (int r = 0; r < rows; ++r) out[r] = 0.f;
  for (int seg = 0; seg < nb; seg += 2 * kPreparedPairs) {  // one segment unless in_dim > 16384
    const int seg_end = std::min(nb, seg + 2 * kPreparedPairs), seg_pairs = (seg_end - seg) / 2;
    for (int p = 0; p < seg_pairs; ++p) {
      const __m512i x = _mm512_loadu_si512(xq + size_t(seg + 2 * p) * kBlock);
      _mm512_store_si512(ax + size_t(p) * 2 * kBlock, _mm512_abs_epi8(x));
      negative[p] = _mm512_movepi8_mask(x);
    }
    for (int r = 0; r < rows; ++r) {
      const int8_t* wr = wq + size_t(r) * n;
      const int8_t* wseg = wr + size_t(seg) * kBlock;
      const uint16_t* sr = scales + size_t(r) * nb;
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();  // two chains hide the FMA latency
      int p = 0;
      for (; 2 * p + 16 <= 2 * seg_pairs; p += 8) {  // 16 blocks: their 16 combined scales converted at once
        const __m512 d = block_scales16(sr + seg + 2 * p, xd + seg + 2 * p);
        for (int k = 0; k < 8; k += 2) {
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(prepared_pair_dot(wseg, ax, negative, p + k)), spread_pair(d, k), acc0);
          acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(prepared_pair_dot(wseg, ax, negative, p + k + 1)), spread_pair(d, k + 1), acc1);
        }
      }
      if (p < seg_pairs) {  // the last 1-7 pairs: their scales in one masked conversion
        const __m512 d = block_scales_partial(sr + seg + 2 * p, xd + seg + 2 * p, 2 * (seg_pairs - p));
        for (int k = 0; p + k < seg_pairs; ++k)
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(prepared_pair_dot(wseg, ax, negative, p + k)), spread_pair(d, k), acc0);
      }
      float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
      if (seg + 2 * seg_pairs < seg_end) {  // an odd last block, 256 bits wide
        const int b = seg_end - 1;
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + size_t(b) * kBlock));
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + size_t(b) * kBlock));
        const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(xv), _mm256_sign_epi8(wv, xv));
        sum += hsum256(_mm256_cvtepi32_ps(dot)) * (_cvtsh_ss(sr[b]) * xd[b]);
      }
      out[r] += sum;
    }
  }
}

// Q4_0: nibbles are the unsigned operand of vpdpbusd; the offset 8 comes off as 8 · Σx per lane.
// The 32 bytes of a block pair are broadcast to both halves of a register and shifted by 0 (low half)
// or 4 (high half) before masking to nibbles, which lays the weights out as [b.w0-15, b+1.w0-15,
// b.w16-31, b+1.w16-31]; x is prepared once per call in that order, with the offset, so a pair costs
// two operations to unpack (four with a cross-lane permute of the weights). Lanes 0-3 and 8-11 then
// hold block b's partial dots, 4-7 and 12-15 block b + 1's: kSpreadPairQ4 spreads the scales so.
alignas(64) constexpr int32_t kSpreadPairQ4[8][16] = {
    {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1},         {2, 2, 2, 2, 3, 3, 3, 3, 2, 2, 2, 2, 3, 3, 3, 3},
    {4, 4, 4, 4, 5, 5, 5, 5, 4, 4, 4, 4, 5, 5, 5, 5},         {6, 6, 6, 6, 7, 7, 7, 7, 6, 6, 6, 6, 7, 7, 7, 7},
    {8, 8, 8, 8, 9, 9, 9, 9, 8, 8, 8, 8, 9, 9, 9, 9},         {10, 10, 10, 10, 11, 11, 11, 11, 10, 10, 10, 10, 11, 11, 11, 11},
    {12, 12, 12, 12, 13, 13, 13, 13, 12, 12, 12, 12, 13, 13, 13, 13},
    {14, 14, 14, 14, 15, 15, 15, 15, 14, 14, 14, 14, 15, 15, 15, 15}};
CONFLUX_VNNI inline __m512 spread_pair_q4(__m512 d, int p) {
  return _mm512_permutexvar_ps(_mm512_load_si512(kSpreadPairQ4[p]), d);
}

// Pair p of a segment: the weights unpacked as above against the prepared x, the accumulator starting
// at -8 · Σx of each lane.
CONFLUX_VNNI inline __m512i q4_pair_dot(const uint8_t* wseg, const int8_t* xp, const __m512i* minus_offset, int p) {
  const uint8_t* w32 = wseg + size_t(p) * 2 * kHalfBlock;
  __builtin_prefetch(w32 + kPrefetchBytes / 2);  // half the bytes per weight: the same rows ahead as q8
  const __m512i shifts = _mm512_setr_epi64(0, 0, 0, 0, 0x0004000400040004, 0x0004000400040004, 0x0004000400040004,
                                           0x0004000400040004);  // 16-bit lanes: 0 in the low half, 4 in the high
  const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w32)));
  const __m512i wv = _mm512_and_si512(_mm512_srlv_epi16(raw, shifts), _mm512_set1_epi8(0x0f));
  return _mm512_dpbusd_epi32(minus_offset[p], wv, _mm512_load_si512(xp + size_t(p) * 2 * kBlock));
}

CONFLUX_VNNI void dot_q4_vnni(const int8_t* xq, const float* xd, const void* w, const uint16_t* scales, int rows, int n,
                              float* out) {
  const int nb = n / kBlock;
  const size_t rb = size_t(n) / 2;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m512i eights = _mm512_set1_epi8(8), zero = _mm512_setzero_si512();
  // Qwords of [b.x0-31, b+1.x0-31] reordered to [b.x0-15, b+1.x0-15, b.x16-31, b+1.x16-31].
  const __m512i x_order = _mm512_setr_epi64(0, 1, 4, 5, 2, 3, 6, 7);
  alignas(64) int8_t xp[kPreparedPairs * 2 * kBlock];  // x in the unpacked weights' order, per pair
  __m512i minus_offset[kPreparedPairs];                  // -8 · Σx over each lane's 4 values, per pair
  for (int r = 0; r < rows; ++r) out[r] = 0.f;
  for (int seg = 0; seg < nb; seg += 2 * kPreparedPairs) {  // one segment unless in_dim > 16384
    const int seg_end = std::min(nb, seg + 2 * kPreparedPairs), seg_pairs = (seg_end - seg) / 2;
    for (int p = 0; p < seg_pairs; ++p) {
      const __m512i x = _mm512_permutexvar_epi64(x_order, _mm512_loadu_si512(xq + size_t(seg + 2 * p) * kBlock));
      _mm512_store_si512(xp + size_t(p) * 2 * kBlock, x);
      minus_offset[p] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, eights, x));
    }
    for (int r = 0; r < rows; ++r) {
      const uint8_t* wr = static_cast<const uint8_t*>(w) + size_t(r) * rb;
      const uint8_t* wseg = wr + size_t(seg) * kHalfBlock;
      const uint16_t* sr = scales + size_t(r) * nb;
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      int p = 0;
      for (; 2 * p + 16 <= 2 * seg_pairs; p += 8) {
        const __m512 d = block_scales16(sr + seg + 2 * p, xd + seg + 2 * p);
        for (int k = 0; k < 8; k += 2) {
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q4_pair_dot(wseg, xp, minus_offset, p + k)), spread_pair_q4(d, k),
                                 acc0);
          acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q4_pair_dot(wseg, xp, minus_offset, p + k + 1)),
                                 spread_pair_q4(d, k + 1), acc1);
        }
      }
      if (p < seg_pairs) {  // the last 1-7 pairs: their scales in one masked conversion
        const __m512 d = block_scales_partial(sr + seg + 2 * p, xd + seg + 2 * p, 2 * (seg_pairs - p));
        for (int k = 0; p + k < seg_pairs; ++k)
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q4_pair_dot(wseg, xp, minus_offset, p + k)), spread_pair_q4(d, k),
                                 acc0);
      }
      float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
      if (seg + 2 * seg_pairs < seg_end) {  // an odd last block, 256 bits wide
        const int b = seg_end - 1;
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + size_t(b) * kBlock));
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + size_t(b) * kHalfBlock));
        const __m256i wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low4);
        const __m256i z = _mm256_setzero_si256();
        const __m256i dot = _mm256_sub_epi32(_mm256_dpbusd_epi32(z, wv, xv), _mm256_dpbusd_epi32(z, _mm256_set1_epi8(8), xv));
        sum += hsum256(_mm256_cvtepi32_ps(dot)) * (_cvtsh_ss(sr[b]) * xd[b]);
      }
      out[r] += sum;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- dispatch
// AVX-512 without VNNI uses the AVX2 kernels (maddubs); a plain x86-64 CPU the scalar ones.
void quantize_activation(const float* x, int n, int8_t* q, float* d) {
  switch (detail::active_isa()) {
    case detail::Isa::Avx512:
      if (detail::cpu_has_avx512_vnni()) return quantize_activation_avx512(x, n, q, d);
      return quantize_activation_avx2(x, n, q, d);
    case detail::Isa::Avx2: return quantize_activation_avx2(x, n, q, d);
    case detail::Isa::Scalar: break;
  }
  scalar::quantize_activation(x, n, q, d);
}

void dot_rows_quant(DType t, const int8_t* xq, const float* xd, const void* w, const uint16_t* scales, int rows, int n,
                    float* out) {
  const bool q8 = t == DType::Q8_0;
  switch (detail::active_isa()) {
    case detail::Isa::Avx512:
      if (detail::cpu_has_avx512_vnni())
        return q8 ? dot_q8_vnni(xq, xd, w, scales, rows, n, out) : dot_q4_vnni(xq, xd, w, scales, rows, n, out);
      [[fallthrough]];
    case detail::Isa::Avx2: {
      // The AVX2 kernels share each x load among up to 4 rows (their accumulators).
      constexpr int kAvx2Rows = 4;
      const size_t rb = row_bytes(t, n), nb = size_t(n / kBlock);
      for (int r = 0; r < rows; r += kAvx2Rows) {
        const int k = std::min(kAvx2Rows, rows - r);
        const void* wr = static_cast<const uint8_t*>(w) + size_t(r) * rb;
        if (q8) dot_q8_avx2(xq, xd, wr, scales + size_t(r) * nb, k, n, out + r);
        else dot_q4_avx2(xq, xd, wr, scales + size_t(r) * nb, k, n, out + r);
      }
      return;
    }
    case detail::Isa::Scalar: break;
  }
  scalar::dot_rows_quant(t, xq, xd, w, scales, rows, n, out);
}

}  // namespace conflux
