// What the latency overlay plots and exports, kept on the UI thread: per-frame frame→KV latencies,
// one record per answered turn, and the session snapshot sampled at a fixed period. Fed only from
// events the front end drains and snapshots it reads, so keeping it never waits on inference.
// Free of ImGui and OpenGL, so the tests can check it (and the CSV/JSON exports) without a display.
#pragma once
#include <string>

#include "engine/session/session.h"
#include "ui/ring.h"

namespace conflux::ui {

// One sampled snapshot. Every field is a float so ImGui::PlotLines can read a field straight out of
// the ring of samples with a stride of sizeof(MetricsSample).
struct MetricsSample {
  float t_s = 0;                    // seconds since the run started
  float audio_frame_to_kv_p50_ms = 0;
  float video_frame_to_kv_p50_ms = 0;
  float turn_end_to_first_token_p50_ms = 0;
  float tokens_per_s = 0;           // Token events counted over the last sample period
  float audio_queue_ms = 0;         // audio waiting in the session's queue
  float video_queue_frames = 0;
  float video_frames_dropped = 0;   // total since the start
  float realtime_factor = 0;        // input seconds processed per wall second
  float kv_positions = 0;
};

// One answered turn, split by stage: end of turn → turn closed → first token → last token.
struct TurnRecord {
  int turn = 0;
  TurnTrigger trigger = TurnTrigger::Request;
  float end_to_closed_ms = 0;
  float closed_to_first_ms = 0;
  float first_to_last_ms = 0;
  float end_to_first_ms = 0;        // the sum of the first two: what the user waits for
  float tokens_per_s = 0;           // decode rate after the first token
  int tokens = 0;
  bool interrupted = false;
};

const char* trigger_name(TurnTrigger t);

class MetricsHistory {
 public:
  // 10 samples a second: smooth enough for queue depths, and 600 of them show the last minute.
  static constexpr double kSamplePeriodSeconds = 0.1;
  static constexpr size_t kSamples = 600;
  // 25 audio frames a second (40 ms each): 500 are the last 20 s of audio.
  static constexpr size_t kFrameLatencies = 500;
  static constexpr size_t kTurns = 64;

  explicit MetricsHistory(TimePoint origin) : origin_(origin), last_sample_(origin) {}

  // Every event the front end drains: counts tokens, records turns from AnswerDone, and takes the
  // per-frame latencies of AudioFrameInKv / VideoFrameInKv.
  void on_event(const SessionEvent& e);
  // Takes a sample when a sample period has passed since the last one; returns whether it did.
  bool maybe_sample(const SessionSnapshot& s, TimePoint now);
  // Unconditionally (tests; the last sample before an export).
  void sample(const SessionSnapshot& s, TimePoint now);

  const Ring<MetricsSample, kSamples>& samples() const { return samples_; }
  const Ring<float, kFrameLatencies>& audio_frame_to_kv_ms() const { return audio_latency_; }
  const Ring<float, kFrameLatencies>& video_frame_to_kv_ms() const { return video_latency_; }
  const Ring<TurnRecord, kTurns>& turns() const { return turns_; }
  const SessionSnapshot& last_snapshot() const { return last_snapshot_; }

  // The sampled series, one row per sample with a header naming the columns and units.
  std::string to_csv() const;
  // {"percentiles": {...}, "turns": [...], "samples": [...], "frame_latencies_ms": {...}}.
  std::string to_json() const;

 private:
  TimePoint origin_, last_sample_;
  int64_t tokens_since_sample_ = 0;
  SessionSnapshot last_snapshot_;
  Ring<MetricsSample, kSamples> samples_;
  Ring<float, kFrameLatencies> audio_latency_, video_latency_;
  Ring<TurnRecord, kTurns> turns_;
};

// Writes `contents` to `path`; returns false (and the reason in *error) when it cannot.
bool write_text_file(const std::string& path, const std::string& contents, std::string* error);

}  // namespace conflux::ui
