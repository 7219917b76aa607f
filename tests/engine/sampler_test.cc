// Tests for engine/sampler: greedy and tie-breaking, suppression, top-k / top-p limits, the sampled
// distribution against its exact probabilities, seeding, allocation-free sample(), and
// load_generation_config on files written by the test.
#include "engine/sampler.h"

#include "tests/support/allocation_counter.h"
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <fstream>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>  // getpid, for per-process temp file names

using conflux::testing_support::g_allocation_count;
using conflux::testing_support::g_count_allocations;

namespace conflux {
namespace {

// Random logits with a fixed seed, spread wide enough (normal, std 3) that there is a clear argmax.
std::vector<float> random_logits(int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = normal(rng);
  return logits;
}

int argmax_lowest_index(const std::vector<float>& logits) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(logits.size()); ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

std::vector<int> sample_counts(const SamplingParams& params, const std::vector<float>& logits, int draws) {
  Sampler sampler(params, static_cast<int>(logits.size()));
  std::vector<int> counts(logits.size(), 0);
  std::vector<float> scratch;
  for (int i = 0; i < draws; ++i) {
    scratch = logits;  // sample() may modify its input
    ++counts.at(sampler.sample(scratch.data()));
  }
  return counts;
}

// Five binomial standard deviations: a correct sampler fails this with probability about 6e-7 per check
// (and the seed is fixed, so the outcome is deterministic anyway); an error in the probabilities of a few
// percent, e.g. a missing renormalisation or temperature, is many sigmas away at 20000 draws.
constexpr int kDraws = 20000;
double five_sigma(double p, int draws) { return 5.0 * std::sqrt(p * (1.0 - p) / draws); }

void expect_frequencies(const std::vector<int>& counts, const std::vector<double>& expected) {
  ASSERT_EQ(counts.size(), expected.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    const double observed = static_cast<double>(counts[i]) / kDraws;
    if (expected[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
    } else {
      EXPECT_NEAR(observed, expected[i], five_sigma(expected[i], kDraws)) << "token " << i;
    }
  }
}

// Logits whose softmax is exactly 0.5 / 0.3 / 0.2 (up to float rounding).
const std::vector<float> kThreeWay = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};

TEST(Sampler, GreedyPicksArgmax) {
  Sampler sampler(SamplingParams{}, 4);  // default temperature 0 = greedy
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(sampler.sample(logits.data()), 1);

  std::vector<float> wide = random_logits(5000, 7);
  const int expected = argmax_lowest_index(wide);
  Sampler wide_sampler(SamplingParams{}, 5000);
  EXPECT_EQ(wide_sampler.sample(wide.data()), expected);
}

TEST(Sampler, GreedyTiesGoToLowestIndex) {
  Sampler sampler(SamplingParams{}, 5);
  std::vector<float> logits = {1.0f, 3.0f, 0.0f, 3.0f, 3.0f};
  EXPECT_EQ(sampler.sample(logits.data()), 1);
}

TEST(Sampler, TopKTiesAtTheCutKeepLowerIndex) {
  // Tokens 1, 2 and 3 tie; top_k = 2 must keep 0 (the largest) and 1 (the lowest-index tie), never 2 or 3.
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 2;
  params.seed = 11;
  const std::vector<float> logits = {2.0f, 1.0f, 1.0f, 1.0f};
  const std::vector<int> counts = sample_counts(params, logits, 2000);
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[3], 0);
  EXPECT_GT(counts[1], 0);
}

TEST(Sampler, SuppressedTokenNeverChosenEvenIfLargest) {
  SamplingParams params;
  params.suppress_tokens = {2, 1000000 /* outside the vocabulary: ignored */};
  std::vector<float> logits = {1.0f, 0.5f, 10.0f, 0.9f};
  Sampler greedy(params, 4);
  EXPECT_EQ(greedy.sample(logits.data()), 0);

  params.temperature = 1.0f;
  params.seed = 3;
  const std::vector<int> counts = sample_counts(params, {1.0f, 0.5f, 10.0f, 0.9f}, 5000);
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[0] + counts[1] + counts[3], 5000);
}

TEST(Sampler, NonFiniteLogits) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = 21;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // NaN is treated as -inf: never drawn.
  EXPECT_EQ(sample_counts(params, {0.0f, nan, 0.0f}, 1000)[1], 0);
  // +inf is certain; between two, the lower id.
  EXPECT_EQ(sample_counts(params, {5.0f, inf, 2.0f, inf}, 100)[1], 100);
  // Everything suppressed: no meaningful choice, defined as id 0 for both paths.
  params.suppress_tokens = {0, 1, 2};
  Sampler sampled(params, 3);
  std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  EXPECT_EQ(sampled.sample(logits.data()), 0);
  params.temperature = 0.0f;
  Sampler greedy(params, 3);
  logits = {1.0f, 2.0f, 3.0f};
  EXPECT_EQ(greedy.sample(logits.data()), 0);
}

