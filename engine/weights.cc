// The tensor table (names as released, architecture doc §2) and binding it to a checkpoint.
#include "engine/weights.h"

#include <fstream>
#include <nlohmann/json.hpp>

namespace conflux {

std::vector<TensorSlot> tensor_table(const ModelConfig& c, ModelWeights& w) {
  const TextConfig& t = c.text;
  const int64_t D = t.hidden_size, F = t.intermediate_size, V = t.vocab_size;
  std::vector<TensorSlot> s;
  const std::string P = "model.language_model.";
  s.push_back({P + "embed_tokens.weight", {}, {V, D}, WeightRole::Embedding, true, &w.embed_tokens});
  s.push_back({P + "norm.weight", {}, {D}, WeightRole::NormWeight, true, &w.final_norm});
  s.push_back({"lm_head.weight", {}, {V, D}, WeightRole::Matrix, false, &w.lm_head});
  w.layers.resize(size_t(t.num_layers));
  for (int i = 0; i < t.num_layers; ++i) {
    const LayerGeometry g = t.layer(i);
    LayerWeights& L = w.layers[size_t(i)];
    const std::string p = P + "layers." + std::to_string(i) + ".";
    const int64_t q_dim = int64_t(t.num_heads) * g.head_dim, kv_dim = int64_t(g.n_kv_heads) * g.head_dim;
    s.push_back({p + "input_layernorm.weight", {}, {D}, WeightRole::NormWeight, true, &L.input_norm});
    s.push_back({p + "post_attention_layernorm.weight", {}, {D}, WeightRole::NormWeight, true, &L.post_attn_norm});
    s.push_back({p + "pre_feedforward_layernorm.weight", {}, {D}, WeightRole::NormWeight, true, &L.pre_ffn_norm});
    s.push_back({p + "post_feedforward_layernorm.weight", {}, {D}, WeightRole::NormWeight, true, &L.post_ffn_norm});
    s.push_back({p + "layer_scalar", {p + "layer_scalar.weight"}, {1}, WeightRole::LayerScalar, true, &L.layer_scalar});
    s.push_back({p + "self_attn.q_proj.weight", {}, {q_dim, D}, WeightRole::Matrix, true, &L.q_proj});
    s.push_back({p + "self_attn.k_proj.weight", {}, {kv_dim, D}, WeightRole::Matrix, true, &L.k_proj});
    if (!g.k_eq_v) s.push_back({p + "self_attn.v_proj.weight", {}, {kv_dim, D}, WeightRole::Matrix, true, &L.v_proj});
    s.push_back({p + "self_attn.o_proj.weight", {}, {D, q_dim}, WeightRole::Matrix, true, &L.o_proj});
    s.push_back({p + "self_attn.q_norm.weight", {}, {g.head_dim}, WeightRole::NormWeight, true, &L.q_norm});
    s.push_back({p + "self_attn.k_norm.weight", {}, {g.head_dim}, WeightRole::NormWeight, true, &L.k_norm});
    s.push_back({p + "mlp.gate_proj.weight", {}, {F, D}, WeightRole::Matrix, true, &L.gate_proj});
    s.push_back({p + "mlp.up_proj.weight", {}, {F, D}, WeightRole::Matrix, true, &L.up_proj});
    s.push_back({p + "mlp.down_proj.weight", {}, {D, F}, WeightRole::Matrix, true, &L.down_proj});
  }
  if (c.vision.present) {
    const int64_t M = c.vision.mm_embed_dim, patch = int64_t(c.vision.model_patch_size()) * c.vision.model_patch_size() * 3;
    VisionWeights& v = w.vision;
    // Released names first; HF's in-memory module names (embed_vision.*) are accepted as aliases.
    auto add = [&](const std::string& leaf, std::vector<int64_t> shape, WeightRole role, Weight* dst) {
      s.push_back({"model.vision_embedder." + leaf, {"model.embed_vision." + leaf}, std::move(shape), role, true, dst});
    };
    add("patch_ln1.weight", {patch}, WeightRole::NormWeight, &v.patch_ln1_w);
    add("patch_ln1.bias", {patch}, WeightRole::Bias, &v.patch_ln1_b);
    add("patch_dense.weight", {M, patch}, WeightRole::Matrix, &v.patch_dense_w);
    add("patch_dense.bias", {M}, WeightRole::Bias, &v.patch_dense_b);
    add("patch_ln2.weight", {M}, WeightRole::NormWeight, &v.patch_ln2_w);
    add("patch_ln2.bias", {M}, WeightRole::Bias, &v.patch_ln2_b);
    add("pos_embedding", {c.vision.mm_posemb_size, 2, M}, WeightRole::PositionTable, &v.pos_embedding);
    add("pos_norm.weight", {M}, WeightRole::NormWeight, &v.pos_norm_w);
    add("pos_norm.bias", {M}, WeightRole::Bias, &v.pos_norm_b);
    s.push_back({"model.embed_vision.embedding_projection.weight",
                 {"model.embed_vision.multimodal_embedder.embedding_projection.weight"},
                 {D, c.vision.output_proj_dims}, WeightRole::Matrix, true, &v.projection});
  }
  if (c.audio.present) {
    s.push_back({"model.embed_audio.embedding_projection.weight",
                 {"model.embed_audio.multimodal_embedder.embedding_projection.weight"},
                 {D, c.audio.samples_per_token}, WeightRole::Matrix, true, &w.audio.projection});
  }
  return s;
}

namespace {

const TensorRef* find_any(const Checkpoint& ckpt, const TensorSlot& slot) {
  if (const TensorRef* t = ckpt.find(slot.name)) return t;
  for (const auto& a : slot.aliases)
    if (const TensorRef* t = ckpt.find(a)) return t;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  TensorRef r;
  r.shape = shape;
  return r.shape_str();
}

// Per-layer geometry as the tensor shapes show it, compared with what config.json implies, so that a
// config that disagrees with the weights is named as such rather than as a generic shape error.
void check_layer_geometry(const Checkpoint& ckpt, const ModelConfig& c) {
  const TextConfig& t = c.text;
  const std::string cfg = ckpt.dir() + "/config.json";
  for (int i = 0; i < t.num_layers; ++i) {
    const LayerGeometry g = t.layer(i);
    const std::string p = "model.language_model.layers." + std::to_string(i) + ".self_attn.";
    const TensorRef* qn = ckpt.find(p + "q_norm.weight");
    const TensorRef* k = ckpt.find(p + "k_proj.weight");
    const TensorRef* v = ckpt.find(p + "v_proj.weight");
    const std::string where = "layer " + std::to_string(i) + " (" + (g.full ? "full" : "sliding") + "_attention)";
    if (qn && qn->shape.size() == 1 && qn->shape[0] != g.head_dim)
      throw CheckpointError(cfg + ": " + where + ": config implies head_dim " + std::to_string(g.head_dim) + " but " +
                            qn->file + " tensor " + qn->name + " has " + std::to_string(qn->shape[0]) + " entries");
    if (k && k->shape.size() == 2 && k->shape[0] != int64_t(g.n_kv_heads) * g.head_dim)
      throw CheckpointError(cfg + ": " + where + ": config implies " + std::to_string(g.n_kv_heads) + " KV heads of " +
                            std::to_string(g.head_dim) + " but " + k->file + " tensor " + k->name + " has " +
                            std::to_string(k->shape[0]) + " rows");
    if (g.k_eq_v && v)
      throw CheckpointError(cfg + ": " + where + ": attention_k_eq_v says V comes from k_proj, but " + v->file +
                            " has " + v->name);
    if (!g.k_eq_v && !v && k)
      throw CheckpointError(cfg + ": " + where + ": no " + p + "v_proj.weight in the checkpoint" +
                            (g.full ? " (set attention_k_eq_v if V comes from k_proj)" : ""));
  }
}

}  // namespace

void bind_weights(const Checkpoint& ckpt, const ModelConfig& config, ModelWeights& weights) {
  check_layer_geometry(ckpt, config);
  for (TensorSlot& slot : tensor_table(config, weights)) {
    const TensorRef* t = find_any(ckpt, slot);
    if (!t) {
      if (slot.required) throw CheckpointError(ckpt.dir() + ": missing tensor " + slot.name);
      continue;
    }
    if (t->shape != slot.shape)
      throw CheckpointError(t->file + ": tensor " + t->name + " has shape " + t->shape_str() + ", config.json implies " +
                            shape_str(slot.shape));
    if (t->dtype == DType::I8 || t->dtype == DType::U8)
      throw CheckpointError(t->file + ": tensor " + t->name + " is " + std::string(dtype_name(t->dtype)) + " without " +
                            t->name + ".scales (quantized matrices need their block scales)");
    if (is_quantized(t->dtype) && t->shape.size() != 2)
      throw CheckpointError(t->file + ": tensor " + t->name + " is quantized but not a matrix");
    slot.weight->ref = *t;
    if (t->shape.size() == 1) {
      if (t->dtype == DType::F32) {
        slot.weight->f32 = static_cast<const float*>(t->data);
      } else {
        auto& buf = weights.owned_f32.emplace_back(size_t(t->numel()));
        convert_to_f32(t->dtype, t->data, buf.data(), buf.size());
        slot.weight->f32 = buf.data();
      }
    }
  }
}

bool is_convertible_matrix(const TensorSlot& slot) {
  return (slot.role == WeightRole::Matrix || slot.role == WeightRole::Embedding) && slot.shape.size() == 2;
}

void convert_weights(const ModelConfig& config, ModelWeights& weights, std::optional<DType> to, bool copy_unchanged) {
  std::optional<ThreadPool> pool;  // all cores, started at the first matrix to convert or copy
  for (TensorSlot& slot : tensor_table(config, weights)) {
    Weight& w = *slot.weight;
    if (!w.present() || !is_convertible_matrix(slot)) continue;
    const DType t = to && can_store_as(*to, w.ref.shape[1]) ? *to : w.ref.dtype;
    if (t == w.ref.dtype && !copy_unchanged) continue;
    const TensorRef source = w.ref;
    // The originals are the checkpoint's mapping (this runs once, at load): their pages are released.
    if (!pool) pool.emplace(0);  // conversion happens once, before anything else runs
    ConvertedTensor& c = weights.owned_matrices.emplace_back(convert_matrix(source, t, *pool, true));
    w.ref.dtype = t;
    w.ref.data = c.data.data();
    w.ref.scales = c.scales.empty() ? nullptr : c.scales.data();
    w.ref.nbytes = c.data.size() + c.scales.size() * sizeof(uint16_t);
  }
}

void check_quantization_config(const std::string& config_path, const ModelConfig& config, ModelWeights& weights) {
  std::ifstream in(config_path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(config_path + ": not valid JSON: " + e.what());
  }
  if (!j.contains("quantization_config")) return;
  const nlohmann::json& q = j["quantization_config"];
  const std::string type =
      q.is_object() && q.contains("type") && q["type"].is_string() ? q["type"].get<std::string>() : "";
  DType expect;
  if (type == "q8_0")
    expect = DType::Q8_0;
  else if (type == "q4_0")
    expect = DType::Q4_0;
  else
    throw CheckpointError(config_path + ": field quantization_config.type must be \"q8_0\" or \"q4_0\", got " +
                          q.dump());
  if (q.contains("block_size") && q["block_size"] != kQuantBlock)
    throw CheckpointError(config_path + ": field quantization_config.block_size must be " +
                          std::to_string(kQuantBlock));
  for (const TensorSlot& slot : tensor_table(config, weights)) {
    const Weight& w = *slot.weight;
    if (!w.present() || slot.role != WeightRole::Matrix || !can_store_as(expect, w.ref.shape[1])) continue;
    if (w.ref.dtype != expect)
      throw CheckpointError(config_path + ": quantization_config.type is " + type + " but " + w.ref.file + " holds " +
                            w.ref.name + " as " + std::string(dtype_name(w.ref.dtype)));
  }
}

}  // namespace conflux
