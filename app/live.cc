// Live sources → session → terminal. The session's events are handed to the main thread through a
// bounded queue, so printing never happens on the inference thread.
#include "app/live.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "capture/media_file.h"
#include "capture/microphone.h"
#include "capture/recording.h"
#include "capture/video_source.h"
#include "engine/sampler.h"

namespace conflux::app {

namespace fs = std::filesystem;

const char* const kLiveOptionsHelp =
    "  --model DIR            checkpoint folder (default: assets/model)\n"
    "  --quantize q8|q4|bf16|f32  convert the weights to this format at load (default: as stored)\n"
    "  --mmap                 read weights in place from the file mapping instead of copying them\n"
    "  --kv-cache f32|bf16    KV cache entries (default f32; bf16 halves its memory and reads)\n"
    "  --mic DEVICE           input device name (substring) or index; --no-mic to disable\n"
    "  --camera PIPELINE      GStreamer source, e.g. \"v4l2src device=/dev/video0\" or \"ximagesrc\"; --no-camera\n"
    "  --media FILE           play an audio/video file as the input (--speed realtime|max)\n"
    "  --system TEXT          system prompt\n"
    "  --thinking on|off      the model writes a thought before each answer (default: the model's\n"
    "                         generation_config.json enable_thinking, else off; the bundled model: on)\n"
    "  --image-at-turn-end on|off  show the newest frame again as a turn closes (default: the model's\n"
    "                         image_at_turn_end, else off; the bundled model: on)\n"
    "  --budget N             image soft tokens per frame, 1..1120 (HF offers 70, 140, 280, 560, 1120);\n"
    "                         default: the model's preprocessor_config.json max_soft_tokens, else 280\n"
    "  --fps F                video frames per second sampled into the model (default 1)\n"
    "  --vad-likelihood 0..3  VAD sensitivity (default 1); --hangover-ms N (default 600); --no-vad\n"
    "  --vad-gate-db N        speech must be N dB above the room's noise floor (default 10; 0 = off)\n"
    "  --no-barge-in          let answers finish while the user speaks\n"
    "  --commentary S         answer every S seconds of input even without a question\n"
    "  --max-tokens N         answer length limit (default 256)\n"
    "  --temperature T --top-k K --top-p P --seed S   sampling (default greedy)\n"
    "  --threads N            worker threads (default: all cores)\n"
    "  --max-context N        KV capacity in positions (default 8192)\n"
    "  --record DIR           record what the model consumed (docs/recording-format.md)\n"
    "  --metrics FILE         every session event as JSON lines\n"
    "  --transcript FILE      one JSON line per answered turn\n"
    "  --duration S           stop after S seconds\n"
    "  --encoder-baseline     also run E4B-sized stand-in encoders, to measure what encoder-free saves\n";

const std::vector<std::string> kLiveOptionNames = {
    "model", "quantize", "kv-cache", "mic", "camera", "media", "speed", "system", "thinking", "image-at-turn-end",
    "budget", "fps", "vad-likelihood",
    "hangover-ms", "vad-gate-db", "commentary", "max-tokens", "temperature", "top-k", "top-p", "seed", "threads", "max-context",
    "record", "metrics", "transcript", "duration"};
const std::vector<std::string> kLiveFlagNames = {"mmap", "no-mic", "no-camera", "no-vad", "no-barge-in", "encoder-baseline",
                                                 "no-status"};

// A path under assets/: as given when it exists from the current folder, else next to the binary's
// checkout (build/app/conflux -> ../../assets), so the defaults work from any folder.
std::string resolve_asset(const std::string& relative) {
  if (fs::exists(relative)) return relative;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path beside = exe.parent_path() / ".." / ".." / relative;
    if (fs::exists(beside)) return fs::weakly_canonical(beside).string();
  }
  return relative;
}

