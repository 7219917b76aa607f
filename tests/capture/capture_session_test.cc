// Real capture reaches the SESSION exactly: a file-fed ALSA device read by the real PortAudio through
// Microphone (16 kHz passthrough and 48 kHz through the soxr resampler), and a webm file made with
// gst-launch-1.0 decoded by MediaFile, each pushed into a real Session on the tiny-a model with the VAD
// disabled. A SessionRecorder sees every 640-sample frame and every sampled video frame the session took
// in, so the test compares what the session consumed with what the source holds: bit for bit where the
// path is lossless (passthrough, decoded samples, RGB frames), and against libsoxr run offline on the
// same file where it resamples. The ALSA fixture is shared with mic_test.cc (alsa_fixture.h, whose
// comment explains why files are padded with silence and an exact count is read).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "capture/media_file.h"
#include "capture/microphone.h"
#include "capture/resampler.h"
#include "engine/model.h"
#include "engine/session/recorder.h"
#include "engine/session/session.h"
#include "engine/tokenizer.h"
#include "tests/capture/alsa_fixture.h"

namespace conflux::capture {
namespace {

using namespace std::chrono_literals;
using alsa_test::FileFedAlsa;
using alsa_test::TempDir;
using alsa_test::write_raw;

const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
constexpr size_t kFrameSamples = 640;  // one session audio frame: 40 ms at 16 kHz
constexpr double kRate = Microphone::kOutputSampleRate;
// Session frame times are audio_t0 + n / 16000 s computed in double and cast to ns: exact to < 1 ns for
// these lengths; 1 us catches any real slip (one sample is 62.5 us).
constexpr auto kTimeRounding = 1us;

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

// Uniform noise in [-1, 1] plus values a careless conversion would disturb: -0, the smallest denormal, +-1.
std::vector<float> random_samples(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> samples(count);
  for (float& s : samples) s = uniform(generator);
  const float specials[] = {-0.0f, std::numeric_limits<float>::denorm_min(), 1.0f, -1.0f};
  for (size_t i = 0; i < std::size(specials); ++i) samples[count / 2 + i] = specials[i];
  return samples;
}

// Index of the first sample whose bits differ, or `count` when all agree.
size_t first_mismatch(const float* a, const float* b, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (!same_bits(a[i], b[i])) return i;
  return count;
}

// Everything the session consumed, as its recording hook sees it (called on the session thread; read
// by the test only after Session::stop()).
class CollectingRecorder : public SessionRecorder {
 public:
  void on_start(const std::string&, TimePoint) override { ++starts; }
  void on_audio_frame(const float* samples, size_t n, TimePoint input_time) override {
    frame_sizes.push_back(n);
    frame_times.push_back(input_time);
    audio.insert(audio.end(), samples, samples + n);
  }
  void on_video_frame(const ImageRGB& frame, TimePoint) override { video.push_back(frame); }
  void on_text(const std::string&, TimePoint) override {}
  void on_push_to_talk(bool, TimePoint) override {}
  void on_settings(const std::string&, TimePoint) override {}
  void on_event(const SessionEvent& e) override {
    if (e.kind == SessionEvent::Kind::Error) errors.push_back(e.text);
  }
  void on_stop() override { ++stops; }

  int starts = 0, stops = 0;
  std::vector<size_t> frame_sizes;
  std::vector<TimePoint> frame_times;
  std::vector<float> audio;
  std::vector<ImageRGB> video;
  std::vector<std::string> errors;
};

// Pushes the first `wanted` samples the microphone delivers into the session and ignores the rest (the
// file device repeats stale data after its file). Remembers each pushed chunk's time and offset.
class MicToSession {
 public:
  using SteadyClockTime = std::chrono::steady_clock::time_point;

  MicToSession(Session& session, size_t wanted) : session_(session), wanted_(wanted) {}

  Microphone::ChunkCallback callback() {
    return [this](const float* samples, size_t count, SteadyClockTime time) {
      size_t offset;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        offset = pushed_;
      }
      const size_t take = std::min(count, wanted_ - offset);
      if (take == 0) return;
      session_.push_audio(samples, take, time);
      std::lock_guard<std::mutex> lock(mutex_);
      chunk_times_.push_back(time);
      chunk_offsets_.push_back(offset);
      pushed_ += take;
      changed_.notify_all();
    };
  }
  bool wait_all(std::chrono::seconds timeout = 20s) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return pushed_ == wanted_; });
  }
  // Each pushed chunk sits on the microphone's sample clock at its offset: no gap, no overlap.
  void expect_contiguous_times() const {
    std::lock_guard<std::mutex> lock(mutex_);
    ASSERT_FALSE(chunk_times_.empty());
    for (size_t i = 0; i < chunk_times_.size(); ++i) {
      EXPECT_EQ(chunk_times_[i] - chunk_times_[0], static_cast<int64_t>(chunk_offsets_[i]) * std::chrono::nanoseconds(62500))
          << "chunk " << i << " at sample " << chunk_offsets_[i];
    }
  }
  SteadyClockTime first_time() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return chunk_times_.empty() ? SteadyClockTime{} : chunk_times_.front();
  }

 private:
  Session& session_;
  const size_t wanted_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  size_t pushed_ = 0;
  std::vector<SteadyClockTime> chunk_times_;
  std::vector<size_t> chunk_offsets_;
};

class CaptureSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Model::load(kTinyA).release();
    tokenizer_ = new Tokenizer(Tokenizer::load(kTinyA + "/tokenizer.json"));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
    model_ = nullptr;
    tokenizer_ = nullptr;
  }

  // VAD off: every frame the session takes in is appended to the KV cache, and no turn ever closes, so
  // no answer is generated. Every video frame passes the sampler (100 fps > any file's rate here) and a
  // full video queue makes the producer wait instead of dropping.
  static SessionConfig config(SessionRecorder* recorder) {
    SessionConfig c;
    c.image_budget = 70;
    c.video_fps = 100;
    c.vad.enabled = false;
    c.max_answer_tokens = 4;
    c.video_queue_waits = true;
    c.recorder = recorder;
    return c;
  }
  // 4096 positions (tiny-a's maximum): the media test's single open turn holds 50 images of <= 70 soft
  // tokens each plus their delimiters and 50 audio frames, ~3.8k positions, and nothing can be evicted.
  static RuntimeConfig runtime() {
    RuntimeConfig rc;
    rc.n_threads = 1;
    rc.max_context = 4096;
    rc.max_chunk = 128;
    return rc;
  }

  static MicrophoneConfig mic_config(double device_rate) {
    MicrophoneConfig config;
    config.device_sample_rate = device_rate;
    config.channels = 1;
    config.sample_format = DeviceSampleFormat::kFloat32;
    config.ring_seconds = 4.0;  // holds every file below whole: the unpaced device cannot overflow it early
    config.quality = Resampler::Quality::kHigh;
    return config;
  }

  // Runs `file` (mono float32 at `device_rate`) through the file-fed device and Microphone into a session,
  // pushing exactly `wanted` 16 kHz samples. Returns the session's final snapshot.
  static SessionSnapshot capture_into_session(const std::vector<float>& file, double device_rate, size_t wanted,
                                              CollectingRecorder& recorder, MicrophoneStats* stats_out) {
    TempDir dir;
    FileFedAlsa alsa(write_raw(dir.path() / "input.f32", file));
    Session session(*model_, *tokenizer_, runtime(), config(&recorder));
    session.start();
    MicToSession bridge(session, wanted);
    SessionSnapshot snap;
    {
      Microphone mic(mic_config(device_rate), bridge.callback());
      EXPECT_EQ(mic.device_sample_rate(), device_rate);
      mic.start();
      EXPECT_TRUE(bridge.wait_all()) << "the device delivered too little";
      mic.stop();
      if (stats_out) *stats_out = mic.stats();
    }
    bridge.expect_contiguous_times();
    session.wait_idle();
    snap = session.snapshot();
    session.stop();
    // The session's frame clock starts at the first pushed chunk's time and advances 40 ms per frame.
    const auto t0 = bridge.first_time();
    for (size_t j = 0; j < recorder.frame_times.size(); ++j) {
      const auto expected = t0 + static_cast<int64_t>(j) * std::chrono::milliseconds(40);
      EXPECT_LE(std::chrono::abs(recorder.frame_times[j] - expected), kTimeRounding) << "frame " << j;
    }
    return snap;
  }

  static Model* model_;
  static Tokenizer* tokenizer_;
};
Model* CaptureSessionTest::model_ = nullptr;
Tokenizer* CaptureSessionTest::tokenizer_ = nullptr;

// Common checks: exactly `frames` whole frames taken in and appended, recorded once each, no errors.
void expect_frames(const SessionSnapshot& snap, const CollectingRecorder& recorder, size_t frames) {
  EXPECT_EQ(snap.audio_frames_in, static_cast<int64_t>(frames));
  EXPECT_EQ(snap.audio_frames, static_cast<int64_t>(frames)) << "VAD off: every frame goes into the KV cache";
  EXPECT_EQ(recorder.frame_sizes.size(), frames);
  for (size_t n : recorder.frame_sizes) EXPECT_EQ(n, kFrameSamples);
  EXPECT_EQ(recorder.audio.size(), frames * kFrameSamples);
  EXPECT_EQ(recorder.starts, 1);
  EXPECT_EQ(recorder.stops, 1);
  EXPECT_TRUE(recorder.errors.empty()) << recorder.errors.front();
}

