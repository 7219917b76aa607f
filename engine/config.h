// Model configuration: what config.json says, the per-layer geometry it implies, and presets with the
// published Gemma 4 12B numbers and the project's random-weight benchmark sizes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace conflux {

// Geometry of one decoder layer. Derived from config.json and checked against the tensor shapes.
struct LayerGeometry {
  bool full = false;        // full_attention (else sliding_attention)
  int head_dim = 0;         // hd: 256 sliding / 512 full in the 12B
  int n_kv_heads = 0;       // 8 sliding / 1 full in the 12B
  bool k_eq_v = false;      // no v_proj: V is the raw k_proj output (full layers with attention_k_eq_v)
  float rope_theta = 0.f;   // 1e4 sliding / 1e6 full
  int rope_pairs = 0;       // rotating NeoX pairs: hd/2 (default) or partial_rotary_factor*hd/2 (proportional)
  int window = 0;           // sliding window in keys including self; 0 on full layers
};

struct TextConfig {
  int vocab_size = 0;
  int hidden_size = 0;         // D
  int intermediate_size = 0;   // MLP width
  int num_layers = 0;
  int num_heads = 0;           // query heads, every layer
  int head_dim = 0;            // sliding layers
  int global_head_dim = 0;     // full layers
  int num_kv_heads = 0;        // sliding layers
  int num_global_kv_heads = 0; // full layers
  bool attention_k_eq_v = false;
  int sliding_window = 0;
  float final_logit_softcapping = 0.f;  // 0 = off
  float rms_norm_eps = 1e-6f;
  int max_position_embeddings = 0;
  float sliding_rope_theta = 10000.f;
  float full_rope_theta = 1000000.f;
  float full_partial_rotary_factor = 1.f;  // 1 for rope_type "default"
  std::vector<bool> layer_is_full;      // (num_layers)

  LayerGeometry layer(int i) const;
};

struct VisionConfig {
  bool present = false;
  int patch_size = 16;
  int pooling_kernel_size = 3;
  int mm_embed_dim = 0;
  int mm_posemb_size = 0;
  int output_proj_dims = 0;
  float rms_norm_eps = 1e-6f;
  float layer_norm_eps = 1e-5f;  // nn.LayerNorm default, as HF and llama.cpp use (doc §4.2)
  int model_patch_size() const { return patch_size * pooling_kernel_size; }  // 16 * 3 = 48
};

struct AudioConfig {
  bool present = false;
  int samples_per_token = 640;  // 40 ms at 16 kHz
  int sample_rate = 16000;
  float rms_norm_eps = 1e-6f;
};

// Multimodal token ids (from config.json; checked against tokenizer.json by the loader's callers).
struct SpecialTokens {
  int32_t boi = -1, eoi = -1, image = -1, video = -1, boa = -1, eoa = -1, audio = -1;
  int32_t bos = -1, eos = -1, pad = -1;
};

struct ModelConfig {
  std::string model_type;
  TextConfig text;
  VisionConfig vision;
  AudioConfig audio;
  SpecialTokens tokens;
};

// Parses config.json (gemma4_unified with text/vision/audio sub-configs, or a bare text config).
// Throws CheckpointError naming the file and field.
ModelConfig load_model_config(const std::string& path);
// Inverse of load_model_config for the fields the engine uses (used by the random-checkpoint tool).
std::string model_config_to_json(const ModelConfig& c);

// google/gemma-4-12B as published (architecture doc §1).
ModelConfig gemma4_12b_config();
// Random-weight benchmark sizes of Gemma 4 architecture (issue: "~270M-class" and "~1B-class").
ModelConfig gemma4_270m_class_config();
ModelConfig gemma4_1b_class_config();

}  // namespace conflux