LiveOptions parse_live_options(const Args& a) {
  LiveOptions o;
  o.model_dir = a.get_or("model", resolve_asset("assets/model"));
  o.load = load_options(a);
  o.demo_recording = resolve_asset("assets/demo");
  o.use_mic = !a.flag("no-mic");
  o.mic_device = a.get_or("mic", "");
  o.use_camera = !a.flag("no-camera");
  o.camera_pipeline = a.get_or("camera", "");
  o.media_file = a.get_or("media", "");
  const std::string speed = a.get_or("speed", "realtime");
  if (speed != "realtime" && speed != "max") throw CliError("--speed must be realtime or max, got '" + speed + "'");
  o.realtime = speed == "realtime";
  o.record_dir = a.get_or("record", "");
  o.metrics_file = a.get_or("metrics", "");
  o.transcript_file = a.get_or("transcript", "");
  o.duration_s = a.get_double("duration", 0);
  o.status_line = !a.flag("no-status");
  o.runtime.n_threads = a.get_int("threads", 0);
  o.runtime.max_context = a.get_int("max-context", 8192);
  o.runtime.kv_dtype = kv_cache_option(a);
  SessionConfig& s = o.session;
  s.system_prompt = a.get_or("system", "");
  s.image_budget = a.get_int("budget", default_image_budget(o.model_dir));
  s.video_fps = a.get_double("fps", 1.0);
  s.vad.enabled = !a.flag("no-vad");
  s.vad.likelihood = a.get_int("vad-likelihood", 1);
  s.vad.hangover_ms = a.get_int("hangover-ms", 600);
  s.vad.min_snr_db = float(a.get_double("vad-gate-db", 10.0));
  s.barge_in = !a.flag("no-barge-in");
  s.commentary_interval_s = a.get_double("commentary", 0);
  s.max_answer_tokens = a.get_int("max-tokens", 256);
  s.sampling.temperature = float(a.get_double("temperature", 0));
  s.sampling.top_k = a.get_int("top-k", 0);
  s.sampling.top_p = float(a.get_double("top-p", 1.0));
  s.sampling.seed = uint64_t(a.get_int("seed", 0));
  s.encoder_baseline = a.flag("encoder-baseline");
  apply_model_session_defaults(o.model_dir, a, s);
  o.runtime.max_chunk = std::max(512, s.image_budget);
  return o;
}

namespace {

// The checkpoint's generation_config.json; defaults when it has none.
GenerationConfig model_generation_config(const std::string& model_dir) {
  const fs::path gen = fs::path(model_dir) / "generation_config.json";
  return fs::exists(gen) ? load_generation_config(gen.string()) : GenerationConfig{};
}

}  // namespace

void apply_model_session_defaults(const std::string& model_dir, const Args& a, SessionConfig& s) {
  const GenerationConfig g = model_generation_config(model_dir);
  s.thinking = g.enable_thinking;
  s.image_at_turn_end = g.image_at_turn_end;
  const auto on_off = [&](const char* name, bool& out) {
    const auto v = a.get(name);
    if (!v) return;
    if (*v != "on" && *v != "off") throw CliError(std::string("--") + name + " must be on or off, got '" + *v + "'");
    out = *v == "on";
  };
  on_off("thinking", s.thinking);
  on_off("image-at-turn-end", s.image_at_turn_end);
}

// Stop tokens and suppressed tokens come from the checkpoint's generation_config.json when it has one.
void apply_generation_config(const std::string& model_dir, const Tokenizer& tok, SamplingParams& sp) {
  const fs::path gen = fs::path(model_dir) / "generation_config.json";
  if (fs::exists(gen)) {
    const GenerationConfig g = load_generation_config(gen.string());
    sp.stop_tokens = g.eos_token_ids;
    sp.suppress_tokens = g.suppress_tokens;
  }
  if (tok.eos_id() >= 0) sp.stop_tokens.push_back(tok.eos_id());
  if (const int32_t end = tok.token_id("<turn|>"); end >= 0) sp.stop_tokens.push_back(end);
}

