// config.json parsing, per-layer geometry, and the presets.
#include "engine/config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/safetensors.h"

namespace conflux {

using nlohmann::json;

LayerGeometry TextConfig::layer(int i) const {
  LayerGeometry g;
  g.full = layer_is_full.at(size_t(i));
  if (g.full) {
    g.head_dim = global_head_dim;
    // num_global_kv_heads applies when K doubles as V (HF __post_init__); otherwise full layers keep
    // the ordinary KV head count.
    g.n_kv_heads = attention_k_eq_v ? num_global_kv_heads : num_kv_heads;
    g.k_eq_v = attention_k_eq_v;
    g.rope_theta = full_rope_theta;
    // HF proportional RoPE: rope_angles = int(partial_rotary_factor * head_dim // 2); the remaining
    // pairs have inv_freq 0 (identity).
    g.rope_pairs = int(std::floor(full_partial_rotary_factor * float(g.head_dim) / 2.f));
    g.window = 0;
  } else {
    g.head_dim = head_dim;
    g.n_kv_heads = num_kv_heads;
    g.k_eq_v = false;
    g.rope_theta = sliding_rope_theta;
    g.rope_pairs = head_dim / 2;
    g.window = sliding_window;
  }
  return g;
}

namespace {

struct FieldReader {
  const std::string& file;
  const json& j;
  std::string prefix;

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw CheckpointError(file + ": field " + prefix + field + " " + what);
  }
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int integer(const char* k) const {
    if (!has(k)) fail(k, "is missing");
    if (!j[k].is_number_integer()) fail(k, "must be an integer, got " + j[k].dump());
    return j[k].get<int>();
  }
  int integer_or(const char* k, int fallback) const { return has(k) ? integer(k) : fallback; }
  float number_or(const char* k, float fallback) const {
    if (!has(k)) return fallback;
    if (!j[k].is_number()) fail(k, "must be a number, got " + j[k].dump());
    return j[k].get<float>();
  }
  bool boolean_or(const char* k, bool fallback) const {
    if (!has(k)) return fallback;
    if (!j[k].is_boolean()) fail(k, "must be true or false, got " + j[k].dump());
    return j[k].get<bool>();
  }
};

void parse_text(const std::string& file, const json& t, TextConfig& c) {
  FieldReader r{file, t, "text_config."};
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.intermediate_size = r.integer("intermediate_size");
  c.num_layers = r.integer("num_hidden_layers");
  c.num_heads = r.integer("num_attention_heads");
  c.head_dim = r.integer("head_dim");
  c.global_head_dim = r.integer_or("global_head_dim", c.head_dim);
  c.num_kv_heads = r.integer("num_key_value_heads");
  c.num_global_kv_heads = r.integer_or("num_global_key_value_heads", c.num_kv_heads);
  c.attention_k_eq_v = r.boolean_or("attention_k_eq_v", false);
  c.sliding_window = r.integer("sliding_window");
  c.final_logit_softcapping = r.number_or("final_logit_softcapping", 0.f);
  c.rms_norm_eps = r.number_or("rms_norm_eps", 1e-6f);
  c.max_position_embeddings = r.integer_or("max_position_embeddings", 131072);
  if (r.integer_or("num_kv_shared_layers", 0) != 0) r.fail("num_kv_shared_layers", "must be 0 (KV sharing is not supported)");
  if (r.boolean_or("use_double_wide_mlp", false)) r.fail("use_double_wide_mlp", "must be false (not supported)");
  if (r.boolean_or("enable_moe_block", false)) r.fail("enable_moe_block", "must be false (MoE is not supported)");
  if (t.contains("hidden_activation") && t["hidden_activation"] != "gelu_pytorch_tanh")
    r.fail("hidden_activation", "must be gelu_pytorch_tanh, got " + t["hidden_activation"].dump());

  if (!t.contains("layer_types") || !t["layer_types"].is_array()) r.fail("layer_types", "is missing or not a list");
  for (const auto& lt : t["layer_types"]) {
    if (lt == "full_attention") c.layer_is_full.push_back(true);
    else if (lt == "sliding_attention") c.layer_is_full.push_back(false);
    else r.fail("layer_types", "has an unknown entry " + lt.dump());
  }
  if (int(c.layer_is_full.size()) != c.num_layers)
    r.fail("layer_types", "lists " + std::to_string(c.layer_is_full.size()) + " layers but num_hidden_layers is " +
                              std::to_string(c.num_layers));
  // per_layer_config (the other serialized form, doc §1.2) overrides the global values per full layer.
  if (t.contains("per_layer_config") && t["per_layer_config"].is_object()) {
    for (auto it = t["per_layer_config"].begin(); it != t["per_layer_config"].end(); ++it) {
      if (it->contains("head_dim")) c.global_head_dim = (*it)["head_dim"].get<int>();
      if (it->contains("num_key_value_heads")) c.num_global_kv_heads = (*it)["num_key_value_heads"].get<int>();
    }
  }

  if (t.contains("rope_parameters") && t["rope_parameters"].is_object()) {
    const json& rp = t["rope_parameters"];
    if (rp.contains("sliding_attention")) {
      FieldReader s{file, rp["sliding_attention"], "text_config.rope_parameters.sliding_attention."};
      c.sliding_rope_theta = s.number_or("rope_theta", c.sliding_rope_theta);
    }
    if (rp.contains("full_attention")) {
      const json& f = rp["full_attention"];
      FieldReader s{file, f, "text_config.rope_parameters.full_attention."};
      c.full_rope_theta = s.number_or("rope_theta", c.full_rope_theta);
      const std::string type = f.value("rope_type", "default");
      if (type == "proportional") c.full_partial_rotary_factor = s.number_or("partial_rotary_factor", 1.f);
      else if (type == "default") c.full_partial_rotary_factor = 1.f;
      else s.fail("rope_type", "is " + type + "; default and proportional are supported");
    }
  } else {
    FieldReader s{file, t, "text_config."};
    c.sliding_rope_theta = s.number_or("rope_local_base_freq", c.sliding_rope_theta);
    c.full_rope_theta = s.number_or("rope_theta", c.full_rope_theta);
  }
  if (c.num_heads <= 0 || c.head_dim <= 0 || c.num_kv_heads <= 0 || c.hidden_size <= 0 || c.vocab_size <= 0)
    r.fail("sizes", "must all be positive");
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerGeometry g = c.layer(i);
    if (c.num_heads % g.n_kv_heads != 0)
      r.fail("num_attention_heads", "(" + std::to_string(c.num_heads) + ") is not a multiple of layer " + std::to_string(i) +
                                        "'s KV heads (" + std::to_string(g.n_kv_heads) + ")");
    if (g.head_dim % 2) r.fail("head_dim", "must be even for RoPE");
  }
}

}  // namespace

