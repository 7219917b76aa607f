// Token sampling: greedy, temperature, top-k, top-p, seeded; suppress and stop tokens from
// generation_config.json. One SamplingParams per request.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace conflux {

// What generation_config.json says (absent file or fields keep these defaults).
struct GenerationConfig {
  std::vector<int32_t> eos_token_ids;     // stop tokens
  std::vector<int32_t> suppress_tokens;   // logits forced to -inf
  bool do_sample = false;
  float temperature = 1.0f;
  int top_k = 0;        // 0 = off
  float top_p = 1.0f;   // 1 = off
  int32_t bos_token_id = -1;
  int32_t pad_token_id = -1;
  // Conflux's session defaults for this model (absent: off). A model trained to think writes its thought
  // before the answer (SessionConfig::thinking); one trained to read the frame shown again at the end of
  // a turn gets it (SessionConfig::image_at_turn_end). The bundled model has both.
  bool enable_thinking = false;
  bool image_at_turn_end = false;
};

// Reads generation_config.json; throws naming the file and field when present but malformed.
GenerationConfig load_generation_config(const std::string& path);

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy (argmax)
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
  std::vector<int32_t> suppress_tokens;
  std::vector<int32_t> stop_tokens;
};

class Sampler {
 public:
  // Scratch is sized for `vocab` once; sample() does not allocate.
  Sampler(const SamplingParams& params, int vocab);
  // Picks the next id from logits (length vocab). May modify logits in place (suppression).
  int32_t sample(float* logits);
  bool is_stop(int32_t id) const;
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  int vocab_;
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;  // (vocab) candidate indices
  std::vector<float> probs_;    // (vocab)
};

}  // namespace conflux