TEST(Sampler, TopK1EqualsGreedyForAnyTemperature) {
  for (float temperature : {0.05f, 0.7f, 1.0f, 5.0f, 100.0f}) {
    SamplingParams params;
    params.temperature = temperature;
    params.top_k = 1;
    params.seed = 1234;
    Sampler sampler(params, 3000);
    for (uint64_t trial = 0; trial < 20; ++trial) {
      std::vector<float> logits = random_logits(3000, trial);
      const int expected = argmax_lowest_index(logits);
      EXPECT_EQ(sampler.sample(logits.data()), expected) << "temperature " << temperature << " trial " << trial;
    }
  }
}

TEST(Sampler, TinyTopPEqualsGreedy) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_p = 1e-6f;  // below any single token's probability, so only the most likely token survives
  params.seed = 99;
  Sampler sampler(params, 3000);
  for (uint64_t trial = 0; trial < 20; ++trial) {
    std::vector<float> logits = random_logits(3000, 100 + trial);
    const int expected = argmax_lowest_index(logits);
    EXPECT_EQ(sampler.sample(logits.data()), expected) << "trial " << trial;
  }
}

TEST(Sampler, EmpiricalFrequenciesMatchSoftmax) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = 2024;
  expect_frequencies(sample_counts(params, kThreeWay, kDraws), {0.5, 0.3, 0.2});
}

TEST(Sampler, TopK2DropsThirdTokenAndRenormalizes) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 2;
  params.seed = 77;
  // 0.5 and 0.3 renormalised over their sum 0.8.
  expect_frequencies(sample_counts(params, kThreeWay, kDraws), {0.5 / 0.8, 0.3 / 0.8, 0.0});
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingTheMass) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_p = 0.75f;  // 0.5 alone is short of 0.75; 0.5 + 0.3 reaches it, so the 0.2 token is cut
  params.seed = 5;
  expect_frequencies(sample_counts(params, kThreeWay, kDraws), {0.5 / 0.8, 0.3 / 0.8, 0.0});
}

TEST(Sampler, TemperatureFlattensDistribution) {
  SamplingParams params;
  params.temperature = 2.0f;
  params.seed = 8;
  // softmax(log p / 2) is proportional to sqrt(p).
  const double a = std::sqrt(0.5), b = std::sqrt(0.3), c = std::sqrt(0.2), sum = a + b + c;
  expect_frequencies(sample_counts(params, kThreeWay, kDraws), {a / sum, b / sum, c / sum});
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDifferentSequence) {
  constexpr int kVocab = 50;
  constexpr int kSteps = 200;
  const std::vector<float> logits = random_logits(kVocab, 42);
  auto run = [&](uint64_t seed) {
    SamplingParams params;
    params.temperature = 3.0f;  // flat enough that many tokens are likely
    params.top_k = 40;
    params.top_p = 0.95f;
    params.seed = seed;
    Sampler sampler(params, kVocab);
    std::vector<int32_t> sequence;
    for (int i = 0; i < kSteps; ++i) {
      std::vector<float> scratch = logits;
      sequence.push_back(sampler.sample(scratch.data()));
    }
    return sequence;
  };
  const std::vector<int32_t> first = run(123);
  EXPECT_EQ(first, run(123));
  EXPECT_NE(first, run(124));
}

TEST(Sampler, SampleDoesNotAllocate) {
  constexpr int kVocab = 4096;
  SamplingParams params;
  params.temperature = 0.8f;
  params.top_k = 64;
  params.top_p = 0.9f;
  params.suppress_tokens = {1, 2, 3};
  Sampler with_limits(params, kVocab);
  params.top_k = 0;  // full sort path
  Sampler full_sort(params, kVocab);
  std::vector<float> logits = random_logits(kVocab, 9);

  // The counter itself must see an allocation, or the check below would pass vacuously. The vector escapes
  // through a global so that the compiler may not elide the new/delete pair.
  static std::vector<float>* escaped = nullptr;
  g_allocation_count = 0;
  g_count_allocations = true;
  escaped = new std::vector<float>(kVocab);
  g_count_allocations = false;
  delete escaped;
  ASSERT_GE(g_allocation_count.load(), 1);

  g_allocation_count = 0;
  g_count_allocations = true;
  for (int i = 0; i < 10; ++i) {
    with_limits.sample(logits.data());
    full_sort.sample(logits.data());
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocation_count.load(), 0);
}

TEST(Sampler, IsStop) {
  SamplingParams params;
  params.stop_tokens = {1, 106};
  Sampler sampler(params, 300);
  EXPECT_TRUE(sampler.is_stop(1));
  EXPECT_TRUE(sampler.is_stop(106));
  EXPECT_FALSE(sampler.is_stop(0));
  EXPECT_FALSE(sampler.is_stop(107));
}

TEST(Sampler, RejectsInvalidParameters) {
  SamplingParams params;
  EXPECT_THROW(Sampler(params, 0), std::invalid_argument);
  params.temperature = -1.0f;
  EXPECT_THROW(Sampler(params, 10), std::invalid_argument);
  params = SamplingParams{};
  params.top_p = 1.5f;
  EXPECT_THROW(Sampler(params, 10), std::invalid_argument);
  params = SamplingParams{};
  params.top_k = -2;
  EXPECT_THROW(Sampler(params, 10), std::invalid_argument);
}

