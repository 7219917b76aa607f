// Block-quantized weights: the Q8_0 / Q4_0 kernels at every ISA level against their scalar twins on
// odd block counts, the formats' round-trip error bounds, quantized matmul against an f32 product,
// the checkpoint pairing of `NAME` + `NAME.scales`, and each weight format's logits on tiny-a
// against the f32 weights (the accuracy table of the README).
#include "engine/quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "engine/case_file.h"
#include "engine/model.h"
#include "engine/ops.h"
#include "engine/sequence.h"
#include "tests/support/random.h"

namespace conflux {
namespace {

namespace fs = std::filesystem;

using testing_support::randn;

// A (rows, cols) matrix in `t` as a TensorRef over owned storage.
struct QuantMatrix {
  ConvertedTensor storage;
  TensorRef ref;
};

QuantMatrix make_matrix(const std::vector<float>& v, int64_t rows, int64_t cols, DType t) {
  QuantMatrix m;
  m.storage.data.resize(size_t(rows) * row_bytes(t, cols));
  if (is_quantized(t)) m.storage.scales.resize(size_t(rows) * size_t(cols / kQuantBlock));
  encode_rows(t, v.data(), 0, rows, cols, m.storage);
  m.ref.name = "test";
  m.ref.dtype = t;
  m.ref.shape = {rows, cols};
  m.ref.data = m.storage.data.data();
  m.ref.scales = m.storage.scales.empty() ? nullptr : m.storage.scales.data();
  m.ref.nbytes = m.storage.data.size() + 2 * m.storage.scales.size();
  return m;
}

// Every ISA level this CPU has, scalar included; restores the detected level when done.
std::vector<detail::Isa> isa_levels() {
  std::vector<detail::Isa> out;
  for (detail::Isa i : {detail::Isa::Scalar, detail::Isa::Avx2, detail::Isa::Avx512})
    if (i <= detail::detected_isa()) out.push_back(i);
  return out;
}
struct IsaGuard {
  ~IsaGuard() { detail::force_isa(detail::detected_isa()); }
};

const char* isa_name(detail::Isa i) {
  return i == detail::Isa::Avx512 ? "avx512" : i == detail::Isa::Avx2 ? "avx2" : "scalar";
}

// Block counts 1, 3, 5, 11, 33: odd, so the AVX-512 kernels' two-block steps end with a lone block.
// 1027 blocks: wider than the VNNI q8 kernel's 512-block segment of prepared activations, odd tail.
const int kOddBlockCounts[] = {1, 2, 3, 5, 11, 33, 1027};

TEST(QuantKernels, ActivationQuantizationIsIdenticalAtEveryIsa) {
  IsaGuard guard;
  for (int nb : kOddBlockCounts) {
    const int n = nb * kQuantBlock;
    auto x = randn(size_t(n), 10 + uint64_t(nb));
    x[0] = 0.f;
    if (nb > 1) std::fill(x.begin() + kQuantBlock, x.begin() + 2 * kQuantBlock, 0.f);  // an all-zero block
    std::vector<int8_t> q_ref(static_cast<size_t>(n)), q(static_cast<size_t>(n));
    std::vector<float> d_ref(static_cast<size_t>(nb)), d(static_cast<size_t>(nb));
    scalar::quantize_activation(x.data(), n, q_ref.data(), d_ref.data());
    for (detail::Isa isa : isa_levels()) {
      detail::force_isa(isa);
      quantize_activation(x.data(), n, q.data(), d.data());
      // Exact: every variant computes the same scale and rounds to nearest even.
      EXPECT_EQ(q, q_ref) << isa_name(isa) << " blocks " << nb;
      EXPECT_EQ(d, d_ref) << isa_name(isa) << " blocks " << nb;
    }
    // Dequantized activations are within half a step of the input.
    for (int i = 0; i < n; ++i)
      EXPECT_LE(std::fabs(d_ref[size_t(i / kQuantBlock)] * q_ref[size_t(i)] - x[size_t(i)]),
                0.5f * d_ref[size_t(i / kQuantBlock)] * 1.0001f + 1e-30f);
  }
}

class QuantDot : public ::testing::TestWithParam<DType> {};

// Within one block the products are exact int32; the variants differ only in how the per-block f32
// terms are summed (lanes, then blocks), against the scalar twin's double sum: 1e-5 relative to the sum
// of |terms| covers float32 rounding of up to 33 blocks x 16 lanes.
TEST_P(QuantDot, SimdMatchesScalarTwinAtEveryIsa) {
  IsaGuard guard;
  const DType t = GetParam();
  for (int nb : kOddBlockCounts) {
    const int n = nb * kQuantBlock, rows = 9;  // 1 to 9 rows: the AVX2 kernels work 4 at a time
    const auto x = randn(size_t(n), 20 + uint64_t(nb));
    const QuantMatrix w = make_matrix(randn(size_t(rows) * n, 30 + uint64_t(nb), 0.02f), rows, n, t);
    std::vector<int8_t> xq(static_cast<size_t>(n));
    std::vector<float> xd(static_cast<size_t>(nb));
    scalar::quantize_activation(x.data(), n, xq.data(), xd.data());
    // Sum of |per-block terms| for the tolerance, from the dequantized weights.
    std::vector<float> wf(size_t(rows) * n);
    dequantize_rows(w.ref, 0, rows, wf.data());
    for (int r = 1; r <= rows; ++r) {
      float ref[rows];
      scalar::dot_rows_quant(t, xq.data(), xd.data(), w.ref.data, w.ref.scales, r, n, ref);
      for (detail::Isa isa : isa_levels()) {
        detail::force_isa(isa);
        float got[rows];
        dot_rows_quant(t, xq.data(), xd.data(), w.ref.data, w.ref.scales, r, n, got);
        for (int i = 0; i < r; ++i) {
          double mag = 0;
          for (int k = 0; k < n; ++k)
            mag += std::fabs(double(wf[size_t(i) * n + k]) * xd[size_t(k / kQuantBlock)] * xq[size_t(k)]);
          EXPECT_NEAR(got[i], ref[i], 1e-5 * mag + 1e-7)
              << dtype_name(t) << " " << isa_name(isa) << " blocks " << nb << " row " << i;
        }
      }
    }
  }
}

// Against the exact product of the dequantized weights and the unquantized activation, the only error
// is the activation's rounding: at most half a step dx/2 per element, so |err| <= Σ_i |w_i| dx_b / 2.
TEST_P(QuantDot, QuantizedDotIsWithinTheActivationRoundingBound) {
  const DType t = GetParam();
  const int nb = 11, n = nb * kQuantBlock, rows = 3;
  const auto x = randn(size_t(n), 41);
  const QuantMatrix w = make_matrix(randn(size_t(rows) * n, 42, 0.02f), rows, n, t);
  std::vector<int8_t> xq(static_cast<size_t>(n));
  std::vector<float> xd(static_cast<size_t>(nb)), wf(size_t(rows) * n);
  quantize_activation(x.data(), n, xq.data(), xd.data());
  dequantize_rows(w.ref, 0, rows, wf.data());
  float got[3];
  dot_rows_quant(t, xq.data(), xd.data(), w.ref.data, w.ref.scales, rows, n, got);
  for (int r = 0; r < rows; ++r) {
    double exact = 0, bound = 0;
    for (int k = 0; k < n; ++k) {
      exact += double(wf[size_t(r) * n + k]) * x[size_t(k)];
      bound += std::fabs(wf[size_t(r) * n + k]) * xd[size_t(k / kQuantBlock)] * 0.5;
    }
    EXPECT_LE(std::fabs(got[r] - exact), bound * 1.001 + 1e-6) << dtype_name(t) << " row " << r;
    EXPECT_GT(std::fabs(exact), 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantDot, ::testing::Values(DType::Q8_0, DType::Q4_0),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Round trip of the weight formats: Q8_0 rounds to the nearest of 255 steps of d = max|w| / 127 (error
// <= d/2); Q4_0 to steps of d = |m| / 8, with the extreme +8·|d| clamped to +7·|d| (error <= |d|).
TEST(QuantFormats, RoundTripErrorIsWithinOneStep) {
  const int rows = 3, cols = 5 * kQuantBlock;
  auto v = randn(size_t(rows) * cols, 50, 0.02f);
  v[7] = 0.f;
  std::fill(v.begin() + kQuantBlock, v.begin() + 2 * kQuantBlock, 0.f);  // an all-zero block decodes to zeros
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    const QuantMatrix m = make_matrix(v, rows, cols, t);
    std::vector<float> back(v.size());
    dequantize_rows(m.ref, 0, rows, back.data());
    for (size_t i = 0; i < v.size(); ++i) {
      const float d = std::fabs(f16_to_f32(m.storage.scales[i / kQuantBlock]));
      const float step = t == DType::Q8_0 ? 0.5f * d : d;
      EXPECT_LE(std::fabs(back[i] - v[i]), step * 1.001f + 1e-9f) << dtype_name(t) << " element " << i;
    }
    for (int i = kQuantBlock; i < 2 * kQuantBlock; ++i) EXPECT_EQ(back[size_t(i)], 0.f);
    // One row in the middle decodes the same alone as within the whole matrix.
    std::vector<float> row(static_cast<size_t>(cols));
    dequantize_rows(m.ref, 1, 1, row.data());
    for (int i = 0; i < cols; ++i) EXPECT_EQ(row[size_t(i)], back[size_t(cols + i)]);
  }
  EXPECT_FALSE(can_store_as(DType::Q8_0, 33));
  EXPECT_TRUE(can_store_as(DType::BF16, 33));
}

// Converting a matrix to its own dtype (how LoadOptions::map_weights = false moves a checkpoint's
// mapped matrices into the process's memory) copies every byte and scale, in every format, over more
// rows than one conversion step (64) so that steps and the tail both run on two threads.
TEST(QuantFormats, ConvertingToItsOwnDtypeCopiesExactly) {
  ThreadPool pool(2);
  const int rows = 131, cols = 3 * kQuantBlock;
  const auto v = randn(size_t(rows) * cols, 52, 0.02f);
  for (DType t : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    const QuantMatrix m = make_matrix(v, rows, cols, t);
    const ConvertedTensor copy = convert_matrix(m.ref, t, pool, /*release_source=*/false);
    EXPECT_EQ(copy.data, m.storage.data) << dtype_name(t);
    EXPECT_EQ(copy.scales, m.storage.scales) << dtype_name(t);
    EXPECT_NE(copy.data.data(), m.storage.data.data());
  }
}

// matmul over a quantized W equals, row by row, the twin kernel on the same quantized activation, for
// a single row (decode) and several (prefill), with out_dim not a multiple of the task or dot block.
TEST(QuantKernels, MatmulMatchesTwinKernelForBothBatchShapes) {
  ThreadPool pool(2);
  const int out = 37, in = 3 * kQuantBlock;
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    const QuantMatrix w = make_matrix(randn(size_t(out) * in, 60, 0.02f), out, in, t);
    for (int n : {1, 5}) {
      const auto x = randn(size_t(n) * in, 61);
      std::vector<float> y(size_t(n) * out), scratch(matmul_scratch_floats(in, n, pool.size()));
      matmul(pool, x.data(), n, w.ref, y.data(), scratch.data());
      std::vector<int8_t> xq(static_cast<size_t>(in));
      std::vector<float> xd(size_t(in / kQuantBlock));
      for (int j = 0; j < n; ++j) {
        scalar::quantize_activation(x.data() + size_t(j) * in, in, xq.data(), xd.data());
        for (int o = 0; o < out; ++o) {
          float ref;
          scalar::dot_rows_quant(t, xq.data(), xd.data(),
                                 static_cast<const uint8_t*>(w.ref.data) + size_t(o) * row_bytes(t, in),
                                 w.ref.scales + size_t(o) * (in / kQuantBlock), 1, in, &ref);
          EXPECT_NEAR(y[size_t(j) * out + o], ref, 1e-5 * (std::fabs(ref) + 1.0))
              << dtype_name(t) << " n " << n << " o " << o;
        }
      }
    }
  }
}

// The head's soft-cap applied by the matmul's own tasks (cap > 0) gives exactly the uncapped matmul
// followed by softcap over the whole output, in every format and for both batch shapes; 37 rows end
// mid-task, and the values are scaled so that the cap (1.5) bends most of them.
TEST(QuantKernels, MatmulSoftcapEqualsSoftcapAfterwards) {
  ThreadPool pool(2);
  const int out = 37, in = 3 * kQuantBlock;
  const float cap = 1.5f;
  for (DType t : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    const QuantMatrix w = make_matrix(randn(size_t(out) * in, 90, 1.f), out, in, t);
    for (int n : {1, 4}) {
      const auto x = randn(size_t(n) * in, 91);
      std::vector<float> scratch(matmul_scratch_floats(in, n, pool.size()));
      std::vector<float> capped(size_t(n) * out), after(size_t(n) * out);
      matmul(pool, x.data(), n, w.ref, capped.data(), scratch.data(), cap);
      matmul(pool, x.data(), n, w.ref, after.data(), scratch.data());
      int bent = 0;
      for (float v : after) bent += std::fabs(v) > cap;
      EXPECT_GT(bent, n * out / 2) << "the test's values should mostly exceed the cap";
      softcap(after.data(), n * out, cap);
      EXPECT_EQ(capped, after) << dtype_name(t) << " n " << n;
      std::vector<float> shared(size_t(n) * out);
      matmul_shared_input(pool, x.data(), n, {{&w.ref, shared.data(), cap}}, scratch.data());
      EXPECT_EQ(shared, after) << dtype_name(t) << " n " << n << " (shared input)";
    }
  }
}

// Matrices sharing an input (K, V and Q; gate and up) give exactly what one matmul per matrix gives,
// in every format and for both batch shapes: decode runs them as one task list whose tasks never
// straddle two matrices, row counts chosen so they end mid-task (37, 5, 70 rows on two threads).
TEST(QuantKernels, SharedInputMatmulEqualsOneMatmulPerMatrix) {
  ThreadPool pool(2);
  const int in = 5 * kQuantBlock;
  const int outs[] = {37, 5, 70};
  for (DType t : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    std::vector<QuantMatrix> w;
    for (int i = 0; i < 3; ++i) w.push_back(make_matrix(randn(size_t(outs[i]) * in, 70 + i, 0.02f), outs[i], in, t));
    for (int n : {1, 4}) {
      const auto x = randn(size_t(n) * in, 73);
      std::vector<float> scratch(matmul_scratch_floats(in, n, pool.size()));
      std::vector<std::vector<float>> fused(3), alone(3);
      for (int i = 0; i < 3; ++i) {
        fused[size_t(i)].assign(size_t(n) * outs[i], 0.f);
        alone[size_t(i)].assign(size_t(n) * outs[i], 0.f);
        matmul(pool, x.data(), n, w[size_t(i)].ref, alone[size_t(i)].data(), scratch.data());
      }
      matmul_shared_input(pool, x.data(), n,
                          {{&w[0].ref, fused[0].data()}, {&w[1].ref, fused[1].data()}, {&w[2].ref, fused[2].data()}},
                          scratch.data());
      for (int i = 0; i < 3; ++i) EXPECT_EQ(fused[size_t(i)], alone[size_t(i)]) << dtype_name(t) << " n " << n << " matrix " << i;
    }
  }
  // Matrices of different widths cannot share an input: named.
  const QuantMatrix a = make_matrix(randn(size_t(4) * in, 80), 4, in, DType::F32);
  const QuantMatrix b = make_matrix(randn(size_t(4) * 2 * in, 81), 4, 2 * in, DType::F32);
  std::vector<float> x(size_t(2 * in)), y(8), scratch(matmul_scratch_floats(2 * in, 1, pool.size()));
  try {
    matmul_shared_input(pool, x.data(), 1, {{&a.ref, y.data()}, {&b.ref, y.data() + 4}}, scratch.data());
    ADD_FAILURE() << "no error for mismatched widths";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 320]"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- checkpoint pairing
class QuantCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("conflux_quant_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(QuantCheckpoint, PairsPackedTensorsWithTheirScales) {
  const int rows = 4, cols = 2 * kQuantBlock;
  const QuantMatrix q8 = make_matrix(randn(size_t(rows) * cols, 70, 0.02f), rows, cols, DType::Q8_0);
  const QuantMatrix q4 = make_matrix(randn(size_t(rows) * cols, 71, 0.02f), rows, cols, DType::Q4_0);
  const std::string file = (dir_ / "model.safetensors").string();
  write_safetensors(file, {{"a", DType::I8, {rows, cols}, q8.storage.data.data()},
                           {"a.scales", DType::F16, {rows, cols / kQuantBlock}, q8.storage.scales.data()},
                           {"b", DType::U8, {rows, cols / 2}, q4.storage.data.data()},
                           {"b.scales", DType::F16, {rows, cols / kQuantBlock}, q4.storage.scales.data()}});
  const Checkpoint ckpt(dir_.string());
  const TensorRef& a = ckpt.get("a");
  EXPECT_EQ(a.dtype, DType::Q8_0);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{rows, cols}));
  EXPECT_EQ(std::memcmp(a.scales, q8.storage.scales.data(), q8.storage.scales.size() * 2), 0);
  const TensorRef& b = ckpt.get("b");
  EXPECT_EQ(b.dtype, DType::Q4_0);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{rows, cols}));
  EXPECT_EQ(ckpt.find("a.scales"), nullptr);  // folded into "a"
  EXPECT_EQ(ckpt.names().size(), 2u);
  EXPECT_EQ(ckpt.total_bytes(), q8.ref.nbytes + q4.ref.nbytes);
}

TEST_F(QuantCheckpoint, ScalesThatDoNotFitAreNamed) {
  const std::vector<int8_t> data(4 * 64, 1);
  const std::vector<uint16_t> scales(4 * 3, 0x3c00);
  const std::string file = (dir_ / "model.safetensors").string();
  write_safetensors(file, {{"a", DType::I8, {4, 64}, data.data()}, {"a.scales", DType::F16, {4, 3}, scales.data()}});
  try {
    Checkpoint ckpt(dir_.string());
    FAIL() << "expected a CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("a.scales"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  write_safetensors(file, {{"orphan.scales", DType::F16, {4, 3}, scales.data()}});
  EXPECT_THROW(Checkpoint ckpt(dir_.string()), CheckpointError);
}

// ---------------------------------------------------------------- accuracy on tiny-a
const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";

struct Agreement {
  double max = 0, mean = 0;
  int rows = 0, top1_same = 0;
};

std::vector<float> case_logits(const Model& model, const EvalCase& c, DType kv = DType::F32) {
  RuntimeConfig rc;
  rc.kv_dtype = kv;
  rc.n_threads = 2;
  rc.max_context = 512;
  rc.max_chunk = 128;
  rc.image_attention = ImageAttention::AllLayers;
  Context ctx(model, rc);
  const InputSequence seq = build_case_sequence(ctx, c);
  std::vector<float> logits;
  feed_sequence(ctx, seq, {}, {}, logits);
  return logits;
}

// Measured on tiny-a, all four cases (239 logits rows: text, image, audio, mixed, so the embedding
// lookup, the tied head and the vision and audio projections are all in the format), against the same
// engine with the f32 weights (logits span about ±29: embed std 0.5, softcap 30; 12 random layers
// amplify per-weight rounding):
//   bf16  max 0.71  mean 0.043  top-1 239/239
//   q8    max 3.02  mean 0.177  top-1 239/239
//   q4    max 9.05  mean 1.11   top-1 239/239
// (q4 with the embedding kept q8, as llama.cpp's Q4_0 files do: mean 0.83, not worth its bytes.)
// The tolerances are about twice those figures (the run is deterministic; margin for other ISAs'
// summation order), and top-1 must agree on every row for bf16 and q8, on 95% for q4.
struct FormatTolerance {
  WeightFormat format;
  double max, mean, min_top1;
};

TEST(QuantAccuracy, EveryFormatStaysCloseToF32OnTinyA) {
  const auto f32 = Model::load(kTinyA);
  const int V = f32->config().text.vocab_size;
  std::vector<EvalCase> cases;
  std::vector<std::vector<float>> base;
  for (const char* name : {"text", "image", "audio", "mixed"}) {
    cases.push_back(load_case(kTinyA + "/cases/" + name + ".json"));
    base.push_back(case_logits(*f32, cases.back()));
  }
  const FormatTolerance formats[] = {
      {WeightFormat::BF16, 1.5, 0.1, 1.0}, {WeightFormat::Q8_0, 6.0, 0.4, 1.0}, {WeightFormat::Q4_0, 18.0, 2.5, 0.95}};
  for (const FormatTolerance& f : formats) {
    LoadOptions opt;
    opt.format = f.format;
    const auto m = Model::load(kTinyA, opt);
    EXPECT_EQ(m->weights().layers[0].q_proj.ref.dtype, weight_format_dtype(f.format));
    EXPECT_EQ(m->weights().embed_tokens.ref.dtype, weight_format_dtype(f.format));
    EXPECT_EQ(m->weights().vision.projection.ref.dtype, weight_format_dtype(f.format));
    EXPECT_EQ(m->weights().audio.projection.ref.dtype, weight_format_dtype(f.format));
    Agreement a;
    double sum = 0;
    size_t count = 0;
    for (size_t c = 0; c < cases.size(); ++c) {
      const std::vector<float> got = case_logits(*m, cases[c]);
      ASSERT_EQ(got.size(), base[c].size());
      for (size_t i = 0; i < got.size(); ++i) {
        const double e = std::fabs(double(got[i]) - base[c][i]);
        a.max = std::max(a.max, e);
        sum += e;
      }
      count += got.size();
      for (size_t r = 0; r < got.size() / size_t(V); ++r) {
        const float* g = got.data() + r * size_t(V);
        const float* b = base[c].data() + r * size_t(V);
        a.top1_same += (std::max_element(g, g + V) - g) == (std::max_element(b, b + V) - b);
        ++a.rows;
      }
    }
    a.mean = sum / double(count);
    const double top1 = double(a.top1_same) / a.rows;
    std::printf("[accuracy %s vs f32] max %.4f mean %.5f top-1 %d/%d (%.1f%%) weights %zu bytes\n",
                weight_format_name(f.format), a.max, a.mean, a.top1_same, a.rows, 100.0 * top1, m->weight_bytes());
    EXPECT_LE(a.max, f.max) << weight_format_name(f.format);
    EXPECT_LE(a.mean, f.mean) << weight_format_name(f.format);
    EXPECT_GE(top1, f.min_top1) << weight_format_name(f.format);
    EXPECT_GT(a.mean, 0.0) << "the format changed nothing: was it applied?";
  }
}

// Loading copies every matrix into owned memory unless map_weights asks to read them in place from
// the file mapping; both give the same logits to the bit (the same bytes, the same kernels).
TEST(QuantAccuracy, CopiedAndMappedWeightsGiveIdenticalLogits) {
  LoadOptions mapped_opt;
  mapped_opt.map_weights = true;
  const auto copied = Model::load(kTinyA);
  const auto mapped = Model::load(kTinyA, mapped_opt);
  EXPECT_TRUE(mapped->weights().owned_matrices.empty());
  EXPECT_TRUE(mapped->weights_mapped());
  EXPECT_FALSE(copied->weights_mapped());
  // Weights larger than the copy limit (by default 90% of MemAvailable) stay in the mapping.
  LoadOptions tight;
  tight.copy_limit_bytes = copied->weight_bytes() - 1;
  const auto too_big = Model::load(kTinyA, tight);
  EXPECT_TRUE(too_big->weights_mapped());
  EXPECT_TRUE(too_big->weights().owned_matrices.empty());
  // tiny-a's convertible matrices: 7 per layer (k_eq_v layers have no v_proj), the embedding, the two
  // embedder projections; every one is owned after a copying load.
  EXPECT_GE(copied->weights().owned_matrices.size(), size_t(3 + 6 * copied->config().text.num_layers));
  EXPECT_NE(copied->weights().layers[0].q_proj.ref.data, mapped->weights().layers[0].q_proj.ref.data);
  EXPECT_EQ(copied->weight_bytes(), mapped->weight_bytes());
  const EvalCase c = load_case(kTinyA + "/cases/mixed.json");
  const std::vector<float> a = case_logits(*copied, c), b = case_logits(*mapped, c);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

// A bf16 KV cache (RuntimeConfig::kv_dtype) against the f32 one, f32 weights, all four tiny-a cases.
// Measured: max 0.54, mean 0.022, every top-1 the same (bf16 keys/values carry 8 bits of mantissa;
// compare bf16 weights: max 0.71, mean 0.043); tolerances about twice that. The cache holds half the bytes.
TEST(QuantAccuracy, Bf16KvCacheStaysCloseToF32OnTinyA) {
  const auto model = Model::load(kTinyA);
  const int V = model->config().text.vocab_size;
  double max_diff = 0, sum = 0;
  size_t count = 0;
  int rows = 0, same = 0;
  for (const char* name : {"text", "image", "audio", "mixed"}) {
    const EvalCase c = load_case(kTinyA + "/cases/" + name + ".json");
    const std::vector<float> f32 = case_logits(*model, c), bf16 = case_logits(*model, c, DType::BF16);
    ASSERT_EQ(f32.size(), bf16.size());
    for (size_t i = 0; i < f32.size(); ++i) {
      const double e = std::fabs(double(f32[i]) - bf16[i]);
      max_diff = std::max(max_diff, e);
      sum += e;
    }
    count += f32.size();
    for (size_t r = 0; r < f32.size() / size_t(V); ++r, ++rows) {
      const float* a = f32.data() + r * size_t(V);
      const float* b = bf16.data() + r * size_t(V);
      same += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
    }
  }
  const double mean = sum / double(count);
  std::printf("[bf16 KV cache vs f32] max %.4f mean %.5f top-1 %d/%d\n", max_diff, mean, same, rows);
  EXPECT_GT(mean, 0.0);
  EXPECT_LE(max_diff, 1.2);
  EXPECT_LE(mean, 0.05);
  EXPECT_EQ(same, rows);
  RuntimeConfig rc;
  rc.max_context = 64;
  rc.max_chunk = 16;
  Context f32_ctx(*model, rc);
  rc.kv_dtype = DType::BF16;
  Context bf16_ctx(*model, rc);
  EXPECT_EQ(bf16_ctx.kv_bytes() * 2, f32_ctx.kv_bytes());

  // Eviction re-rotates the cached keys through f32 staging: a bf16 cache follows the f32 one.
  std::vector<int32_t> ids(48);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(10 + (i * 37) % 400);
  std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
  f32_ctx.decode_tokens(ids.data(), 40, nullptr);
  bf16_ctx.decode_tokens(ids.data(), 40, nullptr);
  f32_ctx.evict(4, 14);
  bf16_ctx.evict(4, 14);
  f32_ctx.decode_tokens(ids.data() + 40, 8, a.data());
  bf16_ctx.decode_tokens(ids.data() + 40, 8, b.data());
  double evict_max = 0;
  for (int i = 0; i < V; ++i) evict_max = std::max(evict_max, std::fabs(double(a[size_t(i)]) - b[size_t(i)]));
  EXPECT_LE(evict_max, 1.2);
  EXPECT_EQ(std::max_element(a.begin(), a.end()) - a.begin(), std::max_element(b.begin(), b.end()) - b.begin());
}

// What a plain x86-64 CPU runs: the whole model on the scalar kernels (every format, the text and
// mixed cases) against the SIMD kernels, which differ in summation order only. For f32 and bf16 that
// stays below 0.01 (tolerance 0.02). With q8/q4 an activation that lands on a rounding boundary can
// quantize one step apart, and 12 random layers amplify it: measured up to 0.52 (a sixth of q8's own
// error against f32), tolerance 1.0; every top-1 must agree.
TEST(QuantAccuracy, ScalarKernelsRunTheModelInEveryFormat) {
  IsaGuard guard;
  double worst = 0;
  for (WeightFormat f : {WeightFormat::F32, WeightFormat::BF16, WeightFormat::Q8_0, WeightFormat::Q4_0}) {
    LoadOptions opt;
    opt.format = f;
    const auto m = Model::load(kTinyA, opt);
    for (const char* name : {"text", "mixed"}) {
      const EvalCase c = load_case(kTinyA + "/cases/" + name + ".json");
      detail::force_isa(detail::detected_isa());
      const std::vector<float> simd = case_logits(*m, c);
      detail::force_isa(detail::Isa::Scalar);
      const std::vector<float> plain = case_logits(*m, c);
      ASSERT_EQ(simd.size(), plain.size());
      double max_diff = 0;
      for (size_t i = 0; i < simd.size(); ++i) max_diff = std::max(max_diff, std::fabs(double(simd[i]) - plain[i]));
      worst = std::max(worst, max_diff);
      const bool quantized = f == WeightFormat::Q8_0 || f == WeightFormat::Q4_0;
      EXPECT_LE(max_diff, quantized ? 1.0 : 0.02) << weight_format_name(f) << " " << name;
      const int V = m->config().text.vocab_size;
      for (size_t r = 0; r < simd.size() / size_t(V); ++r) {
        const float* a = simd.data() + r * size_t(V);
        const float* b = plain.data() + r * size_t(V);
        EXPECT_EQ(std::max_element(a, a + V) - a, std::max_element(b, b + V) - b) << weight_format_name(f) << " row " << r;
      }
    }
  }
  std::printf("[scalar vs simd kernels] max %.2g\n", worst);
}

}  // namespace
}  // namespace conflux
