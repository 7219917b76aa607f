// Element types of checkpoint tensors and conversions between them.
// bf16 and f16 weights stay in their stored type in memory; kernels widen them to f32 on the fly.
// Q8_0 and Q4_0 are block-quantized matrices (engine/quant.h): rows of 32-weight blocks, each block
// with one f16 scale; their TensorRef carries the scales beside the packed weights.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace conflux {

// I8 / U8 are storage types only (the packed payload of a quantized tensor in a safetensors file);
// the loader pairs them with their `.scales` tensor into Q8_0 / Q4_0.
enum class DType : uint8_t { F32, F16, BF16, I8, U8, Q8_0, Q4_0 };

// Weights per quantization block of Q8_0 / Q4_0.
constexpr int kQuantBlock = 32;

inline bool is_quantized(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }

// Bytes per element (0 for the block-quantized types: use row_bytes).
size_t dtype_size(DType t);
// Bytes of one row of `cols` elements, not counting block scales (Q8_0: cols, Q4_0: cols / 2).
size_t row_bytes(DType t, int64_t cols);
// "F32", "F16", "BF16", "I8", "U8" as safetensors spells them; "Q8_0", "Q4_0" for the in-memory types.
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

// Widens n elements of type t (F32, F16, BF16) at src into dst.
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace conflux
