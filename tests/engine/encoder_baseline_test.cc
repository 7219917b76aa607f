// Encoder baseline: parameter counts of the E4B-sized configs (computed, not allocated), determinism,
// argument checks, and the whole small encoder (vision and audio) against a double-precision scalar twin.
#include "engine/encoder_baseline.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>
#include <vector>

#include "engine/dtype.h"
#include "engine/thread_pool.h"

namespace conflux {
namespace {

constexpr int kTextHidden = 3840;  // D of the 12B text model: the encoders' output width in Conflux

// A small config: every code path of the full one, at widths a double twin checks in milliseconds.
EncoderBaselineConfig small_config(uint64_t seed) {
  EncoderBaselineConfig c;
  c.vision_layers = 2;
  c.vision_dim = 32;
  c.vision_heads = 4;   // hd 8
  c.audio_layers = 2;
  c.audio_dim = 48;
  c.audio_heads = 3;    // hd 16
  c.out_dim = 24;
  c.seed = seed;
  c.max_image_tokens = 44;  // the 2112x48 strip below
  c.max_audio_frames = 4;   // 6 frames then run as two windows (4 + 2)
  return c;
}

std::vector<uint8_t> random_image(int width, int height, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> rgb(size_t(width) * height * 3);
  for (auto& v : rgb) v = uint8_t(byte(rng));
  return rgb;
}

std::vector<float> random_frames(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> sample(-1.f, 1.f);  // 16-bit PCM scaled to [-1, 1)
  std::vector<float> f(size_t(n) * EncoderBaseline::kFrameSamples);
  for (auto& v : f) v = sample(rng);
  return f;
}

// ------------------------------------------------------------------ double-precision scalar twin
using Mat = std::vector<double>;  // row-major

// y (n, out) = x (n, in) · Wᵀ with W's BF16 values widened exactly.
Mat linear(const EncoderBaselineTensor& w, const Mat& x, int n) {
  const int out = int(w.ref.shape[0]), in = int(w.ref.shape[1]);
  Mat y(size_t(n) * out, 0.0);
  for (int j = 0; j < n; ++j)
    for (int r = 0; r < out; ++r) {
      double acc = 0.0;
      for (int i = 0; i < in; ++i) acc += x[size_t(j) * in + i] * double(bf16_to_f32(w.bf16[size_t(r) * in + i]));
      y[size_t(j) * out + r] = acc;
    }
  return y;
}

Mat layer_norm_rows(const EncoderBaselineNorm& nrm, const Mat& x, int n, int d) {
  Mat y(x.size());
  for (int j = 0; j < n; ++j) {
    const double* xj = &x[size_t(j) * d];
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < d; ++i) mean += xj[i];
    mean /= d;
    for (int i = 0; i < d; ++i) var += (xj[i] - mean) * (xj[i] - mean);
    var /= d;
    for (int i = 0; i < d; ++i)
      y[size_t(j) * d + i] = (xj[i] - mean) / std::sqrt(var + EncoderBaseline::kLayerNormEps) * nrm.weight[size_t(i)] + nrm.bias[size_t(i)];
  }
  return y;
}

double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

// Every layer, then the final LayerNorm: (n, d) -> (n, d). Attention: full softmax over all n rows.
Mat twin_stack(const EncoderBaselineStack& s, Mat x, int n) {
  const int d = s.dim, H = s.heads, hd = d / H;
  for (const auto& L : s.layers) {
    const Mat xn = layer_norm_rows(L.attn_norm, x, n, d);
    const Mat q = linear(L.q, xn, n), k = linear(L.k, xn, n), v = linear(L.v, xn, n);  // (n, d) each
    Mat att(size_t(n) * d, 0.0);
    for (int h = 0; h < H; ++h)
      for (int j = 0; j < n; ++j) {
        std::vector<double> p(static_cast<size_t>(n));
        double mx = -1e300;
        for (int i = 0; i < n; ++i) {
          double dot = 0.0;
          for (int c = 0; c < hd; ++c) dot += q[size_t(j) * d + h * hd + c] * k[size_t(i) * d + h * hd + c];
          p[size_t(i)] = dot / std::sqrt(double(hd));
          mx = std::max(mx, p[size_t(i)]);
        }
        double sum = 0.0;
        for (auto& e : p) sum += (e = std::exp(e - mx));
        for (int i = 0; i < n; ++i)
          for (int c = 0; c < hd; ++c) att[size_t(j) * d + h * hd + c] += p[size_t(i)] / sum * v[size_t(i) * d + h * hd + c];
      }
    const Mat o = linear(L.out, att, n);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    Mat hidden = linear(L.up, layer_norm_rows(L.mlp_norm, x, n, d), n);
    for (auto& v : hidden) v = gelu(v);
    const Mat down = linear(L.down, hidden, n);
    for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
  }
  return layer_norm_rows(s.final_norm, x, n, d);
}

Mat twin_image(const EncoderBaseline& enc, const uint8_t* rgb, int width, int height) {
  const auto& w = enc.vision_weights();
  const int d = enc.config().vision_dim, P = EncoderBaseline::kTeacherPatchSize, side = EncoderBaseline::kPositionTableSide;
  const int gw = width / P, gh = height / P, n = gw * gh;
  Mat patches(size_t(n) * EncoderBaseline::kTeacherPatchValues);
  for (int j = 0; j < n; ++j)
    for (int r = 0; r < P; ++r)
      for (int c = 0; c < P; ++c)
        for (int ch = 0; ch < 3; ++ch)
          patches[size_t(j) * EncoderBaseline::kTeacherPatchValues + (r * P + c) * 3 + ch] =
              rgb[((size_t(j / gw) * P + r) * width + size_t(j % gw) * P + c) * 3 + ch] / 255.0;
  Mat x = linear(w.patch_embed, patches, n);
  for (int j = 0; j < n; ++j) {
    // Nearest-neighbour resampling of the table for grids longer than it.
    const int col = gw <= side ? j % gw : (j % gw) * side / gw;
    const int row = gh <= side ? j / gw : (j / gw) * side / gh;
    for (int i = 0; i < d; ++i)
      x[size_t(j) * d + i] += double(bf16_to_f32(w.pos_cols.bf16[size_t(col) * d + i])) +
                              double(bf16_to_f32(w.pos_rows.bf16[size_t(row) * d + i]));
  }
  const Mat xn = twin_stack(w.stack, x, n);
  const int cols = gw / 3, tokens = cols * (gh / 3);
  Mat pooled(size_t(tokens) * d, 0.0);
  for (int t = 0; t < tokens; ++t)
    for (int b = 0; b < 3; ++b)
      for (int a = 0; a < 3; ++a)
        for (int i = 0; i < d; ++i)
          pooled[size_t(t) * d + i] += xn[(size_t((t / cols) * 3 + b) * gw + size_t((t % cols) * 3 + a)) * d + i] / 9.0;
  return linear(w.projection, pooled, tokens);
}

Mat twin_audio(const EncoderBaseline& enc, const float* frames, int n_frames) {
  const auto& w = enc.audio_weights();
  const int window = enc.config().max_audio_frames, S = EncoderBaseline::kFrameSamples;
  Mat out;
  for (int off = 0; off < n_frames; off += window) {
    const int m = std::min(window, n_frames - off);
    const Mat in(frames + size_t(off) * S, frames + size_t(off + m) * S);
    const Mat y = linear(w.projection, twin_stack(w.stack, linear(w.input, in, m), m), m);
    out.insert(out.end(), y.begin(), y.end());
  }
  return out;
}

// Largest |got - want| relative to the RMS of want (outputs are O(1) but individual entries can be ~0).
double max_error_over_rms(const std::vector<float>& got, const Mat& want) {
  EXPECT_EQ(got.size(), want.size());
  double ss = 0.0, worst = 0.0;
  for (double v : want) ss += v * v;
  const double rms = std::sqrt(ss / double(want.size()));
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - want[i]));
  return worst / rms;
}

