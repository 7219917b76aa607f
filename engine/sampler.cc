// Token sampling (greedy, temperature, top-k, top-p with a seeded mt19937_64) and the reader for
// generation_config.json. See sampler.h for the interface.
//
// Order of operations in Sampler::sample, matching HF's logits-warper chain:
//   1. suppress_tokens -> -inf
//   2. temperature == 0  -> argmax (ties -> lowest index, NaN never chosen); no random number is drawn
//      otherwise NaN logits -> -inf (so every comparison below is a strict total order)
//   3. top-k: keep the k largest logits (ties at the cut -> lower index kept)
//   4. softmax of logit / temperature over the kept candidates
//   5. top-p: keep the smallest prefix of candidates, by descending probability, whose mass >= top_p
//      (always at least one)
//   6. draw u in [0, kept mass) and walk the cumulative sum
// Tie-breaking everywhere is "larger logit first, then lower token id", so results do not depend on the
// standard library's sort or selection algorithm.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/ops.h"

namespace conflux {

namespace {

constexpr float kPosInf = std::numeric_limits<float>::infinity();
constexpr float kNegInf = -kPosInf;

// A double in [0, 1) from the top 53 bits of one 64-bit draw: 53 is the width of a double's significand,
// so every value is exactly representable and the mapping is the same on every platform (unlike
// std::uniform_real_distribution, whose algorithm is implementation-defined).
double uniform_unit(std::mt19937_64& rng) {
  constexpr int kSignificandBits = std::numeric_limits<double>::digits;  // 53
  constexpr int kDroppedBits = 64 - kSignificandBits;
  return static_cast<double>(rng() >> kDroppedBits) * std::ldexp(1.0, -kSignificandBits);
}

[[noreturn]] void throw_field_error(const std::string& path, const char* field, const std::string& what) {
  throw std::runtime_error("generation config " + path + ": field '" + field + "' " + what);
}

// Reads an integer token id; JSON numbers such as 1.0 are rejected because a token id is never fractional.
int32_t read_token_id(const nlohmann::json& value, const std::string& path, const char* field) {
  if (!value.is_number_integer()) throw_field_error(path, field, "must be an integer token id, got " + value.dump());
  const int64_t id = value.get<int64_t>();
  if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
    throw_field_error(path, field, "holds out-of-range token id " + value.dump());
  }
  return static_cast<int32_t>(id);
}

// An id or a list of ids (HF allows both for eos_token_id).
std::vector<int32_t> read_token_id_list(const nlohmann::json& value, const std::string& path, const char* field,
                                        bool allow_single) {
  std::vector<int32_t> ids;
  if (allow_single && value.is_number()) {
    ids.push_back(read_token_id(value, path, field));
  } else if (value.is_array()) {
    for (const auto& element : value) ids.push_back(read_token_id(element, path, field));
  } else {
    throw_field_error(path, field,
                      std::string(allow_single ? "must be a token id or a list of token ids" : "must be a list of token ids") +
                          ", got " + value.dump());
  }
  return ids;
}

float read_float(const nlohmann::json& value, const std::string& path, const char* field) {
  if (!value.is_number()) throw_field_error(path, field, "must be a number, got " + value.dump());
  return value.get<float>();
}

}  // namespace