namespace {

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

double ms(TimePoint a, TimePoint b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

bool has_camera_device() {
  for (const auto& e : fs::directory_iterator("/dev", fs::directory_options::skip_permission_denied))
    if (e.path().filename().string().rfind("video", 0) == 0) return true;
  return false;
}

}  // namespace

struct LiveRun::Sources {
  std::unique_ptr<capture::Microphone> microphone;
  std::unique_ptr<capture::VideoSource> video;
  std::unique_ptr<capture::MediaFile> media;
  std::thread recording_feeder;
};

LiveRun::LiveRun(LiveOptions o) : options_(std::move(o)) {
  LiveOptions& opt = options_;
  // The stages of loading and their share of the progress bar (weights and tokenizer dominate; the
  // session's allocation of the KV cache and activations is next for large models).
  const auto progress = [&](float fraction, const char* stage) {
    if (opt.progress) opt.progress(fraction, stage);
  };
  // 1. Model, tokenizer, sampling defaults.
  progress(0.0f, "mapping the checkpoint and checking its tensors");
  if (!fs::exists(fs::path(opt.model_dir) / "config.json"))
    throw std::runtime_error(opt.model_dir + ": no checkpoint here (pass --model DIR)");
  model_ = Model::load(opt.model_dir, opt.load);
  progress(0.4f, "loading the tokenizer");
  tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load((fs::path(opt.model_dir) / "tokenizer.json").string()));
  apply_generation_config(opt.model_dir, *tokenizer_, opt.session.sampling);
  progress(0.6f, "opening the inputs");

  // 2. Which inputs exist. Say what is missing and go on with what there is.
  media_ = !opt.media_file.empty();
  mic_ = opt.use_mic && !media_;
  if (mic_ && capture::Microphone::list_devices().empty()) {
    std::fprintf(stderr, "conflux: no microphone found (PortAudio lists no input device); running without audio input\n");
    mic_ = false;
  }
  camera_ = opt.use_camera && !media_;
  if (camera_ && opt.camera_pipeline.empty()) {
    if (has_camera_device()) {
      opt.camera_pipeline = "autovideosrc";
    } else {
      std::fprintf(stderr, "conflux: no camera found (no /dev/video*); running without video input (--camera PIPELINE for another source)\n");
      camera_ = false;
    }
  }
  if (!mic_ && !camera_ && !media_ && opt.recording.empty()) {
    if (!fs::exists(fs::path(opt.demo_recording) / "session.json"))
      throw std::runtime_error("no microphone, camera or --media FILE, and no demo recording in " + opt.demo_recording +
                               ": nothing to listen to or look at");
    std::fprintf(stderr, "conflux: no microphone or camera: playing the demo recording %s as if it were live\n",
                 opt.demo_recording.c_str());
    opt.recording = opt.demo_recording;
  }
  if (!opt.recording.empty() && !mic_ && !camera_ && !media_) {
    recording_ = std::make_unique<Recording>(load_recording(opt.recording));
    recorded_ = true;
  }

  // What is actually in use (the Settings tab shows and switches these).
  opt.use_mic = mic_;
  opt.use_camera = camera_;

  // A file read as fast as possible must not lose frames to the drop-oldest queue meant for cameras.
  if (media_ && !opt.realtime) opt.session.video_queue_waits = true;

  // 3. Outputs.
  if (!opt.record_dir.empty()) {
    recording_dir_ = recording_target_ = opt.record_dir;
    keep_recording_ = true;
  } else if (opt.record_toggle) {
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
    recording_target_ = (fs::path("recordings") / (std::string("conflux-") + stamp)).string();
    recording_dir_ = (fs::temp_directory_path() / ("conflux-recording-" + std::to_string(::getpid()) + "-" + stamp)).string();
  }
  if (!recording_dir_.empty()) {
    recorder_ = std::make_unique<RecordingWriter>(recording_dir_);
    opt.session.recorder = recorder_.get();
  }
  if (!opt.metrics_file.empty() && !(metrics_.open(opt.metrics_file), metrics_))
    throw std::runtime_error(opt.metrics_file + ": cannot create the metrics file");
  if (!opt.transcript_file.empty() && !(transcript_.open(opt.transcript_file), transcript_))
    throw std::runtime_error(opt.transcript_file + ": cannot create the transcript file");