// 1. A 16 kHz float32 device needs no resampling, so the session must receive the file itself.
TEST_F(CaptureSessionTest, SixteenKilohertzDeviceReachesTheSessionBitExact) {
  constexpr size_t kFrames = 25;  // 1 s
  constexpr size_t kSignal = kFrames * kFrameSamples, kPadding = 4000;
  std::vector<float> file = random_samples(kSignal, 41);
  file.resize(kSignal + kPadding, 0.0f);

  CollectingRecorder recorder;
  const SessionSnapshot snap = capture_into_session(file, kRate, kSignal, recorder, nullptr);
  expect_frames(snap, recorder, kFrames);
  ASSERT_EQ(recorder.audio.size(), kSignal);
  const size_t bad = first_mismatch(recorder.audio.data(), file.data(), kSignal);
  EXPECT_EQ(bad, kSignal) << "frame " << bad / kFrameSamples << " sample " << bad % kFrameSamples
                          << " differs from the file";
}

// 2. A 48 kHz float32 device: the session must receive exactly what libsoxr makes of the file offline.
TEST_F(CaptureSessionTest, FortyEightKilohertzDeviceReachesTheSessionAsTheOfflineResamplerOutput) {
  constexpr double kDeviceRate = 48000;
  constexpr double kSignalSeconds = 1.2;
  constexpr size_t kFrames = 30;  // 1.2 s x 25 frames/s
  constexpr size_t kWanted = kFrames * kFrameSamples;  // 19200 samples at 16 kHz
  const size_t signal = static_cast<size_t>(kSignalSeconds * kDeviceRate);  // 57600 device frames
  // 0.5 s of silence after the noise: the compared outputs' filter taps (a few ms) never reach the
  // stale data the device repeats after the file.
  std::vector<float> file = random_samples(signal, 43);
  file.resize(signal + static_cast<size_t>(kDeviceRate / 2), 0.0f);

  // The reference: the whole file in one block. Streaming soxr is chunk-invariant (its FIFO feeds the
  // filter in fixed internal blocks whatever the input blocks), checked here on chunkings from tiny to
  // larger than any PortAudio buffer; so the microphone's chunking (unknown, set by PortAudio) does not
  // matter and the comparison can be bit-exact with no tolerance.
  std::vector<float> reference;
  {
    Resampler whole(kDeviceRate, kRate, Resampler::Quality::kHigh);
    whole.process(file.data(), file.size(), reference);
    whole.flush(reference);
  }
  EXPECT_NEAR(static_cast<double>(reference.size()), static_cast<double>(file.size()) / 3, 1.0);
  ASSERT_GE(reference.size(), kWanted);
  std::minstd_rand random_sizes(7);
  for (size_t block : {size_t{7}, size_t{256}, size_t{1024}, size_t{4096}, size_t{0}}) {
    Resampler pieces(kDeviceRate, kRate, Resampler::Quality::kHigh);
    std::vector<float> out;
    for (size_t at = 0; at < file.size();) {
      const size_t n = std::min(block ? block : 1 + random_sizes() % 5000, file.size() - at);
      pieces.process(file.data() + at, n, out);
      at += n;
    }
    pieces.flush(out);
    ASSERT_EQ(out.size(), reference.size()) << "blocks of " << block;
    ASSERT_EQ(first_mismatch(out.data(), reference.data(), out.size()), out.size())
        << "soxr output depends on the block size (" << (block ? std::to_string(block) : "random") << ")";
  }

  CollectingRecorder recorder;
  MicrophoneStats stats;
  const SessionSnapshot snap = capture_into_session(file, kDeviceRate, kWanted, recorder, &stats);
  // Count: exactly duration x 25 frames reached the session (pushed by construction; none lost or
  // duplicated between the microphone and the KV cache).
  expect_frames(snap, recorder, static_cast<size_t>(kSignalSeconds * 25));
  ASSERT_EQ(recorder.audio.size(), kWanted);
  const size_t bad = first_mismatch(recorder.audio.data(), reference.data(), kWanted);
  if (bad != kWanted) {
    float max_diff = 0;
    for (size_t i = 0; i < kWanted; ++i) max_diff = std::max(max_diff, std::abs(recorder.audio[i] - reference[i]));
    ADD_FAILURE() << "first difference at sample " << bad << " (frame " << bad / kFrameSamples
                  << "); max |difference| " << max_diff;
  }
  // The live path's own rate: everything the device gave that was not dropped came out at 1/3 the count.
  // Each stretch between ring overflows is resampled as its own signal (flushed at the gap), rounding
  // its length by at most one sample, hence one sample per stretch.
  const double processed = static_cast<double>(stats.device_frames - stats.dropped_frames);
  EXPECT_NEAR(static_cast<double>(stats.delivered_samples), processed / 3,
              1.0 + static_cast<double>(stats.ring_overflows));
  EXPECT_EQ(stats.device_errors, 0u);
  std::printf("[ mic     ] 48 kHz: %llu device frames (%llu dropped in %llu overflows after the file), "
              "%llu samples delivered\n",
              static_cast<unsigned long long>(stats.device_frames),
              static_cast<unsigned long long>(stats.dropped_frames),
              static_cast<unsigned long long>(stats.ring_overflows),
              static_cast<unsigned long long>(stats.delivered_samples));
}

