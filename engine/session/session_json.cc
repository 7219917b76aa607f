// The session's JSON: events as metrics lines (event_to_json) and every setting with the model's
// identity (session_settings_json / session_settings_from_json), which recordings store for replay.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/session/session.h"

namespace conflux {
namespace {
double ms_between(TimePoint a, TimePoint b) { return std::chrono::duration<double, std::milli>(b - a).count(); }
}  // namespace
}  // namespace conflux

namespace conflux {

std::string event_to_json(const SessionEvent& e, TimePoint origin) {
  auto ms = [&](TimePoint t) { return t == TimePoint{} ? nlohmann::json(nullptr) : nlohmann::json(ms_between(origin, t)); };
  static const char* const kNames[] = {"speech_started", "speech_ended", "image_added", "answer_started", "token",
                                       "answer_done", "frame_dropped", "evicted", "audio_frame_in_kv",
                                       "video_frame_in_kv", "error"};
  nlohmann::json j = {{"event", kNames[int(e.kind)]}, {"turn", e.turn}, {"t_ms", ms(e.time)}};
  switch (e.kind) {
    case SessionEvent::Kind::Token:
      j["token"] = e.token;
      j["text"] = e.text;
      if (e.in_thought) j["thought"] = true;
      break;
    case SessionEvent::Kind::AnswerDone: {
      static const char* const kTriggers[] = {"end_of_speech", "typed_text", "push_to_talk", "commentary", "request"};
      j["text"] = e.text;
      j["trigger"] = kTriggers[int(e.timing.trigger)];
      j["turn_end_ms"] = ms(e.timing.trigger_time);
      j["turn_closed_ms"] = ms(e.timing.turn_closed);
      j["first_token_ms"] = ms(e.timing.first_token);
      j["answer_start_ms"] = ms(e.timing.answer_start);
      if (!e.thought.empty()) j["thought"] = e.thought;
      j["last_token_ms"] = ms(e.timing.last_token);
      j["tokens"] = e.timing.n_tokens;
      j["interrupted"] = e.timing.interrupted;
      break;
    }
    case SessionEvent::Kind::AudioFrameInKv:
    case SessionEvent::Kind::VideoFrameInKv:
      j["captured_ms"] = ms(e.frame.captured);
      j["arrived_ms"] = ms(e.frame.arrived);
      j["dequeued_ms"] = ms(e.frame.dequeued);
      j["preprocessed_ms"] = ms(e.frame.preprocessed);
      j["embedded_ms"] = ms(e.frame.embedded);
      j["in_kv_ms"] = ms(e.frame.in_kv);
      if (e.frame.encoder_ms > 0) j["encoder_ms"] = e.frame.encoder_ms;
      break;
    case SessionEvent::Kind::ImageAdded:
    case SessionEvent::Kind::Evicted:
      j["count"] = e.count;
      break;
    case SessionEvent::Kind::Error:
      j["message"] = e.text;
      break;
    default:
      break;
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace conflux

namespace conflux {

// The live settings as a JSON object: the layout of a recording's settings lines and of the live part of
// session_settings_json, read back by session_settings_from_json in both cases.
static nlohmann::json live_settings_object(const LiveSettings& s) {
  return {{"image_budget", s.image_budget},
          {"video_fps", s.video_fps},
          {"vad", {{"enabled", s.vad.enabled}, {"likelihood", s.vad.likelihood}, {"min_speech_ms", s.vad.min_speech_ms},
                   {"hangover_ms", s.vad.hangover_ms}, {"preroll_ms", s.vad.preroll_ms}, {"min_snr_db", s.vad.min_snr_db}}},
          {"barge_in", s.barge_in},
          {"commentary_interval_s", s.commentary_interval_s},
          {"max_answer_tokens", s.max_answer_tokens},
          {"encoder_baseline", s.encoder_baseline}};
}

std::string session_settings_json(const Model& model, const RuntimeConfig& rc, const SessionConfig& c) {
  namespace fs = std::filesystem;
  const fs::path dir(model.dir());
  const auto size_of = [&](const char* name) -> int64_t {
    std::error_code ec;
    const auto n = fs::file_size(dir / name, ec);
    return ec ? -1 : int64_t(n);
  };
  nlohmann::json j = {
      {"model", {{"dir", model.dir()},
                 {"model_type", model.config().model_type},
                 {"weight_bytes", model.weight_bytes()},
                 {"weight_dtype", std::string(dtype_name(model.weight_dtype()))},
                 {"config_json_bytes", size_of("config.json")},
                 {"tokenizer_json_bytes", size_of("tokenizer.json")}}},
      {"runtime", {{"max_context", rc.max_context},
                   {"max_chunk", rc.max_chunk},
                   {"image_attention", rc.image_attention == ImageAttention::AllLayers ? "all-layers" : "hf"},
                   {"kv_cache", rc.kv_dtype == DType::BF16 ? "bf16" : "f32"}}},
      {"session", live_settings_object(live_settings_of(c))},
  };
  // The live settings (one layout, shared with live_settings_to_json) plus those fixed for the session.
  nlohmann::json& session = j["session"];
  session["system_prompt"] = c.system_prompt;
  session["thinking"] = c.thinking;
  session["image_at_turn_end"] = c.image_at_turn_end;
  session["sampling"] = {{"temperature", c.sampling.temperature}, {"top_k", c.sampling.top_k}, {"top_p", c.sampling.top_p},
                         {"seed", c.sampling.seed}, {"suppress_tokens", c.sampling.suppress_tokens},
                         {"stop_tokens", c.sampling.stop_tokens}};
  session["context_budget"] = c.context_budget;
  session["audio_queue_seconds"] = c.audio_queue_seconds;
  session["video_queue_frames"] = c.video_queue_frames;
  session["video_queue_waits"] = c.video_queue_waits;
  return j.dump();
}

void session_settings_from_json(const std::string& text, RuntimeConfig& rc, SessionConfig& c) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("settings are not valid JSON: ") + e.what());
  }
  auto field = [](const nlohmann::json& obj, const char* path, const char* key, auto& out) {
    if (!obj.is_object() || !obj.contains(key)) return;
    try {
      out = obj[key].get<std::decay_t<decltype(out)>>();
    } catch (const nlohmann::json::exception&) {
      throw std::runtime_error(std::string("settings field ") + path + "." + key + " has the wrong type: " + obj[key].dump());
    }
  };
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& r = j.value("runtime", empty);
  field(r, "runtime", "max_context", rc.max_context);
  field(r, "runtime", "max_chunk", rc.max_chunk);
  // A setting spelled one of two ways; absent keeps the base's value, anything else is an error.
  const auto one_of_two = [&](const nlohmann::json& obj, const char* path, const char* key, const char* first,
                              const char* second, bool& is_second) {
    std::string value = is_second ? second : first;
    field(obj, path, key, value);
    if (value != first && value != second)
      throw std::runtime_error(std::string("settings field ") + path + "." + key + " is " + value);
    is_second = value == second;
  };
  bool all_layers = rc.image_attention == ImageAttention::AllLayers;
  one_of_two(r, "runtime", "image_attention", "hf", "all-layers", all_layers);
  rc.image_attention = all_layers ? ImageAttention::AllLayers : ImageAttention::SlidingOnly;
  // Recordings made before the KV cache had a format leave it out: the base's value (float32 by default).
  bool bf16_cache = rc.kv_dtype == DType::BF16;
  one_of_two(r, "runtime", "kv_cache", "f32", "bf16", bf16_cache);
  rc.kv_dtype = bf16_cache ? DType::BF16 : DType::F32;
  const nlohmann::json& s = j.value("session", empty);
  field(s, "session", "system_prompt", c.system_prompt);
  // Recordings made before these existed leave them out: the base's values (a replay passes the model's).
  field(s, "session", "thinking", c.thinking);
  field(s, "session", "image_at_turn_end", c.image_at_turn_end);
  field(s, "session", "image_budget", c.image_budget);
  field(s, "session", "video_fps", c.video_fps);
  const nlohmann::json& v = s.value("vad", empty);
  field(v, "session.vad", "enabled", c.vad.enabled);
  field(v, "session.vad", "likelihood", c.vad.likelihood);
  field(v, "session.vad", "min_speech_ms", c.vad.min_speech_ms);
  field(v, "session.vad", "hangover_ms", c.vad.hangover_ms);
  field(v, "session.vad", "preroll_ms", c.vad.preroll_ms);
  // Recordings made before the noise gate existed leave it out: they replay without it, as recorded.
  c.vad.min_snr_db = 0.0f;
  field(v, "session.vad", "min_snr_db", c.vad.min_snr_db);
  field(s, "session", "barge_in", c.barge_in);
  field(s, "session", "commentary_interval_s", c.commentary_interval_s);
  const nlohmann::json& sp = s.value("sampling", empty);
  field(sp, "session.sampling", "temperature", c.sampling.temperature);
  field(sp, "session.sampling", "top_k", c.sampling.top_k);
  field(sp, "session.sampling", "top_p", c.sampling.top_p);
  field(sp, "session.sampling", "seed", c.sampling.seed);
  field(sp, "session.sampling", "suppress_tokens", c.sampling.suppress_tokens);
  field(sp, "session.sampling", "stop_tokens", c.sampling.stop_tokens);
  field(s, "session", "max_answer_tokens", c.max_answer_tokens);
  field(s, "session", "context_budget", c.context_budget);
  field(s, "session", "audio_queue_seconds", c.audio_queue_seconds);
  field(s, "session", "video_queue_frames", c.video_queue_frames);
  field(s, "session", "video_queue_waits", c.video_queue_waits);
  field(s, "session", "encoder_baseline", c.encoder_baseline);
}

}  // namespace conflux

