// Images for the vision embedder: stb_image loading/saving, the gemma4_unified size rule (architecture
// doc §4.1) and a reimplementation of torchvision 0.14.1's uint8 bicubic+antialias resize.
#include "engine/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace conflux {

namespace {

constexpr int kChannels = 3;  // RGB
constexpr int kChannelsWithAlpha = 4;  // RGBA, as stb_image is asked to decode
// Floats per vectorized block in the vertical pass: two SSE registers, or one AVX register.
constexpr size_t kBlock = 8;
// HF's processor builds 16-px teacher patches and pools 3x3 of them into one soft token.
constexpr int kTeacherPatchSize = 16;
constexpr int kPoolingKernel = 3;
static_assert(kModelPatchSize == kTeacherPatchSize * kPoolingKernel);

}  // namespace

bool is_supported_budget(int budget) { return budget >= 1 && budget <= kMaxImageBudget; }

int default_image_budget(const std::string& model_dir) {
  const std::filesystem::path path = std::filesystem::path(model_dir) / "preprocessor_config.json";
  if (!std::filesystem::exists(path)) return kDefaultImageBudget;
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    throw std::runtime_error(path.string() + ": not a JSON object");
  const auto it = j.find("max_soft_tokens");
  if (it == j.end()) return kDefaultImageBudget;
  if (!it->is_number_integer() || !is_supported_budget(it->get<int>()))
    throw std::runtime_error(path.string() + ": field max_soft_tokens must be an integer from 1 to " +
                             std::to_string(kMaxImageBudget) + ", got " + it->dump());
  return it->get<int>();
}

