// Block-quantized weight formats and conversions between every weight format.
//
// Q8_0: each row is cut into blocks of 32 weights; a block stores 32 int8 values q and one f16 scale d,
//       weight = d * q, d = max|w| / 127 (q in [-127, 127]; -128 is never produced, so kernels may negate).
// Q4_0: a block stores 16 bytes and one f16 scale d; byte j holds weight j in its low nibble and weight
//       j + 16 in its high nibble, weight = d * (nibble - 8). d = m / -8 where m is the block's weight of
//       largest magnitude (so m itself maps to nibble 0 exactly and the range [-8, 7] is used fully).
// Packed weights of a (rows, cols) matrix are row-major, row_bytes(t, cols) per row; the scales are a
// separate (rows, cols / 32) f16 array. cols must be a multiple of 32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/safetensors.h"
#include "engine/thread_pool.h"

namespace conflux {

// A weight format a model can be converted to at load time (or by `conflux quantize`).
enum class WeightFormat { AsStored, F32, BF16, Q8_0, Q4_0 };

// "f32", "bf16", "q8", "q4" (also "q8_0", "q4_0"); throws std::invalid_argument naming the text.
WeightFormat parse_weight_format(const std::string& s);
// "f32", "bf16", "q8", "q4", "stored".
const char* weight_format_name(WeightFormat f);
DType weight_format_dtype(WeightFormat f);  // AsStored: throws

// Owned storage of one converted matrix.
struct ConvertedTensor {
  std::vector<uint8_t> data;     // row-major payload, row_bytes(dtype, cols) per row
  std::vector<uint16_t> scales;  // (rows, cols / 32) f16, quantized types only
};

// Whether a (rows, cols) matrix can take `t` (quantized types need cols % 32 == 0).
bool can_store_as(DType t, int64_t cols);

// Encodes `rows` f32 rows of `cols` into `t` at row `row0` of `out` (sized for the whole matrix).
void encode_rows(DType t, const float* src, int64_t row0, int64_t rows, int64_t cols, ConvertedTensor& out);

// Converts a whole 2-D tensor to `t`, blocks of rows in parallel on `pool` (any source dtype, including
// quantized; to its own dtype: a byte-exact copy, scales included). With release_source, each block's source pages are dropped from memory once converted
// (for memory-mapped sources: the peak RSS of a conversion at load stays near the converted size).
ConvertedTensor convert_matrix(const TensorRef& src, DType t, ThreadPool& pool, bool release_source);

// Drops the resident pages wholly inside [data, data + nbytes) of a read-only mapping (madvise).
void release_pages(const void* data, size_t nbytes);

// Rows [row0, row0 + n) of a 2-D tensor of any dtype, widened to f32 into dst (n * cols floats).
void dequantize_rows(const TensorRef& w, int64_t row0, int64_t n, float* dst);

}  // namespace conflux