GenerationConfig load_generation_config(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("generation config " + path + ": cannot open file");

  nlohmann::json root;
  try {
    root = nlohmann::json::parse(file);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("generation config " + path + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw std::runtime_error("generation config " + path + ": top level is not a JSON object");

  GenerationConfig config;
  // A field that is absent or null keeps its default (HF writes null for unset fields).
  auto field = [&](const char* name) -> const nlohmann::json* {
    auto it = root.find(name);
    return (it == root.end() || it->is_null()) ? nullptr : &*it;
  };

  if (const auto* v = field("eos_token_id")) config.eos_token_ids = read_token_id_list(*v, path, "eos_token_id", true);
  if (const auto* v = field("suppress_tokens")) {
    config.suppress_tokens = read_token_id_list(*v, path, "suppress_tokens", false);
  }
  for (auto [name, out] : {std::pair<const char*, bool*>{"do_sample", &config.do_sample},
                            {"enable_thinking", &config.enable_thinking},
                            {"image_at_turn_end", &config.image_at_turn_end}}) {
    if (const auto* v = field(name)) {
      if (!v->is_boolean()) throw_field_error(path, name, "must be true or false, got " + v->dump());
      *out = v->get<bool>();
    }
  }
  if (const auto* v = field("temperature")) {
    config.temperature = read_float(*v, path, "temperature");
    if (!(config.temperature >= 0.0f)) throw_field_error(path, "temperature", "must be >= 0, got " + v->dump());
  }
  if (const auto* v = field("top_k")) {
    if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > std::numeric_limits<int>::max()) {
      throw_field_error(path, "top_k", "must be a non-negative integer, got " + v->dump());
    }
    config.top_k = v->get<int>();
  }
  if (const auto* v = field("top_p")) {
    config.top_p = read_float(*v, path, "top_p");
    if (!(config.top_p >= 0.0f && config.top_p <= 1.0f)) {
      throw_field_error(path, "top_p", "must be in [0, 1], got " + v->dump());
    }
  }
  if (const auto* v = field("bos_token_id")) config.bos_token_id = read_token_id(*v, path, "bos_token_id");
  if (const auto* v = field("pad_token_id")) config.pad_token_id = read_token_id(*v, path, "pad_token_id");
  return config;
}

Sampler::Sampler(const SamplingParams& params, int vocab)
    : params_(params), vocab_(vocab), rng_(params.seed), order_(vocab > 0 ? vocab : 0), probs_(vocab > 0 ? vocab : 0) {
  if (vocab <= 0) throw std::invalid_argument("Sampler: vocab must be positive");
  if (!(params.temperature >= 0.0f)) throw std::invalid_argument("Sampler: temperature must be >= 0");
  if (params.top_k < 0) throw std::invalid_argument("Sampler: top_k must be >= 0");
  if (!(params.top_p >= 0.0f && params.top_p <= 1.0f)) throw std::invalid_argument("Sampler: top_p must be in [0, 1]");
}

bool Sampler::is_stop(int32_t id) const {
  return std::find(params_.stop_tokens.begin(), params_.stop_tokens.end(), id) != params_.stop_tokens.end();
}

int32_t Sampler::sample(float* logits) {
  // Ids outside the vocabulary are ignored: a config written for a larger vocabulary still applies.
  for (int32_t id : params_.suppress_tokens) {
    if (id >= 0 && id < vocab_) logits[id] = kNegInf;
  }
  // top_k == 1 keeps only the argmax, so it is greedy whatever the temperature. argmax (a SIMD kernel:
  // this runs once per token over up to 262144 logits) keeps the lowest index among equal maxima and
  // never picks NaN; if every logit is -inf or NaN (all suppressed), id 0 is returned: there is no
  // meaningful choice and the caller's configuration is at fault.
  if (params_.temperature == 0.0f || params_.top_k == 1) return argmax(logits, vocab_);

  for (int i = 0; i < vocab_; ++i) {
    if (std::isnan(logits[i])) logits[i] = kNegInf;
  }

  // Larger logit first, then lower id: a strict total order once NaNs are gone.
  const auto higher_first = [logits](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  std::iota(order_.begin(), order_.end(), 0);

  const int kept_by_k = (params_.top_k > 0 && params_.top_k < vocab_) ? params_.top_k : vocab_;
  const bool use_top_p = params_.top_p < 1.0f;
  // Top-p needs the candidates in descending order; top-k alone only needs the set.
  if (use_top_p) {
    if (kept_by_k < vocab_) {
      std::partial_sort(order_.begin(), order_.begin() + kept_by_k, order_.end(), higher_first);
    } else {
      std::sort(order_.begin(), order_.end(), higher_first);
    }
  } else if (kept_by_k < vocab_) {
    std::nth_element(order_.begin(), order_.begin() + (kept_by_k - 1), order_.end(), higher_first);
  }

  // Softmax over the kept candidates, shifted by their maximum so exp() cannot overflow.
  float max_logit = kNegInf;
  for (int i = 0; i < kept_by_k; ++i) max_logit = std::max(max_logit, logits[order_[i]]);
  if (max_logit == kNegInf) return 0;  // everything suppressed; same answer as the greedy branch
  if (max_logit == kPosInf) {
    // A +inf logit is certain (and inf - inf would make the softmax NaN): take the lowest such id.
    int32_t certain = vocab_;
    for (int i = 0; i < kept_by_k; ++i) {
      if (logits[order_[i]] == max_logit) certain = std::min(certain, order_[i]);
    }
    return certain;
  }
  double mass = 0.0;
  for (int i = 0; i < kept_by_k; ++i) {
    // Divide rather than multiply by 1/T: for a tiny T, 1/T overflows to inf and 0 * inf is NaN.
    const float p = std::exp((logits[order_[i]] - max_logit) / params_.temperature);
    probs_[i] = p;
    mass += p;
  }

  int kept = kept_by_k;
  if (use_top_p) {
    // Smallest descending prefix whose share of the mass reaches top_p; the first token always stays.
    const double target = static_cast<double>(params_.top_p) * mass;
    double prefix_mass = 0.0;
    kept = 0;
    while (kept < kept_by_k) {
      prefix_mass += probs_[kept];
      ++kept;
      if (prefix_mass >= target) break;
    }
    mass = prefix_mass;
  }

  // Inverse-CDF draw. Zero-probability candidates are never chosen because the comparison is strict.
  const double u = uniform_unit(rng_) * mass;
  double cumulative = 0.0;
  for (int i = 0; i < kept; ++i) {
    cumulative += probs_[i];
    if (u < cumulative) return order_[i];
  }
  // Only reachable through rounding when u lands within an ulp of the total: take the last positive one.
  for (int i = kept - 1; i > 0; --i) {
    if (probs_[i] > 0.0f) return order_[i];
  }
  return order_[0];
}

}  // namespace conflux
