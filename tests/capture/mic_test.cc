// Tests for the microphone path in capture/: the SPSC ring (including a two-thread stress test), the
// libsoxr resampler against analytically computed signals, and Microphone against the REAL PortAudio
// reading a file-fed ALSA device (docs: platform-notes.md). Each Microphone test writes its own ALSA
// config and raw input files in a temporary directory and points ALSA_CONFIG_PATH at it before PortAudio
// initialises; Microphone's destructor terminates PortAudio, and the next Pa_Initialize re-reads ALSA's
// configuration (checked by hand: two configs in one process each delivered their own file), so every
// test sees its own device. The file plugin is not paced to real time: the whole file arrives in
// milliseconds, so rings are sized to hold what a test compares; after the end of the file the plugin
// repeats stale data, so files are padded with silence and only an exact count is compared.
#include <gtest/gtest.h>
#include <portaudio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <limits>
#include <numbers>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "capture/microphone.h"
#include "capture/resampler.h"
#include "capture/spsc_ring.h"
#include "tests/capture/alsa_fixture.h"
#include "tests/support/allocation_counter.h"

namespace conflux::capture {

// Reaches into Microphone for the two things a test cannot do through the public API: drive the
// real-time callback body directly (to count its allocations and overflows deterministically) and stop
// the PortAudio stream behind the class's back, which is what a vanished device looks like to it.
struct MicrophoneTestAccess {
  static void feed_device_buffer(Microphone& mic, const void* input, unsigned long frames, double adc_time) {
    mic.on_device_buffer(input, frames, adc_time, false);
  }
  static void abort_stream(Microphone& mic) {
    std::lock_guard<std::mutex> lock(mic.stream_control_mutex_);
    Pa_AbortStream(static_cast<PaStream*>(mic.stream_));
  }
};

namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;
using testing_support::g_allocation_count;
using testing_support::g_count_allocations;

constexpr double kOutputRate = Microphone::kOutputSampleRate;
// One 16 kHz sample is 62.5 us = 62500 ns exactly, so chunk times on the sample clock are exact in ns.
constexpr auto kOutputSamplePeriod = std::chrono::nanoseconds(62500);

// ---- SpscRing ------------------------------------------------------------------------------------

TEST(SpscRing, CapacityRoundsUpToAPowerOfTwo) {
  EXPECT_EQ(SpscRing<int>(1).capacity(), 1u);
  EXPECT_EQ(SpscRing<int>(5).capacity(), 8u);
  EXPECT_EQ(SpscRing<int>(8).capacity(), 8u);
  EXPECT_EQ(SpscRing<int>(1000).capacity(), 1024u);
  EXPECT_THROW(SpscRing<int>(0), std::invalid_argument);
}

TEST(SpscRing, BulkPushIsAllOrNothingAndFailsWhenFull) {
  SpscRing<int> ring(8);
  const int first[5] = {1, 2, 3, 4, 5};
  const int second[4] = {6, 7, 8, 9};
  EXPECT_TRUE(ring.push(first, 5));
  EXPECT_EQ(ring.free_space(), 3u);
  EXPECT_FALSE(ring.push(second, 4)) << "4 items do not fit in 3 free slots";
  EXPECT_EQ(ring.size(), 5u) << "a failed push must not store part of the block";
  EXPECT_TRUE(ring.push(second, 3));
  EXPECT_FALSE(ring.push(10)) << "the ring is full";
  int out[8] = {};
  ASSERT_EQ(ring.pop(out, 8), 8u);
  const int expected[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[i], expected[i]) << "at " << i;
  EXPECT_TRUE(ring.empty());
  EXPECT_EQ(ring.pop(out, 8), 0u);
}

TEST(SpscRing, PeekKeepsItemsAndDiscardDropsThem) {
  SpscRing<int> ring(4);
  const int items[3] = {7, 8, 9};
  ASSERT_TRUE(ring.push(items, 3));
  int out[4] = {};
  EXPECT_EQ(ring.peek(out, 2), 2u);
  EXPECT_EQ(out[0], 7);
  EXPECT_EQ(out[1], 8);
  EXPECT_EQ(ring.size(), 3u) << "peek must not remove";
  EXPECT_EQ(ring.discard(1), 1u);
  EXPECT_EQ(ring.peek(out, 4), 2u);
  EXPECT_EQ(out[0], 8);
  EXPECT_EQ(out[1], 9);
}

TEST(SpscRing, WrapsAroundTheEndOfItsStorage) {
  // Blocks of 3 in a ring of 8 start at every offset, so many of them straddle the end of the storage.
  SpscRing<uint32_t> ring(8);
  uint32_t next_in = 0, next_out = 0;
  for (int round = 0; round < 100; ++round) {
    const uint32_t block[3] = {next_in, next_in + 1, next_in + 2};
    ASSERT_TRUE(ring.push(block, 3));
    next_in += 3;
    uint32_t out[3];
    ASSERT_EQ(ring.pop(out, 3), 3u);
    for (uint32_t v : out) ASSERT_EQ(v, next_out++);
  }
}

TEST(SpscRing, TwoThreadStressDeliversEveryItemInOrder) {
  // A multi-word item: a torn or reordered copy shows up as a check value that does not match.
  struct Item {
    uint64_t sequence;
    uint64_t check;
  };
  constexpr uint64_t kItems = 3'000'000;
  constexpr uint64_t kCheckMultiplier = 0x9E3779B97F4A7C15ull;  // any odd constant: a bijection on 2^64
  constexpr size_t kMaxPushBlock = 37, kMaxPopBlock = 53;     // co-prime with the capacity and each other
  SpscRing<Item> ring(1024);

  std::atomic<uint64_t> full_rejections{0};
  std::thread producer([&] {
    std::minstd_rand block_sizes(1);
    Item block[kMaxPushBlock];
    uint64_t next = 0;
    while (next < kItems) {
      const size_t count = std::min<uint64_t>(1 + block_sizes() % kMaxPushBlock, kItems - next);
      for (size_t i = 0; i < count; ++i) block[i] = {next + i, (next + i) * kCheckMultiplier};
      while (!ring.push(block, count)) {
        full_rejections.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::yield();
      }
      next += count;
    }
  });

  std::minstd_rand block_sizes(2);
  Item out[kMaxPopBlock];
  uint64_t expected = 0, bad = 0;
  while (expected < kItems) {
    const size_t got = ring.pop(out, 1 + block_sizes() % kMaxPopBlock);
    if (got == 0) std::this_thread::yield();
    for (size_t i = 0; i < got; ++i, ++expected) {
      if (out[i].sequence != expected || out[i].check != expected * kCheckMultiplier) ++bad;
    }
  }
  producer.join();
  EXPECT_EQ(bad, 0u) << "items lost, duplicated, reordered or torn";
  EXPECT_EQ(expected, kItems);
  EXPECT_TRUE(ring.empty()) << "nothing may arrive beyond the last item pushed";
  std::printf("[ stress  ] %llu items, producer found the ring full %llu times\n",
              static_cast<unsigned long long>(kItems), static_cast<unsigned long long>(full_rejections.load()));
}

// ---- signals -------------------------------------------------------------------------------------

// Random float32 samples plus values a conversion would disturb: -0, the smallest denormal, +-1.
std::vector<float> random_samples(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> samples(count);
  for (float& s : samples) s = uniform(generator);
  const float specials[] = {-0.0f, std::numeric_limits<float>::denorm_min(), 1.0f, -1.0f};
  for (size_t i = 0; i < std::size(specials) && i < count; ++i) samples[count / 2 + i] = specials[i];
  return samples;
}

// Tones inside the 16 kHz passband (soxr HQ keeps 0..0.913 x 8 kHz = 7.3 kHz flat); amplitudes sum to 0.9
// so the signal never clips.
struct Tone {
  double amplitude;
  double frequency_hz;
};
const std::vector<Tone> kTestTones = {{0.4, 440.0}, {0.3, 2500.0}, {0.2, 6000.0}};
constexpr double kTestTonesPeak = 0.9;

double tones_at(const std::vector<Tone>& tones, double t) {
  double value = 0;
  for (const Tone& tone : tones) value += tone.amplitude * std::sin(2 * std::numbers::pi * tone.frequency_hz * t);
  return value;
}

std::vector<float> sample_tones(const std::vector<Tone>& tones, double rate, size_t count) {
  std::vector<float> samples(count);
  for (size_t i = 0; i < count; ++i) samples[i] = static_cast<float>(tones_at(tones, static_cast<double>(i) / rate));
  return samples;
}

// How well `y` (at 16 kHz) matches the tones over [first, last): the delay (in output samples) that
// best aligns them, found by golden-section search on the squared error, and the errors at that delay.
struct ToneFit {
  double delay_samples = 0;
  double max_error = 0;
  double rms_error = 0;
};

ToneFit fit_tones(const std::vector<float>& y, const std::vector<Tone>& tones, size_t first, size_t last) {
  auto squared_error = [&](double delay) {
    double sum = 0;
    for (size_t k = first; k < last; ++k) {
      const double e = y[k] - tones_at(tones, (static_cast<double>(k) - delay) / kOutputRate);
      sum += e * e;
    }
    return sum;
  };
  // The delay is searched in +-2 samples: soxr compensates its filter delay, so anything near that
  // edge is already a failure. 60 golden-section steps shrink the bracket by 0.618^60 ~ 3e-13.
  constexpr double kSearchHalfWidth = 2.0;
  constexpr int kSteps = 60;
  const double inv_phi = (std::sqrt(5.0) - 1) / 2;
  double lo = -kSearchHalfWidth, hi = kSearchHalfWidth;
  double a = hi - inv_phi * (hi - lo), b = lo + inv_phi * (hi - lo);
  double fa = squared_error(a), fb = squared_error(b);
  for (int step = 0; step < kSteps; ++step) {
    if (fa < fb) {
      hi = b, b = a, fb = fa;
      a = hi - inv_phi * (hi - lo), fa = squared_error(a);
    } else {
      lo = a, a = b, fa = fb;
      b = lo + inv_phi * (hi - lo), fb = squared_error(b);
    }
  }
  ToneFit fit;
  fit.delay_samples = (lo + hi) / 2;
  double sum = 0;
  for (size_t k = first; k < last; ++k) {
    const double e = std::fabs(y[k] - tones_at(tones, (static_cast<double>(k) - fit.delay_samples) / kOutputRate));
    fit.max_error = std::max(fit.max_error, e);
    sum += e * e;
  }
  fit.rms_error = std::sqrt(sum / static_cast<double>(last - first));
  return fit;
}

// Tolerances for resampled tones, from soxr's own specification of its HQ/VHQ recipes:
// - passband rolloff at most 0.01 dB (SOXR_ROLLOFF_SMALL): a relative gain error of 10^(0.01/20) - 1
//   = 1.15e-3 on each tone, i.e. at most 0.9 x 1.15e-3 = 1.04e-3 on their sum;
// - 20-bit precision (HQ): everything else (aliasing, imaging, noise) below 2^-20 = 9.5e-7 of full scale.
// (Measured: 2.6e-7 for 48 kHz -> 16 kHz, where the 3:1 ratio is exact; 1.1e-4 for 44.1 kHz, whose
// filter shows its 0.002 dB rolloff at 6 kHz.)
const double kResampledToneTolerance = kTestTonesPeak * (std::pow(10.0, 0.01 / 20) - 1) + std::ldexp(1.0, -20);
// soxr's filters are linear phase and it removes their group delay, so the best-fit delay is ~0; 0.01
// output samples (0.6 us) is far above what the fit resolves on 14 000 samples (measured: < 1e-5).
constexpr double kDelayToleranceSamples = 0.01;
// The tones start and stop abruptly, which no band-limited filter reproduces: the output rings for
// about one filter length around each edge. Measured at 48 kHz HQ: the error is below 1e-6 from 100
// output samples on; 800 (50 ms) keeps a wide margin for the other ratios and VHQ's longer filter.
constexpr size_t kEdgeTransientSamples = 800;

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

// ---- Resampler (no device) -----------------------------------------------------------------------

TEST(Resampler, SixteenKilohertzInputPassesThroughBitExact) {
  Resampler resampler(kOutputRate, kOutputRate);
  EXPECT_TRUE(resampler.is_passthrough());
  const std::vector<float> input = random_samples(5000, 11);
  std::vector<float> output;
  resampler.process(input.data(), 1234, output);
  resampler.process(input.data() + 1234, input.size() - 1234, output);
  resampler.flush(output);
  ASSERT_EQ(output.size(), input.size());
  for (size_t i = 0; i < input.size(); ++i) ASSERT_TRUE(same_bits(output[i], input[i])) << "sample " << i;
}

void expect_resampled_tones_match(double input_rate, Resampler::Quality quality) {
  const size_t signal_frames = static_cast<size_t>(input_rate);  // one second
  std::vector<float> input = sample_tones(kTestTones, input_rate, signal_frames);
  input.resize(signal_frames + signal_frames / 2, 0.0f);  // half a second of silence after the tones
  Resampler resampler(input_rate, kOutputRate, quality);
  EXPECT_FALSE(resampler.is_passthrough());
  std::vector<float> output;
  // Irregular block sizes, as a device delivers them.
  std::minstd_rand block_sizes(3);
  for (size_t at = 0; at < input.size();) {
    const size_t count = std::min<size_t>(1 + block_sizes() % 700, input.size() - at);
    resampler.process(input.data() + at, count, output);
    at += count;
  }
  const double latency = resampler.pending_output_samples();
  resampler.flush(output);
  const double expected_count = static_cast<double>(input.size()) * kOutputRate / input_rate;
  EXPECT_NEAR(static_cast<double>(output.size()), expected_count, 1.0) << "one output per 1/16000 s of input";

  const size_t signal_output = static_cast<size_t>(kOutputRate);
  const ToneFit fit = fit_tones(output, kTestTones, kEdgeTransientSamples, signal_output - kEdgeTransientSamples);
  EXPECT_NEAR(fit.delay_samples, 0.0, kDelayToleranceSamples);
  EXPECT_LE(fit.max_error, kResampledToneTolerance);
  std::printf("[ soxr    ] %g Hz -> 16 kHz %s: delay %.2e samples, max error %.2e, rms %.2e, latency %.0f samples\n",
              input_rate, quality == Resampler::Quality::kHigh ? "HQ" : "VHQ", fit.delay_samples, fit.max_error,
              fit.rms_error, latency);
}

TEST(Resampler, From48kHzMatchesTheAnalyticSignal) { expect_resampled_tones_match(48000, Resampler::Quality::kHigh); }
TEST(Resampler, From44k1HzMatchesTheAnalyticSignal) { expect_resampled_tones_match(44100, Resampler::Quality::kHigh); }
TEST(Resampler, VeryHighQualityFrom48kHzMatchesTheAnalyticSignal) {
  expect_resampled_tones_match(48000, Resampler::Quality::kVeryHigh);
}

TEST(Resampler, OutputDoesNotDependOnBlockSizesAndFlushRestartsCleanly) {
  const std::vector<float> input = random_samples(48000, 5);
  Resampler whole(48000, kOutputRate), pieces(48000, kOutputRate);
  std::vector<float> from_whole, from_pieces;
  whole.process(input.data(), input.size(), from_whole);
  whole.flush(from_whole);
  std::minstd_rand block_sizes(9);
  for (size_t at = 0; at < input.size();) {
    const size_t count = std::min<size_t>(1 + block_sizes() % 300, input.size() - at);
    pieces.process(input.data() + at, count, from_pieces);
    at += count;
  }
  pieces.flush(from_pieces);
  ASSERT_EQ(from_whole.size(), from_pieces.size());
  for (size_t i = 0; i < from_whole.size(); ++i) ASSERT_TRUE(same_bits(from_whole[i], from_pieces[i])) << i;

  // After flush() the same resampler treats the next signal exactly as a new one would.
  std::vector<float> again;
  whole.process(input.data(), input.size(), again);
  whole.flush(again);
  ASSERT_EQ(again.size(), from_whole.size());
  for (size_t i = 0; i < again.size(); ++i) ASSERT_TRUE(same_bits(again[i], from_whole[i])) << i;
}

// ---- file-fed ALSA device ------------------------------------------------------------------------

// TempDir, write_raw and FileFedAlsa (the file-fed ALSA device) live in alsa_fixture.h.
using alsa_test::FileFedAlsa;
using alsa_test::TempDir;
using alsa_test::write_raw;

// Collects what the microphone delivers; tests wait on it from their own thread.
class ChunkCollector {
 public:
  struct Chunk {
    SteadyClock::time_point first_sample_time;
    size_t offset;  // index of its first sample in samples()
    size_t count;
  };