  progress(0.7f, "allocating the KV cache and activations");
  // 4. The session. Events reach the front end through a bounded queue; tokens must not be lost, so a
  //    full queue makes the session wait (4096 events is minutes of output for a front end that reads
  //    every frame).
  if (opt.keep_sampled_frames) {
    opt.session.on_frame_sampled = [this](const ImageRGB& frame, TimePoint captured) {
      std::lock_guard<std::mutex> lock(frame_mu_);
      SampledFrame& slot = sampled_[sampled_count_++ % kSampledFrames];
      slot.captured = captured;
      slot.image.width = frame.width;
      slot.image.height = frame.height;
      slot.image.rgb.assign(frame.rgb.begin(), frame.rgb.end());
    };
  }
  session_ = std::make_unique<Session>(*model_, *tokenizer_, opt.runtime, opt.session);
  events_ = std::make_unique<BoundedQueue<SessionEvent>>(4096, OverflowPolicy::Block);
  const bool want_frames = metrics_.is_open();
  session_->subscribe([this, want_frames](const SessionEvent& e) {
    const bool per_frame = e.kind == SessionEvent::Kind::AudioFrameInKv || e.kind == SessionEvent::Kind::VideoFrameInKv;
    if (per_frame && !want_frames) return;
    events_->push(e);
  });
  sources_ = std::make_unique<Sources>();
  progress(1.0f, "ready");
}

LiveRun::~LiveRun() { stop(); }

std::string LiveRun::inputs() const {
  std::string s;
  if (mic_) s += "microphone";
  if (camera_) s += std::string(s.empty() ? "" : " + ") + "camera (" + options_.camera_pipeline + ")";
  if (media_) s += "media file " + options_.media_file + (options_.realtime ? " (real time)" : " (as fast as possible)");
  if (recorded_) s += "recording " + options_.recording + (options_.realtime ? " (real time)" : " (as fast as possible)");
  return s;
}

void LiveRun::start() {
  origin_ = SessionClock::now();
  session_->start();
  const LiveOptions& opt = options_;
  auto on_frame = [this](ImageRGB&& f, TimePoint t) { take_video_frame(std::move(f), t); };
  if (mic_) start_microphone();
  if (camera_) start_camera();
  if (media_) {
    capture::MediaFileConfig mf;
    mf.path = opt.media_file;
    mf.pacing = opt.realtime ? capture::MediaPacing::kRealTime : capture::MediaPacing::kAsFastAsPossible;
    sources_->media = std::make_unique<capture::MediaFile>(
        mf, [this](capture::AudioChunk&& c) { session_->push_audio(c.samples.data(), c.samples.size(), c.captured); },
        on_frame, [this](const capture::StreamStatus& st) {
          if (st.state == capture::StreamStatus::State::kError) {
            std::fprintf(stderr, "\nconflux: %s: %s\n", options_.media_file.c_str(), st.message.c_str());
            input_failed_ = true;
          }
          input_ended_ = true;
        });
    sources_->media->start();
  }
  if (recorded_) {
    sources_->recording_feeder = std::thread([this] {
      feed_recording(*session_, *recording_, SessionClock::now(), options_.realtime ? 1.0 : 0.0, &feed_cancel_,
                     [this](const ImageRGB& f) {
                       std::lock_guard<std::mutex> lock(frame_mu_);
                       last_frame_ = f;
                       ++frame_count_;
                     });
      input_ended_ = true;
    });
  }
}

void LiveRun::take_video_frame(ImageRGB&& frame, TimePoint captured) {
  {
    std::lock_guard<std::mutex> lock(frame_mu_);
    last_frame_ = frame;
    ++frame_count_;
  }
  session_->push_video(std::move(frame), captured);
}

void LiveRun::start_microphone() {
  capture::MicrophoneConfig mc;
  mc.device = options_.mic_device;
  sources_->microphone = std::make_unique<capture::Microphone>(
      mc, [this](const float* s, size_t n, TimePoint t) { session_->push_audio(s, n, t); },
      [](const std::string& device, const std::string& error) {
        std::fprintf(stderr, "\nconflux: microphone %s: %s\n", device.c_str(), error.c_str());
      });
  sources_->microphone->start();
}

void LiveRun::start_camera() {
  capture::VideoSourceConfig vc;
  vc.source = options_.camera_pipeline;
  sources_->video = std::make_unique<capture::VideoSource>(
      vc, [this](ImageRGB&& f, TimePoint t) { take_video_frame(std::move(f), t); },
      [](const capture::StreamStatus& st) {
        std::fprintf(stderr, "\nconflux: camera stream ended: %s %s\n", capture::to_string(st.state), st.message.c_str());
      });
  sources_->video->start();
}

