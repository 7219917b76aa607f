// `conflux preprocess`: load an image, resize it the way the vision embedder sees it (size rule of the
// architecture doc §4.1 + torchvision bicubic/antialias), write the pixels and print the grid as JSON.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "app/cli.h"
#include "engine/image.h"

namespace conflux::app {

namespace {

const char* kUsage =
    "usage: conflux preprocess --image FILE [--budget N] [--out FILE.rgb] [--png FILE.png]\n"
    "\n"
    "Resizes a PNG/JPEG image for the vision embedder and prints the result as one JSON line:\n"
    "  {\"width\":W,\"height\":H,\"grid_cols\":C,\"grid_rows\":R,\"n_tokens\":N}\n"
    "\n"
    "  --image FILE   input image (PNG or JPEG; converted to RGB)\n"
    "  --budget N     soft-token budget, 1..1120 (HF offers 70, 140, 280, 560, 1120; default 280)\n"
    "  --out FILE     write the resized pixels as raw RGB8 (H rows of W x 3 bytes, R G B interleaved)\n"
    "  --png FILE     write the resized pixels as a PNG\n";

void write_raw(const std::string& path, const ImageRGB& img) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path + ": cannot create");
  out.write(reinterpret_cast<const char*>(img.rgb.data()), std::streamsize(img.rgb.size()));
  if (!out) throw std::runtime_error(path + ": write failed");
}

}  // namespace

int cmd_preprocess(int argc, char** argv) {
  Args args(argc, argv);
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  args.reject_unknown({"image", "budget", "out", "png"});
  const std::string image_path = args.require("image");
  const int budget = args.get_int("budget", kDefaultImageBudget);  // HF's processor default (doc §4.1)

  // Check the budget before decoding: a one-patch image is valid under every supported budget, so this
  // throws only for a bad --budget, which is a usage error.
  try {
    plan_resize(kModelPatchSize, kModelPatchSize, budget);
  } catch (const std::invalid_argument& e) {
    throw CliError(std::string("--budget: ") + e.what());
  }

  const ImageRGB src = load_image(image_path);
  const ResizePlan plan = plan_resize(src.width, src.height, budget);
  const ImageRGB resized = preprocess_image(src, budget);

  if (auto out = args.get("out")) write_raw(*out, resized);
  if (auto png = args.get("png")) save_png(*png, resized);

  nlohmann::ordered_json j;
  j["width"] = plan.width;
  j["height"] = plan.height;
  j["grid_cols"] = plan.grid_cols;
  j["grid_rows"] = plan.grid_rows;
  j["n_tokens"] = plan.n_tokens();
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace conflux::app