// ------------------------------------------------------------------ tests

TEST(EncoderBaseline, DefaultConfigsHaveE4bEncoderSizes) {
  const EncoderBaselineConfig c = encoder_baseline_e4b_config(kTextHidden, 1);
  const int64_t vision = EncoderBaseline::count_vision_parameters(c);
  const int64_t audio = EncoderBaseline::count_audio_parameters(c);
  // Exact values of the arithmetic in encoder_baseline.cc's header comment.
  EXPECT_EQ(vision, 156026880);
  EXPECT_EQ(audio, 306677760);
  EXPECT_NEAR(double(vision), 150e6, 0.05 * 150e6);
  EXPECT_NEAR(double(audio), 305e6, 0.05 * 305e6);
}

TEST(EncoderBaseline, AllocatedParametersMatchTheCount) {
  ThreadPool pool(2);
  const EncoderBaselineConfig c = small_config(7);
  EncoderBaseline enc(c, pool);
  EXPECT_EQ(enc.vision_parameters(), EncoderBaseline::count_vision_parameters(c));
  EXPECT_EQ(enc.audio_parameters(), EncoderBaseline::count_audio_parameters(c));
  EXPECT_GE(enc.weight_bytes(), size_t(2) * size_t(enc.vision_parameters() + enc.audio_parameters()));
  EXPECT_GT(enc.scratch_bytes(), 0u);
  for (const auto* t : {&enc.vision_weights().patch_embed, &enc.vision_weights().stack.layers[0].k, &enc.audio_weights().projection}) {
    EXPECT_EQ(t->ref.dtype, DType::BF16);
    EXPECT_EQ(t->ref.data, t->bf16.data());
    EXPECT_EQ(t->ref.numel(), int64_t(t->bf16.size()));
  }
}