void LiveRun::set_microphone(const std::string& device) {
  std::lock_guard<std::mutex> lock(sources_mu_);
  if (!sources_) return;
  if (sources_->microphone) sources_->microphone->stop();
  sources_->microphone.reset();
  mic_ = options_.use_mic = false;
  if (device == "off") return;
  options_.mic_device = device;
  start_microphone();
  mic_ = options_.use_mic = true;
}

void LiveRun::set_camera(const std::string& pipeline) {
  std::lock_guard<std::mutex> lock(sources_mu_);
  if (!sources_) return;
  if (sources_->video) sources_->video->stop();
  sources_->video.reset();
  camera_ = options_.use_camera = false;
  if (pipeline == "off") return;
  options_.camera_pipeline = pipeline;
  start_camera();
  camera_ = options_.use_camera = true;
}

void LiveRun::stop() {
  std::lock_guard<std::mutex> sources_lock(sources_mu_);
  if (!sources_) return;
  // Order matters: a source may be blocked pushing into the session (a media file read at full speed
  // waits for room), and the session may be blocked handing an event to a front end that stopped
  // reading. So: stop the answer, refuse further input (releasing blocked sources), never block on
  // events again, then stop the sources and let the session finish what it has.
  session_->cancel_answer();
  session_->close_inputs();
  // Keep taking events while the sources and the session wind down, so that none of them waits on a
  // full event queue; the front end gets them afterwards from next_event().
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    if (sources_->microphone) sources_->microphone->stop();
    if (sources_->video) sources_->video->stop();
    if (sources_->media) sources_->media->stop();
    feed_cancel_ = true;
    if (sources_->recording_feeder.joinable()) sources_->recording_feeder.join();
    session_->stop();
    done = true;
  });
  while (!done) {
    while (auto e = events_->try_pop()) stop_backlog_.push_back(std::move(*e));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stopper.join();
  while (auto e = events_->try_pop()) stop_backlog_.push_back(std::move(*e));
  sources_.reset();
  // The session has stopped, so the recording is complete on disk: keep it where asked, or discard it.
  if (recorder_ && recording_dir_ != recording_target_) {
    recorder_.reset();
    std::error_code ec;
    if (keep_recording_) {
      fs::create_directories(fs::path(recording_target_).parent_path(), ec);
      fs::rename(recording_dir_, recording_target_, ec);
      if (ec) {  // another file system: copy, then remove the scratch folder
        fs::copy(recording_dir_, recording_target_, fs::copy_options::recursive, ec);
        if (ec) std::fprintf(stderr, "conflux: could not keep the recording at %s: %s (it stays in %s)\n",
                             recording_target_.c_str(), ec.message().c_str(), recording_dir_.c_str());
        else fs::remove_all(recording_dir_, ec);
      }
    } else {
      fs::remove_all(recording_dir_, ec);
    }
  }
}

void LiveRun::set_recording_kept(bool keep) {
  if (!recorder_) throw std::logic_error("this run records nothing (no --record and no record toggle)");
  if (recording_dir_ == recording_target_ && !keep)
    throw std::logic_error("--record " + recording_target_ + " keeps the recording; it cannot be discarded");
  keep_recording_ = keep;
}

std::optional<SessionEvent> LiveRun::next_event() {
  std::optional<SessionEvent> e;
  if (!stop_backlog_.empty()) {
    e = std::move(stop_backlog_.front());
    stop_backlog_.pop_front();
  } else {
    e = events_->try_pop();
  }
  if (e && metrics_.is_open()) metrics_ << event_to_json(*e, origin_) << '\n';
  if (e && e->kind == SessionEvent::Kind::AnswerDone && transcript_.is_open()) transcript_ << event_to_json(*e, origin_) << '\n';
  return e;
}

bool LiveRun::sampled_frame(TimePoint captured, ImageRGB* out) const {
  std::lock_guard<std::mutex> lock(frame_mu_);
  for (uint64_t back = 1; back <= std::min<uint64_t>(sampled_count_, kSampledFrames); ++back) {
    const SampledFrame& f = sampled_[(sampled_count_ - back) % kSampledFrames];
    if (f.captured != captured) continue;
    if (out) *out = f.image;
    return true;
  }
  return false;
}