  Microphone::ChunkCallback callback() {
    return [this](const float* samples, size_t count, SteadyClock::time_point time) {
      if (before_first_chunk_) {
        before_first_chunk_();
        before_first_chunk_ = nullptr;
      }
      std::lock_guard<std::mutex> lock(mutex_);
      chunks_.push_back({time, samples_.size(), count});
      samples_.insert(samples_.end(), samples, samples + count);
      changed_.notify_all();
    };
  }
  // Runs once on the consumer thread before the first chunk is stored (e.g. to stall it).
  void set_before_first_chunk(std::function<void()> action) { before_first_chunk_ = std::move(action); }

  bool wait_for_samples(size_t count, std::chrono::seconds timeout = 20s) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return samples_.size() >= count; });
  }
  std::vector<float> samples() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return samples_;
  }
  std::vector<Chunk> chunks() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return chunks_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<float> samples_;
  std::vector<Chunk> chunks_;
  std::function<void()> before_first_chunk_;
};

MicrophoneConfig config_for(double rate, int channels, DeviceSampleFormat format, double ring_seconds) {
  MicrophoneConfig config;
  config.device_sample_rate = rate;
  config.channels = channels;
  config.sample_format = format;
  config.ring_seconds = ring_seconds;
  return config;
}

TEST(Microphone, SixteenKilohertzFloatDeviceDeliversTheFileBitExact) {
  constexpr size_t kSignal = 16000, kPadding = 4000;  // 1 s of samples, then 0.25 s of silence
  std::vector<float> file = random_samples(kSignal, 21);
  file.resize(kSignal + kPadding, 0.0f);
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "input.f32", file));

  ChunkCollector collector;
  // 4 s of ring holds the whole 1.25 s file: the unpaced device cannot overflow it before the
  // consumer has read every compared frame.
  Microphone mic(config_for(kOutputRate, 1, DeviceSampleFormat::kFloat32, 4.0), collector.callback());
  EXPECT_EQ(mic.device_name(), "default");
  EXPECT_EQ(mic.device_sample_rate(), kOutputRate);
  const SteadyClock::time_point before_start = SteadyClock::now();
  mic.start();
  ASSERT_TRUE(collector.wait_for_samples(file.size())) << "the device delivered too little";
  mic.stop();
  const SteadyClock::time_point after_stop = SteadyClock::now();

  const std::vector<float> got = collector.samples();
  ASSERT_GE(got.size(), file.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < file.size(); ++i) mismatches += !same_bits(got[i], file[i]);
  EXPECT_EQ(mismatches, 0u) << "a 16 kHz float32 device must arrive frame for frame, bit for bit";

  // Times: one anchor, then exactly 62.5 us per sample (all within the ring, so no gap can intervene).
  const std::vector<ChunkCollector::Chunk> chunks = collector.chunks();
  ASSERT_FALSE(chunks.empty());
  const SteadyClock::time_point t0 = chunks.front().first_sample_time;
  for (const auto& chunk : chunks) {
    if (chunk.offset + chunk.count > file.size()) break;
    EXPECT_EQ(chunk.first_sample_time - t0, chunk.offset * kOutputSamplePeriod) << "chunk at " << chunk.offset;
  }
  // The first sample was captured after start() began, give or take the device's input latency (which
  // PortAudio folds into the ADC time); no input path has half a second of it.
  constexpr auto kLatencyAllowance = 500ms;
  EXPECT_GE(t0, before_start - kLatencyAllowance);
  EXPECT_LE(t0, after_stop);

  const MicrophoneStats stats = mic.stats();
  // The file device is not paced: it delivered 1.25 s of audio in far less wall time, so its ADC clock
  // must lag the sample clock. The last buffer read starts no earlier than the file's end (we waited
  // for that many samples) less one buffer (PortAudio's are a few ms here; 0.1 s allowed), and its ADC
  // time is no later than stop(); so the lag is at least 1.25 s - 0.1 s - (stop - t0).
  const double file_seconds = static_cast<double>(file.size()) / kOutputRate;
  constexpr double kOneBufferAllowance_s = 0.1;
  const double wall_seconds = std::chrono::duration<double>(after_stop - t0).count();
  EXPECT_LE(stats.adc_minus_sample_clock_s, -(file_seconds - kOneBufferAllowance_s - wall_seconds));
  EXPECT_GT(stats.callbacks, 0u);
  EXPECT_GE(stats.device_frames, file.size());
  EXPECT_GE(stats.delivered_samples, file.size());
  EXPECT_EQ(stats.device_errors, 0u);
  std::printf("[ mic     ] %llu callbacks, %llu device frames, %llu delivered, %llu ring overflows after the "
              "file, ADC clock %.3f s behind the sample clock after %.3f s of wall time\n",
              static_cast<unsigned long long>(stats.callbacks), static_cast<unsigned long long>(stats.device_frames),
              static_cast<unsigned long long>(stats.delivered_samples),
              static_cast<unsigned long long>(stats.ring_overflows), -stats.adc_minus_sample_clock_s, wall_seconds);
}

