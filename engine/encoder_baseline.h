// Encoder baseline: stand-in vision and audio encoders of the size of Gemma 4 E4B's, with random BF16
// weights, to measure what Conflux's encoder-free embedders save. The live session may run each image
// and audio chunk through them and discard the output; answers are unchanged, the cost shows in timings.
//
// Vision: ViT on 16x16 teacher patches -> L pre-norm transformer layers (bidirectional over the whole
// image) -> final LayerNorm -> 3x3 average pooling (one vector per 48x48 model patch) -> d -> out_dim.
// Audio: 640-sample frames -> linear 640 -> d -> L pre-norm transformer layers (bidirectional within a
// window of at most max_audio_frames frames) -> final LayerNorm -> d -> out_dim, one vector per frame.
//
// Memory with the defaults (d = 1024, out_dim = 3840): weights ~463M parameters x 2 bytes (BF16) =
// ~0.93 GB. Scratch is dominated by 6 x (9 x max_image_tokens) x d floats: ~270 MB in all for 1120
// tokens, ~71 MB for 280 (set max_image_tokens to the session's image budget).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/safetensors.h"
#include "engine/thread_pool.h"

namespace conflux {

struct EncoderBaselineConfig {
  int vision_layers = 12, vision_dim = 1024, vision_heads = 16;
  int audio_layers = 24, audio_dim = 1024, audio_heads = 16;
  int out_dim = 0;                // width of each output vector: the text model's hidden size D
  uint64_t seed = 0;              // all weights are a function of the seed alone
  int max_image_tokens = 1120;    // 48x48 model patches per image the scratch holds (largest budget)
  int max_audio_frames = 256;     // frames per attention window; longer inputs run window by window
};

// Gemma 4 E4B-sized encoders (the struct's defaults) projecting to out_dim.
EncoderBaselineConfig encoder_baseline_e4b_config(int out_dim, uint64_t seed);

// One weight tensor in an owned buffer, exposed as a TensorRef so conflux::matmul can use it.
struct EncoderBaselineTensor {
  std::vector<uint16_t> bf16;
  TensorRef ref;  // dtype BF16, data = bf16.data()
  EncoderBaselineTensor() = default;
  EncoderBaselineTensor(const EncoderBaselineTensor&) = delete;  // ref would point into the source
  EncoderBaselineTensor& operator=(const EncoderBaselineTensor&) = delete;
  EncoderBaselineTensor(EncoderBaselineTensor&&) noexcept = default;  // a moved vector keeps its buffer
  EncoderBaselineTensor& operator=(EncoderBaselineTensor&&) noexcept = default;
};

struct EncoderBaselineNorm {
  std::vector<float> weight, bias;  // (d) each, f32 like the engine's norm weights
};

// One pre-norm transformer layer. Linear layers have no bias (the cost is in the matrices).
struct EncoderBaselineLayer {
  EncoderBaselineNorm attn_norm;
  EncoderBaselineTensor q, k, v;  // (d, d) each, output rows head by head (head h: rows h·hd ... h·hd + hd - 1)
  EncoderBaselineTensor out;      // (d, d)
  EncoderBaselineNorm mlp_norm;
  EncoderBaselineTensor up;    // (4d, d)
  EncoderBaselineTensor down;  // (d, 4d)
};

struct EncoderBaselineStack {
  int dim = 0, heads = 0;
  std::vector<EncoderBaselineLayer> layers;
  EncoderBaselineNorm final_norm;
};

struct EncoderBaselineVisionWeights {
  EncoderBaselineTensor patch_embed;  // (d, 768)
  EncoderBaselineTensor pos_cols;     // (side, d) added by teacher-patch column
  EncoderBaselineTensor pos_rows;     // (side, d) added by teacher-patch row
  EncoderBaselineStack stack;
  EncoderBaselineTensor projection;   // (out_dim, d)
};

struct EncoderBaselineAudioWeights {
  EncoderBaselineTensor input;        // (d, 640)
  EncoderBaselineStack stack;
  EncoderBaselineTensor projection;   // (out_dim, d)
};

class EncoderBaseline {
 public:
  // Teacher patch: 16x16 pixels x 3 channels, HWC, each byte / 255.
  static constexpr int kTeacherPatchSize = 16;
  static constexpr int kTeacherPatchValues = kTeacherPatchSize * kTeacherPatchSize * 3;  // 768
  // Teacher patches per model-patch side: 48 / 16 (the 3x3 pooling).
  static constexpr int kPoolSide = 3;
  static constexpr int kFrameSamples = 640;    // 40 ms at 16 kHz, as the audio embedder
  static constexpr int kMlpRatio = 4;          // MLP width = 4 d
  static constexpr int kPositionTableSide = 128;  // teacher patches per axis (>= 100 of a square 1120-token image)
  static constexpr float kLayerNormEps = 1e-6f;

  // Generates all weights (BF16, seeded, in parallel on the pool) and allocates the scratch once.
  // Throws std::invalid_argument for non-positive sizes or a dim not divisible by its heads.
  EncoderBaseline(const EncoderBaselineConfig& config, ThreadPool& pool);
  ~EncoderBaseline();
  EncoderBaseline(const EncoderBaseline&) = delete;
  EncoderBaseline& operator=(const EncoderBaseline&) = delete;

  // rgb: preprocessed RGB8 (height, width, 3), width and height positive multiples of 48, at most
  // max_image_tokens model patches. out: (width/48 * height/48, out_dim) in raster order of the model
  // grid, or null. Returns the sum of the output so the work cannot be optimised away.
  // One call at a time: the scratch is shared. Throws std::invalid_argument for bad sizes.
  float encode_image(const uint8_t* rgb, int width, int height, float* out = nullptr);
  // frames: (n_frames, 640) samples. out: (n_frames, out_dim) or null. Returns the sum of the output.
  float encode_audio(const float* frames, int n_frames, float* out = nullptr);

  int64_t vision_parameters() const;  // counted over the allocated tensors
  int64_t audio_parameters() const;
  // The same counts from a config alone (no allocation), for sizing and tests.
  static int64_t count_vision_parameters(const EncoderBaselineConfig& config);
  static int64_t count_audio_parameters(const EncoderBaselineConfig& config);

  const EncoderBaselineConfig& config() const { return config_; }
  // Read-only access for the scalar-twin tests.
  const EncoderBaselineVisionWeights& vision_weights() const { return vision_; }
  const EncoderBaselineAudioWeights& audio_weights() const { return audio_; }
  // Bytes of weights and of scratch held.
  size_t weight_bytes() const;
  size_t scratch_bytes() const;

 private:
  struct Scratch;
  void run_stack(const EncoderBaselineStack& stack, int n);
  void attention(const EncoderBaselineLayer& layer, int dim, int heads, int n);

  EncoderBaselineConfig config_;
  ThreadPool& pool_;
  EncoderBaselineVisionWeights vision_;
  EncoderBaselineAudioWeights audio_;
  std::unique_ptr<Scratch> s_;
};

}  // namespace conflux