TEST(EncoderBaseline, ChecksumsAreFiniteAndDependOnlyOnTheSeed) {
  const auto img = random_image(96, 144, 3);  // 2 x 3 model patches, 6 x 9 teacher patches
  const auto frames = random_frames(6, 4);
  ThreadPool one(1), two(2);
  EncoderBaseline a(small_config(11), two), b(small_config(11), one), other(small_config(12), two);
  const float img_a = a.encode_image(img.data(), 96, 144), aud_a = a.encode_audio(frames.data(), 6);
  EXPECT_TRUE(std::isfinite(img_a));
  EXPECT_TRUE(std::isfinite(aud_a));
  EXPECT_NE(img_a, 0.f);
  EXPECT_NE(aud_a, 0.f);
  // Same seed: bit-identical, whatever the thread count (each row and (row, head) is computed by one task).
  EXPECT_EQ(b.encode_image(img.data(), 96, 144), img_a);
  EXPECT_EQ(b.encode_audio(frames.data(), 6), aud_a);
  // Repeated calls reuse the scratch without leftovers.
  EXPECT_EQ(a.encode_image(img.data(), 96, 144), img_a);
  EXPECT_EQ(a.encode_audio(frames.data(), 6), aud_a);
  // Another seed: other weights.
  EXPECT_NE(other.encode_image(img.data(), 96, 144), img_a);
  EXPECT_NE(other.encode_audio(frames.data(), 6), aud_a);
}

TEST(EncoderBaseline, ChecksumIsTheSumOfTheOutput) {
  ThreadPool pool(2);
  EncoderBaseline enc(small_config(5), pool);
  const auto img = random_image(48, 96, 6);
  std::vector<float> out(2 * 24, std::nanf(""));
  const float checksum = enc.encode_image(img.data(), 48, 96, out.data());
  double sum = 0.0;
  for (float v : out) sum += v;
  EXPECT_FLOAT_EQ(checksum, float(sum));
}

// The engine computes in f32 with the BF16 weights widened exactly; the twin in double with the same
// weights. The only differences are f32 rounding in sums of at most 4d = 192 terms, softmax and
// LayerNorm: ~1e-7 relative per op, a few dozen ops deep; measured 3e-7 to 7e-7 of the output RMS.
// 1e-5 leaves >10x margin and still catches any wrong index or scale: an attention scale 3% off
// gives 9e-3 to 3e-2, a position-table index off by one 0.7.
constexpr double kTwinTolerance = 1e-5;

TEST(EncoderBaseline, VisionMatchesDoubleTwin) {
  ThreadPool pool(2);
  EncoderBaseline enc(small_config(21), pool);
  struct Case { int width, height; };
  // 144x96: 3 x 2 model patches. 2112x48: a 132-patch-wide strip, wider than the 128-row position
  // table, so the nearest-neighbour resampling is checked too.
  for (const Case c : {Case{144, 96}, Case{2112, 48}}) {
    const auto img = random_image(c.width, c.height, uint64_t(c.width));
    const int tokens = (c.width / 48) * (c.height / 48);
    std::vector<float> out(size_t(tokens) * 24);
    enc.encode_image(img.data(), c.width, c.height, out.data());
    const double err = max_error_over_rms(out, twin_image(enc, img.data(), c.width, c.height));
    EXPECT_LT(err, kTwinTolerance) << c.width << "x" << c.height;
    std::printf("vision %dx%d: max error / rms = %.3g\n", c.width, c.height, err);
  }
}

TEST(EncoderBaseline, AudioMatchesDoubleTwinWindowByWindow) {
  ThreadPool pool(2);
  EncoderBaseline enc(small_config(22), pool);
  const int n = 6;  // windows of 4 and 2 frames
  const auto frames = random_frames(n, 9);
  std::vector<float> out(size_t(n) * 24);
  enc.encode_audio(frames.data(), n, out.data());
  const double err = max_error_over_rms(out, twin_audio(enc, frames.data(), n));
  EXPECT_LT(err, kTwinTolerance);
  std::printf("audio %d frames: max error / rms = %.3g\n", n, err);
}

TEST(EncoderBaseline, RejectsBadSizes) {
  ThreadPool pool(1);
  EncoderBaseline enc(small_config(1), pool);
  const auto img = random_image(2160, 48, 1);  // 45 model patches: one over max_image_tokens
  EXPECT_THROW(enc.encode_image(img.data(), 100, 48), std::invalid_argument);
  EXPECT_THROW(enc.encode_image(img.data(), 0, 48), std::invalid_argument);
  EXPECT_THROW(enc.encode_image(img.data(), 2160, 48), std::invalid_argument);
  EXPECT_THROW(enc.encode_audio(nullptr, -1), std::invalid_argument);
  EXPECT_EQ(enc.encode_audio(nullptr, 0), 0.f);
  EncoderBaselineConfig bad = small_config(1);
  bad.vision_heads = 5;  // 32 is not a multiple of 5
  EXPECT_THROW((EncoderBaseline{bad, pool}), std::invalid_argument);
}

}  // namespace
}  // namespace conflux
