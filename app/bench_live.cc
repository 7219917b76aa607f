// `conflux bench --scenario live`: plays a scripted live timeline — speech from espeak-ng between
// silences, frames from GStreamer's videotestsrc — through the streaming session, in real time or as fast
// as possible, and reports frame→KV latency, end-of-turn→first-token, decode speed, real-time factor,
// drops and peak RSS; with --encoder-baseline, the same run again with the stand-in encoders.
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "app/cli.h"
#include "app/live.h"
#include "capture/video_source.h"
#include "engine/session/session.h"

namespace conflux::app {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr int kRate = 16000;
constexpr size_t kPushSamples = 320;  // 20 ms pushes, like a capture callback

// espeak-ng speech resampled to 16 kHz mono float by sox. Throws naming the tool that failed.
std::vector<float> speak(const fs::path& dir, const std::string& voice, const std::string& text, int index) {
  const fs::path wav = dir / ("u" + std::to_string(index) + ".wav"), raw = dir / ("u" + std::to_string(index) + ".f32");
  const std::string espeak = "espeak-ng -v " + voice + " -s 160 -w '" + wav.string() + "' \"" + text + "\" 2>/dev/null";
  if (std::system(espeak.c_str()) != 0) throw std::runtime_error("espeak-ng failed (is it installed? tools/setup.sh): " + espeak);
  const std::string sox = "sox '" + wav.string() + "' -r 16000 -c 1 -t raw -e floating-point -b 32 '" + raw.string() + "'";
  if (std::system(sox.c_str()) != 0) throw std::runtime_error("sox failed (is it installed? tools/setup.sh): " + sox);
  std::ifstream in(raw, std::ios::binary | std::ios::ate);
  std::vector<float> s(size_t(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(s.data()), std::streamsize(s.size() * sizeof(float)));
  return s;
}

struct Script {
  std::vector<float> audio;                         // 16 kHz timeline
  std::vector<std::pair<double, ImageRGB>> frames;  // (time s, frame)
};

// Turns of (silence, utterance) plus a closing silence; video at `fps` over the whole timeline.
Script make_script(int turns, double fps, int width, int height) {
  const fs::path dir = fs::temp_directory_path() / ("conflux_bench_live_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const char* const kPrompts[] = {"what do you see", "how many shapes are there", "what colour is the circle",
                                  "hello, describe the picture"};
  const char* const kVoices[] = {"en-us", "en-gb", "en-us+f3", "en-gb+m3"};
  Script s;
  std::mt19937 rng(7);
  std::normal_distribution<float> hiss(0.f, 0.001f);  // -60 dBFS room noise: the VAD needs a real floor
  auto silence = [&](double seconds) {
    for (size_t i = 0; i < size_t(seconds * kRate); ++i) s.audio.push_back(hiss(rng));
  };
  for (int t = 0; t < turns; ++t) {
    silence(1.0);
    for (float x : speak(dir, kVoices[t % 4], kPrompts[t % 4], t)) s.audio.push_back(x + hiss(rng));
  }
  silence(1.5);
  fs::remove_all(dir);
  // Frames from a real GStreamer pipeline, decoded up front so that both playback modes push the same ones.
  const double duration = double(s.audio.size()) / kRate;
  const int n_frames = int(duration * fps) + 1;
  capture::VideoSourceConfig vc;
  vc.source = "videotestsrc pattern=ball num-buffers=" + std::to_string(n_frames) + " ! video/x-raw,width=" +
              std::to_string(width) + ",height=" + std::to_string(height) + ",framerate=" + std::to_string(int(fps)) + "/1";
  vc.max_buffers = n_frames;  // keep every frame: this is a script, not a live camera
  vc.sync = false;
  std::mutex mu;
  capture::VideoSource src(vc, [&](ImageRGB&& f, capture::TimePoint) {
    std::lock_guard<std::mutex> lock(mu);
    s.frames.emplace_back(double(s.frames.size()) / fps, std::move(f));
  });
  src.start();
  if (!src.wait_until_finished(std::chrono::seconds(60)) || src.status().state == capture::StreamStatus::State::kError)
    throw std::runtime_error("videotestsrc pipeline failed: " + src.status().message);
  src.stop();
  return s;
}

json percentiles(const Percentiles& p) { return {{"p50", p.p50}, {"p95", p.p95}, {"p99", p.p99}, {"count", p.count}}; }

json play(const Model& model, const Tokenizer& tok, const Script& script, const SessionConfig& base, bool realtime,
          bool encoder_baseline, int budget, int answer_tokens, int threads) {
  RuntimeConfig rc;
  rc.n_threads = threads;
  rc.max_context = 8192;
  rc.max_chunk = std::max(512, budget);
  SessionConfig cfg = base;
  cfg.image_budget = budget;
  cfg.max_answer_tokens = answer_tokens;
  cfg.encoder_baseline = encoder_baseline;
  // As fast as possible means the player outruns the session by design; a live camera would drop the
  // frames the session cannot take, but a scripted run must give every run the same frames.
  if (!realtime) cfg.video_queue_frames = int(script.frames.size()) + 1;
  cfg.sampling.stop_tokens = {tok.eos_id()};
  if (const int32_t end_turn = tok.token_id("<turn|>"); end_turn >= 0) cfg.sampling.stop_tokens.push_back(end_turn);
  Session session(model, tok, rc, cfg);
  int64_t tokens = 0;
  session.subscribe([&](const SessionEvent& e) {
    if (e.kind == SessionEvent::Kind::Token) ++tokens;
  });
  session.start();
  const TimePoint t0 = SessionClock::now();
  size_t next_frame = 0;
  int64_t audio_frames_pushed = 0;
  for (size_t off = 0; off < script.audio.size(); off += kPushSamples) {
    const double t = double(off) / kRate;
    const TimePoint when = t0 + std::chrono::duration_cast<SessionClock::duration>(std::chrono::duration<double>(t));
    if (realtime) std::this_thread::sleep_until(when);
    while (next_frame < script.frames.size() && script.frames[next_frame].first <= t) {
      const double ft = script.frames[next_frame].first;
      session.push_video(script.frames[next_frame].second,
                         t0 + std::chrono::duration_cast<SessionClock::duration>(std::chrono::duration<double>(ft)));
      ++next_frame;
    }
    const size_t n = std::min(kPushSamples, script.audio.size() - off);
    session.push_audio(script.audio.data() + off, n, when);
  }
  audio_frames_pushed = int64_t(script.audio.size() / 640);
  session.wait_idle();
  const double wall = std::chrono::duration<double>(SessionClock::now() - t0).count();
  const SessionSnapshot snap = session.snapshot();
  session.stop();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double token_ms = snap.decode_token_ms.p50;
  return {
      {"audio_frame_to_kv_ms", percentiles(snap.audio_frame_to_kv_ms)},
      {"audio_encoder_ms", percentiles(snap.audio_encoder_ms)},
      {"video_encoder_ms", percentiles(snap.video_encoder_ms)},
      {"video_frame_to_kv_ms", percentiles(snap.video_frame_to_kv_ms)},
      {"turn_end_to_first_token_ms", percentiles(snap.turn_end_to_first_token_ms)},
      {"turn_end_to_answer_ms", percentiles(snap.turn_end_to_answer_ms)},
      {"thinking", cfg.thinking},
      {"decode_tokens_per_s", token_ms > 0 ? 1000.0 / token_ms : 0.0},
      {"realtime_factor", double(script.audio.size()) / kRate / wall},
      {"dropped_audio_frames", audio_frames_pushed - snap.audio_frames_in},
      {"dropped_video_frames", snap.video_frames_dropped},
      {"video_frames_in_model", snap.video_frames_sampled},
      {"audio_frames_in_model", snap.audio_frames},
      {"answers", snap.turn},
      {"tokens", tokens},
      {"wall_s", wall},
      {"peak_rss_mb", double(ru.ru_maxrss) / 1024.0},
  };
}

void print_table(const std::string& title, const json& r) {
  auto row = [&](const char* name, const json& p) {
    std::printf("  %-30s p50 %9.1f   p95 %9.1f   p99 %9.1f   (n=%lld)\n", name, p["p50"].get<double>(), p["p95"].get<double>(),
                p["p99"].get<double>(), (long long)p["count"].get<int64_t>());
  };
  std::printf("%s\n", title.c_str());
  row("audio frame -> KV (ms)", r["audio_frame_to_kv_ms"]);
  row("video frame -> KV (ms)", r["video_frame_to_kv_ms"]);
  row("end of turn -> first token (ms)", r["turn_end_to_first_token_ms"]);
  if (r["thinking"].get<bool>()) row("end of turn -> answer (ms)", r["turn_end_to_answer_ms"]);
  std::printf("  decode %.1f tokens/s | real-time factor %.2f | dropped audio %lld, video %lld | peak RSS %.0f MB\n",
              r["decode_tokens_per_s"].get<double>(), r["realtime_factor"].get<double>(),
              (long long)r["dropped_audio_frames"].get<int64_t>(), (long long)r["dropped_video_frames"].get<int64_t>(),
              r["peak_rss_mb"].get<double>());
}

}  // namespace

int run_live_bench(const Args& args, const Model& model, const Tokenizer& tok) {
  const bool realtime = args.get_or("speed", "realtime") != "max";
  if (args.get_or("speed", "realtime") != "max" && args.get_or("speed", "realtime") != "realtime")
    throw CliError("--speed must be realtime or max");
  const int turns = args.get_int("turns", 3);
  const int budget = args.get_int("budget", default_image_budget(args.get_or("model", "")));
  SessionConfig base;
  apply_model_session_defaults(model.dir(), args, base);
  // A thought (the bundled model describes the frame in ~25 tokens) comes before the answer.
  const int answer_tokens = args.get_int("answer-tokens", base.thinking ? 64 : 16);
  const int threads = args.get_int("threads", 0);
  const double fps = args.get_double("video-fps", 5);
  const Script script = make_script(turns, fps, 640, 480);
  json out = play(model, tok, script, base, realtime, false, budget, answer_tokens, threads);
  out["scenario"] = {{"turns", turns}, {"audio_s", double(script.audio.size()) / kRate}, {"video_frames", script.frames.size()},
                     {"camera_fps", fps}, {"image_budget", budget}, {"speed", realtime ? "realtime" : "max"},
                     {"model", model.dir()}};
  if (args.flag("encoder-baseline"))
    out["encoder_baseline"] = play(model, tok, script, base, realtime, true, budget, answer_tokens, threads);
  if (args.flag("json")) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("live scenario: %d turns, %.1f s of speech and silence, %zu camera frames at %.0f fps, budget %d, %s\n", turns,
                double(script.audio.size()) / kRate, script.frames.size(), fps, budget, realtime ? "real time" : "as fast as possible");
    print_table("encoder-free (Conflux):", out);
    if (out.contains("encoder_baseline")) print_table("with the E4B-sized encoder baseline:", out["encoder_baseline"]);
  }
  return 0;
}

}  // namespace conflux::app
