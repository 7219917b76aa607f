// The engine against the independent references in ../shared/reference/tiny-a: logits of every case
// (llama.cpp image attention and HF's), soft-token embeddings, and incremental equivalence (token by
// token, random chunks, all at once).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "engine/case_file.h"
#include "engine/model.h"
#include "engine/sequence.h"
#include "tests/support/allocation_counter.h"

namespace conflux {
namespace {

const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";

struct Diff {
  double max = 0, mean = 0;
  int argmax_mismatches = 0;
};

// Compares (rows, V) logits; counts rows whose argmax differs.
Diff compare_rows(const std::vector<float>& got, const std::vector<float>& want, int V) {
  Diff d;
  EXPECT_EQ(got.size(), want.size());
  if (got.size() != want.size() || got.empty()) return d;
  double sum = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]);
    d.max = std::max(d.max, e);
    sum += e;
  }
  d.mean = sum / double(got.size());
  for (size_t r = 0; r < got.size() / size_t(V); ++r) {
    auto g = got.begin() + r * V, w = want.begin() + r * V;
    if (std::max_element(g, g + V) - g != std::max_element(w, w + V) - w) ++d.argmax_mismatches;
  }
  return d;
}

class TinyA : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { model_ = Model::load(kTinyA).release(); }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  EvalCase load() const { return load_case(kTinyA + "/cases/" + GetParam() + ".json"); }
  static RuntimeConfig runtime(ImageAttention mode) {
    RuntimeConfig rc;
    rc.n_threads = 2;
    rc.max_context = 512;
    rc.max_chunk = 128;
    rc.image_attention = mode;
    return rc;
  }
  static Model* model_;
};
Model* TinyA::model_ = nullptr;

// Tolerances from reference/README.md: llama.cpp uses an fp16-table GELU, the engine the exact tanh
// form; the README measured up to 2.7e-2 max / 2.2e-3 mean from that alone, and recommends 5e-2 / 5e-3
// with identical argmax. A mask error shows up as ~0.8.
constexpr double kMaxLogitDiff = 5e-2;
constexpr double kMeanLogitDiff = 5e-3;

TEST_P(TinyA, LogitsMatchLlamaCppWithAllLayerImageAttention) {
  const EvalCase c = load();
  Context ctx(*model_, runtime(ImageAttention::AllLayers));
  const InputSequence seq = build_case_sequence(ctx, c);
  std::vector<float> logits;
  feed_sequence(ctx, seq, {}, {}, logits);
  const int V = model_->config().text.vocab_size;
  const Diff d = compare_rows(logits, read_f32_file(c.logits_file), V);
  std::printf("[%s vs llama.cpp] max %.3g mean %.3g rows %zu\n", c.name.c_str(), d.max, d.mean, logits.size() / V);
  EXPECT_LE(d.max, kMaxLogitDiff);
  EXPECT_LE(d.mean, kMeanLogitDiff);
  EXPECT_EQ(d.argmax_mismatches, 0);
  // The text rows are exactly the reference's logit positions.
  std::vector<int64_t> positions;
  for (int j = 0; j < seq.size(); ++j)
    if (!seq.is_embedding[size_t(j)]) positions.push_back(j);
  EXPECT_EQ(positions, c.logit_positions);
}

// Cases with images carry a second reference computed with HF's mask; cases with media carry embeddings.
class TinyAWithImage : public TinyA {};
class TinyAWithMedia : public TinyA {};

TEST_P(TinyAWithImage, LogitsMatchHfMaskReference) {
  const EvalCase c = load();
  ASSERT_FALSE(c.logits_hf_mask_file.empty()) << c.path << " names no logits_hf_mask";
  Context ctx(*model_, runtime(ImageAttention::SlidingOnly));
  const InputSequence seq = build_case_sequence(ctx, c);
  std::vector<float> logits;
  feed_sequence(ctx, seq, {}, {}, logits);
  const Diff d = compare_rows(logits, read_f32_file(c.logits_hf_mask_file), model_->config().text.vocab_size);
  std::printf("[%s vs HF-mask float64] max %.3g mean %.3g\n", c.name.c_str(), d.max, d.mean);
  // This reference is a float64 forward pass with the exact tanh GELU, as the engine computes it, so only
  // float32 round-off remains (measured ~1e-4 max); 1e-3 / 1e-4 is still 50x below the README's bound,
  // and far below the 0.8 that the other mask gives.
  EXPECT_LE(d.max, 1e-3);
  EXPECT_LE(d.mean, 1e-4);
  EXPECT_EQ(d.argmax_mismatches, 0);
}

