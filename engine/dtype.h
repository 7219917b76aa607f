// Element types of checkpoint tensors and conversions between them.
// bf16 and f16 weights stay in their stored type in memory; kernels widen them to f32 on the fly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace conflux {

enum class DType : uint8_t { F32, F16, BF16 };

// Bytes per element.
size_t dtype_size(DType t);
// "F32", "F16", "BF16" as safetensors spells them.
std::string_view dtype_name(DType t);
// Parses a safetensors dtype string; returns false for anything the engine does not load.
bool parse_dtype(std::string_view s, DType* out);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even, NaN kept quiet.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Widens n elements of type t at src into dst.
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace conflux
