// Tests for engine/session/vad: real speech synthesized by espeak-ng (converted to 16 kHz by sox) on a
// -60 dBFS noise bed, run through the real WebRTC VAD. Checks event counts and timing against the clips'
// true extents, pre-roll coverage, no events on noise, likelihood monotonicity, hangover timing, level_db
// on known signals, config checks, reset() and that push_frame does not allocate; the noise gate on the
// repository's eval recordings (espeak-ng speech in a steady room's noise) and its floor on known levels;
// and the debounce state machine (SpeechDebouncer) frame by frame on explicit decision patterns.
#include "engine/session/vad.h"
#include "tests/session/speech_timeline.h"

#include "tests/support/allocation_counter.h"
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <numbers>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>  // getpid, for a per-process temp dir

using conflux::testing_support::g_allocation_count;
using conflux::testing_support::g_count_allocations;

namespace conflux {
namespace {

constexpr double kSampleRate = kVadSampleRateHz;
constexpr double kFrameSeconds = kVadFrameMs / 1000.0;

struct Event {
  VadEvent kind;
  int frame;           // index of the frame whose push_frame returned it
  int preroll_frames;  // preroll_frames() right after SpeechStarted
  // The event is known once its frame has been pushed, i.e. at the end of that frame.
  double time_s() const { return (frame + 1) * kFrameSeconds; }
};

struct DetectorRun {
  std::vector<Event> events;
  int raw_speech_frames = 0;
  int in_speech_frames = 0;  // frames pushed while the debounced state was (or became) speech
};

DetectorRun run_detector(VoiceActivityDetector& vad, const std::vector<float>& audio) {
  DetectorRun r;
  const int frames = static_cast<int>(audio.size() / kVadFrameSamples);
  for (int f = 0; f < frames; ++f) {
    bool raw = false;
    const VadEvent e = vad.push_frame(audio.data() + size_t(f) * kVadFrameSamples, &raw);
    r.raw_speech_frames += raw;
    r.in_speech_frames += vad.in_speech() || e == VadEvent::SpeechEnded;
    if (e != VadEvent::None) r.events.push_back({e, f, e == VadEvent::SpeechStarted ? vad.preroll_frames() : 0});
  }
  return r;
}

DetectorRun run_detector(const VadConfig& config, const std::vector<float>& audio) {
  VoiceActivityDetector vad(config);
  return run_detector(vad, audio);
}

int count(const DetectorRun& r, VadEvent kind) {
  return static_cast<int>(std::count_if(r.events.begin(), r.events.end(), [&](const Event& e) { return e.kind == kind; }));
}

// True when the events alternate Started, Ended, Started, Ended, ... and there are `turns` of each.
bool is_turns(const DetectorRun& r, int turns) {
  if (static_cast<int>(r.events.size()) != 2 * turns) return false;
  for (size_t i = 0; i < r.events.size(); ++i) {
    if (r.events[i].kind != (i % 2 == 0 ? VadEvent::SpeechStarted : VadEvent::SpeechEnded)) return false;
  }
  return true;
}

class VadSpeechTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const char* tool : {"espeak-ng", "sox"}) {
      if (!tool_available(tool)) {
        setup_error_ = std::string(tool) + " is not installed; the VAD tests synthesize real speech with "
                       "espeak-ng and resample it with sox (tools/setup.sh installs both)";
        return;
      }
    }
    const auto dir = std::filesystem::temp_directory_path() / ("conflux_vad_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    try {
      clip_a_ = new Clip(synthesize(dir, "a", "-v en-us -s 160",
                                    "Hello there, could you tell me what is on the table in front of me?"));
      // A different voice (British English), slower and lower-pitched.
      clip_b_ = new Clip(synthesize(dir, "b", "-v en-gb -s 140 -p 30",
                                    "Please describe the picture and then read the sign out loud."));
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
    std::filesystem::remove_all(dir);
    if (setup_error_.empty()) {
      timeline_ = new Timeline(build_timeline({clip_a_, clip_b_}, {1.0, 1.5, 1.5}));
    }
  }
  static void TearDownTestSuite() {
    delete clip_a_;
    delete clip_b_;
    delete timeline_;
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static inline std::string setup_error_;
  static inline Clip* clip_a_ = nullptr;
  static inline Clip* clip_b_ = nullptr;
  static inline Timeline* timeline_ = nullptr;
};

TEST_F(VadSpeechTest, TwoUtterancesGiveTwoTurnsAtTheTrueTimes) {
  const VadConfig config;  // the defaults the session uses
  const DetectorRun r = run_detector(config, timeline_->samples);
  ASSERT_EQ(count(r, VadEvent::SpeechStarted), 2);
  ASSERT_EQ(count(r, VadEvent::SpeechEnded), 2);
  ASSERT_TRUE(is_turns(r, 2));

  for (int turn = 0; turn < 2; ++turn) {
    const Event& started = r.events[2 * turn];
    const Event& ended = r.events[2 * turn + 1];
    const double true_start = timeline_->true_start_s[turn];
    const double true_end = timeline_->true_end_s[turn];
    std::printf("turn %d: true speech %.3f..%.3f s; SpeechStarted at %.3f s (+%.0f ms), preroll %d frames "
                "(audio from %.3f s); SpeechEnded at %.3f s (true end + hangover %+.0f ms)\n",
                turn, true_start, true_end, started.time_s(), (started.time_s() - true_start) * 1000,
                started.preroll_frames, (started.frame - started.preroll_frames) * kFrameSeconds, ended.time_s(),
                (ended.time_s() - true_end - config.hangover_ms / 1000.0) * 1000);

    // Start: WebRTC reacts to an onset within a 10 ms sub-frame, so the turn opens once min_speech_ms of
    // speech has been seen. Lower bound: the onset frame may start up to one frame (40 ms) before the true
    // start. Upper bound: 80 ms (two frames) for WebRTC's onset decision and frame granularity.
    const double start_lag_s = started.time_s() - true_start;
    EXPECT_GE(start_lag_s, (config.min_speech_ms - kVadFrameMs) / 1000.0) << "turn " << turn;
    EXPECT_LE(start_lag_s, (config.min_speech_ms + 80) / 1000.0) << "turn " << turn;

    // Pre-roll: the frames the session sends with SpeechStarted begin at least preroll_ms before the true
    // start, less one frame (the onset frame may begin up to 40 ms after the true start if WebRTC needs a
    // sub-frame or two to react).
    ASSERT_LE(started.preroll_frames, VoiceActivityDetector(config).max_preroll_frames());
    const double first_sent_s = (started.frame - started.preroll_frames) * kFrameSeconds;
    EXPECT_LE(first_sent_s, true_start - (config.preroll_ms - kVadFrameMs) / 1000.0) << "turn " << turn;

    // End: expected at true end + hangover_ms. Tolerance +-200 ms: WebRTC keeps calling speech for about
    // 100 ms after the last loud sample (its internal hangover; espeak's words also decay below the
    // loudness threshold before they stop), plus up to 40 ms each for the frames holding the true end and
    // the hangover's end.
    EXPECT_NEAR(ended.time_s(), true_end + config.hangover_ms / 1000.0, 0.200) << "turn " << turn;
  }
}

TEST_F(VadSpeechTest, PrerollFramesCoverOnsetRunAndContext) {
  const VadConfig config;
  VoiceActivityDetector vad(config);
  // n(min_speech_ms) = ceil(120 / 40) = 3 speech frames; up to 2 bridged gaps make the longest onset run
  // 5 frames, 4 of them before the current one; n(preroll_ms) = ceil(200 / 40) = 5 context frames.
  EXPECT_EQ(vad.max_preroll_frames(), 4 + 5);
  const DetectorRun r = run_detector(vad, timeline_->samples);
  ASSERT_TRUE(is_turns(r, 2));
  for (const Event& e : r.events) {
    if (e.kind != VadEvent::SpeechStarted) continue;
    // At least the 2 run frames before the current one plus 5 context frames.
    EXPECT_GE(e.preroll_frames, 2 + 5);
    EXPECT_LE(e.preroll_frames, vad.max_preroll_frames());
  }
}

TEST_F(VadSpeechTest, HigherLikelihoodDoesNotReduceDetectedSpeech) {
  int previous_raw = -1, previous_debounced = -1;
  for (int likelihood = 0; likelihood <= 3; ++likelihood) {
    VadConfig config;
    config.likelihood = likelihood;
    const DetectorRun r = run_detector(config, timeline_->samples);
    std::printf("likelihood %d: %d raw speech frames, %d frames in speech, %zu events\n", likelihood,
                r.raw_speech_frames, r.in_speech_frames, r.events.size());
    // Exact comparison: same audio, and a more permissive WebRTC mode only lowers its decision thresholds.
    EXPECT_TRUE(is_turns(r, 2)) << "likelihood " << likelihood;
    EXPECT_GE(r.raw_speech_frames, previous_raw) << "likelihood " << likelihood;
    EXPECT_GE(r.in_speech_frames, previous_debounced) << "likelihood " << likelihood;
    previous_raw = r.raw_speech_frames;
    previous_debounced = r.in_speech_frames;
  }
}

TEST_F(VadSpeechTest, HangoverMovesTheEndByItsLength) {
  // WebRTC's raw decisions do not depend on the hangover, so SpeechEnded moves by exactly the difference in
  // whole frames (both hangovers are multiples of 40 ms and shorter than the 1.5 s pauses).
  VadConfig short_hangover, long_hangover;
  short_hangover.hangover_ms = 400;
  long_hangover.hangover_ms = 1000;
  const DetectorRun a = run_detector(short_hangover, timeline_->samples);
  const DetectorRun b = run_detector(long_hangover, timeline_->samples);
  ASSERT_TRUE(is_turns(a, 2));
  ASSERT_TRUE(is_turns(b, 2));
  const int expected_shift_frames = (long_hangover.hangover_ms - short_hangover.hangover_ms) / kVadFrameMs;  // 15
  for (int turn = 0; turn < 2; ++turn) {
    EXPECT_EQ(a.events[2 * turn].frame, b.events[2 * turn].frame) << "starts do not depend on the hangover";
    EXPECT_EQ(b.events[2 * turn + 1].frame - a.events[2 * turn + 1].frame, expected_shift_frames) << "turn " << turn;
  }
}

TEST_F(VadSpeechTest, ResetForgetsStateAndReplaysIdentically) {
  VoiceActivityDetector vad{VadConfig{}};
  const DetectorRun first = run_detector(vad, timeline_->samples);
  ASSERT_TRUE(is_turns(first, 2));
  // Stop in the middle of utterance A (1.0 s of lead-in plus half of A), while the turn is open.
  const size_t mid_a_frame = static_cast<size_t>((timeline_->true_start_s[0] + timeline_->true_end_s[0]) / 2 / kFrameSeconds);
  const std::vector<float> partial(timeline_->samples.begin(),
                                   timeline_->samples.begin() + mid_a_frame * kVadFrameSamples);
  run_detector(vad, partial);
  ASSERT_TRUE(vad.in_speech());
  vad.reset();
  EXPECT_FALSE(vad.in_speech());
  EXPECT_EQ(vad.level_db(), VoiceActivityDetector::kVadSilenceDb);
  const DetectorRun again = run_detector(vad, timeline_->samples);
  ASSERT_EQ(again.events.size(), first.events.size());
  for (size_t i = 0; i < first.events.size(); ++i) {
    EXPECT_EQ(again.events[i].kind, first.events[i].kind);
    EXPECT_EQ(again.events[i].frame, first.events[i].frame) << "event " << i;
  }
}

TEST_F(VadSpeechTest, PushFrameDoesNotAllocate) {
  VoiceActivityDetector vad{VadConfig{}};
  const int frames = static_cast<int>(timeline_->samples.size() / kVadFrameSamples);
  int events = 0;
  g_allocation_count = 0;
  g_count_allocations = true;
  for (int f = 0; f < frames; ++f) {
    bool raw = false;
    events += vad.push_frame(timeline_->samples.data() + size_t(f) * kVadFrameSamples, &raw) != VadEvent::None;
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocation_count.load(), 0);
  EXPECT_EQ(events, 4) << "the run must have gone through both turns to mean anything";
}

TEST_F(VadSpeechTest, DisabledDetectorNeverFires) {
  VadConfig config;
  config.enabled = false;
  const DetectorRun r = run_detector(config, timeline_->samples);
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(r.raw_speech_frames, 0);
}

TEST(VadNoise, NoiseAndSilenceProduceNoEvents) {
  constexpr double kSeconds = 8.0;
  const size_t samples = static_cast<size_t>(kSeconds * kSampleRate);
  const std::vector<float> noise = noise_bed(samples, /*seed=*/7);
  const std::vector<float> digital_silence(samples, 0.0f);
  // At likelihood 2 and 3 WebRTC's start-up burst alone lasts three 40 ms frames, enough to open a turn:
  // this is what the detector's 160 ms warm-up is for.
  for (int likelihood = 0; likelihood <= 3; ++likelihood) {
    VadConfig config;
    config.likelihood = likelihood;
    EXPECT_TRUE(run_detector(config, noise).events.empty()) << "-60 dBFS white noise, likelihood " << likelihood;
    EXPECT_TRUE(run_detector(config, digital_silence).events.empty()) << "digital silence, likelihood " << likelihood;
  }
  // The meter reads the noise level: 640 Gaussian samples estimate the power to within about
  // sqrt(2/640) = 5.6 % (1 sigma) = 0.24 dB; +-1 dB is over 4 sigma.
  VoiceActivityDetector vad{VadConfig{}};
  vad.push_frame(noise.data());
  EXPECT_NEAR(vad.level_db(), kNoiseDbfs, 1.0);
}

TEST(VadLevel, LevelDbOfKnownSignals) {
  VoiceActivityDetector vad{VadConfig{}};
  std::vector<float> frame(kVadFrameSamples);
  // A 1 kHz sine fits exactly 40 whole periods in 40 ms, so its RMS over the frame is exactly A / sqrt(2).
  constexpr double kSineHz = 1000.0;
  for (const double amplitude : {1.0, 0.5, 0.01}) {
    for (int i = 0; i < kVadFrameSamples; ++i) {
      frame[i] = static_cast<float>(amplitude * std::sin(2 * std::numbers::pi * kSineHz * i / kSampleRate));
    }
    vad.push_frame(frame.data());
    // Tolerance 0.001 dB: only float rounding of the samples separates the measurement from the formula.
    EXPECT_NEAR(vad.level_db(), 20 * std::log10(amplitude / std::sqrt(2.0)), 1e-3) << "amplitude " << amplitude;
  }
  std::fill(frame.begin(), frame.end(), 1.0f);  // full-scale DC: RMS 1 = 0 dB by this meter's reference
  vad.push_frame(frame.data());
  EXPECT_NEAR(vad.level_db(), 0.0f, 1e-4);
  std::fill(frame.begin(), frame.end(), 0.0f);
  vad.push_frame(frame.data());
  EXPECT_EQ(vad.level_db(), VoiceActivityDetector::kVadSilenceDb);
}

// ---- Noise gate --------------------------------------------------------------------------------------

// The spoken recordings of the repository's eval set (tools/train/make_recordings.py): espeak-ng voices in
// one continuous noise track at 25-40 dB SNR, as a microphone in a steady room hears them.
std::vector<std::vector<float>> eval_set_speech() {
  std::vector<std::vector<float>> out;
  const std::filesystem::path set = std::filesystem::path(CONFLUX_SOURCE_DIR) / "tests/data/eval-set";
  std::vector<std::filesystem::path> items;
  for (const auto& entry : std::filesystem::directory_iterator(set)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with("-command") || name.ends_with("-combined")) items.push_back(entry.path());
  }
  std::sort(items.begin(), items.end());
  for (const auto& item : items) {
    std::ifstream in(item / "audio.f32", std::ios::binary | std::ios::ate);
    std::vector<float> samples(size_t(in.tellg()) / sizeof(float));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(samples.data()), std::streamsize(samples.size() * sizeof(float)));
    out.push_back(std::move(samples));
  }
  return out;
}