TEST_P(TinyAWithMedia, SoftTokenEmbeddingsMatch) {
  const EvalCase c = load();
  ASSERT_FALSE(c.embedding_files.empty()) << c.path << " names no embeddings";
  Context ctx(*model_, runtime(ImageAttention::SlidingOnly));
  const InputSequence seq = build_case_sequence(ctx, c);
  ASSERT_EQ(seq.media.size(), c.embedding_files.size());
  for (size_t m = 0; m < seq.media.size(); ++m) {
    const auto want = read_f32_file(c.embedding_files[m]);
    const auto& span = seq.media[m];
    ASSERT_EQ(want.size(), size_t(span.n_rows) * seq.hidden);
    double max = 0;
    for (size_t i = 0; i < want.size(); ++i)
      max = std::max(max, std::fabs(double(seq.embeddings[size_t(span.first_row) * seq.hidden + i]) - want[i]));
    std::printf("[%s media %zu] embeddings max diff %.3g\n", c.name.c_str(), m, max);
    // The README: embeddings agree with a float64 implementation to 4e-7; 1e-5 leaves room for f32 sums.
    EXPECT_LE(max, 1e-5);
  }
}

// Feeding the same case in different chunkings runs the same arithmetic per row (each dot product and
// each attention row is computed the same way whatever the chunk), so the logits agree to float32
// round-off; 1e-4 is ~1000x below the reference tolerance.
TEST_P(TinyA, IncrementalChunkingGivesSameLogits) {
  const EvalCase c = load();
  std::vector<float> all_at_once, token_by_token, random_chunks;
  {
    Context ctx(*model_, runtime(ImageAttention::AllLayers));
    feed_sequence(ctx, build_case_sequence(ctx, c), {}, {}, all_at_once);
  }
  {
    Context ctx(*model_, runtime(ImageAttention::AllLayers));
    feed_sequence(ctx, build_case_sequence(ctx, c), {1, false, 0}, {}, token_by_token);
  }
  {
    Context ctx(*model_, runtime(ImageAttention::AllLayers));
    feed_sequence(ctx, build_case_sequence(ctx, c), {37, true, 12345}, {}, random_chunks);
  }
  const int V = model_->config().text.vocab_size;
  const Diff a = compare_rows(token_by_token, all_at_once, V);
  const Diff b = compare_rows(random_chunks, all_at_once, V);
  EXPECT_LE(a.max, 1e-4);
  EXPECT_LE(b.max, 1e-4);
  EXPECT_EQ(a.argmax_mismatches + b.argmax_mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(Cases, TinyA, ::testing::Values("text", "image", "audio", "mixed"));
INSTANTIATE_TEST_SUITE_P(Cases, TinyAWithImage, ::testing::Values("image", "mixed"));
INSTANTIATE_TEST_SUITE_P(Cases, TinyAWithMedia, ::testing::Values("image", "audio", "mixed"));

// The command line front end writes the same rows as the library.
TEST(LogitsCommand, WritesReferenceShapedFile) {
  const std::string out = ::testing::TempDir() + "/conflux_text_logits.f32";
  const std::string cmd = std::string(CONFLUX_BINARY) + " logits --model " + kTinyA + " --case " + kTinyA +
                          "/cases/audio.json --out " + out + " --image-attention all-layers --threads 1 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto got = read_f32_file(out);
  const auto want = read_f32_file(kTinyA + "/cases/audio.logits.f32");
  ASSERT_EQ(got.size(), want.size());
  const Diff d = compare_rows(got, want, 512);
  EXPECT_LE(d.max, kMaxLogitDiff);
}

TEST(LogitsCommand, BadOptionFailsWithMessage) {
  const std::string cmd = std::string(CONFLUX_BINARY) + " logits --model " + kTinyA + " --case x.json --out /dev/null" +
                          " --image-attention sideways 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string text;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) text += buf;
  const int rc = pclose(p);
  EXPECT_NE(rc, 0);
  EXPECT_NE(text.find("image-attention"), std::string::npos) << text;
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// Real-time rule: decoding a token allocates nothing (activations and cache are sized up front).
TEST(DecodeLoop, DecodingATokenDoesNotAllocate) {
  const auto model = Model::load(kTinyA);
  RuntimeConfig rc;
  rc.n_threads = 2;
  rc.max_context = 64;
  rc.max_chunk = 16;
  Context ctx(*model, rc);
  std::vector<float> logits(size_t(model->config().text.vocab_size));
  int32_t id = 2;
  DecodeBatch b;
  b.n = 1;
  b.tokens = &id;
  ctx.decode(b, logits.data());  // warm-up
  using testing_support::g_allocation_count;
  using testing_support::g_count_allocations;
  g_allocation_count = 0;
  g_count_allocations = true;
  for (int i = 0; i < 20; ++i) {
    id = 3 + i;
    ctx.decode(b, logits.data());
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocation_count.load(), 0);
  // The counter works: a vector allocation is seen.
  g_count_allocations = true;
  std::vector<float>* v = new std::vector<float>(8);
  g_count_allocations = false;
  delete v;
  EXPECT_GE(g_allocation_count.load(), 1);
}

}  // namespace
}  // namespace conflux
