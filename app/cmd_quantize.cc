// `conflux quantize`: converts a checkpoint folder's matrices to Q8_0 or Q4_0 and writes a folder that
// `--model` loads: model.safetensors (each quantized matrix as NAME + NAME.scales, everything else as
// stored), config.json with a quantization_config field, and every other file of the folder copied.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/cli.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/weights.h"

namespace conflux::app {

namespace {

namespace fs = std::filesystem;

const char* kUsage =
    "usage: conflux quantize --model DIR --out DIR --type q8|q4\n"
    "\n"
    "Writes OUT/model.safetensors with every matrix (decoder projections, the embedding that is also the\n"
    "tied head, the vision and audio projections) block-quantized, OUT/config.json with\n"
    "\"quantization_config\": {\"quant_method\": \"conflux\", \"type\": \"q8_0\"|\"q4_0\", \"block_size\": 32},\n"
    "and copies the folder's other files (tokenizer, generation and preprocessor configs).\n"
    "Norms, biases, layer scalars and the vision position table stay as stored.\n"
    "\n"
    "  --model DIR   source checkpoint folder (f32, bf16, f16 or already quantized)\n"
    "  --out DIR     output folder (created; existing files are overwritten; must differ from --model)\n"
    "  --type T      q8 (Q8_0: int8 + f16 scale per 32 weights, 8.5 bits per weight)\n"
    "                q4 (Q4_0: 4-bit + f16 scale per 32 weights, 4.5 bits per weight)\n";

// The payload of one tensor to write, with the storage dtype and shape safetensors gets.
void add_tensor(std::vector<TensorToWrite>& out, const std::string& name, const TensorRef& t) {
  if (!is_quantized(t.dtype)) {
    out.push_back({name, t.dtype, t.shape, t.data});
    return;
  }
  const int64_t rows = t.shape[0], cols = t.shape[1];
  if (t.dtype == DType::Q8_0)
    out.push_back({name, DType::I8, {rows, cols}, t.data});
  else
    out.push_back({name, DType::U8, {rows, cols / 2}, t.data});
  out.push_back({name + ".scales", DType::F16, {rows, cols / kQuantBlock}, t.scales});
}

}  // namespace

int cmd_quantize(int argc, char** argv) {
  Args args(argc, argv);
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  args.reject_unknown({"model", "out", "type"});
  const fs::path src = args.require("model");
  const fs::path out = args.require("out");
  const std::string type = args.require("type");
  WeightFormat format;
  try {
    format = parse_weight_format(type);
  } catch (const std::invalid_argument& e) {
    throw CliError("--type: " + std::string(e.what()));
  }
  if (format != WeightFormat::Q8_0 && format != WeightFormat::Q4_0)
    throw CliError("--type must be q8 or q4, got '" + type + "'");
  if (fs::exists(out) && fs::equivalent(src, out)) throw CliError("--out must differ from --model");

  LoadOptions load;
  load.format = format;
  const auto model = Model::load(src.string(), load);
  fs::create_directories(out);

  // The tensors in the order of the one tensor table, under their released names.
  ModelWeights& weights = const_cast<ModelWeights&>(model->weights());  // the table only takes addresses
  std::vector<TensorToWrite> tensors;
  for (const TensorSlot& slot : tensor_table(model->config(), weights))
    if (slot.weight->present()) add_tensor(tensors, slot.name, slot.weight->ref);
  const std::string dtype_field = format == WeightFormat::Q8_0 ? "q8_0" : "q4_0";
  write_safetensors((out / "model.safetensors").string(), tensors,
                    {{"format", "pt"}, {"conflux_quantization", dtype_field}});

  // config.json as it was, plus the quantization field the loader checks.
  const fs::path cfg_in = src / "config.json";
  std::ifstream in(cfg_in);
  nlohmann::json cfg = nlohmann::json::parse(in);
  cfg["quantization_config"] = {{"quant_method", "conflux"}, {"type", dtype_field}, {"block_size", kQuantBlock}};
  {
    std::ofstream o(out / "config.json");
    o << cfg.dump(2) << "\n";
    if (!o) throw std::runtime_error((out / "config.json").string() + ": cannot write");
  }
  // Everything else in the folder (tokenizer, generation and preprocessor configs, templates).
  for (const auto& e : fs::directory_iterator(src)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name == "config.json" || name == "model.safetensors.index.json" ||
        e.path().extension() == ".safetensors")
      continue;
    fs::copy_file(e.path(), out / name, fs::copy_options::overwrite_existing);
    fs::permissions(out / name, fs::perms::owner_write, fs::perm_options::add);  // sources may be read-only
  }
  constexpr double kBytesPerMib = 1024.0 * 1024.0;
  std::printf("conflux quantize: %s -> %s (%s): %zu tensors, %.1f MiB of weights\n", src.c_str(), out.c_str(),
              dtype_field.c_str(), tensors.size(), double(model->weight_bytes()) / kBytesPerMib);
  return 0;
}

}  // namespace conflux::app