ModelConfig load_model_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw CheckpointError(path + ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw CheckpointError(path + ": not valid JSON: " + e.what());
  }
  ModelConfig c;
  c.model_type = j.value("model_type", "");
  const json& text = j.contains("text_config") ? j["text_config"] : j;
  parse_text(path, text, c.text);
  FieldReader top{path, j, ""};
  if (j.contains("vision_config") && j["vision_config"].is_object()) {
    FieldReader v{path, j["vision_config"], "vision_config."};
    c.vision.present = true;
    c.vision.patch_size = v.integer_or("patch_size", 16);
    c.vision.pooling_kernel_size = v.integer_or("pooling_kernel_size", 3);
    c.vision.mm_embed_dim = v.integer_or("mm_embed_dim", 3840);
    c.vision.mm_posemb_size = v.integer_or("mm_posemb_size", 1120);
    c.vision.output_proj_dims = v.integer_or("output_proj_dims", c.vision.mm_embed_dim);
    c.vision.rms_norm_eps = v.number_or("rms_norm_eps", 1e-6f);
  }
  if (j.contains("audio_config") && j["audio_config"].is_object()) {
    FieldReader a{path, j["audio_config"], "audio_config."};
    c.audio.present = true;
    // The real 12B config serializes the frame width as hidden_size (doc §1.4).
    c.audio.samples_per_token = a.integer_or("audio_embed_dim", a.integer_or("hidden_size", 640));
    c.audio.rms_norm_eps = a.number_or("rms_norm_eps", 1e-6f);
  }
  c.tokens.boi = top.integer_or("boi_token_id", -1);
  c.tokens.eoi = top.integer_or("eoi_token_id", -1);
  c.tokens.image = top.integer_or("image_token_id", -1);
  c.tokens.video = top.integer_or("video_token_id", -1);
  c.tokens.boa = top.integer_or("boa_token_id", -1);
  c.tokens.eoa = top.integer_or("eoa_token_index", top.integer_or("eoa_token_id", -1));
  c.tokens.audio = top.integer_or("audio_token_id", -1);
  FieldReader tr{path, text, "text_config."};
  c.tokens.bos = top.integer_or("bos_token_id", tr.integer_or("bos_token_id", -1));
  c.tokens.pad = top.integer_or("pad_token_id", tr.integer_or("pad_token_id", -1));
  if (j.contains("eos_token_id") && j["eos_token_id"].is_number_integer()) c.tokens.eos = j["eos_token_id"].get<int>();
  else c.tokens.eos = tr.integer_or("eos_token_id", -1);
  return c;
}