TEST(Microphone, FortyEightKilohertzDeviceIsResampledToTheAnalyticSignal) {
  constexpr double kDeviceRate = 48000;
  const size_t signal_frames = static_cast<size_t>(kDeviceRate);  // 1 s of tones, then 0.5 s of silence
  std::vector<float> file = sample_tones(kTestTones, kDeviceRate, signal_frames);
  file.resize(signal_frames + signal_frames / 2, 0.0f);
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "input48k.f32", file));

  ChunkCollector collector;
  // 4 s of ring holds the 1.5 s file (see the 16 kHz test).
  Microphone mic(config_for(kDeviceRate, 1, DeviceSampleFormat::kFloat32, 4.0), collector.callback());
  mic.start();
  const size_t wanted = static_cast<size_t>(kOutputRate * 1.25);  // the tones plus some silence
  ASSERT_TRUE(collector.wait_for_samples(wanted));
  mic.stop();

  const std::vector<float> got = collector.samples();
  const size_t signal_output = static_cast<size_t>(kOutputRate);
  const ToneFit fit = fit_tones(got, kTestTones, kEdgeTransientSamples, signal_output - kEdgeTransientSamples);
  EXPECT_NEAR(fit.delay_samples, 0.0, kDelayToleranceSamples);
  EXPECT_LE(fit.max_error, kResampledToneTolerance);
  // After the tones the file is silent; away from the edge the output must be too (20-bit noise floor).
  const double silence_tolerance = std::ldexp(1.0, -20);
  for (size_t k = signal_output + kEdgeTransientSamples; k < wanted; ++k) {
    ASSERT_LE(std::fabs(got[k]), silence_tolerance) << "sample " << k;
  }
  std::printf("[ mic     ] 48 kHz device -> 16 kHz: delay %.2e samples, max error %.2e (tolerance %.2e), rms %.2e\n",
              fit.delay_samples, fit.max_error, kResampledToneTolerance, fit.rms_error);
}