// 3. A webm file (vp8 + vorbis) decoded as fast as possible: every frame and every whole audio frame
// reaches the session, exactly as decoded.
TEST_F(CaptureSessionTest, MediaFileReachesTheSessionFrameForFrame) {
  constexpr int kVideoFrames = 50;       // 2 s at 25 fps
  constexpr double kAudioSeconds = 2.0;  // 100 buffers of 960 samples at 48 kHz
  TempDir dir;
  const std::string path = (dir.path() / "av.webm").string();
  const std::string command =
      std::string(CONFLUX_GST_LAUNCH) +
      " -q videotestsrc num-buffers=50 ! video/x-raw,width=160,height=120,framerate=25/1 ! vp8enc deadline=1 ! "
      "webmmux name=mux ! filesink location=" + path +
      " audiotestsrc num-buffers=100 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! "
      "vorbisenc ! mux.";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  CollectingRecorder recorder;
  Session session(*model_, *tokenizer_, runtime(), config(&recorder));
  session.start();
  std::mutex mutex;
  std::vector<float> decoded;
  std::vector<ImageRGB> frames;
  const MediaFileStats stats = decode_media_file(
      {path, MediaPacing::kAsFastAsPossible},
      [&](AudioChunk&& chunk) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          decoded.insert(decoded.end(), chunk.samples.begin(), chunk.samples.end());
        }
        session.push_audio(chunk.samples.data(), chunk.samples.size(), chunk.captured);
      },
      [&](ImageRGB&& frame, TimePoint captured) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          frames.push_back(frame);
        }
        session.push_video(std::move(frame), captured);
      });
  session.wait_idle();
  const SessionSnapshot snap = session.snapshot();
  session.stop();

  ASSERT_TRUE(stats.has_audio);
  ASSERT_TRUE(stats.has_video);
  ASSERT_EQ(frames.size(), static_cast<size_t>(kVideoFrames));
  // Vorbis pads the end to a whole block and WebM keeps no granule position to trim it, so the decoder
  // returns up to one long block (2048 samples at 48 kHz = 683 samples at 16 kHz) more or fewer than the
  // 32000 encoded (gst_test.cc; measured there: 32278).
  constexpr double kVorbisBlockAt16k = 2048.0 / 48000.0 * kMediaAudioSampleRate;
  EXPECT_NEAR(static_cast<double>(decoded.size()), kAudioSeconds * kMediaAudioSampleRate, kVorbisBlockAt16k);
  EXPECT_EQ(stats.audio_samples, decoded.size());

  // Video: all 50 taken from the queue, none dropped, each recorded (sampled) once and unaltered.
  EXPECT_EQ(snap.video_frames_in, kVideoFrames);
  EXPECT_EQ(snap.video_frames_dropped, 0u);
  ASSERT_EQ(recorder.video.size(), frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(recorder.video[i].width, frames[i].width) << "frame " << i;
    EXPECT_EQ(recorder.video[i].height, frames[i].height) << "frame " << i;
    EXPECT_TRUE(recorder.video[i].rgb == frames[i].rgb) << "frame " << i << " was altered or reordered";
  }

  // Audio: floor(decoded / 640) whole frames (the partial last one never completes), bit-exact.
  const size_t whole_frames = decoded.size() / kFrameSamples;
  expect_frames(snap, recorder, whole_frames);
  ASSERT_EQ(recorder.audio.size(), whole_frames * kFrameSamples);
  const size_t bad = first_mismatch(recorder.audio.data(), decoded.data(), recorder.audio.size());
  EXPECT_EQ(bad, recorder.audio.size()) << "sample " << bad << " differs from the decoded audio";
  std::printf("[ media   ] %zu samples decoded -> %lld audio frames, %lld video frames in, %lld sampled into the "
              "KV cache, %lld positions\n",
              decoded.size(), static_cast<long long>(snap.audio_frames_in),
              static_cast<long long>(snap.video_frames_in), static_cast<long long>(snap.video_frames_sampled),
              static_cast<long long>(snap.positions));
}

}  // namespace
}  // namespace conflux::capture
