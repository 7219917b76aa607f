// What the run-time-dispatched SIMD kernels (ops.cc, ops_quant.cc) share: the target attributes that let
// one portable x86-64 build carry AVX2 and AVX-512 code paths, and the horizontal sums. Include only from
// kernel sources; callers pick a path by CPU features (ops.h), never by these macros.
#pragma once
#include <immintrin.h>

#define CONFLUX_AVX2 __attribute__((target("avx2,fma,f16c")))
#define CONFLUX_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define CONFLUX_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace conflux::simd {

// Software prefetch distance of the decode kernels, which stream W front to back: the hardware
// prefetchers alone left one core at ~22 GB/s on a q8 decode matmul; asking for the line 3 KiB ahead
// (about 4.5 rows of a 640-wide Q8_0 matrix) gave 24-27 GB/s (1024 bytes: 23-24; 6 KiB: no better), and
// took the f32 kernel's 270M decode on one thread from 17.7 to 21-24 tok/s. Prefetching past the end of
// W is harmless (a hint, never a fault).
inline constexpr int kPrefetchBytes = 3072;

// Sum of the 8 lanes.
CONFLUX_AVX2 inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

}  // namespace conflux::simd
