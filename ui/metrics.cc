// The overlay's metrics history: per-frame latencies, turn records, sampled snapshots, and their
// CSV/JSON exports.
#include "ui/metrics.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace conflux::ui {

namespace {

double ms_between(TimePoint a, TimePoint b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

// Stage durations are differences of clocks that may disagree a little (input time vs wall time for
// media read faster than real time); a negative stage means "no measurable wait", shown as 0.
float non_negative_ms(TimePoint a, TimePoint b) { return float(std::max(0.0, ms_between(a, b))); }

// Samples per second of 16 kHz mono audio, to express the queue in milliseconds.
constexpr double kAudioSamplesPerMs = 16.0;

nlohmann::json percentiles_json(const Percentiles& p) {
  return {{"p50", p.p50}, {"p95", p.p95}, {"p99", p.p99}, {"count", p.count}};
}

}  // namespace

const char* trigger_name(TurnTrigger t) {
  switch (t) {
    case TurnTrigger::EndOfSpeech: return "end of speech";
    case TurnTrigger::TypedText: return "typed text";
    case TurnTrigger::PushToTalkRelease: return "push-to-talk release";
    case TurnTrigger::Commentary: return "commentary timer";
    case TurnTrigger::Request: return "request";
  }
  return "?";
}

void MetricsHistory::on_event(const SessionEvent& e) {
  switch (e.kind) {
    case SessionEvent::Kind::Token: ++tokens_since_sample_; break;
    case SessionEvent::Kind::AudioFrameInKv:
      audio_latency_.push(non_negative_ms(e.frame.latency_origin(), e.frame.in_kv));
      break;
    case SessionEvent::Kind::VideoFrameInKv:
      video_latency_.push(non_negative_ms(e.frame.latency_origin(), e.frame.in_kv));
      break;
    case SessionEvent::Kind::AnswerDone: {
      const TurnTiming& t = e.timing;
      TurnRecord r;
      r.turn = e.turn;
      r.trigger = t.trigger;
      r.tokens = t.n_tokens;
      r.interrupted = t.interrupted;
      r.end_to_closed_ms = non_negative_ms(t.trigger_time, t.turn_closed);
      if (t.n_tokens > 0) {
        r.closed_to_first_ms = non_negative_ms(t.turn_closed, t.first_token);
        r.first_to_last_ms = non_negative_ms(t.first_token, t.last_token);
      }
      r.end_to_first_ms = r.end_to_closed_ms + r.closed_to_first_ms;
      // The first token's time is the prefill's; the rate counts the tokens decoded after it.
      if (t.n_tokens > 1 && r.first_to_last_ms > 0) r.tokens_per_s = float((t.n_tokens - 1) / (r.first_to_last_ms / 1000.0));
      turns_.push(r);
      break;
    }
    default: break;
  }
}

bool MetricsHistory::maybe_sample(const SessionSnapshot& s, TimePoint now) {
  if (now - last_sample_ < std::chrono::duration<double>(kSamplePeriodSeconds)) return false;
  sample(s, now);
  return true;
}

void MetricsHistory::sample(const SessionSnapshot& s, TimePoint now) {
  const double period_s = ms_between(last_sample_, now) / 1000.0;
  MetricsSample m;
  m.t_s = float(ms_between(origin_, now) / 1000.0);
  m.audio_frame_to_kv_p50_ms = float(s.audio_frame_to_kv_ms.p50);
  m.video_frame_to_kv_p50_ms = float(s.video_frame_to_kv_ms.p50);
  m.turn_end_to_first_token_p50_ms = float(s.turn_end_to_first_token_ms.p50);
  m.tokens_per_s = period_s > 0 ? float(double(tokens_since_sample_) / period_s) : 0.f;
  m.audio_queue_ms = float(double(s.audio_queue_samples) / kAudioSamplesPerMs);
  m.video_queue_frames = float(s.video_queue_frames);
  m.video_frames_dropped = float(s.video_frames_dropped);
  m.realtime_factor = float(s.realtime_factor);
  m.kv_positions = float(s.positions);
  samples_.push(m);
  tokens_since_sample_ = 0;
  last_sample_ = now;
  last_snapshot_ = s;
}

std::string MetricsHistory::to_csv() const {
  std::ostringstream out;
  out << "t_s,audio_frame_to_kv_p50_ms,video_frame_to_kv_p50_ms,turn_end_to_first_token_p50_ms,tokens_per_s,"
         "audio_queue_ms,video_queue_frames,video_frames_dropped,realtime_factor,kv_positions\n";
  for (size_t i = 0; i < samples_.size(); ++i) {
    const MetricsSample& m = samples_.at(i);
    char row[512];
    std::snprintf(row, sizeof row, "%.3f,%.3f,%.3f,%.3f,%.2f,%.1f,%.0f,%.0f,%.3f,%.0f\n", m.t_s, m.audio_frame_to_kv_p50_ms,
                  m.video_frame_to_kv_p50_ms, m.turn_end_to_first_token_p50_ms, m.tokens_per_s, m.audio_queue_ms,
                  m.video_queue_frames, m.video_frames_dropped, m.realtime_factor, m.kv_positions);
    out << row;
  }
  return out.str();
}

std::string MetricsHistory::to_json() const {
  const SessionSnapshot& s = last_snapshot_;
  nlohmann::json j;
  j["percentiles"] = {{"audio_frame_to_kv_ms", percentiles_json(s.audio_frame_to_kv_ms)},
                      {"video_frame_to_kv_ms", percentiles_json(s.video_frame_to_kv_ms)},
                      {"turn_end_to_first_token_ms", percentiles_json(s.turn_end_to_first_token_ms)},
                      {"decode_token_ms", percentiles_json(s.decode_token_ms)}};
  j["counters"] = {{"turns", s.turn},
                   {"audio_frames_in", s.audio_frames_in},
                   {"audio_frames_in_kv", s.audio_frames},
                   {"video_frames_in", s.video_frames_in},
                   {"video_frames_in_kv", s.video_frames_sampled},
                   {"video_frames_dropped", s.video_frames_dropped},
                   {"kv_positions", s.positions},
                   {"evicted_positions", s.evicted_positions},
                   {"realtime_factor", s.realtime_factor}};
  nlohmann::json turns = nlohmann::json::array();
  for (size_t i = 0; i < turns_.size(); ++i) {
    const TurnRecord& r = turns_.at(i);
    turns.push_back({{"turn", r.turn},
                     {"trigger", trigger_name(r.trigger)},
                     {"end_to_closed_ms", r.end_to_closed_ms},
                     {"closed_to_first_token_ms", r.closed_to_first_ms},
                     {"first_to_last_token_ms", r.first_to_last_ms},
                     {"end_to_first_token_ms", r.end_to_first_ms},
                     {"tokens", r.tokens},
                     {"tokens_per_s", r.tokens_per_s},
                     {"interrupted", r.interrupted}});
  }
  j["turns"] = std::move(turns);
  nlohmann::json samples = nlohmann::json::array();
  for (size_t i = 0; i < samples_.size(); ++i) {
    const MetricsSample& m = samples_.at(i);
    samples.push_back({{"t_s", m.t_s},
                       {"audio_frame_to_kv_p50_ms", m.audio_frame_to_kv_p50_ms},
                       {"video_frame_to_kv_p50_ms", m.video_frame_to_kv_p50_ms},
                       {"turn_end_to_first_token_p50_ms", m.turn_end_to_first_token_p50_ms},
                       {"tokens_per_s", m.tokens_per_s},
                       {"audio_queue_ms", m.audio_queue_ms},
                       {"video_queue_frames", m.video_queue_frames},
                       {"video_frames_dropped", m.video_frames_dropped},
                       {"realtime_factor", m.realtime_factor},
                       {"kv_positions", m.kv_positions}});
  }
  j["samples"] = std::move(samples);
  auto ring_json = [](const auto& ring) {
    nlohmann::json a = nlohmann::json::array();
    for (size_t i = 0; i < ring.size(); ++i) a.push_back(ring.at(i));
    return a;
  };
  j["frame_latencies_ms"] = {{"audio", ring_json(audio_latency_)}, {"video", ring_json(video_latency_)}};
  return j.dump(2);
}

bool write_text_file(const std::string& path, const std::string& contents, std::string* error) {
  std::ofstream out(path, std::ios::binary);
  if (out) out << contents;
  if (out) out.flush();
  if (!out) {
    if (error) *error = "cannot write " + path;
    return false;
  }
  return true;
}

}  // namespace conflux::ui