// ---- generation_config.json ----

class GenerationConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = (std::filesystem::path(::testing::TempDir()) /
             (std::string("conflux_genconfig_") + info->name() + "_" + std::to_string(::getpid()) + ".json"))
                .string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void write(const std::string& text) {
    std::ofstream out(path_);
    out << text;
  }
  // Expects load_generation_config to throw a runtime_error whose message names the file and `mention`.
  void expect_error_mentioning(const std::string& mention) {
    try {
      load_generation_config(path_);
      ADD_FAILURE() << "no error for " << mention;
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path_), std::string::npos) << message;
      EXPECT_NE(message.find(mention), std::string::npos) << message;
    }
  }
  std::string path_;
};

TEST_F(GenerationConfigFile, ReadsAllFieldsWithEosList) {
  // Shaped like HF-conv's generation_config.json for the -it model (architecture doc §1.5).
  write(R"({
    "bos_token_id": 2,
    "do_sample": true,
    "eos_token_id": [1, 106, 50],
    "pad_token_id": 0,
    "suppress_tokens": [258883, 258882],
    "temperature": 1.0,
    "top_k": 64,
    "top_p": 0.95,
    "transformers_version": "5.0.0"
  })");
  const GenerationConfig config = load_generation_config(path_);
  EXPECT_EQ(config.eos_token_ids, (std::vector<int32_t>{1, 106, 50}));
  EXPECT_EQ(config.suppress_tokens, (std::vector<int32_t>{258883, 258882}));
  EXPECT_TRUE(config.do_sample);
  EXPECT_EQ(config.temperature, 1.0f);
  EXPECT_EQ(config.top_k, 64);
  EXPECT_EQ(config.top_p, 0.95f);  // the same decimal parsed to float both ways: exact
  EXPECT_EQ(config.bos_token_id, 2);
  EXPECT_EQ(config.pad_token_id, 0);
}

TEST_F(GenerationConfigFile, EosAsSingleIntAndAbsentFieldsKeepDefaults) {
  write(R"({"eos_token_id": 1, "top_p": null})");
  const GenerationConfig config = load_generation_config(path_);
  const GenerationConfig defaults;
  EXPECT_EQ(config.eos_token_ids, (std::vector<int32_t>{1}));
  EXPECT_TRUE(config.suppress_tokens.empty());
  EXPECT_EQ(config.do_sample, defaults.do_sample);
  EXPECT_EQ(config.temperature, defaults.temperature);
  EXPECT_EQ(config.top_k, defaults.top_k);
  EXPECT_EQ(config.top_p, defaults.top_p);
  EXPECT_EQ(config.bos_token_id, defaults.bos_token_id);
  EXPECT_EQ(config.pad_token_id, defaults.pad_token_id);
  EXPECT_FALSE(config.enable_thinking);
  EXPECT_FALSE(config.image_at_turn_end);
}

TEST_F(GenerationConfigFile, ReadsConfluxSessionDefaults) {
  // The two keys train.py --think writes for Conflux's session (HF's GenerationConfig keeps unknown keys).
  write(R"({"eos_token_id": 1, "enable_thinking": true, "image_at_turn_end": true})");
  GenerationConfig config = load_generation_config(path_);
  EXPECT_TRUE(config.enable_thinking);
  EXPECT_TRUE(config.image_at_turn_end);
  write(R"({"eos_token_id": 1, "enable_thinking": false})");
  config = load_generation_config(path_);
  EXPECT_FALSE(config.enable_thinking);
  EXPECT_FALSE(config.image_at_turn_end);
}

TEST_F(GenerationConfigFile, MissingFileNamesTheFile) {
  expect_error_mentioning("cannot open");  // nothing was written
}

TEST_F(GenerationConfigFile, MalformedFieldsNameFileAndField) {
  write(R"({"eos_token_id": "one"})");
  expect_error_mentioning("eos_token_id");
  write(R"({"eos_token_id": [1, 2.5]})");
  expect_error_mentioning("eos_token_id");
  write(R"({"suppress_tokens": 5})");
  expect_error_mentioning("suppress_tokens");
  write(R"({"top_k": 1.5})");
  expect_error_mentioning("top_k");
  write(R"({"top_p": "high"})");
  expect_error_mentioning("top_p");
  write(R"({"temperature": -1})");
  expect_error_mentioning("temperature");
  write(R"({"do_sample": 1})");
  expect_error_mentioning("do_sample");
  write(R"({"enable_thinking": "yes"})");
  expect_error_mentioning("enable_thinking");
  write(R"({"image_at_turn_end": 1})");
  expect_error_mentioning("image_at_turn_end");
  write(R"({"pad_token_id": -3})");
  expect_error_mentioning("pad_token_id");
}

TEST_F(GenerationConfigFile, InvalidJsonNamesTheFile) {
  write(R"({"eos_token_id": [1, 106)");
  expect_error_mentioning("invalid JSON");
  write("[1, 2]");
  expect_error_mentioning("not a JSON object");
}

}  // namespace
}  // namespace conflux
