// Images for the vision embedder: PNG/JPEG loading, HF gemma4_unified size rule (budget 70..1120 soft
// tokens, upscaling included), torchvision-exact bicubic+antialias resize, 48x48 HWC raster patches.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace conflux {

struct ImageRGB {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // (height, width, 3) row-major, R G B interleaved
};

// Pixels per side of one soft token: patch_size 16 x pooling_kernel_size 3.
constexpr int kModelPatchSize = 48;
// Values in one patch vector: 48 * 48 * 3.
constexpr int kPatchValues = kModelPatchSize * kModelPatchSize * 3;

// Loads PNG or JPEG (anything stb_image reads), converted to RGB8. Throws naming the file on failure.
ImageRGB load_image(const std::string& path);
// The same for PNG/JPEG bytes in memory (a network message); `what` names the source in errors.
ImageRGB decode_image(const uint8_t* data, size_t size, const std::string& what);
// Width and height read from the header without decoding (to refuse huge images before decoding them);
// false when the bytes are not an image stb_image can read.
bool image_dimensions(const uint8_t* data, size_t size, int& width, int& height);
// Writes an RGB8 PNG. Throws naming the file on failure.
void save_png(const std::string& path, const ImageRGB& img);

struct ResizePlan {
  int width = 0;       // target width, a multiple of 48
  int height = 0;      // target height, a multiple of 48
  int grid_cols = 0;   // width / 48
  int grid_rows = 0;   // height / 48
  int n_tokens() const { return grid_cols * grid_rows; }
};

// Soft-token budgets. HF's processor offers five (architecture doc §4.1); the size rule itself works for
// any budget up to the 1120 rows of the vision position tables, and a small model trained on fewer
// patches per frame (the bundled one uses 16) declares its budget in preprocessor_config.json.
inline constexpr int kHfImageBudgets[] = {70, 140, 280, 560, 1120};
constexpr int kDefaultImageBudget = 280;  // HF's processor default
constexpr int kMaxImageBudget = 1120;
bool is_supported_budget(int budget);     // 1..kMaxImageBudget
// The checkpoint folder's own budget: preprocessor_config.json "max_soft_tokens" when the file exists,
// else kDefaultImageBudget. Throws naming the file and field if the value is unusable.
int default_image_budget(const std::string& model_dir);

// HF's aspect-preserving size rule (architecture doc §4.1) for an image of width x height and a budget
// in 1..1120. Throws std::invalid_argument for other budgets or degenerate sizes.
ResizePlan plan_resize(int width, int height, int max_soft_tokens);

// torchvision resize(uint8, BICUBIC, antialias=True): separable, PIL's a=-0.5 kernel widened by the
// scale when downsampling, computed in float and rounded back to uint8.
ImageRGB resize_bicubic_antialias(const ImageRGB& src, int width, int height);

// plan_resize + resize (skipped when the size is unchanged).
ImageRGB preprocess_image(const ImageRGB& src, int max_soft_tokens);

// Patch (gx, gy) of a preprocessed image as 6912 floats in HWC order, each pixel / 255.
// out[(r * 48 + c) * 3 + ch] for row r, column c of the patch.
void extract_patch(const ImageRGB& img, int gx, int gy, float* out);

// Every patch of a preprocessed image in raster order (row-major over the grid): patches (n, 6912),
// gx/gy (n) each patch's grid column and row.
void extract_all_patches(const ImageRGB& img, std::vector<float>& patches, std::vector<int32_t>& gx,
                         std::vector<int32_t>& gy);

}  // namespace conflux