namespace {

// Keys' cubic convolution kernel with a = -0.5 (PIL's and aten's antialiased bicubic; the non-antialiased
// aten path uses -0.75). aten evaluates the polynomial with a double constant and returns float.
float bicubic_kernel(float x) {
  constexpr double a = -0.5;
  const double ax = std::fabs(x);
  if (ax < 1.0) return static_cast<float>(((a + 2) * ax - (a + 3)) * ax * ax + 1);
  if (ax < 2.0) return static_cast<float>(((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a);
  return 0.0f;
}

// Per-axis filter table: output index i reads input [first[i], first[i] + count[i]) with
// weights[i * max_taps + k]. Built once per axis; the two passes then only multiply and add.
struct AxisFilter {
  std::vector<int> first;
  std::vector<int> count;
  std::vector<float> weights;
  int max_taps = 0;
};

// Mirrors aten's _compute_indices_weights_aa / _compute_weights_aa (torch 1.13, used by torchvision
// 0.14.1), including which intermediates are float and which are double. Float weights matter: against the
// 9 golden cases (about 9.6M values) float weights leave 107 values off by one, all within 5e-5 of a .5 tie,
// while weights computed in double leave about 1750.
AxisFilter make_axis_filter(int in_size, int out_size) {
  // The bicubic kernel spans [-2, 2]: 4 taps at unit scale.
  constexpr int kBicubicTaps = 4;
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  // Downsampling widens the kernel by the scale (that is the antialiasing); upsampling keeps it.
  const float support = scale >= 1.0f ? (kBicubicTaps * 0.5f) * scale : kBicubicTaps * 0.5f;
  const float invscale = scale >= 1.0f ? static_cast<float>(1.0 / scale) : 1.0f;

  AxisFilter f;
  // aten's interp_size: every window fits in ceil(support) * 2 + 1 taps.
  f.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  f.first.resize(out_size);
  f.count.resize(out_size);
  f.weights.assign(static_cast<size_t>(out_size) * f.max_taps, 0.0f);
  for (int i = 0; i < out_size; ++i) {
    const float center = static_cast<float>(scale * (i + 0.5));
    // int64 truncation, as in aten (the lower bound is clamped at 0 anyway).
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int taps = std::min(xmax - xmin, f.max_taps);
    float* w = &f.weights[static_cast<size_t>(i) * f.max_taps];
    float total = 0.0f;
    for (int k = 0; k < taps; ++k) {
      const float x = static_cast<float>((static_cast<float>(k + xmin) - center + 0.5) * invscale);
      w[k] = bicubic_kernel(x);
      total += w[k];
    }
    if (total != 0.0f)
      for (int k = 0; k < taps; ++k) w[k] /= total;
    f.first[i] = xmin;
    f.count[i] = taps;
  }
  return f;
}

// torchvision clamps to [0, 255], then torch.round (half to even) and casts. Adding and subtracting 1.5 * 2^23
// leaves no fraction bits, so the FPU's default round-to-nearest-even does the rounding: the same result as
// nearbyint, without a libm call per value on a baseline x86-64 build (no SSE4.1 roundss).
// Half-even matters: round-half-up (+0.5 and truncate) matches the golden files about 2.6x less often.
uint8_t float_to_uint8(float v) {
  constexpr float kRoundToIntegerMagic = 12582912.0f;  // 1.5 * 2^23
  v = std::min(std::max(v, 0.0f), 255.0f);  // min/max rather than clamp: branch-free, so it vectorizes
  return static_cast<uint8_t>(static_cast<int32_t>((v + kRoundToIntegerMagic) - kRoundToIntegerMagic));
}

// HF's convert_to_rgb (do_convert_rgb) does not drop alpha: it alpha-composites the image over an opaque
// white background with PIL, then drops the channel. Over opaque white, PIL's integer AlphaComposite
// (7 extra precision bits, rounded divisions by 255) reduces to this; alpha 255 leaves the color unchanged.
uint8_t composite_over_white(uint8_t color, uint8_t alpha) {
  constexpr int kPrecisionBits = 7;  // PIL's PRECISION_BITS
  constexpr uint32_t kWhite = 255;
  const uint32_t coef1 = uint32_t{alpha} << kPrecisionBits;  // alpha * 255 * 255 * 2^7 / (255 * 255)
  const uint32_t coef2 = (kWhite << kPrecisionBits) - coef1;
  const uint32_t blended = color * coef1 + kWhite * coef2 + (0x80u << kPrecisionBits);
  const uint32_t div255 = ((blended >> 8) + blended) >> 8;  // PIL's SHIFTFORDIV255
  return static_cast<uint8_t>(div255 >> kPrecisionBits);
}

}  // namespace

// stb's RGBA pixels as RGB8, transparent images composited over white as HF does.
static ImageRGB rgb_from_rgba(const stbi_uc* src, int width, int height, int channels_in_file) {
  // Gray+alpha and RGBA files (and palette/tRNS transparency, which stb expands to alpha).
  const bool has_alpha = channels_in_file == 2 || channels_in_file == 4;
  ImageRGB img;
  img.width = width;
  img.height = height;
  const size_t n_pixels = static_cast<size_t>(width) * height;
  img.rgb.resize(n_pixels * kChannels);
  for (size_t i = 0; i < n_pixels; ++i) {
    const uint8_t alpha = src[i * kChannelsWithAlpha + kChannels];
    for (int c = 0; c < kChannels; ++c) {
      const uint8_t v = src[i * kChannelsWithAlpha + c];
      img.rgb[i * kChannels + c] = has_alpha ? composite_over_white(v, alpha) : v;
    }
  }
  return img;
}

ImageRGB load_image(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw std::runtime_error("image file not found: " + path);
  if (std::filesystem::is_directory(path, ec)) throw std::runtime_error("image path is a directory: " + path);
  int width = 0, height = 0, channels_in_file = 0;
  // Always decoded as RGBA so that transparent images can be composited like HF does.
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load(path.c_str(), &width, &height, &channels_in_file, kChannelsWithAlpha), stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    throw std::runtime_error("cannot decode image " + path + " (not a PNG/JPEG or corrupt: " +
                             (reason ? reason : "unknown reason") + ")");
  }
  return rgb_from_rgba(pixels.get(), width, height, channels_in_file);
}

bool image_dimensions(const uint8_t* data, size_t size, int& width, int& height) {
  int channels = 0;
  if (size == 0 || size > size_t(INT32_MAX)) return false;
  return stbi_info_from_memory(data, int(size), &width, &height, &channels) != 0 && width > 0 && height > 0;
}

ImageRGB decode_image(const uint8_t* data, size_t size, const std::string& what) {
  if (size == 0 || size > size_t(INT32_MAX)) throw std::runtime_error("cannot decode image " + what + " (" + std::to_string(size) + " bytes)");
  int width = 0, height = 0, channels_in_file = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(data, int(size), &width, &height, &channels_in_file, kChannelsWithAlpha), stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    throw std::runtime_error("cannot decode image " + what + " (not a PNG/JPEG or corrupt: " +
                             (reason ? reason : "unknown reason") + ")");
  }
  return rgb_from_rgba(pixels.get(), width, height, channels_in_file);
}

void save_png(const std::string& path, const ImageRGB& img) {
  if (img.width <= 0 || img.height <= 0 ||
      img.rgb.size() != static_cast<size_t>(img.width) * img.height * kChannels)
    throw std::runtime_error("cannot write " + path + ": image buffer does not hold width x height RGB pixels");
  const int row_bytes = img.width * kChannels;
  if (!stbi_write_png(path.c_str(), img.width, img.height, kChannels, img.rgb.data(), row_bytes))
    throw std::runtime_error("cannot write PNG " + path);
}