TEST(VadNoiseGate, SteadyRoomNoiseNeitherHoldsATurnOpenNorOpensAnother) {
  const std::vector<std::vector<float>> recordings = eval_set_speech();
  ASSERT_EQ(recordings.size(), 16u) << "8 command and 8 combined recordings in tests/data/eval-set";
  VadConfig ungated;
  ungated.min_snr_db = 0.0f;
  int ungated_failures = 0;
  for (size_t i = 0; i < recordings.size(); ++i) {
    const DetectorRun plain = run_detector(ungated, recordings[i]);
    const DetectorRun gated = run_detector(VadConfig{}, recordings[i]);
    ungated_failures += !is_turns(plain, 1);
    // One utterance each: exactly one turn, opened where WebRTC alone opens it (the onset is tens of dB
    // above the floor, so the gate passes it; one frame of slack for a quiet first syllable).
    ASSERT_TRUE(is_turns(gated, 1)) << "recording " << i << ": " << gated.events.size() << " events";
    ASSERT_FALSE(plain.events.empty());
    EXPECT_NEAR(gated.events[0].frame, plain.events[0].frame, 1) << "recording " << i;
    EXPECT_LE(gated.events[1].frame, plain.events.size() > 1 ? plain.events[1].frame : gated.events[1].frame)
        << "recording " << i << ": the gate can only end a turn earlier";
  }
  // Why the gate exists, on this data: without it WebRTC's bursts on the noise after the words reopen a
  // turn (which would interrupt the answer) or keep one from ending in at least one of these recordings.
  EXPECT_GE(ungated_failures, 1);
}

