// Weight quantization (load time or `conflux quantize`; plain scalar code, it runs once) and the
// row decoder that turns any stored row back into f32 (embedding lookup, widening for conversions).
#include "engine/quant.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace conflux {

WeightFormat parse_weight_format(const std::string& s) {
  if (s == "f32") return WeightFormat::F32;
  if (s == "bf16") return WeightFormat::BF16;
  if (s == "q8" || s == "q8_0") return WeightFormat::Q8_0;
  if (s == "q4" || s == "q4_0") return WeightFormat::Q4_0;
  if (s == "stored") return WeightFormat::AsStored;
  throw std::invalid_argument("unknown weight format '" + s + "' (expected f32, bf16, q8 or q4)");
}

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::F32: return "f32";
    case WeightFormat::BF16: return "bf16";
    case WeightFormat::Q8_0: return "q8";
    case WeightFormat::Q4_0: return "q4";
    case WeightFormat::AsStored: return "stored";
  }
  return "?";
}

DType weight_format_dtype(WeightFormat f) {
  switch (f) {
    case WeightFormat::F32: return DType::F32;
    case WeightFormat::BF16: return DType::BF16;
    case WeightFormat::Q8_0: return DType::Q8_0;
    case WeightFormat::Q4_0: return DType::Q4_0;
    case WeightFormat::AsStored: break;
  }
  throw std::logic_error("weight_format_dtype: 'stored' names no single dtype");
}

bool can_store_as(DType t, int64_t cols) { return !is_quantized(t) || cols % kQuantBlock == 0; }

namespace {

// One block of 32 weights to Q8_0: the scale is rounded to f16 first so q is computed with the scale
// the kernels will use.
void quantize_block_q8(const float* w, int8_t* q, uint16_t* scale) {
  float amax = 0.f;
  for (int i = 0; i < kQuantBlock; ++i) amax = std::max(amax, std::fabs(w[i]));
  constexpr float kQ8Max = 127.f;
  *scale = f32_to_f16(amax / kQ8Max);
  const float d = f16_to_f32(*scale);
  const float inv = d > 0.f ? 1.f / d : 0.f;
  for (int i = 0; i < kQuantBlock; ++i) q[i] = int8_t(std::clamp(std::nearbyint(w[i] * inv), -kQ8Max, kQ8Max));
}

void quantize_block_q4(const float* w, uint8_t* q, uint16_t* scale) {
  float m = 0.f;  // the weight of largest magnitude, with its sign
  for (int i = 0; i < kQuantBlock; ++i)
    if (std::fabs(w[i]) > std::fabs(m)) m = w[i];
  constexpr float kQ4Low = -8.f;  // m maps to -8: the full signed range [-8, 7] is used
  *scale = f32_to_f16(m / kQ4Low);
  const float d = f16_to_f32(*scale);
  const float inv = d != 0.f ? 1.f / d : 0.f;
  constexpr int kHalf = kQuantBlock / 2;
  auto nib = [&](float x) { return uint8_t(std::clamp(std::nearbyint(x * inv) + 8.f, 0.f, 15.f)); };
  for (int j = 0; j < kHalf; ++j) q[j] = uint8_t(nib(w[j]) | (nib(w[j + kHalf]) << 4));
}

}  // namespace

void encode_rows(DType t, const float* src, int64_t row0, int64_t rows, int64_t cols, ConvertedTensor& out) {
  const size_t rb = row_bytes(t, cols);
  uint8_t* dst = out.data.data() + size_t(row0) * rb;
  const size_t n = size_t(rows) * size_t(cols);
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case DType::Q8_0:
    case DType::Q4_0: {
      const int64_t nb = cols / kQuantBlock;
      uint16_t* sc = out.scales.data() + size_t(row0) * size_t(nb);
      const size_t block_bytes = row_bytes(t, kQuantBlock);
      for (int64_t b = 0; b < rows * nb; ++b) {
        const float* w = src + size_t(b) * kQuantBlock;
        if (t == DType::Q8_0)
          quantize_block_q8(w, reinterpret_cast<int8_t*>(dst) + size_t(b) * block_bytes, sc + b);
        else
          quantize_block_q4(w, dst + size_t(b) * block_bytes, sc + b);
      }
      return;
    }
    default: break;
  }
  throw std::logic_error("encode_rows: cannot encode " + std::string(dtype_name(t)));
}

