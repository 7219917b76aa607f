// VoiceActivityDetector: WebRTC's 10 ms VAD decisions folded into 40 ms frames and debounced by
// SpeechDebouncer into SpeechStarted / SpeechEnded events (timing contract in vad.h).
#include "engine/session/vad.h"

#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

namespace conflux {
namespace {

// WebRTC's int16 interface takes 10 ms frames: 160 samples at 16 kHz. The session's 40 ms frame is four.
constexpr int kWebRtcFrameMs = 10;
constexpr int kWebRtcFrameSamples = kVadSampleRateHz / 1000 * kWebRtcFrameMs;  // 160
constexpr int kSubframesPerFrame = kVadFrameSamples / kWebRtcFrameSamples;    // 4
static_assert(kSubframesPerFrame * kWebRtcFrameSamples == kVadFrameSamples, "40 ms must be whole 10 ms frames");

// A 40 ms frame is raw speech when at least half of its 10 ms sub-frames are: one speech sub-frame alone is
// usually a click or the last of WebRTC's own hangover, while two or more mean the frame holds speech
// that the session should not clip.
constexpr int kMinSpeechSubframes = kSubframesPerFrame / 2;  // 2

// During the onset run a single non-speech 40 ms frame between speech frames is bridged (WebRTC can drop
// out briefly on a stop consonant at the start of a word); two in a row mean the run was not speech.
constexpr int kMaxBridgedGapFrames = 1;

// WebRTC's VAD starts in the "speech" state with default noise models, so after (re)initialization it calls
// about the first 70 ms (likelihood kLow) to 110 ms (kHigh) speech whatever the input is, noise included
// (measured on white and pink noise from -70 to -30 dBFS). Its decisions on the first 160 ms (the
// longest burst seen, rounded up to whole frames, plus one frame of margin) do not count towards a turn.
constexpr int kWarmupMs = 160;
constexpr int kWarmupFrames = kWarmupMs / kVadFrameMs;  // 4
static_assert(kWarmupFrames * kVadFrameMs == kWarmupMs, "warm-up is whole frames");

constexpr int kLikelihoodMin = webrtc::VoiceDetection::kVeryLowLikelihood;
constexpr int kLikelihoodMax = webrtc::VoiceDetection::kHighLikelihood;
static_assert(kLikelihoodMin == 0 && kLikelihoodMax == 3, "VadConfig::likelihood documents 0..3");

// int16 full scale: [-1, 1] floats map to [-32767, 32767] (symmetric, so -1.0 does not wrap).
constexpr float kInt16FullScale = 32767.0f;

// Whole 40 ms frames needed to cover `ms` milliseconds: ceil(ms / 40).
int frames_for_ms(int ms) { return (ms + kVadFrameMs - 1) / kVadFrameMs; }

void check_webrtc(int error, const char* call) {
  if (error != webrtc::AudioProcessing::kNoError) {
    throw std::runtime_error(std::string("VAD: WebRTC ") + call + " failed with error " + std::to_string(error));
  }
}

const VadConfig& checked(const VadConfig& config) {
  if (config.min_speech_ms < 0 || config.hangover_ms < 0 || config.preroll_ms < 0) {
    throw std::invalid_argument("VAD: min_speech_ms, hangover_ms and preroll_ms must be >= 0");
  }
  if (!(config.min_snr_db >= 0.0f && config.min_snr_db <= 60.0f)) {
    throw std::invalid_argument("VAD: min_snr_db must be 0..60 dB, got " + std::to_string(config.min_snr_db));
  }
  return config;
}

}  // namespace

// ---- SpeechDebouncer ----------------------------------------------------------------------------------

SpeechDebouncer::SpeechDebouncer(const VadConfig& config)
    : onset_speech_frames_needed_(std::max(1, frames_for_ms(checked(config).min_speech_ms))),
      hangover_frames_(std::max(1, frames_for_ms(config.hangover_ms))),
      context_frames_(frames_for_ms(config.preroll_ms)) {}

VadEvent SpeechDebouncer::push(bool raw_speech) {
  if (in_speech_) {
    silence_frames_ = raw_speech ? 0 : silence_frames_ + 1;
    if (silence_frames_ < hangover_frames_) return VadEvent::None;
    reset();
    return VadEvent::SpeechEnded;
  }

  if (!raw_speech) {
    if (onset_speech_frames_ > 0 && ++onset_gap_frames_ > kMaxBridgedGapFrames) {
      onset_speech_frames_ = onset_run_frames_ = onset_gap_frames_ = 0;
    }
    return VadEvent::None;
  }
  // A speech frame extends (or opens) the onset run; the bridged gap frames before it become part of it.
  onset_run_frames_ += onset_speech_frames_ > 0 ? onset_gap_frames_ + 1 : 1;
  onset_gap_frames_ = 0;
  if (++onset_speech_frames_ < onset_speech_frames_needed_) return VadEvent::None;

  const int run_frames = onset_run_frames_;
  reset();
  in_speech_ = true;
  preroll_frames_ = (run_frames - 1) + context_frames_;
  return VadEvent::SpeechStarted;
}

int SpeechDebouncer::max_preroll_frames() const {
  // Longest onset run: every needed speech frame but the first preceded by one bridged gap frame.
  const int longest_run = onset_speech_frames_needed_ + (onset_speech_frames_needed_ - 1) * kMaxBridgedGapFrames;
  return (longest_run - 1) + context_frames_;
}

void SpeechDebouncer::reset() {
  in_speech_ = false;
  onset_speech_frames_ = onset_run_frames_ = onset_gap_frames_ = 0;
  silence_frames_ = 0;
  preroll_frames_ = 0;
}

// ---- VoiceActivityDetector ----------------------------------------------------------------------------

struct VoiceActivityDetector::State {
  explicit State(const VadConfig& config) : debouncer(config), min_snr_db(config.min_snr_db) {}