// A sine of amplitude a over whole periods (1 kHz: 40 in a frame) has RMS a / sqrt(2).
std::vector<float> sine_frame(double amplitude) {
  std::vector<float> frame(kVadFrameSamples);
  for (int i = 0; i < kVadFrameSamples; ++i) {
    frame[i] = static_cast<float>(amplitude * std::sin(2 * std::numbers::pi * 1000.0 * i / kSampleRate));
  }
  return frame;
}

TEST(VadNoiseGate, FloorIsTheQuietestFrameOfTheWindow) {
  VoiceActivityDetector vad{VadConfig{}};
  EXPECT_EQ(vad.noise_floor_db(), VoiceActivityDetector::kVadSilenceDb) << "no frame yet";
  const std::vector<float> loud = sine_frame(0.1), quiet = sine_frame(0.001);
  const double loud_db = 20 * std::log10(0.1 / std::sqrt(2.0)), quiet_db = 20 * std::log10(0.001 / std::sqrt(2.0));
  // Tolerance 0.001 dB: only float rounding separates the frames' levels from the formula (VadLevel).
  for (int i = 0; i < 10; ++i) vad.push_frame(loud.data());
  EXPECT_NEAR(vad.noise_floor_db(), loud_db, 1e-3);
  vad.push_frame(quiet.data());
  EXPECT_NEAR(vad.noise_floor_db(), quiet_db, 1e-3);
  // The quiet frame stays the floor while it is among the last kNoiseFloorWindowFrames frames...
  for (int i = 0; i < kNoiseFloorWindowFrames - 1; ++i) vad.push_frame(loud.data());
  EXPECT_NEAR(vad.noise_floor_db(), quiet_db, 1e-3);
  // ...and leaves it with the next one.
  vad.push_frame(loud.data());
  EXPECT_NEAR(vad.noise_floor_db(), loud_db, 1e-3);
  vad.reset();
  EXPECT_EQ(vad.noise_floor_db(), VoiceActivityDetector::kVadSilenceDb) << "reset forgets the room too";
}

