// Voice activity detection for the streaming session: decides when the user starts and stops talking,
// so the session knows which 40 ms audio frames form an utterance and when to let the model answer.
// WebRTC's VAD (libwebrtc-audio-processing 0.3) gives a raw speech/non-speech decision per 10 ms; this
// folds it into 40 ms frames, gates it by the frame's level above the room's noise floor, debounces it into
// SpeechStarted / SpeechEnded events and measures the frame level for a meter.
#pragma once

#include <memory>

namespace conflux {

// Audio format the session feeds: 16 kHz mono float in [-1, 1], cut into 40 ms frames.
inline constexpr int kVadSampleRateHz = 16000;
inline constexpr int kVadFrameMs = 40;
inline constexpr int kVadFrameSamples = kVadSampleRateHz / 1000 * kVadFrameMs;  // 640
static_assert(kVadFrameSamples == 640, "the session's audio frame is 640 samples");

struct VadConfig {
  bool enabled = true;        // false: no WebRTC instance; push_frame only measures the level, never fires events
  int likelihood = 1;         // 0..3 = WebRTC kVeryLow..kHigh: higher = more frames called speech
  int min_speech_ms = 120;    // speech must last this long before a turn opens (ignores clicks)
  int hangover_ms = 600;      // silence after speech before end of speech is declared
  int preroll_ms = 200;       // audio kept before speech onset and sent with it
  // Noise gate: a frame counts as speech only if it is also at least this many dB above the noise floor
  // (the quietest frame of the last kNoiseFloorWindowMs). WebRTC alone calls short bursts of a steady room's
  // noise speech (2-5 frames every few hundred ms at 25-40 dB SNR), which keeps a turn from ever ending or
  // opens a new one that interrupts the answer; 10 dB removed every such case in 400 spoken eval
  // recordings (tools/train/make_recordings.py) while moving the turn's start by 0.1 frames on average.
  // 0 turns the gate off (recordings made before it existed replay with 0).
  float min_snr_db = 10.0f;

  // Every field: a live settings change rebuilds the detector when any of them differs.
  bool operator==(const VadConfig&) const = default;
};

// The noise floor is the quietest 40 ms frame of the last 3 s: long enough to span the pauses between
// phrases, short enough to follow a room that gets louder.
inline constexpr int kNoiseFloorWindowMs = 3000;
inline constexpr int kNoiseFloorWindowFrames = kNoiseFloorWindowMs / kVadFrameMs;  // 75

enum class VadEvent { None, SpeechStarted, SpeechEnded };

// Timing contract (all counts are whole 40 ms frames; n(ms) = ceil(ms / 40), at least 1 for min_speech_ms
// and hangover_ms):
//
// Raw decision. WebRTC decides on each of the frame's four 10 ms sub-frames; the 40 ms frame is raw
// speech when at least two of them are speech and (min_snr_db > 0) its level is at least min_snr_db above
// the noise floor (the minimum level over the last kNoiseFloorWindowFrames frames, this one included). WebRTC's decision for a sub-frame uses only that
// sub-frame and the past (no look-ahead), and it carries its own internal hangover, so raw speech
// outlasts the loud part of the audio by about 100 ms. WebRTC also calls the first ~100 ms after
// construction or reset() speech whatever the input, so the detector's first 160 ms (4 frames) never
// count towards a turn (push_frame still reports WebRTC's decision for them); they can only be context.
//
// SpeechStarted is returned by the push call whose frame completes the onset run: n(min_speech_ms)
// raw-speech frames, in which single non-speech frames between speech frames are bridged (a bridged gap
// counts towards the run's length but not towards the speech it needs; two non-speech frames in a row
// drop the run). The utterance's first speech is in the run's first frame. Right after SpeechStarted,
// preroll_frames() says exactly how many frames *before* the current one belong to the utterance: the
// earlier frames of the onset run plus n(preroll_ms) frames of context before it. The session sends those
// preroll_frames() frames (oldest first), then the current frame. A session that keeps
// max_preroll_frames() past frames always has them.
//
// SpeechEnded is returned by the push call whose frame is the n(hangover_ms)-th consecutive raw non-speech
// frame after speech (any raw-speech frame restarts the count). The last speech is therefore in the frame
// n(hangover_ms) frames before the current one: the event fires n(hangover_ms) * 40 ms after the end of
// the last raw-speech frame. The frames after SpeechStarted up to SpeechEnded, both included, are the rest
// of the utterance (its tail is the hangover silence).

// The debounce state machine on its own: raw per-frame decisions in, events out. VoiceActivityDetector
// feeds it WebRTC's decisions; it is public so the contract above can be checked frame by frame.
class SpeechDebouncer {
 public:
  explicit SpeechDebouncer(const VadConfig& config);  // throws std::invalid_argument for negative durations

  VadEvent push(bool raw_speech);
  bool in_speech() const { return in_speech_; }
  int preroll_frames() const { return preroll_frames_; }
  int max_preroll_frames() const;
  void reset();

 private:
  int onset_speech_frames_needed_;  // n(min_speech_ms)
  int hangover_frames_;             // n(hangover_ms)
  int context_frames_;              // n(preroll_ms)

  bool in_speech_ = false;
  int onset_speech_frames_ = 0;  // raw-speech frames in the current onset run (0: no run)
  int onset_run_frames_ = 0;     // frames from the run's first speech frame to its latest one, gaps included
  int onset_gap_frames_ = 0;     // non-speech frames since the run's latest speech frame
  int silence_frames_ = 0;       // consecutive raw non-speech frames while in speech
  int preroll_frames_ = 0;       // set when SpeechStarted fires
};

class VoiceActivityDetector {
 public:
  // Throws std::invalid_argument for a config outside its ranges and std::runtime_error with the failing
  // WebRTC call and error code if WebRTC cannot be set up.
  explicit VoiceActivityDetector(const VadConfig& config);
  ~VoiceActivityDetector();
  VoiceActivityDetector(VoiceActivityDetector&&) noexcept;
  VoiceActivityDetector& operator=(VoiceActivityDetector&&) noexcept;
  VoiceActivityDetector(const VoiceActivityDetector&) = delete;
  VoiceActivityDetector& operator=(const VoiceActivityDetector&) = delete;

  // Feeds one kVadFrameSamples-sample frame. Stores the raw decision for the frame (WebRTC's, through the
  // noise gate) in *raw_speech if given, updates the debounced state and returns the event this frame triggers (see the contract above).
  // Does not allocate. Throws std::runtime_error if WebRTC rejects the frame.
  VadEvent push_frame(const float* samples640, bool* raw_speech = nullptr);

  bool in_speech() const;      // debounced state: true from SpeechStarted up to (not including) SpeechEnded
  // RMS level of the last frame in dB relative to full-scale DC or square wave (RMS 1.0), so a sine of
  // amplitude A reads 20*log10(A/sqrt(2)) (a full-scale sine: -3.01 dB). Digital silence reads kVadSilenceDb.
  float level_db() const;
  float noise_floor_db() const;  // the gate's floor after the last frame (kVadSilenceDb before any frame)
  // Valid right after push_frame returned SpeechStarted: the number of frames before the current one that
  // belong to the utterance (onset-run frames before the current one + n(preroll_ms)).
  int preroll_frames() const;
  // The most preroll_frames() can ever be under this config: the size of the history the session keeps.
  int max_preroll_frames() const;
  // Forgets all speech state (including WebRTC's, so the warm-up applies again); the config is kept.
  void reset();

  static constexpr float kVadSilenceDb = -100.0f;  // floor for level_db(), so digital zero is not -inf

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace conflux
