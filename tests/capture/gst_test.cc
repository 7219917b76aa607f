// Tests for capture/'s GStreamer parts with real pipelines (no mocks): VideoSource on videotestsrc (odd
// widths and row strides, timestamps, drops, errors) and MediaFile on files made at test time with
// gst-launch-1.0 (audio + video, audio only, video only, missing and undecodable files, real-time pacing).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "capture/media_file.h"
#include "capture/video_source.h"

namespace conflux::capture {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// videotestsrc stamps frame n with n * 1e9 / fps ns, rounded to whole ns, and both time mappings only add
// a constant, so frame spacing is exact to within rounding: 1 us is far above it and far below any bug
// (a wrong rate or a frame counted twice is off by milliseconds).
constexpr auto kPtsSpacingTolerance = microseconds(1);

// How long a test waits for a short stream to end before calling it hung. The streams below last at
// most ~0.5 s even when paced, so 20 s only trips on a real hang, even on a loaded 2-core machine.
constexpr auto kStreamDeadline = std::chrono::seconds(20);

long long to_us(Clock::duration d) { return std::chrono::duration_cast<microseconds>(d).count(); }

struct CollectedFrames {
  std::mutex mu;
  std::vector<ImageRGB> frames;
  std::vector<TimePoint> captured;
  std::vector<TimePoint> delivered;  // steady_clock::now() inside the callback
};

FrameCallback collect_into(CollectedFrames& out) {
  return [&out](ImageRGB&& frame, TimePoint captured) {
    std::lock_guard<std::mutex> lock(out.mu);
    out.delivered.push_back(Clock::now());
    out.frames.push_back(std::move(frame));
    out.captured.push_back(captured);
  };
}

// Every pixel within `tolerance` of (r, g, b); reports the first pixel that is not.
::testing::AssertionResult all_pixels_near(const ImageRGB& image, uint8_t r, uint8_t g, uint8_t b, int tolerance) {
  const uint8_t expected[3] = {r, g, b};
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        const int value = image.rgb[(static_cast<size_t>(y) * image.width + x) * 3 + c];
        if (std::abs(value - expected[c]) > tolerance) {
          return ::testing::AssertionFailure() << "pixel (" << x << ", " << y << ") channel " << c << " is "
                                               << value << ", expected " << int(expected[c]) << " +- " << tolerance;
        }
      }
    }
  }
  return ::testing::AssertionSuccess();
}

void expect_spacing(const std::vector<TimePoint>& times, Clock::duration period) {
  for (size_t i = 1; i < times.size(); ++i) {
    const auto step = times[i] - times[i - 1];
    EXPECT_LE(std::chrono::abs(step - period), kPtsSpacingTolerance)
        << "step " << i << " is " << to_us(step) << " us, expected " << to_us(period) << " us";
  }
}

// ---------------------------------------------------------------------------------------------------
// VideoSource

