// Every SIMD kernel against its plain scalar twin, on odd sizes; small ops against their definitions.
#include "engine/ops.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "engine/dtype.h"
#include "engine/safetensors.h"
#include "tests/support/random.h"

namespace conflux {
namespace {

using testing_support::randn;

// Weights stored in `t`, plus the f32 values they really hold (after rounding to t).
struct StoredWeights {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

StoredWeights store(const std::vector<float>& v, DType t) {
  StoredWeights s;
  s.bytes.resize(v.size() * dtype_size(t));
  s.values.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::F32) {
      std::memcpy(s.bytes.data() + 4 * i, &v[i], 4);
      s.values[i] = v[i];
    } else {
      const uint16_t h = t == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(s.bytes.data() + 2 * i, &h, 2);
      s.values[i] = t == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return s;
}

// Runs `body` at every ISA level this CPU has (scalar, AVX2, AVX-512), so the AVX2 variants are
// checked on an AVX-512 machine too; restores the detected level afterwards.
template <class F>
void at_every_isa(F&& body) {
  for (detail::Isa isa : {detail::Isa::Scalar, detail::Isa::Avx2, detail::Isa::Avx512}) {
    if (isa > detail::detected_isa()) continue;
    detail::force_isa(isa);
    body(isa == detail::Isa::Avx512 ? "avx512" : isa == detail::Isa::Avx2 ? "avx2" : "scalar");
  }
  detail::force_isa(detail::detected_isa());
}

class DotRows : public ::testing::TestWithParam<std::tuple<DType, int>> {};

// SIMD sums in a different order than the double-precision scalar twin; for n terms of unit-variance
// products the float32 error grows like sqrt(n) * 2^-24 * |terms|: 1e-5 relative to sum(|x*w|) covers it.
TEST_P(DotRows, SimdMatchesScalarTwin) {
  const auto [t, n] = GetParam();
  const int rows = 4;
  const size_t stride = size_t(n) + 3;  // rows not packed: the stride is honoured
  const auto x = randn(size_t(n), 1);
  const StoredWeights w = store(randn(stride * rows, 2), t);
  at_every_isa([&](const char* isa) {
    for (int r = 1; r <= rows; ++r) {
      float simd[4], ref[4];
      float streamed[4];
      dot_rows(t, x.data(), w.bytes.data(), stride, r, n, simd);
      dot_rows_streaming(t, x.data(), w.bytes.data(), stride, r, n, streamed);
      scalar::dot_rows(t, x.data(), w.bytes.data(), stride, r, n, ref);
      for (int i = 0; i < r; ++i) {
        double mag = 0;
        for (int k = 0; k < n; ++k) mag += std::fabs(x[size_t(k)] * w.values[size_t(i) * stride + k]);
        EXPECT_NEAR(simd[i], ref[i], 1e-5 * mag + 1e-6)
            << isa << " dtype " << dtype_name(t) << " n " << n << " row " << i;
        EXPECT_NEAR(streamed[i], ref[i], 1e-5 * mag + 1e-6)
            << isa << " streaming, dtype " << dtype_name(t) << " n " << n;
      }
    }
  });
}

// The prefill tile against the scalar twin, full and partial tiles, odd lengths (masked tails).
TEST(Ops, DotTileMatchesScalarTwin) {
  at_every_isa([&](const char* isa) {
    for (int n : {1, 7, 16, 17, 33, 100, 257}) {
      const size_t ld = size_t(n) + 5;
      const auto x = randn(4 * ld, 11), w = randn(4 * ld, 12);
      for (int nx : {1, 3, 4})
        for (int nw : {2, 4}) {
          float y[4 * 6];
          dot_tile(x.data(), nx, w.data(), nw, ld, n, y, 6);
          for (int j = 0; j < nx; ++j) {
            float ref[4];
            scalar::dot_rows(DType::F32, x.data() + size_t(j) * ld, w.data(), ld, nw, n, ref);
            for (int r = 0; r < nw; ++r) {
              double mag = 0;
              for (int k = 0; k < n; ++k) mag += std::fabs(x[size_t(j) * ld + k] * w[size_t(r) * ld + k]);
              EXPECT_NEAR(y[j * 6 + r], ref[r], 1e-5 * mag + 1e-6) << isa << " " << n << " " << nx << "x" << nw;
            }
          }
        }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(OddSizes, DotRows,
                         ::testing::Combine(::testing::Values(DType::F32, DType::BF16, DType::F16),
                                            ::testing::Values(1, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 257, 1001)));

// Widening is exact: every f16 and bf16 value is an f32 value.
TEST(Ops, WidenMatchesConvertExactly) {
  at_every_isa([&](const char* isa) {
    for (DType t : {DType::BF16, DType::F16, DType::F32})
      for (size_t n : {1, 15, 16, 17, 100}) {
        const StoredWeights w = store(randn(n, 13), t);
        std::vector<float> got(n), want(n);
        widen_to_f32(t, w.bytes.data(), got.data(), n);
        convert_to_f32(t, w.bytes.data(), want.data(), n);
        EXPECT_EQ(got, want) << isa << " " << dtype_name(t) << " " << n;
      }
  });
}

TEST(Ops, KernelIsaIsReported) {
  const std::string isa = kernel_isa();
  EXPECT_TRUE(isa == "avx512-vnni" || isa == "avx512" || isa == "avx2" || isa == "scalar") << isa;
}

TEST(Ops, MatmulMatchesNaiveForAllDtypesAndBatchSizes) {
  ThreadPool pool(2);
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (int n : {1, 3}) {
      const int out = 37, in = 53;  // odd on purpose: partial task blocks and SIMD tails
      const auto x = randn(size_t(n) * in, 3);
      const StoredWeights w = store(randn(size_t(out) * in, 4), t);
      TensorRef ref;
      ref.dtype = t;
      ref.shape = {out, in};
      ref.data = w.bytes.data();
      std::vector<float> y(size_t(n) * out), scratch(matmul_scratch_floats(in, n, pool.size()));
      matmul(pool, x.data(), n, ref, y.data(), scratch.data());
      for (int j = 0; j < n; ++j)
        for (int o = 0; o < out; ++o) {
          double acc = 0, mag = 0;
          for (int i = 0; i < in; ++i) {
            acc += double(x[size_t(j) * in + i]) * w.values[size_t(o) * in + i];
            mag += std::fabs(double(x[size_t(j) * in + i]) * w.values[size_t(o) * in + i]);
          }
          EXPECT_NEAR(y[size_t(j) * out + o], acc, 1e-5 * mag + 1e-6) << dtype_name(t) << " n=" << n;
        }
    }
  }
}

TEST(Ops, AxpyAndDotMatchScalarTwins) {
  for (int n : {1, 9, 31, 64, 129}) {
    const auto a = randn(size_t(n), 5), b = randn(size_t(n), 6);
    double mag = 0;
    for (int i = 0; i < n; ++i) mag += std::fabs(a[size_t(i)] * b[size_t(i)]);
    EXPECT_NEAR(dot_f32(a.data(), b.data(), n), scalar::dot_f32(a.data(), b.data(), n), 1e-5 * mag + 1e-6);
    auto y1 = b, y2 = b;
    axpy(0.37f, a.data(), y1.data(), n);
    scalar::axpy(0.37f, a.data(), y2.data(), n);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(y1[size_t(i)], y2[size_t(i)], 1e-6f);  // one fma vs mul+add: 1 ulp
  }
}

// Float sums of up to 1001 unit-variance terms in another order: 1e-5 of Σ|x| covers the rounding.
TEST(Ops, StreamSumMatchesScalarTwin) {
  at_every_isa([&](const char* isa) {
    for (int n : {1, 31, 63, 64, 65, 129, 1001}) {
      const auto a = randn(size_t(n), 7);
      double mag = 0;
      for (float v : a) mag += std::fabs(v);
      EXPECT_NEAR(stream_sum(a.data(), size_t(n)), scalar::stream_sum(a.data(), size_t(n)), 1e-5 * mag)
          << isa << " " << n;
    }
  });
}

// The SIMD tanh (polynomial exp) against libm's: 2e-6 absolute on tanh in [-1, 1] (the polynomial's
// ~1e-7 plus the division and the sign trick's rounding), scaled by cap for softcap and by |x·b| for gelu.
TEST(Ops, SoftcapAndGeluMatchScalarTwins) {
  at_every_isa([&](const char* isa) {
    for (int n : {1, 7, 15, 16, 17, 33, 1001}) {
      auto y = randn(size_t(n), 8, 20.f);
      if (n > 2) y[1] = 0.f, y[2] = -500.f;  // zero and far into saturation
      auto ref = y;
      softcap(y.data(), n, 30.f);
      scalar::softcap(ref.data(), n, 30.f);
      for (int i = 0; i < n; ++i)
        EXPECT_NEAR(y[size_t(i)], ref[size_t(i)], 30.f * 2e-6f) << isa << " " << n << " " << i;
      const auto x = randn(size_t(n), 9, 3.f), b = randn(size_t(n), 10);
      auto a = x, a_ref = x;
      gelu_mul(a.data(), b.data(), n);
      scalar::gelu_mul(a_ref.data(), b.data(), n);
      // A tanh error e changes gelu(x)·b by 0.5·|x|·e·|b|.
      for (int i = 0; i < n; ++i)
        EXPECT_NEAR(a[size_t(i)], a_ref[size_t(i)], 0.5f * std::fabs(x[size_t(i)] * b[size_t(i)]) * 2e-6f + 1e-7f)
            << isa << " " << n << " " << i;
    }
  });
}

// Soft-capping a row in pieces gives exactly what one call over the whole row gives, at every ISA: the
// head's matmul caps each task's rows on its own, so a value's result may not depend on whether it fell
// in a vector body or a tail.
TEST(Ops, SoftcapIsTheSameInPiecesAsWhole) {
  at_every_isa([&](const char* isa) {
    const int n = 1001;
    const auto row = randn(size_t(n), 11, 20.f);
    auto whole = row;
    softcap(whole.data(), n, 30.f);
    for (int piece : {1, 3, 7, 16, 17, 40}) {
      auto pieces = row;
      for (int i = 0; i < n; i += piece) softcap(pieces.data() + i, std::min(piece, n - i), 30.f);
      EXPECT_EQ(pieces, whole) << isa << " pieces of " << piece;
    }
  });
}

// Attention over a run of slots against the scalar per-key twins (dot, axpy on the stored values), for
// f32 and bf16 entries: head sizes with and without the 256-, 64- and 16-float chunks, rows padded
// (stride > hd); 1e-5 of Σ|terms| for the summation order.
TEST(Ops, AttentionKernelsMatchPerKeyTwins) {
  at_every_isa([&](const char* isa) {
    for (DType t : {DType::F32, DType::BF16})
      for (int hd : {16, 32, 40, 64, 256, 512}) {
        const int nk = 37;
        const size_t stride = size_t(hd) + 16;
        const auto q = randn(size_t(hd), 14);
        const StoredWeights k = store(randn(stride * nk, 15), t), v = store(randn(stride * nk, 16), t);
        std::vector<float> sc(nk), out(size_t(hd), 0.5f), ref_out(size_t(hd), 0.5f);
        attention_scores(q.data(), k.bytes.data(), t, stride, nk, hd, sc.data());
        for (int i = 0; i < nk; ++i) {
          double mag = 0;
          for (int c = 0; c < hd; ++c) mag += std::fabs(q[size_t(c)] * k.values[size_t(i) * stride + c]);
          EXPECT_NEAR(sc[size_t(i)], scalar::dot_f32(q.data(), k.values.data() + size_t(i) * stride, hd), 1e-5 * mag)
              << isa << " " << dtype_name(t) << " " << hd;
        }
        softmax(sc.data(), nk);
        attention_values(sc.data(), v.bytes.data(), t, stride, nk, hd, out.data());  // accumulates onto 0.5
        for (int i = 0; i < nk; ++i)
          scalar::axpy(sc[size_t(i)], v.values.data() + size_t(i) * stride, ref_out.data(), hd);
        for (int c = 0; c < hd; ++c)
          EXPECT_NEAR(out[size_t(c)], ref_out[size_t(c)], 1e-5) << dtype_name(t) << " " << hd << " " << c;
      }
  });
}

TEST(Ops, RmsNormWithAndWithoutWeight) {
  const std::vector<float> x = {1.f, -2.f, 3.f};
  const std::vector<float> w = {0.5f, 1.f, 2.f};
  std::vector<float> y(3);
  const float eps = 1e-6f;
  const float inv = 1.f / std::sqrt((1.f + 4.f + 9.f) / 3.f + eps);
  rms_norm(x.data(), w.data(), y.data(), 3, eps);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(y[size_t(i)], x[size_t(i)] * inv * w[size_t(i)], 1e-6f);
  rms_norm(x.data(), nullptr, y.data(), 3, eps);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(y[size_t(i)], x[size_t(i)] * inv, 1e-6f);
  // An all-zero frame stays zero (the audio embedder relies on it).
  std::vector<float> z(640, 0.f);
  rms_norm(z.data(), nullptr, z.data(), 640, eps);
  for (float v : z) EXPECT_EQ(v, 0.f);
}

TEST(Ops, LayerNormUsesPopulationVariance) {
  const std::vector<float> x = {1.f, 2.f, 3.f, 4.f};
  const std::vector<float> w = {1.f, 1.f, 1.f, 1.f}, b = {0.f, 0.f, 0.f, 1.f};
  std::vector<float> y(4);
  layer_norm(x.data(), w.data(), b.data(), y.data(), 4, 1e-5f);
  const float inv = 1.f / std::sqrt(1.25f + 1e-5f);  // var = mean((x - 2.5)^2) = 1.25
  EXPECT_NEAR(y[0], -1.5f * inv, 1e-6f);
  EXPECT_NEAR(y[3], 1.5f * inv + 1.f, 1e-6f);
}

TEST(Ops, GeluTanhKnownValues) {
  EXPECT_EQ(gelu_tanh(0.f), 0.f);
  // gelu_tanh(1) = 0.5 * (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.841192
  EXPECT_NEAR(gelu_tanh(1.f), 0.8411920f, 1e-6f);
  EXPECT_NEAR(gelu_tanh(-3.f), -0.0036374f, 1e-6f);
}

TEST(Ops, RopeNeoxPairsHalvesAndLeavesNonRotatingPairs) {
  const int hd = 8, pairs = 2;  // proportional: pairs 0,1 rotate; 2,3 are identity
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> inv_freq = {1.f, 0.1f, 0.f, 0.f};
  const auto orig = x;
  rope_neox(x.data(), hd, pairs, inv_freq.data(), 3);
  for (int i = 0; i < pairs; ++i) {
    const double a = 3.0 * inv_freq[size_t(i)];
    EXPECT_NEAR(x[size_t(i)], orig[size_t(i)] * std::cos(a) - orig[size_t(i + 4)] * std::sin(a), 1e-6);
    EXPECT_NEAR(x[size_t(i + 4)], orig[size_t(i + 4)] * std::cos(a) + orig[size_t(i)] * std::sin(a), 1e-6);
  }
  for (int i : {2, 3, 6, 7}) EXPECT_EQ(x[size_t(i)], orig[size_t(i)]);
}

// The precomputed-angle rotation is the same arithmetic as rope_neox: bit-identical, at positions up to
// the 262144 of the position table and pair counts across the kPairsPerStep boundary.
TEST(Ops, RopeTableMatchesRopeNeoxExactly) {
  for (int pairs : {1, 63, 64, 65, 128}) {
    const int hd = 2 * pairs + 6;  // the last 3 pairs do not rotate
    std::vector<float> inv_freq(size_t(hd / 2), 0.f);
    for (int i = 0; i < pairs; ++i) inv_freq[size_t(i)] = float(std::pow(10000.0, -2.0 * i / hd));
    for (int64_t pos : {int64_t(0), int64_t(7), int64_t(262143)}) {
      const auto x = randn(size_t(hd), 30 + pairs);
      auto a = x, b = x;
      rope_neox(a.data(), hd, pairs, inv_freq.data(), pos);
      std::vector<float> cos_sin(size_t(2 * pairs));
      rope_angles(pairs, inv_freq.data(), pos, cos_sin.data());
      rope_neox_table(b.data(), hd, pairs, cos_sin.data());
      EXPECT_EQ(a, b) << pairs << " " << pos;
      if (pos > 0) EXPECT_NE(a, x);  // something rotated
    }
  }
}

// argmax against its scalar twin on odd sizes, with ties (the first wins), NaN (never wins), a maximum
// in the tail after the last full vector, and nothing above -inf (0).
TEST(Ops, ArgmaxMatchesScalarTwin) {
  at_every_isa([&](const char* isa) {
    for (int n : {1, 7, 15, 16, 17, 33, 262144 + 5}) {
      auto x = randn(size_t(n), 40 + n);
      EXPECT_EQ(argmax(x.data(), n), scalar::argmax(x.data(), n)) << isa << " " << n;
      if (n >= 17) {
        x[3] = NAN;
        x[size_t(n - 1)] = 100.f;  // in the tail
        EXPECT_EQ(argmax(x.data(), n), n - 1) << isa << " " << n;
        x[size_t(n / 2)] = 100.f;  // a tie earlier: the first wins
        EXPECT_EQ(argmax(x.data(), n), n / 2) << isa << " " << n;
        EXPECT_EQ(scalar::argmax(x.data(), n), n / 2);
      }
      std::vector<float> none(size_t(n), -INFINITY);
      none[0] = NAN;
      EXPECT_EQ(argmax(none.data(), n), 0) << isa << " " << n;
    }
  });
}

// softmax returns the log-sum-exp of its input, which merges softmaxes over parts of a row.
TEST(Ops, SoftmaxReturnsLogSumExp) {
  std::vector<float> x = {0.5f, -1.f, 2.f, 0.f};
  double sum = 0;
  for (float v : x) sum += std::exp(double(v));
  EXPECT_NEAR(softmax(x.data(), 4), std::log(sum), 1e-6);
  std::vector<float> none = {-INFINITY, -INFINITY};
  EXPECT_EQ(softmax(none.data(), 2), -INFINITY);
  EXPECT_EQ(softmax(none.data(), 0), -INFINITY);
}

TEST(Ops, SoftmaxAndSoftcap) {
  std::vector<float> x = {0.f, std::log(3.f), -INFINITY};
  softmax(x.data(), 3);
  EXPECT_NEAR(x[0], 0.25f, 1e-6f);
  EXPECT_NEAR(x[1], 0.75f, 1e-6f);
  EXPECT_EQ(x[2], 0.f);
  std::vector<float> y = {0.f, 30.f, -1000.f};
  softcap(y.data(), 3, 30.f);
  EXPECT_EQ(y[0], 0.f);
  EXPECT_NEAR(y[1], 30.f * std::tanh(1.f), 1e-5f);
  EXPECT_NEAR(y[2], -30.f, 1e-5f);
}

TEST(Dtype, ConversionsRoundTrip) {
  for (float f : {0.f, 1.f, -2.5f, 3.14159f, 65504.f, 6.1e-5f, 1e-7f}) {
    EXPECT_NEAR(f16_to_f32(f32_to_f16(f)), f, std::fabs(f) * 1e-3f + 6e-8f) << f;  // f16: 11-bit mantissa
    EXPECT_NEAR(bf16_to_f32(f32_to_bf16(f)), f, std::fabs(f) * 4e-3f) << f;        // bf16: 8-bit mantissa
  }
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
  EXPECT_EQ(f32_to_bf16(1.f), 0x3f80);
  EXPECT_EQ(f32_to_f16(1.f), 0x3c00);
}

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  ThreadPool pool(2);
  for (int n : {1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, [&](int t, int thread) {
      EXPECT_LT(thread, pool.size());
      hits[size_t(t)]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
}

// Each thread runs its own contiguous share of the tasks first, in order (one stream through a
// matmul's rows), and then helps with the others'. Task 0 (the caller's share) holds its thread until
// the seven other tasks are done, so the worker must run its share 4..7 in order and then steal the
// rest; whichever thread runs task 0, the worker's first four tasks are its own share in order.
TEST(ThreadPool, ThreadsRunTheirOwnShareFirstThenSteal) {
  ThreadPool pool(2);
  std::atomic<int> others_done{0};
  std::mutex mu;
  std::vector<int> ran[2];
  pool.parallel_for(8, [&](int t, int thread) {
    if (t == 0)
      while (others_done.load() < 7) std::this_thread::yield();
    {
      std::lock_guard<std::mutex> lock(mu);
      ran[thread].push_back(t);
    }
    if (t != 0) ++others_done;
  });
  ASSERT_GE(ran[1].size(), 4u);
  EXPECT_EQ(std::vector<int>(ran[1].begin(), ran[1].begin() + 4), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(ran[0].size() + ran[1].size(), 8u);
  EXPECT_THROW(pool.parallel_for(ThreadPool::kMaxTasks, [](int, int) {}), std::invalid_argument);
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// Thousands of back-to-back regions of few tasks, with a busy thread competing for the cores: every
// task of every region runs exactly once and no region leaks into the next (a late worker must not
// claim a task of a newer region).
TEST(ThreadPool, BackToBackRegionsUnderContention) {
  ThreadPool pool(2);
  std::atomic<bool> hog_running{true};
  std::thread hog([&] {
    volatile uint64_t x = 0;
    while (hog_running.load(std::memory_order_relaxed)) x = x + 1;
  });
  std::vector<int> counts(8);
  long wrong = 0;
  for (int region = 0; region < 20000; ++region) {
    const int n = 1 + region % 7;
    std::fill(counts.begin(), counts.end(), 0);
    pool.parallel_for(n, [&](int t, int) { __atomic_fetch_add(&counts[size_t(t)], 1, __ATOMIC_RELAXED); });
    for (int t = 0; t < 8; ++t) wrong += counts[size_t(t)] != (t < n ? 1 : 0);
  }
  hog_running = false;
  hog.join();
  EXPECT_EQ(wrong, 0);
}

// wake_workers gets a sleeping worker up without a region; it spins for a while, then sleeps again, and
// the next regions still run every task exactly once (a nudged worker must not re-run an old region).
TEST(ThreadPool, WakeWorkersGetsSleepersUpWithoutARegion) {
  ThreadPool pool(2);
  pool.parallel_for(4, [](int, int) {});
  // Waits up to 5 s (a loaded CI machine may deschedule the worker) for the sleeper count to reach `n`.
  auto wait_for_sleepers = [&](int n) {
    for (int i = 0; i < 5000 && pool.sleeping_workers() != n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return pool.sleeping_workers();
  };
  for (int round = 0; round < 3; ++round) {
    ASSERT_EQ(wait_for_sleepers(1), 1) << "the idle worker never went to sleep";
    const uint64_t wakeups = pool.worker_wakeups();
    pool.wake_workers();
    for (int i = 0; i < 5000 && pool.worker_wakeups() == wakeups; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_GT(pool.worker_wakeups(), wakeups) << "wake_workers left the worker asleep";
    std::vector<std::atomic<int>> hits(16);
    pool.parallel_for(16, [&](int t, int) { hits[size_t(t)]++; });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
  pool.wake_workers();  // the destructor stops a nudged worker too
}

}  // namespace
}  // namespace conflux
