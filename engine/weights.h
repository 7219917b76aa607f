// The model's tensors, bound to a memory-mapped checkpoint. ONE table (tensor_table) lists every
// tensor with its name, expected shape and role; the loader, the shape checks and the random
// checkpoint writer all walk that same table.
#pragma once
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/quant.h"
#include "engine/safetensors.h"

namespace conflux {

// A weight in its stored dtype, plus an f32 view for small vectors (norm weights, biases, scalars),
// which kernels read many times per token.
struct Weight {
  TensorRef ref;
  const float* f32 = nullptr;  // set for 1-D tensors (and [1] scalars) after binding
  bool present() const { return ref.valid(); }
  int64_t rows() const { return ref.shape.empty() ? 0 : ref.shape[0]; }
  int64_t cols() const { return ref.shape.size() < 2 ? 1 : ref.shape[1]; }
};

struct LayerWeights {
  Weight input_norm;        // (D)
  Weight post_attn_norm;    // (D)
  Weight pre_ffn_norm;      // (D)
  Weight post_ffn_norm;     // (D)
  Weight layer_scalar;      // (1)
  Weight q_proj;            // (n_heads * hd, D)
  Weight k_proj;            // (n_kv * hd, D)
  Weight v_proj;            // (n_kv * hd, D); absent when k_eq_v
  Weight o_proj;            // (D, n_heads * hd)
  Weight q_norm;            // (hd)
  Weight k_norm;            // (hd)
  Weight gate_proj;         // (F, D)
  Weight up_proj;           // (F, D)
  Weight down_proj;         // (D, F)
};

struct VisionWeights {
  Weight patch_ln1_w, patch_ln1_b;      // (6912)
  Weight patch_dense_w;                 // (M, 6912)
  Weight patch_dense_b;                 // (M)
  Weight patch_ln2_w, patch_ln2_b;      // (M)
  Weight pos_embedding;                 // (posemb, 2, M): [:,0,:] by x (column), [:,1,:] by y (row)
  Weight pos_norm_w, pos_norm_b;        // (M)
  Weight projection;                    // (D, M)
};

struct AudioWeights {
  Weight projection;  // (D, 640)
};

struct ModelWeights {
  Weight embed_tokens;  // (V, D), also the tied LM head
  Weight final_norm;    // (D)
  Weight lm_head;       // (V, D), optional: only if the checkpoint has an untied head
  std::vector<LayerWeights> layers;
  VisionWeights vision;
  AudioWeights audio;
  std::deque<std::vector<float>> owned_f32;  // f32 copies of small non-f32 vectors
  std::deque<ConvertedTensor> owned_matrices;  // matrices converted at load (LoadOptions::format)
};

// How a tensor is initialised by the random-checkpoint writer.
enum class WeightRole { Matrix, Embedding, NormWeight, Bias, LayerScalar, PositionTable };

struct TensorSlot {
  std::string name;
  std::vector<std::string> aliases;  // other released or in-memory names accepted on load
  std::vector<int64_t> shape;
  WeightRole role;
  bool required;
  Weight* weight;
};

// Every tensor of a model with this config. The shapes come from the config; the loader checks the
// checkpoint's shapes against them.
std::vector<TensorSlot> tensor_table(const ModelConfig& config, ModelWeights& weights);

// Binds every tensor of the checkpoint to `weights`, after checking per-layer geometry (head sizes,
// KV heads, k_eq_v) read from the tensor shapes against config.json. Throws CheckpointError naming
// the file and tensor on a missing tensor, wrong shape or disagreement with the config.
void bind_weights(const Checkpoint& ckpt, const ModelConfig& config, ModelWeights& weights);

// Whether the table slot is a matrix that the weight formats apply to (projections, embedding / tied
// head, embedder projections); norms, biases, scalars and the position table stay as stored.
bool is_convertible_matrix(const TensorSlot& slot);

// Converts every convertible matrix to `t` (nullopt: its stored dtype) into weights.owned_matrices and
// releases the pages of the mapped originals. Matrices whose width is not a multiple of 32 keep their
// stored dtype when t is quantized. A matrix already in its target dtype is copied when copy_unchanged
// holds and otherwise left in place in the mapping.
void convert_weights(const ModelConfig& config, ModelWeights& weights, std::optional<DType> t, bool copy_unchanged);

// config.json's "quantization_config" ({"quant_method": "conflux", "type": "q8_0" | "q4_0",
// "block_size": 32}), if present, must agree with the bound matrices; throws CheckpointError naming
// the file and the first disagreeing tensor.
void check_quantization_config(const std::string& config_path, const ModelConfig& config, ModelWeights& weights);

}  // namespace conflux
