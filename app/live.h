// The live assistant without a window: sources (microphone, camera, media file) feeding a session,
// and a terminal front end that streams the answers and a one-line status. Shared by `conflux run`,
// `conflux record` and the no-display fallback of the window.
#pragma once
#include <array>
#include <atomic>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "app/cli.h"
#include "engine/session/bounded_queue.h"
#include "engine/session/session.h"
#include "engine/tokenizer.h"

namespace conflux {
class RecordingWriter;  // capture/recording.h
struct Recording;
}

namespace conflux::app {

struct LiveOptions {
  std::string model_dir;
  LoadOptions load;                // --quantize: weight format converted to at load
  bool use_mic = true;
  std::string mic_device;          // "" = default input
  bool use_camera = true;
  std::string camera_pipeline;     // "" = autovideosrc when a camera exists
  std::string media_file;          // play this file as the input instead of devices
  std::string recording;           // play this recording's inputs as if live (the demo fallback)
  std::string demo_recording = "assets/demo";  // played when there is no microphone, camera or media
  bool realtime = true;            // media pacing
  std::string record_dir;          // record what the model consumed
  // Record from the start into a scratch folder that set_recording_kept() keeps or discards at stop
  // (the window's record toggle). A recording must start with the session to replay exactly: the
  // model's context holds everything since then.
  bool record_toggle = false;
  std::string metrics_file;        // every session event as JSON lines
  std::string transcript_file;     // one JSON line per answered turn
  double duration_s = 0;           // stop after this much wall time (0 = until the input ends or Ctrl-C)
  bool status_line = true;         // the one-line live status (on a terminal)
  bool keep_sampled_frames = false;  // for sampled_frame(): the window's thumbnails
  RuntimeConfig runtime;
  SessionConfig session;
  // Called from LiveRun's constructor as loading advances: fraction done in [0, 1] and what is next.
  std::function<void(float fraction, const char* stage)> progress;
};

// Stop and suppressed tokens from the checkpoint's generation_config.json (when it has one), plus <eos>
// and <turn|>.
void apply_generation_config(const std::string& model_dir, const Tokenizer& tok, SamplingParams& sp);
// How the model is meant to be run: thinking and the image at turn end from its generation_config.json
// (enable_thinking, image_at_turn_end; off when absent), then --thinking on|off and --image-at-turn-end
// on|off over them. Throws CliError for another value.
void apply_model_session_defaults(const std::string& model_dir, const Args& args, SessionConfig& session);

// The options every live command shares, and their help text.
extern const char* const kLiveOptionsHelp;
extern const std::vector<std::string> kLiveOptionNames;
extern const std::vector<std::string> kLiveFlagNames;
LiveOptions parse_live_options(const Args& args);
// `relative` (e.g. "assets/demo") from the current folder, else from the checkout the binary was built in.
std::string resolve_asset(const std::string& relative);

// One live run: the model, the inputs that exist (it says which are missing), the session, and the
// outputs (recording, metrics). A front end (terminal or window) drains events() and reads
// session().snapshot(); it never waits on inference.
class LiveRun {
 public:
  // Loads the model and decides the inputs; throws if there is no model or no input at all.
  explicit LiveRun(LiveOptions options);
  ~LiveRun();
  void start();           // the session, then the sources
  void stop();            // the sources, then the session (finishing what it has), then the outputs
  Session& session() { return *session_; }
  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const LiveOptions& options() const { return options_; }
  std::string inputs() const;         // "microphone + camera", "media file X", ...
  bool input_ended() const { return input_ended_; }
  bool input_failed() const { return input_failed_; }  // the media file could not be decoded
  // Events for the front end, in order; the metrics and transcript files (if any) are written as they
  // are popped, so the terminal and the window write the same files.
  std::optional<SessionEvent> next_event();
  // The newest camera/media frame (for a camera view), and its number (0 = none yet).
  uint64_t last_frame(ImageRGB* out) const;
  // The sampled frame captured at `captured` (the time of an ImageAdded event): the frame the model was
  // given, where the newest frame may already be a later scene (a replay at full speed). False once it
  // is older than the last kSampledFrames sampled frames, or without LiveOptions::keep_sampled_frames.
  bool sampled_frame(TimePoint captured, ImageRGB* out) const;
  // The window reads events about 30 times a second; between two reads the session samples at most a
  // frame or two (1 a second at the default --video-fps live; a full-speed replay waits for the session
  // before each frame), and the turn-end image repeats the newest. 8 leaves room for a higher
  // --video-fps and a slow window, at 8 full frames of memory (22 MB at 1280x720).
  static constexpr size_t kSampledFrames = 8;
  TimePoint origin() const { return origin_; }

  // Replace the microphone ("" = the default input, "off" = none) or the camera pipeline ("off" =
  // none) while the run goes on. The old source stops first; if the new one cannot start, the error
  // (naming the device or GStreamer's message) is thrown and that input stays off.
  void set_microphone(const std::string& device);
  void set_camera(const std::string& pipeline);

  // The record toggle (LiveOptions::record_toggle, or always on with --record DIR).
  bool recording_available() const { return recorder_ != nullptr; }
  bool recording_kept() const { return keep_recording_; }
  void set_recording_kept(bool keep);
  // Where a kept recording ends up (the --record folder, or recordings/conflux-<date>-<time>).
  const std::string& recording_target() const { return recording_target_; }

 private:
  struct Sources;
  void start_microphone();  // from options_.mic_device
  void start_camera();      // from options_.camera_pipeline
  void take_video_frame(ImageRGB&& frame, TimePoint captured);  // camera view + session
  LiveOptions options_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<RecordingWriter> recorder_;
  std::string recording_dir_;      // where the writer writes (the target, or a scratch folder)
  std::string recording_target_;
  std::atomic<bool> keep_recording_{false};
  std::unique_ptr<Session> session_;
  std::unique_ptr<BoundedQueue<SessionEvent>> events_;
  std::unique_ptr<Sources> sources_;
  std::ofstream metrics_;
  std::ofstream transcript_;
  std::atomic<bool> input_ended_{false};
  std::atomic<bool> input_failed_{false};
  std::unique_ptr<Recording> recording_;   // LiveOptions::recording, loaded and checked up front
  std::atomic<bool> feed_cancel_{false};
  std::deque<SessionEvent> stop_backlog_;  // events taken off the queue while stop() waited
  bool mic_ = false, camera_ = false, media_ = false, recorded_ = false;
  TimePoint origin_{};
  mutable std::mutex frame_mu_;
  std::mutex sources_mu_;  // set_microphone / set_camera against stop()
  ImageRGB last_frame_;
  uint64_t frame_count_ = 0;
  struct SampledFrame {
    TimePoint captured{};
    ImageRGB image;  // copied into the same buffer each time round: no allocation once sizes are steady
  };
  std::array<SampledFrame, kSampledFrames> sampled_;  // a ring, under frame_mu_
  uint64_t sampled_count_ = 0;
};

// Prints session events the way the terminal front end shows them (speech markers, streamed answer
// text with its thought in parentheses, a timing line per answer, errors).
class TerminalPrinter {
 public:
  void print(const SessionEvent& e);
  bool answering() const { return answering_; }  // an answer is streaming

 private:
  bool answering_ = false;
  AnswerStreamText stream_text_;
};

// The terminal front end: streams answers, keeps a one-line status, writes the transcript; runs until
// the input ends, the duration passes or Ctrl-C.
int run_live(LiveOptions options);

}  // namespace conflux::app