// ---- SpeechDebouncer on explicit decisions: the frame-exact timing contract of vad.h --------------------

// Pushes a pattern ('S' raw speech, '.' not) and returns "index:event" for each event, e.g. "4:start".
std::string events_for(SpeechDebouncer& debouncer, const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const VadEvent e = debouncer.push(pattern[i] == 'S');
    if (e == VadEvent::None) continue;
    if (!out.empty()) out += ' ';
    out += std::to_string(i) + (e == VadEvent::SpeechStarted ? ":start" : ":end");
  }
  return out;
}

TEST(SpeechDebouncer, OpensAfterMinSpeechAndCountsPreroll) {
  SpeechDebouncer d{VadConfig{}};  // n(120) = 3 speech frames, n(200) = 5 context frames
  // Runs of 1 and 2 speech frames followed by two silent frames are clicks; the run from index 7 opens.
  EXPECT_EQ(events_for(d, "S..SS..SSS"), "9:start");
  EXPECT_TRUE(d.in_speech());
  EXPECT_EQ(d.preroll_frames(), 2 + 5);  // frames 7 and 8 of the run, then 5 context frames
}

TEST(SpeechDebouncer, BridgesSingleGapFramesDuringOnset) {
  SpeechDebouncer d{VadConfig{}};
  EXPECT_EQ(events_for(d, "S.S.S"), "4:start");
  EXPECT_EQ(d.preroll_frames(), 4 + 5);  // the run is frames 0..4, gaps included
  EXPECT_EQ(d.preroll_frames(), d.max_preroll_frames()) << "the longest possible run";
  d.reset();
  EXPECT_FALSE(d.in_speech());
  EXPECT_EQ(events_for(d, "SS..S"), "") << "two gap frames drop the run";
}