TEST(Microphone, Int16DeviceDeliversEveryValueExactlyScaled) {
  // Every int16 value once, as a ramp; 65536 frames = 4.1 s at 16 kHz, then 0.1 s of silence.
  constexpr size_t kValues = 65536, kPadding = 1600;
  std::vector<int16_t> file(kValues + kPadding, 0);
  for (size_t i = 0; i < kValues; ++i) file[i] = static_cast<int16_t>(static_cast<int32_t>(i) - 32768);
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "input.s16", file));

  ChunkCollector collector;
  // 8 s of ring holds the 4.2 s file.
  Microphone mic(config_for(kOutputRate, 1, DeviceSampleFormat::kInt16, 8.0), collector.callback());
  mic.start();
  ASSERT_TRUE(collector.wait_for_samples(file.size()));
  mic.stop();

  const std::vector<float> got = collector.samples();
  size_t mismatches = 0;
  // v / 32768 is exact in float32 (a power-of-two scale of a 16-bit integer), so compare bits.
  for (size_t i = 0; i < file.size(); ++i) mismatches += !same_bits(got[i], static_cast<float>(file[i]) / 32768.0f);
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(got[0], -1.0f);
  EXPECT_EQ(got[kValues - 1], 32767.0f / 32768.0f);
}

TEST(Microphone, StereoDeviceIsMixedDownToTheMeanOfItsChannels) {
  constexpr size_t kFrames = 8000, kPadding = 1600;
  const std::vector<float> left = random_samples(kFrames, 31), right = random_samples(kFrames, 32);
  std::vector<float> interleaved(2 * (kFrames + kPadding), 0.0f);
  for (size_t i = 0; i < kFrames; ++i) interleaved[2 * i] = left[i], interleaved[2 * i + 1] = right[i];
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "stereo.f32", interleaved));

  ChunkCollector collector;
  Microphone mic(config_for(kOutputRate, 2, DeviceSampleFormat::kFloat32, 4.0), collector.callback());
  EXPECT_EQ(mic.device_channels(), 2);
  mic.start();
  ASSERT_TRUE(collector.wait_for_samples(kFrames));
  mic.stop();

  const std::vector<float> got = collector.samples();
  size_t mismatches = 0;
  // (l + r) * 0.5 is the mean; the scale by a power of two adds no rounding, so the bits must agree.
  for (size_t i = 0; i < kFrames; ++i) mismatches += !same_bits(got[i], (left[i] + right[i]) * 0.5f);
  EXPECT_EQ(mismatches, 0u);
}

