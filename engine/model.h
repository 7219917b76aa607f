// The gemma4_unified model: weights (shared, read-only) and a Context per sequence (KV cache and
// activations, sized up front). Context::decode appends rows (text tokens or soft-token embeddings)
// at the next positions and returns logits for the rows asked for; it can be called with one token
// or with chunks at any moment (incremental prefill).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/kv_cache.h"
#include "engine/quant.h"
#include "engine/safetensors.h"
#include "engine/thread_pool.h"
#include "engine/weights.h"

namespace conflux {

// How image soft tokens attend to each other (architecture doc §3.7).
enum class ImageAttention {
  SlidingOnly,  // HF generate(): bidirectional inside an image on sliding layers only (default)
  AllLayers,    // llama.cpp: bidirectional inside an image on every layer
};

// One runtime configuration per model instance / request.
struct RuntimeConfig {
  int n_threads = 0;          // 0 = all cores
  int max_context = 4096;     // positions a Context can hold (full-layer cache capacity)
  int max_chunk = 512;        // most rows per decode() call; larger inputs are split by the caller
  // Rows per matmul inside a decode() call (engine/context_scratch.h explains the default). Changes
  // no result beyond float rounding; only the residual stream is held for a whole chunk.
  int piece_rows = 64;
  ImageAttention image_attention = ImageAttention::SlidingOnly;
  DType kv_dtype = DType::F32;  // KV cache entries: F32 (reference) or BF16 (half the memory and reads)
};

// How Model::load treats the stored weights.
struct LoadOptions {
  // AsStored: every matrix keeps the checkpoint's dtype. Otherwise every matrix (the Matrix and
  // Embedding roles of the tensor table: projections, embedding/tied head, embedder projections) is
  // converted to this format at load.
  WeightFormat format = WeightFormat::AsStored;
  // false (default): every matrix is copied or converted into the process's own memory and the file
  // mapping's pages are released as it goes (peak RSS stays near the weights). true: matrices already
  // in the wanted format are read in place from the file mapping (no copy at load). On the 2-core
  // development VM, decode read mapped weights at 45-65% of the speed of the same bytes in anonymous
  // memory (270M f32 from an f32 file: 6.6-12.3 tok/s against 21.9-24.8), hence the default.
  bool map_weights = false;
  // Copying is skipped (the weights stay mapped, and load() says so on stderr) when the checkpoint's
  // weights exceed this many bytes: by default 90% of the memory the system reports available
  // (MemAvailable), so a checkpoint larger than RAM still runs from the page cache instead of failing
  // to allocate. Tests set a small figure.
  std::optional<size_t> copy_limit_bytes;
};

class Model {
 public:
  // Loads config.json and the safetensors weights of `dir`.
  static std::unique_ptr<Model> load(const std::string& dir, const LoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const std::string& dir() const { return dir_; }
  // Bytes of every bound tensor as held in memory (quantized: packed weights plus scales).
  size_t weight_bytes() const;
  // The matrices one decoded text token streams: every decoder projection, then the head (the tied
  // embedding unless lm_head exists). The embedders are not part of a text token's decode.
  std::vector<const TensorRef*> decode_matrices() const;
  // Their bytes (one embedding row, negligible, left out).
  size_t decode_bytes_per_token() const;
  // Whether unconverted matrices are read in place from the checkpoint's file mapping.
  bool weights_mapped() const { return weights_mapped_; }
  // The decoder's matrix format (the first layer's q_proj; the embedding may differ in a q4 file).
  DType weight_dtype() const {
    return weights_.layers.empty() ? weights_.embed_tokens.ref.dtype : weights_.layers[0].q_proj.ref.dtype;
  }

 private:
  Model() = default;
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> ckpt_;
  ModelWeights weights_;
  bool weights_mapped_ = false;
};

// Rows appended by one decode() call. Row j is at position n_past() + j.
struct DecodeBatch {
  int n = 0;
  const int32_t* tokens = nullptr;       // (n) ids; ignored for embedding rows
  const float* embeddings = nullptr;     // (n, D): row j used when is_embedding[j]
  const uint8_t* is_embedding = nullptr; // (n) or nullptr (all text)
  const int32_t* image_block = nullptr;  // (n) or nullptr: equal values >= 0 form one bidirectional image
  const uint8_t* want_logits = nullptr;  // (n) or nullptr (only the last row)
};

class Context {
 public:
  Context(const Model& model, const RuntimeConfig& rc);
  ~Context();

  // Appends the batch to the KV cache; writes one logits row (V floats, soft-capped) per row that
  // wants logits, in row order, to logits_out. Throws std::invalid_argument if the batch is larger
  // than max_chunk, overflows max_context or splits an image block across calls.
  void decode(const DecodeBatch& batch, float* logits_out);
  // Convenience: appends text ids in max_chunk pieces; logits of the last id into logits_out (may be null).
  void decode_tokens(const int32_t* ids, int n, float* logits_out);

  // Soft-token embeddings (D floats each), not multiplied by sqrt(D).
  // patches: (n, 48*48*3) HWC values in [0,1]; gx/gy: (n) grid column and row of each patch.
  void embed_image_patches(const float* patches, const int32_t* gx, const int32_t* gy, int n, float* out);
  // frames: (n, 640) samples (a short last frame must be zero-padded by the caller).
  void embed_audio_frames(const float* frames, int n, float* out);

  int64_t n_past() const { return n_past_; }
  void reset() { n_past_ = 0; }

  // Removes positions [begin, end) from the cache and moves every later position down by
  // end - begin, re-rotating the cached keys by -(end - begin) so that each is exactly its raw key
  // rotated for its new position (RoPE rotations compose; V carries no position). The kept entries
  // keep the values they were computed with (they saw the removed rows, as in any KV eviction); what
  // eviction guarantees is dense positions that never exceed the budget, and attention that sees the
  // same relative distances among the kept entries. Sliding layers keep only their window, so the last
  // sliding_window - 1 positions may not be removed: requires end <= n_past() - (sliding_window - 1).
  // Throws std::invalid_argument otherwise.
  void evict(int64_t begin, int64_t end);
  const RuntimeConfig& runtime() const { return rc_; }
  const Model& model() const { return model_; }
  ThreadPool& pool() { return *pool_; }
  size_t kv_bytes() const { return kv_.bytes(); }
  const KvCache& kv_cache() const { return kv_; }
  size_t activation_bytes() const;

 private:
  struct Scratch;
  void layer_forward(int layer, int n, const int32_t* block_end);
  void attention(int layer, int first_row, int rows, const int32_t* block_end);

  const Model& model_;
  RuntimeConfig rc_;
  std::unique_ptr<ThreadPool> pool_;
  KvCache kv_;
  std::unique_ptr<Scratch> s_;
  int64_t n_past_ = 0;
};

}  // namespace conflux