  SpeechDebouncer debouncer;
  float min_snr_db;
  std::array<float, kNoiseFloorWindowFrames> recent_levels_db{};  // ring of the last frames' levels
  int recent_count = 0;                                           // frames in the ring (up to its size)
  int recent_next = 0;                                            // where the next level goes
  float noise_floor_db = VoiceActivityDetector::kVadSilenceDb;
  std::unique_ptr<webrtc::AudioProcessing> apm;  // null when the config disables the detector
  webrtc::AudioFrame frame;                      // reused for every 10 ms sub-frame, so push_frame never allocates
  int warmup_frames_left = kWarmupFrames;        // frames whose WebRTC decision is still start-up noise
  float level_db = VoiceActivityDetector::kVadSilenceDb;

  void set_frame_format() {
    frame.sample_rate_hz_ = kVadSampleRateHz;
    frame.num_channels_ = 1;
    frame.samples_per_channel_ = kWebRtcFrameSamples;
  }

  void reset_webrtc() {
    if (!apm) return;
    // Initialize() forgets the VAD's history but keeps its settings; the explicit format makes WebRTC
    // allocate its buffers now rather than inside the first push_frame.
    using Layout = webrtc::AudioProcessing::ChannelLayout;
    check_webrtc(apm->Initialize(kVadSampleRateHz, kVadSampleRateHz, kVadSampleRateHz, Layout::kMono,
                                 Layout::kMono, Layout::kMono),
                 "Initialize");
  }
};

VoiceActivityDetector::VoiceActivityDetector(const VadConfig& config) {
  if (config.likelihood < kLikelihoodMin || config.likelihood > kLikelihoodMax) {
    throw std::invalid_argument("VAD: likelihood must be 0..3 (WebRTC kVeryLow..kHigh), got " +
                                std::to_string(config.likelihood));
  }
  state_ = std::make_unique<State>(config);
  if (!config.enabled) return;

  State& s = *state_;
  s.apm.reset(webrtc::AudioProcessing::Create());
  if (!s.apm) throw std::runtime_error("VAD: webrtc::AudioProcessing::Create() returned null");
  webrtc::VoiceDetection* vad = s.apm->voice_detection();
  check_webrtc(vad->set_likelihood(static_cast<webrtc::VoiceDetection::Likelihood>(config.likelihood)),
               "voice_detection()->set_likelihood");
  check_webrtc(vad->set_frame_size_ms(kWebRtcFrameMs), "voice_detection()->set_frame_size_ms");
  check_webrtc(vad->Enable(true), "voice_detection()->Enable");
  s.reset_webrtc();
  s.set_frame_format();
}

VoiceActivityDetector::~VoiceActivityDetector() = default;
VoiceActivityDetector::VoiceActivityDetector(VoiceActivityDetector&&) noexcept = default;
VoiceActivityDetector& VoiceActivityDetector::operator=(VoiceActivityDetector&&) noexcept = default;

VadEvent VoiceActivityDetector::push_frame(const float* samples640, bool* raw_speech) {
  State& s = *state_;

  double sum_squares = 0.0;
  for (int i = 0; i < kVadFrameSamples; ++i) sum_squares += double(samples640[i]) * samples640[i];
  const double rms = std::sqrt(sum_squares / kVadFrameSamples);
  s.level_db = rms > 0.0 ? std::max(kVadSilenceDb, float(20.0 * std::log10(rms))) : kVadSilenceDb;
  s.recent_levels_db[size_t(s.recent_next)] = s.level_db;
  s.recent_next = (s.recent_next + 1) % kNoiseFloorWindowFrames;
  s.recent_count = std::min(s.recent_count + 1, kNoiseFloorWindowFrames);
  s.noise_floor_db = *std::min_element(s.recent_levels_db.begin(), s.recent_levels_db.begin() + s.recent_count);

  if (!s.apm) {
    if (raw_speech) *raw_speech = false;
    return VadEvent::None;
  }

  int speech_subframes = 0;
  for (int sub = 0; sub < kSubframesPerFrame; ++sub) {
    const float* in = samples640 + sub * kWebRtcFrameSamples;
    for (int i = 0; i < kWebRtcFrameSamples; ++i) {
      s.frame.data_[i] = static_cast<int16_t>(std::lrint(std::clamp(in[i], -1.0f, 1.0f) * kInt16FullScale));
    }
    // ProcessStream is the capture path and may rewrite the frame's fields; restating the format each time
    // means a changed format can never trigger WebRTC's re-initialization (which would allocate).
    s.set_frame_format();
    check_webrtc(s.apm->ProcessStream(&s.frame), "ProcessStream");
    if (s.apm->voice_detection()->stream_has_voice()) ++speech_subframes;
  }
  const bool loud_enough = s.min_snr_db <= 0.0f || s.level_db >= s.noise_floor_db + s.min_snr_db;
  const bool gated_speech = speech_subframes >= kMinSpeechSubframes && loud_enough;
  if (raw_speech) *raw_speech = gated_speech;

  bool speech = gated_speech;
  if (s.warmup_frames_left > 0) {
    --s.warmup_frames_left;
    speech = false;
  }
  return s.debouncer.push(speech);
}

bool VoiceActivityDetector::in_speech() const { return state_->debouncer.in_speech(); }

float VoiceActivityDetector::level_db() const { return state_->level_db; }

float VoiceActivityDetector::noise_floor_db() const { return state_->noise_floor_db; }

int VoiceActivityDetector::preroll_frames() const { return state_->debouncer.preroll_frames(); }

int VoiceActivityDetector::max_preroll_frames() const { return state_->debouncer.max_preroll_frames(); }

void VoiceActivityDetector::reset() {
  State& s = *state_;
  s.debouncer.reset();
  s.warmup_frames_left = kWarmupFrames;
  s.level_db = kVadSilenceDb;
  s.recent_count = s.recent_next = 0;
  s.noise_floor_db = kVadSilenceDb;
  s.reset_webrtc();
}

}  // namespace conflux
