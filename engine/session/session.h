// The streaming session: owns one conversation's sequence and KV cache and, on its own inference
// thread, turns a live mix of timestamped inputs (audio samples, video frames, typed text, push-to-talk)
// into KV-cache entries the moment each is complete, closes user turns on end of speech / typed text /
// push-to-talk release / a commentary timer, and streams the model's answer to subscribers.
//
// Turn layout (Gemma 4 chat format, thinking off):
//   <bos>[<|turn>system\n{system}<turn|>\n]
//   <|turn>user\n [image] <|audio> frames... <audio|> [image] <|audio> frames... <audio|> [typed text] <turn|>\n
//   <|turn>model\n<|channel>thought\n<channel|>{answer}<turn|>\n
// With thinking on, the system turn opens with <|think|>\n (it exists even without a system prompt) and
// the generation prompt is <|turn>model\n: the model writes <|channel>thought\n{thought}<channel|>{answer}.
// The thought stays in the KV cache (an incremental session cannot strip it the way the chat template
// strips earlier thoughts) and is reported apart from the answer. With image_at_turn_end, a user turn that
// showed the camera gets the newest sampled frame once more right before its <turn|>.
// An image arriving while an audio segment is open closes the segment, goes in as its own
// bidirectional block, and the next speech frame reopens a segment. Video frames outside a user turn
// are not appended; the newest one is held and goes in first when the next turn opens.
//
// Determinism: what enters the model depends only on the inputs and their timestamps (VAD decisions,
// frame sampling, commentary timer all run on input time), so a replay reproduces it; only video
// frames dropped by a full queue and barge-in cut points depend on wall-clock speed, and both are
// reported as events.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/image.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/session/bounded_queue.h"
#include "engine/session/latency.h"
#include "engine/session/vad.h"
#include "engine/tokenizer.h"