ResizePlan plan_resize(int width, int height, int max_soft_tokens) {
  if (!is_supported_budget(max_soft_tokens))
    throw std::invalid_argument("image token budget must be from 1 to " + std::to_string(kMaxImageBudget) + ", got " +
                                std::to_string(max_soft_tokens));
  if (width <= 0 || height <= 0)
    throw std::invalid_argument("image size must be positive, got " + std::to_string(width) + "x" +
                                std::to_string(height));
  // Same double arithmetic, in the same order, as HF's get_aspect_ratio_preserving_size, so the floors
  // land on the same side for borderline sizes.
  const int max_patches = max_soft_tokens * kPoolingKernel * kPoolingKernel;
  const double target_px = static_cast<double>(max_patches) * kTeacherPatchSize * kTeacherPatchSize;
  const double total_px = static_cast<double>(height) * width;
  const double factor = std::sqrt(target_px / total_px);
  const double ideal_height = factor * height;
  const double ideal_width = factor * width;
  int th = static_cast<int>(std::floor(ideal_height / kModelPatchSize)) * kModelPatchSize;
  int tw = static_cast<int>(std::floor(ideal_width / kModelPatchSize)) * kModelPatchSize;
  if (th == 0 && tw == 0)
    throw std::invalid_argument("image " + std::to_string(width) + "x" + std::to_string(height) +
                                " is too small to resize to one 48x48 patch");
  // Extreme aspect ratios: one patch row (or column), as long as the aspect allows and the budget permits.
  const int max_side = max_soft_tokens * kModelPatchSize;
  // (64-bit products: a 1-pixel-high strip of a huge width would overflow int before the min.)
  if (th == 0) {
    th = kModelPatchSize;
    tw = static_cast<int>(std::min<int64_t>(int64_t{width / height} * kModelPatchSize, max_side));
  } else if (tw == 0) {
    tw = kModelPatchSize;
    th = static_cast<int>(std::min<int64_t>(int64_t{height / width} * kModelPatchSize, max_side));
  }
  ResizePlan plan;
  plan.width = tw;
  plan.height = th;
  plan.grid_cols = tw / kModelPatchSize;
  plan.grid_rows = th / kModelPatchSize;
  return plan;
}

ImageRGB resize_bicubic_antialias(const ImageRGB& src, int width, int height) {
  if (src.width <= 0 || src.height <= 0 ||
      src.rgb.size() != static_cast<size_t>(src.width) * src.height * kChannels)
    throw std::invalid_argument("resize: source buffer does not hold width x height RGB pixels");
  if (width <= 0 || height <= 0)
    throw std::invalid_argument("resize: target size must be positive, got " + std::to_string(width) + "x" +
                                std::to_string(height));

  // aten runs width (the contiguous axis) first, then height, both in float with no rounding in between
  // (height first leaves 122 golden values off by one instead of 107). Channels are independent, so
  // interleaved RGB gives the same sums as torchvision's CHW planes.
  const AxisFilter fx = make_axis_filter(src.width, width);
  const AxisFilter fy = make_axis_filter(src.height, height);
  const size_t src_row = static_cast<size_t>(src.width) * kChannels;
  const size_t dst_row = static_cast<size_t>(width) * kChannels;

  // Horizontal pass of one source row into `out` (dst_row floats). The row is first widened to float
  // (exact for uint8, as aten converts the tensor before filtering); then each tap updates R, G, B and
  // one ignored lane together: four lanes that -O2 turns into one SSE multiply and one add, with the sums still
  // taken tap by tap from the first, in aten's order (interpolate_aa_single_dim).
  constexpr int kLanes = 4;  // R, G, B and the next pixel's R (read, never stored)
  std::vector<float> src_row_f(src_row + kLanes - kChannels, 0.0f);
  auto resize_row = [&](int y, float* out) {
    const uint8_t* in = &src.rgb[static_cast<size_t>(y) * src_row];
    std::copy_n(in, src_row, src_row_f.begin());
    for (int x = 0; x < width; ++x) {
      const float* w = &fx.weights[static_cast<size_t>(x) * fx.max_taps];
      const float* p = &src_row_f[static_cast<size_t>(fx.first[x]) * kChannels];
      float sum[kLanes];
      for (int c = 0; c < kLanes; ++c) sum[c] = p[c] * w[0];
      for (int k = 1; k < fx.count[x]; ++k)
        for (int c = 0; c < kLanes; ++c) sum[c] += p[k * kChannels + c] * w[k];
      for (int c = 0; c < kChannels; ++c) out[x * kChannels + c] = sum[c];
    }
  };

  // Output rows read nondecreasing windows of source rows, each at most fy.max_taps long, so a ring of
  // that many horizontally resized rows holds every window; each source row is resized once, lazily.
  // Rows are padded to whole blocks so the vertical loops have a fixed inner length that GCC's -O2
  // (very-cheap cost model) vectorizes; the padding lanes are computed and never stored.
  const size_t row_stride = (dst_row + kBlock - 1) / kBlock * kBlock;
  const size_t n_blocks = row_stride / kBlock;
  const int ring_rows = fy.max_taps;
  std::vector<float> ring(static_cast<size_t>(ring_rows) * row_stride, 0.0f);
  auto ring_row = [&](int src_y) { return &ring[static_cast<size_t>(src_y % ring_rows) * row_stride]; };
  int rows_done = 0;  // source rows [0, rows_done) have been resized (or skipped as never needed)

  ImageRGB dst;
  dst.width = width;
  dst.height = height;
  dst.rgb.resize(static_cast<size_t>(height) * dst_row);
  std::vector<float> acc_buf(row_stride);
  std::vector<uint8_t> out_buf(row_stride);
  for (int y = 0; y < height; ++y) {
    const int first = fy.first[y], count = fy.count[y];
    rows_done = std::max(rows_done, first);
    for (; rows_done < first + count; ++rows_done) resize_row(rows_done, ring_row(rows_done));

    // Vertical pass: whole rows at a time, in the same per-element order of sums as aten.
    const float* w = &fy.weights[static_cast<size_t>(y) * fy.max_taps];
    float* __restrict acc = acc_buf.data();
    const float* __restrict row0 = ring_row(first);
    for (size_t blk = 0; blk < n_blocks; ++blk)
      for (size_t j = 0; j < kBlock; ++j) acc[blk * kBlock + j] = row0[blk * kBlock + j] * w[0];
    for (int k = 1; k < count; ++k) {
      const float* __restrict row = ring_row(first + k);
      const float wk = w[k];
      for (size_t blk = 0; blk < n_blocks; ++blk)
        for (size_t j = 0; j < kBlock; ++j) acc[blk * kBlock + j] += row[blk * kBlock + j] * wk;
    }
    uint8_t* __restrict out = out_buf.data();
    for (size_t blk = 0; blk < n_blocks; ++blk)
      for (size_t j = 0; j < kBlock; ++j) out[blk * kBlock + j] = float_to_uint8(acc[blk * kBlock + j]);
    std::copy_n(out_buf.begin(), dst_row, dst.rgb.begin() + static_cast<ptrdiff_t>(y * dst_row));
  }
  return dst;
}