TEST(Microphone, MissingDeviceNameThrowsNamingItAndListingTheDevices) {
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "silence.f32", std::vector<float>(1600, 0.0f)));
  MicrophoneConfig config;
  config.device = "no-such-microphone-42";
  try {
    Microphone mic(config, [](const float*, size_t, SteadyClock::time_point) {});
    FAIL() << "opening a device that does not exist must throw";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("no-such-microphone-42"), std::string::npos) << message;
    EXPECT_NE(message.find(FileFedAlsa::kNamedDevice), std::string::npos) << "lists what exists: " << message;
  }
  config.device = "9999";
  EXPECT_THROW(Microphone(config, [](const float*, size_t, SteadyClock::time_point) {}), std::runtime_error);
}

TEST(Microphone, ListsDevicesAndSelectsThemByNameOrIndex) {
  constexpr size_t kFrames = 1000, kPadding = 1600;
  std::vector<float> default_file(kFrames + kPadding, 0.0f), named_file(kFrames + kPadding, 0.0f);
  for (size_t i = 0; i < kFrames; ++i) default_file[i] = 0.25f, named_file[i] = -0.5f;
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "default.f32", default_file),
                   write_raw(dir.path() / "named.f32", named_file));

  const std::vector<DeviceInfo> devices = Microphone::list_devices();
  const auto named = std::find_if(devices.begin(), devices.end(),
                                  [](const DeviceInfo& d) { return d.name == FileFedAlsa::kNamedDevice; });
  ASSERT_NE(named, devices.end()) << "the config's named PCM must be listed";
  EXPECT_GT(named->max_input_channels, 0);
  EXPECT_GT(named->default_sample_rate, 0);
  EXPECT_TRUE(std::any_of(devices.begin(), devices.end(),
                          [](const DeviceInfo& d) { return d.is_default_input && d.name == "default"; }));

  // Which file arrives tells which device was opened.
  auto first_sample_from = [](const std::string& device) {
    MicrophoneConfig config = config_for(kOutputRate, 1, DeviceSampleFormat::kFloat32, 1.0);
    config.device = device;
    ChunkCollector collector;
    Microphone mic(config, collector.callback());
    mic.start();
    EXPECT_TRUE(collector.wait_for_samples(kFrames));
    mic.stop();
    const std::vector<float> got = collector.samples();
    return std::make_pair(mic.device_name(), got.empty() ? 0.0f : got.front());
  };
  EXPECT_EQ(first_sample_from(""), std::make_pair(std::string("default"), 0.25f));
  EXPECT_EQ(first_sample_from("TEST_MIC"), std::make_pair(std::string(FileFedAlsa::kNamedDevice), -0.5f))
      << "a case-insensitive substring selects the device";
  EXPECT_EQ(first_sample_from(std::to_string(named->index)),
            std::make_pair(std::string(FileFedAlsa::kNamedDevice), -0.5f));
}