namespace conflux {

using SessionClock = std::chrono::steady_clock;
using TimePoint = SessionClock::time_point;

class SessionRecorder;  // engine/session/recorder.h

// The settings that may change while a session runs (the window's Settings panel; a network client's
// session.update). They are applied on the session thread in input-time order, like any other input,
// and recorded, so a replay changes them at the same point.
struct LiveSettings {
  int image_budget = 280;
  double video_fps = 1.0;
  VadConfig vad;
  bool barge_in = true;
  double commentary_interval_s = 0;
  int max_answer_tokens = 256;
  bool encoder_baseline = false;  // switching it on builds the 0.93 GB stand-in encoders (~2 s)
};

struct SessionConfig {
  std::string system_prompt;
  int image_budget = 280;              // soft tokens per video frame (1..1120; HF offers 70..1120)
  double video_fps = 1.0;              // frames per second sampled into the model while a turn is open
  VadConfig vad;
  bool barge_in = true;                // user speech during an answer stops it
  double commentary_interval_s = 0;    // > 0: close a turn and answer every N s of input time
  SamplingParams sampling;             // greedy by default
  int max_answer_tokens = 256;
  // Gemma 4's thinking mode (enable_thinking); the layout is above. Fixed for the session's life.
  bool thinking = false;
  // Show the newest sampled frame again just before a turn that showed the camera closes, so the answer
  // (and thought) start right after an image: the bundled model reads a frame well only from there.
  bool image_at_turn_end = false;
  int context_budget = 0;              // positions; 0 = the Context's max_context. Oldest turns are evicted past it
  double audio_queue_seconds = 30;     // bounded audio queue; a full queue makes the producer wait
  int video_queue_frames = 4;          // bounded video queue; a full queue drops the oldest frame
  bool video_queue_waits = false;      // a full video queue makes the producer wait instead (files read
                                       // as fast as possible: every frame, bounded memory)
  bool record_rows = false;            // keep every decoder row (tests and recording)
  // The producer pushes every input in its true order, stamped monotonically (one network connection):
  // an item from another stream never waits for audio up to its timestamp (kAudioOrderingWait).
  bool inputs_in_order = false;
  // Encoder baseline: each image and audio frame also goes through an E4B-sized stand-in encoder
  // (random weights, ~0.93 GB, output discarded) before the embedder, so the timings show what an
  // encoder would cost while the answers stay the same.
  bool encoder_baseline = false;
  // Receives everything the session consumes (recording). Not owned; must outlive the session.
  SessionRecorder* recorder = nullptr;
  // Called on the session thread with each video frame that passes the frame-rate sampler (the frames
  // that go, or may go, into the model; ImageAdded events carry the same capture time). The window keeps
  // them as the conversation's thumbnails. Must not block.
  std::function<void(const ImageRGB& frame, TimePoint captured)> on_frame_sampled;
};

// Stage timestamps of one audio or video frame. `arrived` is when push_* received it. Frame-to-KV
// latency counts from the earliest moment the item is known to exist, min(captured, arrived): captured
// for live devices (capture precedes arrival), arrival for recordings fed faster than real time (whose
// capture stamps lie ahead of the wall clock).
struct FrameTiming {
  TimePoint captured, arrived, dequeued, preprocessed, embedded, in_kv;
  double encoder_ms = 0;  // time in the encoder baseline's stand-in encoder (0 when it is off)
  TimePoint latency_origin() const { return std::min(captured, arrived); }
};

// Why a user turn ended.
enum class TurnTrigger { EndOfSpeech, TypedText, PushToTalkRelease, Commentary, Request };

struct TurnTiming {
  TurnTrigger trigger = TurnTrigger::Request;
  TimePoint trigger_time;   // end of speech detected / text typed / button released (input time)
  TimePoint turn_closed;    // the closing tokens are in the KV cache
  TimePoint first_token;
  TimePoint answer_start;   // the first token after the thought (= first_token without thinking)
  TimePoint last_token;
  int n_tokens = 0;
  bool interrupted = false; // barge-in or cancel
};

struct SessionEvent {
  enum class Kind {
    SpeechStarted,   // VAD onset (input time in `time`)
    SpeechEnded,
    ImageAdded,      // a sampled video frame is in the KV cache
    AnswerStarted,   // turn closed, decoding begins (`turn`)
    Token,           // `token`, `text` (complete UTF-8, may be empty), `in_thought`
    AnswerDone,      // `text` = the whole answer, `thought` = the thought (thinking on); `timing`
    FrameDropped,    // a video frame dropped by the full queue
    Evicted,         // `count` positions evicted from the oldest turns
    AudioFrameInKv,  // one audio frame's stage timestamps in `frame`
    VideoFrameInKv,  // one sampled video frame's stage timestamps in `frame`
    Error,           // `text`
  } kind;
  int turn = 0;
  int32_t token = -1;
  std::string text;
  TimePoint time{};
  int64_t count = 0;
  TurnTiming timing{};
  FrameTiming frame{};
  bool in_thought = false;  // Token: part of the thought (the channel markers included, their text empty)
  std::string thought{};    // AnswerDone: the thought without its channel name
};

// A thought channel opens with its name ("thought") on its own line; the thought is what follows
// ("" while the name is incomplete).
std::string thought_without_channel_name(const std::string& raw_thought);

// What a terminal prints for one answer's Token events: the thought in "(thinking: ...) " without its
// channel name, then the answer. reset() at each AnswerStarted.
class AnswerStreamText {
 public:
  std::string push(const SessionEvent& token);
  void reset() { state_ = State::Answer; }
  // For any event: "[conflux] " (and a reset) at AnswerStarted, push() at Token, else "".
  std::string on_event(const SessionEvent& e);