ImageRGB preprocess_image(const ImageRGB& src, int max_soft_tokens) {
  const ResizePlan plan = plan_resize(src.width, src.height, max_soft_tokens);
  if (plan.width == src.width && plan.height == src.height) return src;
  return resize_bicubic_antialias(src, plan.width, plan.height);
}

void extract_patch(const ImageRGB& img, int gx, int gy, float* out) {
  if (img.rgb.size() != static_cast<size_t>(img.width) * img.height * kChannels)
    throw std::invalid_argument("extract_patch: image buffer does not hold width x height RGB pixels");
  if (img.width % kModelPatchSize != 0 || img.height % kModelPatchSize != 0)
    throw std::invalid_argument("extract_patch: image " + std::to_string(img.width) + "x" +
                                std::to_string(img.height) + " is not a multiple of 48 both ways");
  if (gx < 0 || gy < 0 || gx >= img.width / kModelPatchSize || gy >= img.height / kModelPatchSize)
    throw std::out_of_range("extract_patch: patch (" + std::to_string(gx) + ", " + std::to_string(gy) +
                            ") is outside the grid");
  // Divide (not multiply by 1/255): llama.cpp, which produced the reference embeddings, divides by 255.0f;
  // the two differ by at most 1 ulp. No mean/std normalization follows (mean 0, std 1).
  constexpr float kMaxByte = 255.0f;
  const size_t row_bytes = static_cast<size_t>(img.width) * kChannels;
  const size_t patch_row_values = static_cast<size_t>(kModelPatchSize) * kChannels;
  for (int r = 0; r < kModelPatchSize; ++r) {
    const uint8_t* src = &img.rgb[(static_cast<size_t>(gy) * kModelPatchSize + r) * row_bytes +
                                  static_cast<size_t>(gx) * kModelPatchSize * kChannels];
    float* dst = out + r * patch_row_values;
    for (size_t i = 0; i < patch_row_values; ++i) dst[i] = src[i] / kMaxByte;
  }
}

void extract_all_patches(const ImageRGB& img, std::vector<float>& patches, std::vector<int32_t>& gx,
                         std::vector<int32_t>& gy) {
  const int cols = img.width / kModelPatchSize, rows = img.height / kModelPatchSize, n = cols * rows;
  patches.resize(size_t(n) * kPatchValues);
  gx.resize(size_t(n));
  gy.resize(size_t(n));
  for (int i = 0; i < n; ++i) {
    gx[size_t(i)] = i % cols;
    gy[size_t(i)] = i / cols;
    extract_patch(img, gx[size_t(i)], gy[size_t(i)], patches.data() + size_t(i) * kPatchValues);
  }
}

}  // namespace conflux
