// `conflux make-random`: writes a random-weight gemma4_unified checkpoint of a preset size (the
// benchmark models of the issue: ~270M-class and ~1B-class), optionally with a tokenizer copied in
// so the folder also works with `conflux generate`.
#include <cstdio>
#include <filesystem>
#include <string>

#include "app/cli.h"
#include "engine/config.h"
#include "engine/random_checkpoint.h"
#include "engine/weights.h"

namespace conflux::app {

namespace {

namespace fs = std::filesystem;

const char* kUsage =
    "usage: conflux make-random --preset 270m|1b --dtype f32|bf16|f16 --out DIR [options]\n"
    "\n"
    "Writes DIR/config.json, DIR/generation_config.json and DIR/model.safetensors with random weights\n"
    "of Gemma 4 architecture (text decoder plus vision and audio embedders).\n"
    "\n"
    "  --preset 270m|1b   270m: hidden 640, 18 layers, vocab 262144 (~300M parameters)\n"
    "                     1b:   hidden 1152, 24 layers, vocab 262144 (~1B parameters)\n"
    "  --dtype f32|bf16|f16  element type of every tensor\n"
    "  --out DIR          output folder (created if missing; existing files are overwritten)\n"
    "  --seed N           random seed (default 1)\n"
    "  --tokenizer FILE   copy FILE to DIR/tokenizer.json, and tokenizer_config.json beside it if present\n";

constexpr uint64_t kDefaultSeed = 1;

// Hidden preset "tiny", for tests: every component of the real architecture (sliding and full layers
// with k_eq_v, proportional RoPE, soft-capped logits, vision and audio embedders) at sizes that write
// and run in well under a second. Not listed in --help because it is useless as a benchmark.
ModelConfig tiny_test_config() {
  ModelConfig c;
  c.model_type = "gemma4_unified";
  TextConfig& t = c.text;
  t.vocab_size = 1000;
  t.hidden_size = 64;
  t.intermediate_size = 128;
  t.num_layers = 6;
  t.layer_is_full = {false, false, false, false, false, true};  // Gemma 4's pattern: every sixth full
  t.num_heads = 4;
  t.head_dim = 16;
  t.global_head_dim = 32;
  t.num_kv_heads = 2;
  t.num_global_kv_heads = 1;
  t.attention_k_eq_v = true;
  t.sliding_window = 8;  // smaller than the test prompts, so the sliding ring wraps
  t.final_logit_softcapping = 30.f;
  t.max_position_embeddings = 4096;
  t.full_partial_rotary_factor = 0.25f;  // as the 12B: 0.25 * 32 / 2 = 4 rotating pairs
  c.vision.present = true;
  c.vision.mm_embed_dim = 32;
  c.vision.mm_posemb_size = 64;
  c.vision.output_proj_dims = 32;
  c.audio.present = true;
  // Marker ids at the top of the vocabulary, below it like Gemma's are below 262144.
  SpecialTokens& k = c.tokens;
  k.pad = 0; k.eos = 1; k.bos = 2;
  k.boi = 990; k.boa = 991; k.image = 992; k.audio = 993; k.eoi = 994; k.eoa = 995; k.video = 996;
  return c;
}

ModelConfig preset_config(const std::string& name) {
  if (name == "270m") return gemma4_270m_class_config();
  if (name == "1b") return gemma4_1b_class_config();
  if (name == "tiny") return tiny_test_config();
  if (name == "12b")
    throw CliError("--preset 12b is not offered: its ~12B random parameters (24 GB in bf16) are held in memory while "
                   "writing; use the published checkpoint instead");
  throw CliError("unknown --preset '" + name + "' (expected 270m or 1b)");
}

DType parse_dtype_option(const std::string& s) {
  if (s == "f32") return DType::F32;
  if (s == "bf16") return DType::BF16;
  if (s == "f16") return DType::F16;
  throw CliError("--dtype must be f32, bf16 or f16, got '" + s + "'");
}

// Parameters the writer emits: the required tensors of the table (the tied lm_head is left out).
size_t parameter_count(const ModelConfig& config) {
  ModelWeights unbound;
  size_t total = 0;
  for (const TensorSlot& slot : tensor_table(config, unbound)) {
    if (!slot.required) continue;
    size_t n = 1;
    for (int64_t d : slot.shape) n *= size_t(d);
    total += n;
  }
  return total;
}

void copy_tokenizer(const fs::path& tokenizer_json, const fs::path& out_dir) {
  if (!fs::is_regular_file(tokenizer_json)) throw CliError("--tokenizer " + tokenizer_json.string() + ": no such file");
  fs::copy_file(tokenizer_json, out_dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  std::printf("  %s\n", (out_dir / "tokenizer.json").c_str());
  const fs::path tokenizer_config = tokenizer_json.parent_path() / "tokenizer_config.json";
  if (fs::is_regular_file(tokenizer_config)) {
    fs::copy_file(tokenizer_config, out_dir / "tokenizer_config.json", fs::copy_options::overwrite_existing);
    std::printf("  %s\n", (out_dir / "tokenizer_config.json").c_str());
  }
}

}  // namespace

int cmd_make_random(int argc, char** argv) {
  Args args(argc, argv);
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  args.reject_unknown({"preset", "dtype", "out", "seed", "tokenizer"});
  // Every option is checked before anything is written.
  const std::string preset = args.require("preset");
  const ModelConfig config = preset_config(preset);
  const DType dtype = parse_dtype_option(args.require("dtype"));
  const fs::path out_dir = args.require("out");
  const int seed = args.get_int("seed", int(kDefaultSeed));
  if (seed < 0) throw CliError("--seed must be non-negative");
  const auto tokenizer = args.get("tokenizer");
  if (tokenizer && !fs::is_regular_file(*tokenizer)) throw CliError("--tokenizer " + *tokenizer + ": no such file");

  write_random_checkpoint(out_dir.string(), config, dtype, uint64_t(seed));
  const fs::path weights_file = out_dir / "model.safetensors";
  std::printf("conflux make-random: preset %s, %s, seed %d\n", preset.c_str(), std::string(dtype_name(dtype)).c_str(), seed);
  std::printf("  %s\n  %s\n  %s\n", (out_dir / "config.json").c_str(), (out_dir / "generation_config.json").c_str(),
              weights_file.c_str());
  if (tokenizer) copy_tokenizer(*tokenizer, out_dir);
  const size_t params = parameter_count(config);
  const auto bytes = fs::file_size(weights_file);
  constexpr double kBytesPerMib = 1024.0 * 1024.0;
  std::printf("  parameters: %zu (%.1f M)\n  model.safetensors: %ju bytes (%.1f MiB)\n", params, double(params) / 1e6,
              uintmax_t(bytes), double(bytes) / kBytesPerMib);
  return 0;
}

}  // namespace conflux::app