namespace conflux {

LiveSettings live_settings_of(const SessionConfig& c) {
  LiveSettings s;
  s.image_budget = c.image_budget;
  s.video_fps = c.video_fps;
  s.vad = c.vad;
  s.barge_in = c.barge_in;
  s.commentary_interval_s = c.commentary_interval_s;
  s.max_answer_tokens = c.max_answer_tokens;
  s.encoder_baseline = c.encoder_baseline;
  return s;
}

void apply_live_settings(const LiveSettings& s, SessionConfig& c) {
  c.image_budget = s.image_budget;
  c.video_fps = s.video_fps;
  c.vad = s.vad;
  c.barge_in = s.barge_in;
  c.commentary_interval_s = s.commentary_interval_s;
  c.max_answer_tokens = s.max_answer_tokens;
  c.encoder_baseline = s.encoder_baseline;
}

std::string live_settings_to_json(const LiveSettings& s) { return live_settings_object(s).dump(); }

LiveSettings live_settings_from_json(const std::string& text) {
  // The same fields as the "session" object of session_settings_json, read by the same code.
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("live settings are not valid JSON: ") + e.what());
  }
  RuntimeConfig unused;
  SessionConfig c;
  session_settings_from_json(nlohmann::json{{"session", j}}.dump(), unused, c);
  return live_settings_of(c);
}

}  // namespace conflux