TEST(Microphone, RingOverflowsAreCountedAndTheTimelineSkipsExactlyTheLostFrames) {
  // A ramp long enough that the unpaced device is still inside the file while the stalled consumer
  // catches up: value i * 2^-22 is exact in float32 for i < 2^24, so each sample names its own index.
  constexpr size_t kFrames = size_t{1} << 22, kPadding = 1600;
  std::vector<float> file(kFrames + kPadding, 0.0f);
  for (size_t i = 0; i < kFrames; ++i) file[i] = std::ldexp(static_cast<float>(i), -22);
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "ramp.f32", file));

  ChunkCollector collector;
  // Stall the consumer on its first chunk while a tiny ring (20 ms) fills: the device keeps delivering,
  // so buffers must be dropped and counted.
  collector.set_before_first_chunk([] { std::this_thread::sleep_for(20ms); });
  Microphone mic(config_for(kOutputRate, 1, DeviceSampleFormat::kFloat32, 0.02), collector.callback());
  mic.start();
  constexpr size_t kWanted = 20000;
  ASSERT_TRUE(collector.wait_for_samples(kWanted));
  mic.stop();

  const MicrophoneStats stats = mic.stats();
  EXPECT_GT(stats.ring_overflows, 0u);
  EXPECT_GT(stats.dropped_frames, 0u);

  // Every delivered sample must sit at its true place on the timeline: the index its time gives must
  // be the index its value encodes, across every gap.
  const std::vector<float> got = collector.samples();
  const std::vector<ChunkCollector::Chunk> chunks = collector.chunks();
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(got[0], 0.0f) << "the first buffer is never dropped (the ring starts empty)";
  const SteadyClock::time_point t0 = chunks.front().first_sample_time;
  size_t compared = 0, misplaced = 0, gaps = 0, expected_index = 0;
  for (const auto& chunk : chunks) {
    const auto since_start = chunk.first_sample_time - t0;
    ASSERT_EQ(since_start % kOutputSamplePeriod, SteadyClock::duration::zero()) << "times stay on the sample grid";
    const size_t first_index = static_cast<size_t>(since_start / kOutputSamplePeriod);
    ASSERT_GE(first_index, expected_index) << "time never runs backwards";
    gaps += first_index != expected_index;
    expected_index = first_index + chunk.count;
    for (size_t j = 0; j < chunk.count && first_index + j < kFrames; ++j, ++compared) {
      misplaced += !same_bits(got[chunk.offset + j], file[first_index + j]);
    }
  }
  EXPECT_GT(gaps, 0u) << "the stall must show as a jump in time";
  EXPECT_GT(compared, 0u);
  EXPECT_EQ(misplaced, 0u) << "a sample's time must match the frame it came from";
  std::printf("[ mic     ] stalled consumer: %llu buffers (%llu frames) dropped, %zu gaps, %zu samples checked\n",
              static_cast<unsigned long long>(stats.ring_overflows),
              static_cast<unsigned long long>(stats.dropped_frames), gaps, compared);
}