TEST(VideoSource, OddWidthFramesComeOutExactDespiteRowPadding) {
  // 641 px of RGB is 1923 bytes; GStreamer pads rows to 1924. The source emits RGB itself, so
  // videoconvert passes the padded buffer through untouched and every pixel must be exactly the colour
  // (ARGB 0xff336699 = R 0x33, G 0x66, B 0x99). Ignoring the stride would shift each row by one more
  // byte than the last, rotating the channels from the second row on.
  CollectedFrames got;
  std::vector<StreamStatus> endings;
  VideoSourceConfig config;
  config.source =
      "videotestsrc num-buffers=10 pattern=solid-color foreground-color=0xff336699 ! "
      "video/x-raw,format=RGB,width=641,height=479,framerate=30/1";
  // A non-live source with sync=false outruns any consumer, and the appsink drops when full: a queue that
  // holds the whole 10-frame stream is what makes "exactly 10 frames" a fair expectation here.
  config.max_buffers = 10;
  const TimePoint before_start = Clock::now();
  VideoSource source(config, collect_into(got), [&](const StreamStatus& s) { endings.push_back(s); });
  source.start();
  ASSERT_TRUE(source.wait_until_finished(kStreamDeadline));
  const TimePoint after_end = Clock::now();
  source.stop();

  EXPECT_EQ(source.status().state, StreamStatus::State::kEndOfStream) << source.status().message;
  ASSERT_EQ(endings.size(), 1u);
  EXPECT_EQ(endings[0].state, StreamStatus::State::kEndOfStream);
  ASSERT_EQ(got.frames.size(), 10u);
  EXPECT_EQ(source.stats().frames_delivered, 10u);
  EXPECT_EQ(source.stats().frames_dropped, 0u);
  EXPECT_EQ(source.stats().frames_without_pts, 0u);
  for (const ImageRGB& frame : got.frames) {
    ASSERT_EQ(frame.width, 641);
    ASSERT_EQ(frame.height, 479);
    ASSERT_EQ(frame.rgb.size(), 641u * 479u * 3u);
    ASSERT_TRUE(all_pixels_near(frame, 0x33, 0x66, 0x99, 0));
  }
  // Non-live, sync=false: first frame anchored at the instant it was pulled, the rest 1/30 s apart.
  EXPECT_GE(got.captured.front(), before_start);
  EXPECT_LE(got.captured.front(), after_end);
  expect_spacing(got.captured, std::chrono::nanoseconds(1'000'000'000 / 30));
}

TEST(VideoSource, OddSizeThroughColourConversion) {
  // Here videoconvert really converts (I420 -> RGB) at 641x479, so its output buffer has padded rows too.
  // The colour makes a round trip through 8-bit limited-range Y'CbCr: each of Y, Cb, Cr is quantised to
  // steps of ~1.15 RGB levels and the matrix mixes up to three of them, so channels land a few levels off
  // (measured: 2, 4, 3). 6 allows that and still fails on a channel or row shift (tens of levels).
  constexpr int kYuvRoundTripTolerance = 6;
  CollectedFrames got;
  VideoSourceConfig config;
  config.source =
      "videotestsrc num-buffers=3 pattern=solid-color foreground-color=0xff336699 ! "
      "video/x-raw,format=I420,width=641,height=479,framerate=30/1";
  config.max_buffers = 3;  // the whole stream: no drops (see above)
  VideoSource source(config, collect_into(got));
  source.start();
  ASSERT_TRUE(source.wait_until_finished(kStreamDeadline));
  source.stop();
  ASSERT_EQ(got.frames.size(), 3u);
  for (const ImageRGB& frame : got.frames) {
    ASSERT_EQ(frame.width, 641);
    ASSERT_EQ(frame.height, 479);
    ASSERT_TRUE(all_pixels_near(frame, 0x33, 0x66, 0x99, kYuvRoundTripTolerance));
  }
}

TEST(VideoSource, LiveSourceTimesAreInstantsOnSteadyClock) {
  // A live source: times come from the pipeline clock mapped onto steady_clock, so each frame's time is a
  // real instant: not before start(), and not after the callback that received it. The mapping's own error
  // is the gap between two back-to-back clock reads (well under 1 ms); 2 ms of slack covers it.
  constexpr auto kMappingSlack = milliseconds(2);
  CollectedFrames got;
  VideoSourceConfig config;
  config.source = "videotestsrc is-live=true num-buffers=6 ! video/x-raw,width=160,height=120,framerate=30/1";
  const TimePoint before_start = Clock::now();
  VideoSource source(config, collect_into(got));
  source.start();
  ASSERT_TRUE(source.wait_until_finished(kStreamDeadline));
  source.stop();
  ASSERT_EQ(got.frames.size(), 6u);
  for (size_t i = 0; i < got.captured.size(); ++i) {
    EXPECT_GE(got.captured[i], before_start - kMappingSlack) << "frame " << i;
    EXPECT_LE(got.captured[i], got.delivered[i] + kMappingSlack)
        << "frame " << i << " stamped " << to_us(got.captured[i] - got.delivered[i]) << " us after delivery";
  }
  expect_spacing(got.captured, std::chrono::nanoseconds(1'000'000'000 / 30));
}

TEST(VideoSource, DropsWhenTheConsumerIsSlowAndCountsThemExactly) {
  // A non-live source makes frames far faster than this consumer takes them (10 ms each), and the appsink
  // keeps only one: most frames are dropped. Every frame is either delivered or counted as dropped.
  constexpr int kFrames = 30;
  int delivered = 0;
  VideoSourceConfig config;
  config.source = "videotestsrc num-buffers=" + std::to_string(kFrames) + " ! video/x-raw,width=64,height=48";
  config.max_buffers = 1;
  VideoSource source(config, [&](ImageRGB&&, TimePoint) {
    ++delivered;
    std::this_thread::sleep_for(milliseconds(10));
  });
  source.start();
  ASSERT_TRUE(source.wait_until_finished(kStreamDeadline));
  source.stop();
  const VideoSourceStats stats = source.stats();
  EXPECT_EQ(stats.frames_delivered, static_cast<uint64_t>(delivered));
  EXPECT_GT(stats.frames_dropped, 0u);
  EXPECT_EQ(stats.frames_delivered + stats.frames_dropped, static_cast<uint64_t>(kFrames));
}

TEST(VideoSource, BadPipelineThrowsGStreamersParseError) {
  VideoSourceConfig config;
  config.source = "videotestsrc ! conflux_no_such_element";
  VideoSource source(config, [](ImageRGB&&, TimePoint) {});
  try {
    source.start();
    FAIL() << "start() accepted a pipeline with an unknown element";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no element \"conflux_no_such_element\""), std::string::npos) << e.what();
  }
  config.source = "videotestsrc no-such-property=1";
  VideoSource bad_property(config, [](ImageRGB&&, TimePoint) {});
  try {
    bad_property.start();
    FAIL() << "start() accepted an unknown property";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-property"), std::string::npos) << e.what();
  }
}

TEST(VideoSource, MissingDeviceFailsStartWithTheElementsMessage) {
  VideoSourceConfig config;
  config.source = "v4l2src device=/dev/conflux-no-such-camera";
  VideoSource source(config, [](ImageRGB&&, TimePoint) {});
  try {
    source.start();
    FAIL() << "start() succeeded on a camera that does not exist";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("v4l2src"), std::string::npos) << what;
    EXPECT_NE(what.find("/dev/conflux-no-such-camera"), std::string::npos) << what;
  }
}

TEST(VideoSource, StreamingErrorReachesTheStatusCallbackWithItsElement) {
  // Typefinding happens on the streaming thread after start() returned: the error must come back through
  // the status callback, naming the element and carrying GStreamer's message.
  const auto path = std::filesystem::temp_directory_path() / ("conflux_not_video_" + std::to_string(::getpid()));
  std::ofstream(path) << "this is not a video\n";
  std::vector<StreamStatus> endings;
  std::mutex endings_mu;
  VideoSourceConfig config;
  config.source = "filesrc location=" + path.string() + " ! decodebin";
  VideoSource source(config, [](ImageRGB&&, TimePoint) {}, [&](const StreamStatus& s) {
    std::lock_guard<std::mutex> lock(endings_mu);
    endings.push_back(s);
  });
  source.start();
  ASSERT_TRUE(source.wait_until_finished(kStreamDeadline));
  source.stop();
  std::filesystem::remove(path);
  const StreamStatus status = source.status();
  EXPECT_EQ(status.state, StreamStatus::State::kError);
  EXPECT_EQ(status.element, "typefind");
  EXPECT_NE(status.message.find("Could not determine type of stream"), std::string::npos) << status.message;
  std::lock_guard<std::mutex> lock(endings_mu);
  ASSERT_EQ(endings.size(), 1u);
  EXPECT_EQ(endings[0].element, "typefind");
  EXPECT_EQ(source.stats().frames_delivered, 0u);
}

TEST(VideoSource, StopEndsALiveStreamPromptly) {
  // A live source never ends on its own; stop() must return well within a second (one 50 ms pull timeout
  // plus pipeline teardown), and the state says it was stopped rather than ended.
  VideoSourceConfig config;
  config.source = "videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1";
  int frames = 0;
  VideoSource source(config, [&](ImageRGB&&, TimePoint) { ++frames; });
  source.start();
  std::this_thread::sleep_for(milliseconds(200));
  const TimePoint stop_called = Clock::now();
  source.stop();
  EXPECT_LT(Clock::now() - stop_called, std::chrono::seconds(1));
  EXPECT_EQ(source.status().state, StreamStatus::State::kStopped);
  // 200 ms at 30 fps is 6 frames; at least 1 shows frames flowed even on a loaded machine.
  EXPECT_GE(frames, 1);
  EXPECT_EQ(source.stats().frames_delivered, static_cast<uint64_t>(frames));
}

// ---------------------------------------------------------------------------------------------------
// MediaFile

class MediaFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("conflux_gst_test_" + std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs gst-launch-1.0 to make a test file; fails the test if it does not.
  std::string make_file(const std::string& name, const std::string& pipeline_with_location) {
    const std::string path = (dir_ / name).string();
    std::string pipeline = pipeline_with_location;
    const std::string placeholder = "LOCATION";
    pipeline.replace(pipeline.find(placeholder), placeholder.size(), path);
    const std::string command = std::string(CONFLUX_GST_LAUNCH) + " -q " + pipeline;
    const int rc = std::system(command.c_str());
    EXPECT_EQ(rc, 0) << command;
    EXPECT_TRUE(std::filesystem::exists(path)) << command;
    return path;
  }

  std::filesystem::path dir_;
};

// 2.0 s of audio at 48 kHz (100 buffers of 960 samples = 20 ms each) under 50 video frames at 25 fps.
constexpr double kAvSeconds = 2.0;
constexpr int kAvFrames = 50;
constexpr const char* kAvPipeline =
    "videotestsrc num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1 ! vp8enc deadline=1 ! "
    "webmmux name=mux ! filesink location=LOCATION "
    "audiotestsrc num-buffers=100 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! "
    "vorbisenc ! mux.";

TEST_F(MediaFileTest, DecodesAudioAndVideoAsFastAsPossible) {
  const std::string path = make_file("av.webm", kAvPipeline);
  std::mutex mu;
  std::vector<TimePoint> frame_times;
  std::vector<TimePoint> chunk_times;
  size_t samples = 0;
  bool frames_ok = true;
  MediaFileConfig config{path, MediaPacing::kAsFastAsPossible};
  const TimePoint started = Clock::now();
  const MediaFileStats stats = decode_media_file(
      config,
      [&](AudioChunk&& chunk) {
        std::lock_guard<std::mutex> lock(mu);
        samples += chunk.samples.size();
        chunk_times.push_back(chunk.captured);
      },
      [&](ImageRGB&& frame, TimePoint captured) {
        std::lock_guard<std::mutex> lock(mu);
        frames_ok = frames_ok && frame.width == 320 && frame.height == 240 && frame.rgb.size() == 320u * 240u * 3u;
        frame_times.push_back(captured);
      });
  const auto took = Clock::now() - started;

  EXPECT_TRUE(stats.has_audio);
  EXPECT_TRUE(stats.has_video);
  EXPECT_EQ(stats.video_frames, static_cast<uint64_t>(kAvFrames));
  EXPECT_EQ(frame_times.size(), static_cast<size_t>(kAvFrames));
  EXPECT_TRUE(frames_ok) << "a frame was not 320x240 RGB";
  EXPECT_EQ(stats.audio_samples, samples);
  EXPECT_EQ(stats.buffers_without_pts, 0u);
  // Vorbis pads the end up to a whole block, and WebM keeps no granule position to trim it: the decoder
  // may return up to one long block (2048 samples at 48 kHz = 42.7 ms = 683 samples at 16 kHz) more or,
  // by the same bound, fewer. Measured: 32278 for 32000.
  constexpr double kExpectedSamples = kAvSeconds * kMediaAudioSampleRate;
  constexpr double kVorbisBlockAt16k = 2048.0 / 48000.0 * kMediaAudioSampleRate;
  EXPECT_NEAR(static_cast<double>(samples), kExpectedSamples, kVorbisBlockAt16k);
  // WebM stores times in whole milliseconds and 40 ms is exact, so frames are exactly 40 ms apart.
  expect_spacing(frame_times, milliseconds(40));
  for (size_t i = 1; i < chunk_times.size(); ++i) EXPECT_GT(chunk_times[i], chunk_times[i - 1]) << "chunk " << i;
  // As fast as possible: 2 s of media decode well under 2 s (vp8 at 320x240 decodes at hundreds of fps).
  EXPECT_LT(took, std::chrono::duration<double>(kAvSeconds));
}

TEST_F(MediaFileTest, DecodesAFileWithOnlyAudio) {
  // WAV holds exactly 96000 samples at 48 kHz; audioresample accounts for its filter delay and drains
  // at the end, so 3:1 gives exactly 32000. 1 sample of slack for rounding of the last output block.
  constexpr uint64_t kExpectedSamples = 32000;
  const std::string path =
      make_file("a.wav", "audiotestsrc num-buffers=100 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 ! "
                         "wavenc ! filesink location=LOCATION");
  int frames = 0;
  const MediaFileStats stats =
      decode_media_file({path, MediaPacing::kAsFastAsPossible}, [](AudioChunk&&) {}, [&](ImageRGB&&, TimePoint) { ++frames; });
  EXPECT_TRUE(stats.has_audio);
  EXPECT_FALSE(stats.has_video);
  EXPECT_EQ(frames, 0);
  EXPECT_NEAR(static_cast<double>(stats.audio_samples), static_cast<double>(kExpectedSamples), 1.0);
}

TEST_F(MediaFileTest, DecodesAFileWithOnlyVideo) {
  const std::string path = make_file(
      "v.webm", "videotestsrc num-buffers=20 ! video/x-raw,width=161,height=121,framerate=25/1 ! vp8enc deadline=1 ! "
                "webmmux ! filesink location=LOCATION");
  std::vector<ImageRGB> frames;
  const MediaFileStats stats = decode_media_file(
      {path, MediaPacing::kAsFastAsPossible}, {}, [&](ImageRGB&& frame, TimePoint) { frames.push_back(std::move(frame)); });
  EXPECT_FALSE(stats.has_audio);
  EXPECT_TRUE(stats.has_video);
  EXPECT_EQ(stats.audio_samples, 0u);
  ASSERT_EQ(frames.size(), 20u);
  EXPECT_EQ(frames[0].width, 161);   // odd size survives decoding, scaling (a no-op) and the copy
  EXPECT_EQ(frames[0].height, 121);
}

TEST_F(MediaFileTest, RealTimePacingTakesTheFilesDuration) {
  // 10 frames at 25 fps: the last one is due 9 x 40 = 360 ms after the first. Paced, the decode cannot be
  // faster than that (minus 10 ms for clock granularity), and each frame is handed over when it is due:
  // its mapped time is not after its delivery (plus 2 ms for the mapping's back-to-back clock reads).
  constexpr auto kLastFrameDue = milliseconds(360);
  constexpr auto kClockSlack = milliseconds(10);
  constexpr auto kMappingSlack = milliseconds(2);
  const std::string path = make_file(
      "paced.webm", "videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48,framerate=25/1 ! vp8enc deadline=1 ! "
                    "webmmux ! filesink location=LOCATION");
  CollectedFrames got;
  const TimePoint started = Clock::now();
  decode_media_file({path, MediaPacing::kRealTime}, {}, collect_into(got));
  const auto took = Clock::now() - started;
  ASSERT_EQ(got.frames.size(), 10u);
  EXPECT_GE(took, kLastFrameDue - kClockSlack);
  expect_spacing(got.captured, milliseconds(40));
  for (size_t i = 0; i < got.captured.size(); ++i) {
    EXPECT_LE(got.captured[i], got.delivered[i] + kMappingSlack) << "frame " << i;
    EXPECT_GE(got.captured[i], started) << "frame " << i;
  }
}

TEST_F(MediaFileTest, MissingFileIsNamedInTheError) {
  const std::string path = (dir_ / "does_not_exist.webm").string();
  try {
    decode_media_file({path, MediaPacing::kAsFastAsPossible}, {}, {});
    FAIL() << "decoded a file that does not exist";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos) << e.what();
  }
}

TEST_F(MediaFileTest, UndecodableFileIsNamedInTheError) {
  const std::string path = (dir_ / "notes.mp4").string();
  std::ofstream(path) << "plain text pretending to be a video\n";
  std::vector<StreamStatus> endings;
  MediaFile file({path, MediaPacing::kAsFastAsPossible}, {}, {}, [&](const StreamStatus& s) { endings.push_back(s); });
  file.start();
  ASSERT_TRUE(file.wait_until_finished(kStreamDeadline));
  file.stop();
  const StreamStatus status = file.status();
  EXPECT_EQ(status.state, StreamStatus::State::kError);
  EXPECT_NE(status.message.find(path), std::string::npos) << status.message;
  EXPECT_NE(status.message.find("Could not determine type of stream"), std::string::npos) << status.message;
  ASSERT_EQ(endings.size(), 1u);
  // The blocking helper turns the same failure into an exception naming the file.
  try {
    decode_media_file({path, MediaPacing::kAsFastAsPossible}, {}, {});
    FAIL() << "decode_media_file accepted a text file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace conflux::capture