std::string model_config_to_json(const ModelConfig& c) {
  const TextConfig& t = c.text;
  json layer_types = json::array();
  for (bool f : t.layer_is_full) layer_types.push_back(f ? "full_attention" : "sliding_attention");
  json full_rope = {{"rope_type", t.full_partial_rotary_factor < 1.f ? "proportional" : "default"}, {"rope_theta", t.full_rope_theta}};
  if (t.full_partial_rotary_factor < 1.f) full_rope["partial_rotary_factor"] = t.full_partial_rotary_factor;
  json text = {
      {"model_type", "gemma4_unified_text"},
      {"vocab_size", t.vocab_size},
      {"hidden_size", t.hidden_size},
      {"intermediate_size", t.intermediate_size},
      {"num_hidden_layers", t.num_layers},
      {"layer_types", layer_types},
      {"num_attention_heads", t.num_heads},
      {"num_key_value_heads", t.num_kv_heads},
      {"num_global_key_value_heads", t.num_global_kv_heads},
      {"head_dim", t.head_dim},
      {"global_head_dim", t.global_head_dim},
      {"attention_k_eq_v", t.attention_k_eq_v},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"max_position_embeddings", t.max_position_embeddings},
      {"rms_norm_eps", t.rms_norm_eps},
      {"sliding_window", t.sliding_window},
      {"final_logit_softcapping", t.final_logit_softcapping},
      {"rope_parameters", {{"sliding_attention", {{"rope_type", "default"}, {"rope_theta", t.sliding_rope_theta}}},
                           {"full_attention", full_rope}}},
      {"use_bidirectional_attention", "vision"},
      {"num_kv_shared_layers", 0},
      {"tie_word_embeddings", true},
  };
  json j = {
      {"architectures", {"Gemma4UnifiedForConditionalGeneration"}},
      {"model_type", "gemma4_unified"},
      {"tie_word_embeddings", true},
      {"boi_token_id", c.tokens.boi},
      {"eoi_token_id", c.tokens.eoi},
      {"image_token_id", c.tokens.image},
      {"video_token_id", c.tokens.video},
      {"boa_token_id", c.tokens.boa},
      {"eoa_token_index", c.tokens.eoa},
      {"audio_token_id", c.tokens.audio},
      {"bos_token_id", c.tokens.bos},
      {"eos_token_id", c.tokens.eos},
      {"pad_token_id", c.tokens.pad},
      {"text_config", text},
  };
  if (c.vision.present)
    j["vision_config"] = {{"model_type", "gemma4_unified_vision"}, {"patch_size", c.vision.patch_size},
                          {"pooling_kernel_size", c.vision.pooling_kernel_size}, {"mm_embed_dim", c.vision.mm_embed_dim},
                          {"mm_posemb_size", c.vision.mm_posemb_size}, {"output_proj_dims", c.vision.output_proj_dims},
                          {"rms_norm_eps", c.vision.rms_norm_eps}};
  if (c.audio.present)
    j["audio_config"] = {{"model_type", "gemma4_unified_audio"}, {"audio_embed_dim", c.audio.samples_per_token},
                         {"rms_norm_eps", c.audio.rms_norm_eps}};
  return j.dump(2);
}