TEST(Microphone, RealTimeCallbackBodyNeverAllocatesAndCountsOverflows) {
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "silence.f32", std::vector<float>(1600, 0.0f)));
  // 0.1 s at 16 kHz = 1600 frames = 6400 bytes, rounded up to 8192 bytes = 2048 float frames.
  Microphone mic(config_for(kOutputRate, 1, DeviceSampleFormat::kFloat32, 0.1),
                 [](const float*, size_t, SteadyClock::time_point) {});
  constexpr unsigned long kBufferFrames = 256;
  constexpr int kBuffers = 10;  // 2560 frames: 8 buffers fill the 2048-frame ring, 2 overflow
  const std::vector<float> buffer(kBufferFrames, 0.5f);

  g_allocation_count = 0;
  g_count_allocations = true;  // the stream is not started: only this thread runs Microphone code
  for (int i = 0; i < kBuffers; ++i) {
    MicrophoneTestAccess::feed_device_buffer(mic, buffer.data(), kBufferFrames, 1.0 + i);
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocation_count.load(), 0) << "the PortAudio callback must not allocate";

  const MicrophoneStats stats = mic.stats();
  EXPECT_EQ(stats.callbacks, static_cast<uint64_t>(kBuffers));
  EXPECT_EQ(stats.device_frames, kBuffers * kBufferFrames);
  EXPECT_EQ(stats.ring_overflows, 2u);
  EXPECT_EQ(stats.dropped_frames, 2 * kBufferFrames);
}

