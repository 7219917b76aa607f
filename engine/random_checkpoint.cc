// Random checkpoint writer. All payloads are held until the file is written (about 2 GB for the
// 1B-class model in bf16), which keeps the writer one plain pass over the tensor table.
#include "engine/random_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/safetensors.h"
#include "engine/weights.h"

namespace conflux {

namespace fs = std::filesystem;

void write_random_checkpoint(const std::string& dir, const ModelConfig& config, DType dtype, uint64_t seed,
                             float embed_std) {
  fs::create_directories(dir);
  {
    std::ofstream cfg(fs::path(dir) / "config.json");
    cfg << model_config_to_json(config) << "\n";
    std::ofstream gen(fs::path(dir) / "generation_config.json");
    nlohmann::json g = {{"bos_token_id", config.tokens.bos}, {"eos_token_id", {config.tokens.eos}}, {"pad_token_id", config.tokens.pad}};
    std::vector<int32_t> suppress;
    if (config.tokens.eoi >= 0) suppress.push_back(config.tokens.eoi);
    if (config.tokens.eoa >= 0) suppress.push_back(config.tokens.eoa);
    g["suppress_tokens"] = suppress;
    gen << g.dump(2) << "\n";
    if (!cfg || !gen) throw CheckpointError(dir + ": cannot write config files");
  }
  ModelWeights dummy;
  std::vector<TensorSlot> table = tensor_table(config, dummy);
  // Payloads are generated into memory one tensor at a time and streamed to the file.
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<TensorToWrite> to_write;
  std::mt19937_64 rng(seed);
  for (const TensorSlot& slot : table) {
    if (!slot.required) continue;  // optional tensors (lm_head) are left out: the head is tied
    size_t n = 1;
    for (auto d : slot.shape) n *= size_t(d);
    std::vector<float> v(n);
    std::normal_distribution<float> normal(0.f, 1.f);
    switch (slot.role) {
      case WeightRole::Matrix: for (auto& x : v) x = 0.02f * normal(rng); break;
      case WeightRole::Embedding: for (auto& x : v) x = embed_std * normal(rng); break;
      case WeightRole::NormWeight: for (auto& x : v) x = 1.f + 0.1f * normal(rng); break;
      case WeightRole::Bias: for (auto& x : v) x = 0.05f * normal(rng); break;
      case WeightRole::PositionTable: for (auto& x : v) x = 0.5f * normal(rng); break;
      case WeightRole::LayerScalar: {
        std::uniform_real_distribution<float> u(0.5f, 1.5f);
        for (auto& x : v) x = u(rng);
        break;
      }
    }
    std::vector<uint8_t> bytes(n * dtype_size(dtype));
    for (size_t i = 0; i < n; ++i) {
      if (dtype == DType::F32) {
        std::memcpy(bytes.data() + 4 * i, &v[i], 4);
      } else {
        const uint16_t h = dtype == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    payloads.push_back(std::move(bytes));
    to_write.push_back({slot.name, dtype, slot.shape, payloads.back().data()});
  }
  write_safetensors((fs::path(dir) / "model.safetensors").string(), to_write, {{"format", "pt"}});
}

}  // namespace conflux