TEST(SpeechDebouncer, EndsAfterHangoverOfConsecutiveSilence) {
  SpeechDebouncer d{VadConfig{}};  // n(600) = 15 silent frames
  // Opens at 2; 14 silent frames (3..16), speech at 17 restarts the count, 15 silent frames 18..32 end it.
  const std::string pattern = "SSS" + std::string(14, '.') + "S" + std::string(15, '.') + "SS";
  EXPECT_EQ(events_for(d, pattern), "2:start 32:end");
  EXPECT_FALSE(d.in_speech());
}

TEST(SpeechDebouncer, RoundsDurationsUpToWholeFrames) {
  VadConfig config;
  config.min_speech_ms = 130;  // ceil(130 / 40) = 4 frames
  config.hangover_ms = 41;     // ceil(41 / 40) = 2 frames
  config.preroll_ms = 0;
  SpeechDebouncer d{config};
  EXPECT_EQ(events_for(d, "SSSS..S"), "3:start 5:end");
  EXPECT_EQ(d.max_preroll_frames(), 4 + 3 - 1);  // 4 speech + 3 gap frames, less the current one

  config.min_speech_ms = 0;  // still needs one speech frame
  config.hangover_ms = 0;    // still needs one silent frame
  SpeechDebouncer immediate{config};
  EXPECT_EQ(events_for(immediate, ".S.S"), "1:start 2:end 3:start");
  EXPECT_EQ(immediate.preroll_frames(), 0);
}

TEST(VadConfigCheck, RejectsOutOfRangeSettings) {
  VadConfig bad_likelihood;
  bad_likelihood.likelihood = 4;
  EXPECT_THROW(VoiceActivityDetector{bad_likelihood}, std::invalid_argument);
  bad_likelihood.likelihood = -1;
  EXPECT_THROW(VoiceActivityDetector{bad_likelihood}, std::invalid_argument);
  VadConfig bad_hangover;
  bad_hangover.hangover_ms = -40;
  EXPECT_THROW(VoiceActivityDetector{bad_hangover}, std::invalid_argument);
  EXPECT_THROW(SpeechDebouncer{bad_hangover}, std::invalid_argument);
  for (const float gate : {-1.0f, 61.0f, std::nanf("")}) {
    VadConfig bad_gate;
    bad_gate.min_snr_db = gate;
    EXPECT_THROW(VoiceActivityDetector{bad_gate}, std::invalid_argument) << gate;
  }
}

}  // namespace
}  // namespace conflux