void release_pages(const void* data, size_t nbytes) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(data) + page - 1) / page * page;
  const uintptr_t end = (uintptr_t(data) + nbytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

ConvertedTensor convert_matrix(const TensorRef& src, DType t, ThreadPool& pool, bool release_source) {
  if (src.shape.size() != 2) throw std::logic_error("convert_matrix: " + src.name + " is not 2-D");
  const int64_t rows = src.shape[0], cols = src.shape[1];
  if (!can_store_as(t, cols))
    throw CheckpointError(src.file + ": tensor " + src.name + " has " + std::to_string(cols) +
                          " columns, not a multiple of " + std::to_string(kQuantBlock) + ", so it cannot be " +
                          std::string(dtype_name(t)));
  ConvertedTensor out;
  out.data.resize(size_t(rows) * row_bytes(t, cols));
  if (is_quantized(t)) out.scales.resize(size_t(rows) * size_t(cols / kQuantBlock));
  constexpr int64_t kRowsPerStep = 64;  // bounds each thread's f32 staging buffer
  const int64_t steps = (rows + kRowsPerStep - 1) / kRowsPerStep;
  const size_t staging_floats = src.dtype == t ? 0 : size_t(std::min(rows, kRowsPerStep) * cols);
  std::vector<std::vector<float>> staging(size_t(pool.size()), std::vector<float>(staging_floats));
  const size_t src_row_bytes = row_bytes(src.dtype, cols), src_row_scales = size_t(cols / kQuantBlock);
  auto step = [&](int s, int thread) {
    const int64_t r = s * kRowsPerStep, n = std::min(kRowsPerStep, rows - r);
    if (src.dtype == t) {
      std::memcpy(out.data.data() + size_t(r) * src_row_bytes,
                  static_cast<const uint8_t*>(src.data) + size_t(r) * src_row_bytes, size_t(n) * src_row_bytes);
      if (src.scales)
        std::copy_n(src.scales + size_t(r) * src_row_scales, size_t(n) * src_row_scales,
                    out.scales.data() + size_t(r) * src_row_scales);
    } else {
      dequantize_rows(src, r, n, staging[size_t(thread)].data());
      encode_rows(t, staging[size_t(thread)].data(), r, n, cols, out);
    }
    if (release_source) {
      release_pages(static_cast<const uint8_t*>(src.data) + size_t(r) * src_row_bytes, size_t(n) * src_row_bytes);
      if (src.scales)
        release_pages(src.scales + size_t(r) * src_row_scales, size_t(n) * src_row_scales * sizeof(uint16_t));
    }
  };
  pool.parallel_for(int(steps), step);
  if (release_source) {  // the pages that straddled two steps' boundaries
    release_pages(src.data, size_t(rows) * src_row_bytes);
    if (src.scales) release_pages(src.scales, size_t(rows) * src_row_scales * sizeof(uint16_t));
  }
  return out;
}

void dequantize_rows(const TensorRef& w, int64_t row0, int64_t n, float* dst) {
  const int64_t cols = w.shape.size() < 2 ? 1 : w.shape.back();
  const uint8_t* base = static_cast<const uint8_t*>(w.data) + size_t(row0) * row_bytes(w.dtype, cols);
  if (!is_quantized(w.dtype)) {
    convert_to_f32(w.dtype, base, dst, size_t(n) * size_t(cols));
    return;
  }
  const int64_t nb = cols / kQuantBlock;
  const uint16_t* sc = w.scales + size_t(row0) * size_t(nb);
  constexpr int kHalf = kQuantBlock / 2;
  for (int64_t b = 0; b < n * nb; ++b) {
    const float d = f16_to_f32(sc[b]);
    float* out = dst + size_t(b) * kQuantBlock;
    if (w.dtype == DType::Q8_0) {
      const int8_t* q = reinterpret_cast<const int8_t*>(base) + size_t(b) * kQuantBlock;
      for (int i = 0; i < kQuantBlock; ++i) out[i] = d * float(q[i]);
    } else {
      const uint8_t* q = base + size_t(b) * kHalf;
      for (int j = 0; j < kHalf; ++j) {
        out[j] = d * float(int(q[j] & 0x0f) - 8);
        out[j + kHalf] = d * float(int(q[j] >> 4) - 8);
      }
    }
  }
}

}  // namespace conflux
