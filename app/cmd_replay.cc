// `conflux replay`: feeds a recording back into a session with its original timing (or as fast as
// possible), prints the answers, and reports whether they reproduce the recorded ones token for token.
// A plain media file is played as live input instead.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "app/cli.h"
#include "app/live.h"
#include "capture/recording.h"
#include "engine/session/bounded_queue.h"
#include "ui/window.h"

namespace conflux::app {

namespace {

namespace fs = std::filesystem;

const char* kUsage =
    "usage: conflux replay PATH [options]\n"
    "\n"
    "PATH is a recording folder (conflux record, docs/recording-format.md) or any media file GStreamer\n"
    "can decode. A recording is fed back with its settings and original timing; with greedy sampling the\n"
    "answers reproduce the recorded ones token for token, and any divergence is reported (exit code 3).\n"
    "\n"
    "  --speed realtime|max|X   original timing (default), as fast as possible, or X times real time\n"
    "  --model DIR              use another checkpoint than the recorded one (to compare models)\n"
    "  --headless               the terminal, with the token-for-token comparison (the window, when\n"
    "                           there is a display, shows the replay live instead)\n"
    "  --overlay                open the window with the latency overlay shown\n"
    "  --screenshot FILE.png [--frames N]   save the window once the replay is done, then exit\n"
    "  --metrics FILE           every session event as JSON lines\n"
    "  --transcript FILE        one JSON line per answered turn\n"
    "  --threads N              worker threads (default: all cores)\n"
    "  --quantize q8|q4|bf16|f32  weight format to convert to at load (default: the recorded run's, so a\n"
    "                           recording made with --quantize replays with the same weights)\n"
    "  --mmap                 read weights already in that format in place from the file mapping\n"
    "                           instead of copying them into memory (slower decode; see README)\n";

// --quantize when given; otherwise the weight format the recorded run used (its settings name the
// decoder's dtype), so that a run recorded with --quantize q8 replays on the same q8 weights.
LoadOptions replay_load_options(const Args& args, const nlohmann::json& settings) {
  if (args.get("quantize")) return load_options(args);
  LoadOptions o;
  o.map_weights = args.flag("mmap");
  const std::string dtype = settings.value("model", nlohmann::json::object()).value("weight_dtype", "");
  if (dtype == "Q8_0") o.format = WeightFormat::Q8_0;
  else if (dtype == "Q4_0") o.format = WeightFormat::Q4_0;
  else if (dtype == "BF16") o.format = WeightFormat::BF16;
  else if (dtype == "F32") o.format = WeightFormat::F32;
  return o;  // anything else (F16, or no record): as stored
}

double parse_speed(const std::string& s) {
  if (s == "realtime") return 1.0;
  if (s == "max") return 0.0;
  try {
    size_t used = 0;
    const double x = std::stod(s, &used);
    if (used == s.size() && x > 0) return x;
  } catch (const std::exception&) {
  }
  throw CliError("--speed must be realtime, max or a positive factor, got '" + s + "'");
}

// The token and its text where two answers first differ, for the divergence report.
std::string describe(const Tokenizer& tok, const std::vector<int32_t>& ids, size_t at) {
  if (at >= ids.size()) return "(end of answer)";
  return std::to_string(ids[at]) + " " + nlohmann::json(tok.decode({ids[at]})).dump();
}

}  // namespace

int cmd_replay(int argc, char** argv) {
  Args args(argc, argv, {"headless", "overlay", "mmap"});
  if (args.help() || args.positional().size() != 1) {
    std::fputs(kUsage, args.help() ? stdout : stderr);
    return args.help() ? 0 : 2;
  }
  args.reject_unknown(
      {"speed", "model", "headless", "overlay", "screenshot", "frames", "metrics", "transcript", "threads", "quantize", "mmap"});
  const std::string path = args.positional()[0];
  const double speed = parse_speed(args.get_or("speed", "realtime"));
  if (!fs::exists(path)) throw std::runtime_error(path + ": no such file or folder");

  // A plain media file: play it as live input.
  if (!fs::is_directory(path)) {
    LiveOptions o;
    o.model_dir = args.get_or("model", "assets/model");
    o.load = load_options(args);
    o.media_file = path;
    o.realtime = speed != 0;
    o.metrics_file = args.get_or("metrics", "");
    o.transcript_file = args.get_or("transcript", "");
    o.runtime.n_threads = args.get_int("threads", 0);
    o.runtime.max_context = 8192;
    o.runtime.max_chunk = std::max(512, o.session.image_budget);
    apply_model_session_defaults(o.model_dir, args, o.session);
    return run_live(o);
  }

  // In the window (when there is a display): the recording drives the same window as live input.
  std::string why;
  if (!args.flag("headless") && ui::display_available(&why)) {
    const Recording checked = load_recording(path);  // errors before any window opens
    LiveOptions o;
    const nlohmann::json settings = nlohmann::json::parse(checked.settings_json);
    o.model_dir = args.get_or("model", settings.value("model", nlohmann::json::object()).value("dir", ""));
    // The model's way of running for what the recording leaves out (made before thinking existed).
    apply_model_session_defaults(o.model_dir, args, o.session);
    session_settings_from_json(checked.settings_json, o.runtime, o.session);
    o.load = replay_load_options(args, settings);
    o.recording = path;
    o.use_mic = o.use_camera = false;
    o.realtime = speed != 0;
    o.metrics_file = args.get_or("metrics", "");
    o.transcript_file = args.get_or("transcript", "");
    o.runtime.n_threads = args.get_int("threads", 0);
    o.session.recorder = nullptr;
    ui::WindowOptions w;
    w.overlay = args.flag("overlay");
    w.screenshot_path = args.get_or("screenshot", "");
    w.screenshot_frames = args.get_int("frames", w.screenshot_frames);
    std::fprintf(stderr, "conflux replay: %s in the window (--headless compares the answers token for token)\n", path.c_str());
    return ui::run_window(o, w);
  }

  // 1. The recording and the settings it was made with.
  const Recording rec = load_recording(path);
  if (!rec.tail.clean())
    std::fprintf(stderr, "conflux replay: %s ends torn (a crash while recording): ignored %lld partial bytes, %d trailing frames\n",
                 path.c_str(), (long long)(rec.tail.truncated_line_bytes + rec.tail.partial_audio_bytes), rec.tail.missing_frame_lines);
  RuntimeConfig rc;
  SessionConfig cfg;
  const nlohmann::json settings = nlohmann::json::parse(rec.settings_json);
  const std::string recorded_model = settings.value("model", nlohmann::json::object()).value("dir", "");
  const std::string model_dir = args.get_or("model", recorded_model);
  apply_model_session_defaults(model_dir, args, cfg);  // for what a recording made before thinking leaves out
  session_settings_from_json(rec.settings_json, rc, cfg);
  rc.n_threads = args.get_int("threads", 0);
  const auto model = Model::load(model_dir, replay_load_options(args, settings));
  const Tokenizer tok = Tokenizer::load((fs::path(model_dir) / "tokenizer.json").string());
  const auto recorded_bytes = settings["model"].value("weight_bytes", int64_t(-1));
  const bool same_model = recorded_bytes == int64_t(model->weight_bytes());
  if (!same_model)
    std::fprintf(stderr, "conflux replay: %s is not the recorded model (%lld vs %lld weight bytes): answers will differ\n",
                 model_dir.c_str(), (long long)model->weight_bytes(), (long long)recorded_bytes);

  // 2. Replay into a fresh session; events go to this thread through a bounded queue.
  Session session(*model, tok, rc, cfg);
  BoundedQueue<SessionEvent> events(4096, OverflowPolicy::Block);
  session.subscribe([&](const SessionEvent& e) {
    if (e.kind != SessionEvent::Kind::AudioFrameInKv && e.kind != SessionEvent::Kind::VideoFrameInKv) events.push(e);
  });
  std::ofstream metrics, transcript;
  if (auto m = args.get("metrics"); m && !(metrics.open(*m), metrics)) throw std::runtime_error(*m + ": cannot create");
  if (auto t = args.get("transcript"); t && !(transcript.open(*t), transcript)) throw std::runtime_error(*t + ": cannot create");
  const TimePoint origin = SessionClock::now();
  session.start();
  std::atomic<bool> fed{false};
  std::string feed_error;
  std::thread feeder([&] {
    try {
      feed_recording(session, rec, origin, speed);
    } catch (const std::exception& e) {
      feed_error = e.what();
    }
    session.wait_idle();
    fed = true;
  });
  std::fprintf(stderr, "conflux replay: %s (%zu inputs, %zu recorded answers) on %s at %s\n", path.c_str(), rec.inputs.size(),
               rec.answers.size(), model_dir.c_str(), speed == 0 ? "full speed" : (std::to_string(speed) + "x").c_str());
  TerminalPrinter printer;
  auto handle = [&](const SessionEvent& e) {
    if (metrics.is_open()) metrics << event_to_json(e, origin) << '\n';
    printer.print(e);
    if (e.kind == SessionEvent::Kind::AnswerDone && transcript.is_open()) transcript << event_to_json(e, origin) << '\n';
  };
  while (!fed) {
    bool any = false;
    while (auto e = events.try_pop()) {
      handle(*e);
      any = true;
    }
    if (!any) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  feeder.join();
  session.stop();
  while (auto e = events.try_pop()) handle(*e);
  if (!feed_error.empty()) throw std::runtime_error(path + ": " + feed_error);

  // 3. Compare with what was recorded.
  const auto& got = session.answers();
  int diverged = 0;
  for (size_t i = 0; i < std::max(got.size(), rec.answers.size()); ++i) {
    if (i >= got.size() || i >= rec.answers.size()) {
      std::printf("answer %zu: %s\n", i + 1, i >= got.size() ? "recorded but not replayed" : "replayed but not recorded");
      ++diverged;
      continue;
    }
    const auto& want = rec.answers[i].tokens;
    size_t k = 0;
    while (k < want.size() && k < got[i].size() && want[k] == got[i][k]) ++k;
    if (k == want.size() && k == got[i].size()) continue;
    ++diverged;
    std::printf("answer %zu diverges at token %zu: recorded %s, replayed %s%s\n", i + 1, k, describe(tok, want, k).c_str(),
                describe(tok, got[i], k).c_str(), rec.answers[i].interrupted ? " (the recorded answer was interrupted by barge-in)" : "");
  }
  const SessionSnapshot s = session.snapshot();
  std::fprintf(stderr, "conflux replay: %zu answers, %s; audio→KV p50 %.1f ms p95 %.1f ms, turn→first token p50 %.1f ms, %llu video frames dropped\n",
               got.size(), diverged ? "DIVERGED from the recording" : "identical to the recording, token for token",
               s.audio_frame_to_kv_ms.p50, s.audio_frame_to_kv_ms.p95, s.turn_end_to_first_token_ms.p50,
               (unsigned long long)s.video_frames_dropped);
  return diverged ? 3 : 0;
}

}  // namespace conflux::app