namespace {

// Gemma 4's layer pattern: five sliding layers then one full layer; layer i is full iff (i+1) % 6 == 0.
std::vector<bool> every_sixth_full(int n_layers) {
  std::vector<bool> full(size_t(n_layers), false);
  for (int i = 0; i < n_layers; ++i) full[size_t(i)] = (i + 1) % 6 == 0;
  full.back() = true;  // the config forces the last layer to be full
  return full;
}

// Gemma 4's token ids for the multimodal markers (doc §6.1); the 262144-entry vocabulary.
SpecialTokens gemma4_tokens() {
  SpecialTokens t;
  t.boi = 255999; t.boa = 256000; t.image = 258880; t.audio = 258881; t.eoi = 258882; t.eoa = 258883; t.video = 258884;
  t.pad = 0; t.eos = 1; t.bos = 2;
  return t;
}

}  // namespace

ModelConfig gemma4_12b_config() {
  ModelConfig c;
  c.model_type = "gemma4_unified";
  TextConfig& t = c.text;
  t.vocab_size = 262144;
  t.hidden_size = 3840;                    // D
  t.intermediate_size = 4 * 3840;          // 15360
  t.num_layers = 48;                       // 8 x (5 sliding + 1 full)
  t.num_heads = 16;
  t.head_dim = 256;                        // 16 x 256 = 4096 q_proj rows on sliding layers
  t.global_head_dim = 512;                 // 16 x 512 = 8192 q_proj rows on full layers
  t.num_kv_heads = 8;                      // 8 x 256 = 2048 k_proj rows
  t.num_global_kv_heads = 1;               // 1 x 512 = 512 k_proj rows, V = K (k_eq_v)
  t.attention_k_eq_v = true;
  t.sliding_window = 1024;
  t.final_logit_softcapping = 30.f;
  t.rms_norm_eps = 1e-6f;
  t.max_position_embeddings = 262144;
  t.sliding_rope_theta = 10000.f;
  t.full_rope_theta = 1000000.f;
  t.full_partial_rotary_factor = 0.25f;    // 0.25 * 512 / 2 = 64 rotating pairs
  t.layer_is_full = every_sixth_full(48);  // full: 5, 11, ..., 47
  c.vision.present = true;
  c.vision.mm_embed_dim = 3840;
  c.vision.mm_posemb_size = 1120;          // = the largest budget, so any grid coordinate has a row
  c.vision.output_proj_dims = 3840;
  c.audio.present = true;                  // 640 samples = 40 ms per token
  c.tokens = gemma4_tokens();
  // Parameter count: 11,959,730,224 (doc §2), 23.9 GB of bf16.
  return c;
}

ModelConfig gemma4_270m_class_config() {
  ModelConfig c = gemma4_12b_config();
  TextConfig& t = c.text;
  t.hidden_size = 640;
  t.intermediate_size = 2048;
  t.num_layers = 18;
  t.layer_is_full = every_sixth_full(18);
  t.num_heads = 4;
  t.num_kv_heads = 1;
  t.num_global_kv_heads = 1;
  t.sliding_window = 512;
  c.vision.mm_embed_dim = 640;
  c.vision.output_proj_dims = 640;
  // 262144 x 640 embedding = 168M params; 18 layers x ~7.3M = 131M; total ~300M.
  return c;
}

ModelConfig gemma4_1b_class_config() {
  ModelConfig c = gemma4_270m_class_config();
  TextConfig& t = c.text;
  t.hidden_size = 1152;
  t.intermediate_size = 6912;
  t.num_layers = 24;
  t.layer_is_full = every_sixth_full(24);
  c.vision.mm_embed_dim = 1152;
  c.vision.output_proj_dims = 1152;
  // 262144 x 1152 embedding = 302M params; 24 layers x ~28M = 672M; total ~1B.
  return c;
}

}  // namespace conflux
