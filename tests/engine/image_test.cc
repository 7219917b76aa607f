// Tests for engine/image: the size rule (architecture doc §4.1 table and edge rule), the torchvision
// bicubic+antialias resize against the golden files, patch extraction, image I/O and `conflux preprocess`.
#include "engine/image.h"

#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace conflux {
namespace {

namespace fs = std::filesystem;

const std::string kPreprocessDir = std::string(CONFLUX_SHARED_DIR) + "/reference/preprocess/";
const std::string kTinyCasesDir = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a/cases/";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A fresh directory per test for files the tests write.
fs::path scratch_dir() {
  const auto* info = testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(testing::TempDir()) /
                 ("conflux_image_test_" + std::to_string(getpid()) + "_" + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

ImageRGB make_image(int width, int height, uint8_t (*pixel)(int x, int y, int ch)) {
  ImageRGB img;
  img.width = width;
  img.height = height;
  img.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int ch = 0; ch < 3; ++ch) img.rgb[(static_cast<size_t>(y) * width + x) * 3 + ch] = pixel(x, y, ch);
  return img;
}

// ---- plan_resize ---------------------------------------------------------------------------------------

struct PlanExample {
  int height, width, budget;
  int want_height, want_width, want_tokens;
};

// The examples table of architecture doc §4.1 (image H x W -> target H x W -> tokens).
const PlanExample kDocTable[] = {
    {768, 1024, 70, 336, 432, 63},     {768, 1024, 140, 480, 624, 130},   {768, 1024, 280, 672, 912, 266},
    {768, 1024, 560, 960, 1296, 540},  {768, 1024, 1120, 1344, 1824, 1064},
    {1000, 1000, 70, 384, 384, 64},    {1000, 1000, 140, 528, 528, 121},  {1000, 1000, 280, 768, 768, 256},
    {1000, 1000, 560, 1104, 1104, 529}, {1000, 1000, 1120, 1584, 1584, 1089},
};

TEST(PlanResize, MatchesArchitectureDocTable) {
  for (const auto& e : kDocTable) {
    SCOPED_TRACE(std::to_string(e.height) + "x" + std::to_string(e.width) + " budget " + std::to_string(e.budget));
    const ResizePlan p = plan_resize(e.width, e.height, e.budget);
    EXPECT_EQ(p.height, e.want_height);
    EXPECT_EQ(p.width, e.want_width);
    EXPECT_EQ(p.grid_rows, e.want_height / kModelPatchSize);
    EXPECT_EQ(p.grid_cols, e.want_width / kModelPatchSize);
    EXPECT_EQ(p.n_tokens(), e.want_tokens);
    EXPECT_LE(p.n_tokens(), e.budget);
  }
}

TEST(PlanResize, RejectsBudgetsOutsideThePositionTables) {
  for (int budget : {0, -70, 1121, 2240})
    EXPECT_THROW(plan_resize(640, 480, budget), std::invalid_argument) << "budget " << budget;
}

// Budgets below HF's five follow the same rule; the bundled model uses 16.
TEST(PlanResize, SmallBudgetsFollowTheSameRule) {
  // factor = sqrt(16 * 48^2 / (480 * 640)) = 0.3464: 166.3 -> 144 (3 rows), 221.7 -> 192 (4 columns).
  const ResizePlan p = plan_resize(640, 480, 16);
  EXPECT_EQ(p.width, 192);
  EXPECT_EQ(p.height, 144);
  EXPECT_EQ(p.n_tokens(), 12);
  // A square frame at 16: factor = sqrt(16 * 2304 / 480^2) = 0.4 exactly: 192 x 192, 4 x 4 = the budget.
  EXPECT_EQ(plan_resize(480, 480, 16).n_tokens(), 16);
  // Budget 1 on 640x480: factor = 0.0866, th rounds down to 0, so th = 48 and
  // tw = min(floor(640/480) * 48, 1 * 48) = 48: one patch.
  EXPECT_EQ(plan_resize(640, 480, 1).n_tokens(), 1);
}

TEST(DefaultImageBudget, ComesFromThePreprocessorConfig) {
  EXPECT_EQ(default_image_budget(std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a"), 70);
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("conflux-budget-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  EXPECT_EQ(default_image_budget(dir.string()), kDefaultImageBudget);  // no file: HF's default
  std::ofstream(dir / "preprocessor_config.json") << R"({"max_soft_tokens": 16})";
  EXPECT_EQ(default_image_budget(dir.string()), 16);
  std::ofstream(dir / "preprocessor_config.json") << R"({"max_soft_tokens": 5000})";
  try {
    default_image_budget(dir.string());
    ADD_FAILURE() << "a budget past the position tables was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("preprocessor_config.json: field max_soft_tokens"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(PlanResize, RejectsDegenerateSizes) {
  EXPECT_THROW(plan_resize(0, 480, 280), std::invalid_argument);
  EXPECT_THROW(plan_resize(640, 0, 280), std::invalid_argument);
  EXPECT_THROW(plan_resize(-640, 480, 280), std::invalid_argument);
}

TEST(PlanResize, SmallImagesAreUpscaledToFillTheBudget) {
  const ResizePlan p = plan_resize(200, 150, 280);  // golden case small200_b280
  EXPECT_EQ(p.width, 912);
  EXPECT_EQ(p.height, 672);
}

TEST(PlanResize, ExtremeAspectRatiosGetOnePatchRowOrColumn) {
  // 2000x10 at budget 70: factor*10 = 28.4 < 48, so th = 48 and tw = min(200 * 48, 70 * 48) = 3360.
  ResizePlan wide = plan_resize(2000, 10, 70);
  EXPECT_EQ(wide.height, kModelPatchSize);
  EXPECT_EQ(wide.width, 70 * kModelPatchSize);
  EXPECT_EQ(wide.n_tokens(), 70);
  // The transposed image takes the symmetric branch.
  ResizePlan tall = plan_resize(10, 2000, 70);
  EXPECT_EQ(tall.width, kModelPatchSize);
  EXPECT_EQ(tall.height, 70 * kModelPatchSize);
  // A 1-pixel-high strip far wider than int range allows for width * 48 must still be capped, not overflow.
  ResizePlan huge = plan_resize(100'000'000, 1, 1120);
  EXPECT_EQ(huge.width, 1120 * kModelPatchSize);
  EXPECT_EQ(huge.height, kModelPatchSize);
}

// ---- resize against the torchvision golden files -------------------------------------------------------

TEST(Resize, MatchesTorchvisionGoldenFiles) {
  const auto cases = nlohmann::json::parse(std::ifstream(kPreprocessDir + "cases.json"));
  ASSERT_EQ(cases.size(), 9u);
  for (const auto& c : cases) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    const ImageRGB input = load_image(kPreprocessDir + c.at("input").get<std::string>());
    ASSERT_EQ(input.width, c.at("width").get<int>());
    ASSERT_EQ(input.height, c.at("height").get<int>());
    const ImageRGB want = load_image(kPreprocessDir + c.at("resized").get<std::string>());

    const ResizePlan plan = plan_resize(input.width, input.height, c.at("max_soft_tokens"));
    EXPECT_EQ(plan.width, c.at("resized_width").get<int>());
    EXPECT_EQ(plan.height, c.at("resized_height").get<int>());
    EXPECT_EQ(plan.grid_cols, c.at("grid_cols").get<int>());
    EXPECT_EQ(plan.grid_rows, c.at("grid_rows").get<int>());
    EXPECT_EQ(plan.n_tokens(), c.at("n_tokens").get<int>());

    const ImageRGB got = preprocess_image(input, c.at("max_soft_tokens"));
    ASSERT_EQ(got.width, want.width);
    ASSERT_EQ(got.height, want.height);
    ASSERT_EQ(got.rgb.size(), want.rgb.size());
    int max_diff = 0;
    double sum_diff = 0;
    for (size_t i = 0; i < got.rgb.size(); ++i) {
      const int d = std::abs(int(got.rgb[i]) - int(want.rgb[i]));
      max_diff = std::max(max_diff, d);
      sum_diff += d;
    }
    const double mean_diff = sum_diff / double(got.rgb.size());
    std::printf("  %-18s %4dx%-4d -> %4dx%-4d  max |diff| %d  mean |diff| %.6f\n", name.c_str(), input.width,
                input.height, got.width, got.height, max_diff, mean_diff);
    // Tolerances from reference/README.md: the float pipeline lands within a few ulps of torchvision's, which
    // can flip a value sitting on a .5 tie by one level; a wrong kernel or missing antialias is off by many
    // levels along every edge, far above both bounds.
    EXPECT_LE(max_diff, 1);
    EXPECT_LT(mean_diff, 0.05);
  }
}

TEST(Resize, ConstantImageStaysConstant) {
  // Weights are normalized per output pixel, so a flat image must stay flat when shrinking and growing.
  const ImageRGB flat = make_image(37, 23, [](int, int, int ch) { return uint8_t(77 + 50 * ch); });
  for (auto [w, h] : std::array<std::pair<int, int>, 3>{{{96, 48}, {12, 7}, {37, 100}}}) {
    const ImageRGB out = resize_bicubic_antialias(flat, w, h);
    ASSERT_EQ(out.width, w);
    ASSERT_EQ(out.height, h);
    for (size_t i = 0; i < out.rgb.size(); ++i) ASSERT_EQ(out.rgb[i], 77 + 50 * (i % 3)) << "index " << i;
  }
}

TEST(Resize, SameSizeIsIdentity) {
  // At scale 1 the kernel is 1 at the center tap and exactly 0 at the others.
  const ImageRGB noise = make_image(50, 30, [](int x, int y, int ch) { return uint8_t((x * 37 + y * 101 + ch * 59) % 256); });
  EXPECT_EQ(resize_bicubic_antialias(noise, 50, 30).rgb, noise.rgb);
}

TEST(Resize, RejectsBadArguments) {
  const ImageRGB img = make_image(4, 4, [](int, int, int) { return uint8_t(0); });
  EXPECT_THROW(resize_bicubic_antialias(img, 0, 4), std::invalid_argument);
  ImageRGB short_buffer = img;
  short_buffer.rgb.pop_back();
  EXPECT_THROW(resize_bicubic_antialias(short_buffer, 8, 8), std::invalid_argument);
}

// ---- tiny-a image: already at its planned size ---------------------------------------------------------

TEST(Preprocess, TinyAImageNeedsNoResize) {
  const ImageRGB png = load_image(kTinyCasesDir + "image.png");
  ASSERT_EQ(png.width, 480);
  ASSERT_EQ(png.height, 336);
  const ResizePlan plan = plan_resize(png.width, png.height, 70);
  EXPECT_EQ(plan.width, 480);
  EXPECT_EQ(plan.height, 336);
  EXPECT_EQ(plan.n_tokens(), 70);
  EXPECT_EQ(png.rgb, read_bytes(kTinyCasesDir + "image.rgb"));
  EXPECT_EQ(preprocess_image(png, 70).rgb, png.rgb);
}

// ---- extract_patch -------------------------------------------------------------------------------------

TEST(ExtractPatch, HwcLayoutOfTheRightBlock) {
  // value(x, y, ch) = (x + 2y + 50ch) mod 256 on a 96x96 image: a 2x2 grid of patches.
  const ImageRGB img = make_image(96, 96, [](int x, int y, int ch) { return uint8_t((x + 2 * y + 50 * ch) % 256); });
  std::vector<float> patch(kPatchValues);
  extract_patch(img, 1, 1, patch.data());
  // Exact equality: the same single float division as the implementation's x / 255.
  // r=0, c=0, R: pixel (48, 48) = 48 + 96 = 144.
  EXPECT_EQ(patch[0], 144.0f / 255.0f);
  // r=2, c=5, G: pixel (53, 50) = 53 + 100 + 50 = 203, at (2 * 48 + 5) * 3 + 1 = 304.
  EXPECT_EQ(patch[304], 203.0f / 255.0f);
  // r=47, c=47, B: pixel (95, 95) = (95 + 190 + 100) mod 256 = 129, the last value.
  EXPECT_EQ(patch[kPatchValues - 1], 129.0f / 255.0f);
  // Patch (1, 0) (column 1, row 0): r=1, c=0, R is pixel (48, 1) = 50.
  extract_patch(img, 1, 0, patch.data());
  EXPECT_EQ(patch[48 * 3], 50.0f / 255.0f);
}

TEST(ExtractPatch, RejectsPatchesOutsideTheGrid) {
  const ImageRGB img = make_image(96, 48, [](int, int, int) { return uint8_t(0); });
  std::vector<float> patch(kPatchValues);
  EXPECT_THROW(extract_patch(img, 2, 0, patch.data()), std::out_of_range);
  EXPECT_THROW(extract_patch(img, 0, 1, patch.data()), std::out_of_range);
  EXPECT_THROW(extract_patch(img, -1, 0, patch.data()), std::out_of_range);
  const ImageRGB ragged = make_image(50, 48, [](int, int, int) { return uint8_t(0); });
  EXPECT_THROW(extract_patch(ragged, 0, 0, patch.data()), std::invalid_argument);
}

// ---- load_image / save_png -----------------------------------------------------------------------------

TEST(ImageIo, PngRoundTrip) {
  const fs::path dir = scratch_dir();
  const ImageRGB img = make_image(17, 9, [](int x, int y, int ch) { return uint8_t(x * 13 + y * 7 + ch * 80); });
  save_png((dir / "a.png").string(), img);
  const ImageRGB back = load_image((dir / "a.png").string());
  EXPECT_EQ(back.width, 17);
  EXPECT_EQ(back.height, 9);
  EXPECT_EQ(back.rgb, img.rgb);  // PNG is lossless
}

TEST(ImageIo, TransparencyIsCompositedOverWhite) {
  // HF's convert_to_rgb alpha-composites over white; PIL's integer blend equals the exactly rounded
  // (c * a + 255 * (255 - a)) / 255, which is never a .5 tie because 255 is odd, so no tolerance.
  const fs::path dir = scratch_dir();
  const std::vector<std::array<uint8_t, 4>> rgba = {{0, 0, 0, 0}, {10, 200, 30, 255}, {0, 0, 0, 128}, {200, 100, 50, 64}};
  const std::string path = (dir / "rgba.png").string();
  ASSERT_NE(stbi_write_png(path.c_str(), int(rgba.size()), 1, 4, rgba.data(), int(rgba.size()) * 4), 0);
  const ImageRGB img = load_image(path);
  ASSERT_EQ(img.width, int(rgba.size()));
  for (size_t i = 0; i < rgba.size(); ++i)
    for (int c = 0; c < 3; ++c) {
      const int a = rgba[i][3];
      const long want = std::lround((rgba[i][c] * a + 255.0 * (255 - a)) / 255.0);
      EXPECT_EQ(img.rgb[i * 3 + c], want) << "pixel " << i << " channel " << c;
    }
  EXPECT_EQ(img.rgb[0], 255);  // fully transparent black becomes white
  EXPECT_EQ(img.rgb[3], 10);   // opaque pixels are unchanged
}

TEST(ImageIo, LoadsJpeg) {
  const fs::path dir = scratch_dir();
  // Flat color: JPEG's only loss is rounding in the color transform, a couple of levels at quality 100.
  constexpr int kJpegTolerance = 2;
  const ImageRGB img = make_image(32, 16, [](int, int, int ch) { return uint8_t(40 + 80 * ch); });
  const std::string path = (dir / "flat.jpg").string();
  ASSERT_NE(stbi_write_jpg(path.c_str(), img.width, img.height, 3, img.rgb.data(), 100), 0);
  const ImageRGB back = load_image(path);
  ASSERT_EQ(back.width, 32);
  ASSERT_EQ(back.height, 16);
  for (size_t i = 0; i < back.rgb.size(); ++i)
    ASSERT_NEAR(back.rgb[i], img.rgb[i], kJpegTolerance) << "index " << i;
}

TEST(ImageIo, ErrorsNameTheFile) {
  const fs::path dir = scratch_dir();
  const std::string missing = (dir / "no_such.png").string();
  try {
    load_image(missing);
    FAIL() << "missing file loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
  }
  const std::string text = (dir / "notes.png").string();
  std::ofstream(text) << "this is not an image\n";
  try {
    load_image(text);
    FAIL() << "text file loaded as an image";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
  EXPECT_THROW(save_png((dir / "no_dir" / "x.png").string(),
                        make_image(2, 2, [](int, int, int) { return uint8_t(0); })),
               std::runtime_error);
}

// ---- `conflux preprocess` ------------------------------------------------------------------------------

struct RunResult {
  int exit_code;
  std::string out;
};

RunResult run(const std::string& command) {
  RunResult r{-1, {}};
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(PreprocessCommand, WritesResizedPixelsAndPrintsGrid) {
  const fs::path dir = scratch_dir();
  const std::string out = (dir / "cam.rgb").string();
  const std::string input = kPreprocessDir + "cam640_b70.png";
  const RunResult r = run(std::string(CONFLUX_BINARY) + " preprocess --image '" + input + "' --budget 70 --out '" +
                          out + "'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  // Expected values from cases.json for cam640_b70.
  EXPECT_EQ(j.at("width"), 432);
  EXPECT_EQ(j.at("height"), 336);
  EXPECT_EQ(j.at("grid_cols"), 9);
  EXPECT_EQ(j.at("grid_rows"), 7);
  EXPECT_EQ(j.at("n_tokens"), 63);
  const std::vector<uint8_t> pixels = read_bytes(out);
  EXPECT_EQ(pixels.size(), size_t(432) * 336 * 3);
  EXPECT_EQ(pixels, preprocess_image(load_image(input), 70).rgb);
}

TEST(PreprocessCommand, HelpAndUsageErrors) {
  const std::string bin = CONFLUX_BINARY;
  const RunResult help = run(bin + " preprocess --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("usage: conflux preprocess"), std::string::npos) << help.out;
  // Usage errors exit 2 (CliError); a file that is not there is a runtime error, exit 1.
  EXPECT_EQ(run(bin + " preprocess --image '" + kPreprocessDir + "cam640_b70.png' --budget 2000 2>/dev/null").exit_code, 2);
  EXPECT_EQ(run(bin + " preprocess 2>/dev/null").exit_code, 2);
  EXPECT_EQ(run(bin + " preprocess --image /nonexistent/x.png 2>/dev/null").exit_code, 1);
}

}  // namespace
}  // namespace conflux