 private:
  enum class State { Answer, ChannelName, Thought } state_ = State::Answer;
};

// One JSON object (no newline) for an event, times in milliseconds since `origin`: the metrics stream
// (JSON lines) that `--metrics FILE`, the overlay and the benchmarks read.
std::string event_to_json(const SessionEvent& e, TimePoint origin);

// Every setting of a session and the identity of its model (folder, config.json and checkpoint sizes),
// as one JSON object: what a recording stores so that a replay can run under the same conditions.
std::string session_settings_json(const Model& model, const RuntimeConfig& runtime, const SessionConfig& config);
// Reads the settings back (fields that are absent keep `base`'s values). Throws std::runtime_error
// naming the field that is malformed.
void session_settings_from_json(const std::string& json, RuntimeConfig& runtime, SessionConfig& config);

// The live part of a SessionConfig, and back; and as JSON (recordings store each update).
LiveSettings live_settings_of(const SessionConfig& config);
void apply_live_settings(const LiveSettings& settings, SessionConfig& config);
std::string live_settings_to_json(const LiveSettings& settings);
LiveSettings live_settings_from_json(const std::string& json);  // throws naming a malformed field

// What the UI and status line read: a small copy, published by the session thread.
struct SessionSnapshot {
  bool answering = false;
  bool in_speech = false;
  float level_db = -100.f;
  int turn = 0;
  int64_t positions = 0;           // KV positions in use
  int64_t max_positions = 0;       // the most ever in use (never above the context budget)
  int64_t evicted_positions = 0;   // total positions evicted from old turns
  int64_t audio_frames_in = 0;     // 640-sample frames that reached the session (all of them: none is dropped)
  int64_t audio_frames = 0;        // frames appended to the KV cache (speech, pre-roll, or all without VAD)
  int64_t video_frames_in = 0;     // frames taken from the video queue
  int64_t video_frames_sampled = 0;  // of those, frames appended to the KV cache
  uint64_t video_frames_dropped = 0; // frames dropped by the full video queue
  size_t audio_queue_high_water = 0, video_queue_high_water = 0;
  size_t audio_queue_samples = 0;
  size_t video_queue_frames = 0;
  double realtime_factor = 0;      // input seconds processed per wall second
  Percentiles audio_frame_to_kv_ms, video_frame_to_kv_ms, turn_end_to_first_token_ms, decode_token_ms;
  Percentiles turn_end_to_answer_ms;  // to the first token after the thought (= first token without thinking)
  // With the encoder baseline on: the stand-in encoder's own time per audio frame and per image, shown
  // beside the frame-to-KV latencies it is part of (count 0 when the baseline is off).
  Percentiles audio_encoder_ms, video_encoder_ms;
  std::string answer;              // the answer being generated (or the last one)
  std::string thought;             // its thought (thinking on), without the channel name
  LiveSettings settings;           // as currently applied
};

// One decoder row the session appended (kept when SessionConfig::record_rows).
struct SessionRow {
  int32_t token = 0;
  bool is_embedding = false;
  int32_t image_block = -1;
  std::vector<float> embedding;   // (D) when is_embedding
};

class Session {
 public:
  using Subscriber = std::function<void(const SessionEvent&)>;

  // The model and tokenizer must outlive the session. Starts no thread yet.
  Session(const Model& model, const Tokenizer& tokenizer, const RuntimeConfig& runtime, const SessionConfig& config);
  ~Session();

  // Subscribers run on the session thread and must return quickly. Add them before start().
  void subscribe(Subscriber s);
  void start();
  // Processes everything queued so far, finishes any answer, and stops the thread.
  void stop();
  // Refuses further input: producers blocked on a full queue return at once (their push is dropped).
  // Call before stopping capture threads that may be waiting on the session.
  void close_inputs();

  // Inputs, from any thread. Audio: 16 kHz mono samples; `captured` is the time of the first sample.
  void push_audio(const float* samples, size_t n, TimePoint captured);
  void push_video(ImageRGB frame, TimePoint captured);
  void push_text(std::string text, TimePoint when);
  void push_to_talk(bool pressed, TimePoint when);
  // Network clients (server/): text added to the open user turn without closing it, and an explicit
  // request to close the turn and answer (TurnTrigger::Request). Not seen by a SessionRecorder.
  void push_user_text(std::string text, TimePoint when);
  void request_answer(TimePoint when);
  void cancel_answer();
  // Stops as soon as possible: queued inputs are dropped and a running answer ends at its next token
  // (a network client went away). The destructor then returns promptly.
  void abandon();
  // Applies new live settings from input time `when` on. Invalid values (a budget that is not one of
  // 70/140/280/560/1120 or exceeds the runtime's max_chunk, fps <= 0, a VAD setting out of range,
  // max_answer_tokens < 1) are refused with an Error event and the old settings stay.
  void update_settings(const LiveSettings& settings, TimePoint when);

  // Blocks until every input pushed so far has been processed and no answer is running.
  void wait_idle();

  SessionSnapshot snapshot() const;
  const std::vector<SessionRow>& rows() const { return rows_; }          // valid after stop()
  const std::vector<std::vector<int32_t>>& answers() const { return answers_; }  // tokens of each answer
  // Row index at which each answer's first generated token was appended (after stop()).
  const std::vector<int64_t>& answer_starts() const { return answer_starts_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<SessionRow> rows_;
  std::vector<std::vector<int32_t>> answers_;
  std::vector<int64_t> answer_starts_;
};

}  // namespace conflux