TEST(Microphone, StreamStoppingByItselfIsReportedWithTheDeviceName) {
  std::vector<float> file(32000, 0.1f);
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "input.f32", file));

  std::mutex mutex;
  std::condition_variable reported;
  std::vector<std::pair<std::string, std::string>> errors;
  ChunkCollector collector;
  Microphone mic(config_for(kOutputRate, 1, DeviceSampleFormat::kFloat32, 4.0), collector.callback(),
                 [&](const std::string& device, const std::string& text) {
                   std::lock_guard<std::mutex> lock(mutex);
                   errors.emplace_back(device, text);
                   reported.notify_all();
                 });
  mic.start();
  ASSERT_TRUE(collector.wait_for_samples(1000));
  // What a vanished device looks like from here: PortAudio ends the stream without stop() being called.
  // (The file-fed device itself cannot fail mid-stream: a failing read of its input file is only logged.)
  MicrophoneTestAccess::abort_stream(mic);
  {
    std::unique_lock<std::mutex> lock(mutex);
    ASSERT_TRUE(reported.wait_for(lock, 5s, [&] { return !errors.empty(); })) << "no error was reported";
    EXPECT_EQ(errors.front().first, "default");
    EXPECT_NE(errors.front().second.find("stopped"), std::string::npos) << errors.front().second;
  }
  mic.stop();
  mic.stop();  // a second stop is harmless
  EXPECT_EQ(mic.stats().device_errors, 1u) << "reported once, and stopping a dead stream adds nothing";
  EXPECT_FALSE(mic.running());
}

TEST(Microphone, StopsCleanlyAndStartsAgain) {
  std::vector<float> file(16000, 0.2f);
  TempDir dir;
  FileFedAlsa alsa(write_raw(dir.path() / "input.f32", file));
  ChunkCollector collector;
  Microphone mic(config_for(kOutputRate, 1, DeviceSampleFormat::kFloat32, 1.0), collector.callback());
  mic.start();
  ASSERT_TRUE(collector.wait_for_samples(1000));
  mic.stop();
  const size_t after_first_run = collector.samples().size();
  EXPECT_EQ(mic.stats().delivered_samples, after_first_run) << "stop() delivers everything it counted";
  mic.stop();
  EXPECT_FALSE(mic.running());
  mic.start();
  EXPECT_TRUE(mic.running());
  EXPECT_TRUE(collector.wait_for_samples(after_first_run + 1000)) << "a restarted stream delivers again";
  mic.stop();
  EXPECT_EQ(mic.stats().device_errors, 0u);
}

}  // namespace
}  // namespace conflux::capture