uint64_t LiveRun::last_frame(ImageRGB* out) const {
  std::lock_guard<std::mutex> lock(frame_mu_);
  if (out && frame_count_) *out = last_frame_;
  return frame_count_;
}

void TerminalPrinter::print(const SessionEvent& e) {
  switch (e.kind) {
    case SessionEvent::Kind::SpeechStarted: std::printf("\n[you] …"); break;
    case SessionEvent::Kind::SpeechEnded: std::printf(" (speech ended)\n"); break;
    case SessionEvent::Kind::AnswerStarted:
    case SessionEvent::Kind::Token: {
      answering_ = true;
      const std::string text = stream_text_.on_event(e);
      std::fwrite(text.data(), 1, text.size(), stdout);
      break;
    }
    case SessionEvent::Kind::AnswerDone: {
      answering_ = false;
      const TurnTiming& t = e.timing;
      const double first = t.n_tokens ? ms(t.trigger_time, t.first_token) : 0;
      const double rate = t.n_tokens > 1 ? (t.n_tokens - 1) / (ms(t.first_token, t.last_token) / 1000.0) : 0;
      std::printf("\n          (%d tokens, first %.0f ms after the turn ended, %.1f tokens/s%s)\n", t.n_tokens, first, rate,
                  t.interrupted ? ", interrupted" : "");
      break;
    }
    case SessionEvent::Kind::Error: std::fprintf(stderr, "\nconflux: session error: %s\n", e.text.c_str()); break;
    default: break;
  }
  std::fflush(stdout);
}

int run_live(LiveOptions o) {
  LiveRun run(std::move(o));
  const LiveOptions& opt = run.options();
  run.start();
  std::fprintf(stderr, "conflux: listening to %s with %s; Ctrl-C to stop\n", run.inputs().c_str(), opt.model_dir.c_str());
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);  // a service manager's stop ends the run as cleanly as Ctrl-C
  const bool tty = opt.status_line && ::isatty(STDERR_FILENO);
  TimePoint last_status{};
  TerminalPrinter printer;
  while (!g_interrupted) {
    bool any = false;
    while (auto e = run.next_event()) {
      printer.print(*e);
      any = true;
    }
    const TimePoint now = SessionClock::now();
    if (opt.duration_s > 0 && ms(run.origin(), now) / 1000.0 >= opt.duration_s) break;
    if (run.input_ended() && !printer.answering()) {
      run.session().wait_idle();
      while (auto e = run.next_event()) printer.print(*e);
      break;
    }
    if (tty && !printer.answering() && now - last_status > std::chrono::milliseconds(500)) {
      const SessionSnapshot s = run.session().snapshot();
      std::fprintf(stderr, "\r[%s | level %5.1f dB | audio→KV p50 %5.1f ms | video→KV p50 %6.1f ms | turn→first token p50 %6.1f ms | rtf %.2f | video dropped %llu]   ",
                   s.answering ? "answering" : (s.in_speech ? "hearing  " : "listening"), s.level_db, s.audio_frame_to_kv_ms.p50,
                   s.video_frame_to_kv_ms.p50, s.turn_end_to_first_token_ms.p50, s.realtime_factor,
                   (unsigned long long)s.video_frames_dropped);
      last_status = now;
    }
    if (!any) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  run.stop();
  while (auto e = run.next_event()) printer.print(*e);
  const SessionSnapshot s = run.session().snapshot();
  std::fprintf(stderr, "\nconflux: %d turns, %lld audio frames and %lld images in the model, %llu video frames dropped, audio→KV p50 %.1f ms p95 %.1f ms\n",
               s.turn, (long long)s.audio_frames, (long long)s.video_frames_sampled, (unsigned long long)s.video_frames_dropped,
               s.audio_frame_to_kv_ms.p50, s.audio_frame_to_kv_ms.p95);
  if (run.recording_kept()) std::fprintf(stderr, "conflux: recorded to %s\n", run.recording_target().c_str());
  return run.input_failed() ? 1 : 0;
}

}  // namespace conflux::app
