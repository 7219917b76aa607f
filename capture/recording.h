// Session recordings: a folder that standard tools can open (JSON, raw float32 audio, PNG frames) and that
// holds everything a session consumed, in the order it consumed it, so a replay can run it again.
//   RecordingWriter  - the SessionRecorder: copies on the session thread, encodes and writes on its own
//                      thread, flushes at least every half second of input, so a crash loses < 1 s.
//   load_recording   - reads and validates a folder; tolerates the torn tail a crash leaves, nothing else.
//   feed_recording   - pushes a loaded recording into a Session with its original relative timestamps.
// The format is specified in docs/recording-format.md.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "engine/image.h"
#include "engine/session/recorder.h"
#include "engine/session/session.h"

namespace conflux {

inline constexpr int kRecordingFormatVersion = 1;
inline constexpr int kRecordingSampleRate = 16000;   // the session's audio rate
inline constexpr int kRecordingFrameSamples = 640;   // one session audio frame: 40 ms at 16 kHz

struct RecordingWriterOptions {
  // Bytes the queue between the session thread and the writer thread may hold before it refuses items.
  // A 1920x1080 RGB frame is 6.2 MB, so 256 MiB is ~40 full-HD frames: at the session's usual 1 fps
  // sampling that is ~40 s of encoding backlog before anything is dropped.
  size_t max_queue_bytes = size_t(256) << 20;
  // Buffered lines and audio reach the files at least this often, in input time (and in wall time when
  // input stalls). Half a second leaves the other half of the one-second loss bound for items still
  // waiting in the queue when the process dies.
  double flush_interval_s = 0.5;
};

// Items the writer took and wrote, and items its full queue refused (never silently: they are also
// written to the timeline as a "recorder_dropped" line).
struct RecordingWriterStats {
  int64_t audio_frames = 0, video_frames = 0, texts = 0, push_to_talk = 0, events = 0;
  int64_t dropped_audio_frames = 0, dropped_video_frames = 0, dropped_texts = 0, dropped_push_to_talk = 0,
          dropped_events = 0;
  size_t queued_bytes = 0;            // now: items waiting plus the one being written
  size_t queue_high_water_bytes = 0;
  int64_t flushes = 0;
  std::string error;  // the first I/O error; the writer discards everything after it
  int64_t dropped_total() const {
    return dropped_audio_frames + dropped_video_frames + dropped_texts + dropped_push_to_talk + dropped_events;
  }
};

class RecordingWriter final : public SessionRecorder {
 public:
  // Creates `dir` and dir/frames and the data files. Throws std::runtime_error if it cannot, or if `dir`
  // already holds a recording (a recording is never overwritten).
  explicit RecordingWriter(std::string dir, RecordingWriterOptions options = {});
  // Finishes like on_stop if the session never called it.
  ~RecordingWriter() override;
  RecordingWriter(const RecordingWriter&) = delete;
  RecordingWriter& operator=(const RecordingWriter&) = delete;

  void on_start(const std::string& settings_json, TimePoint origin) override;
  void on_audio_frame(const float* samples, size_t n, TimePoint input_time) override;
  void on_video_frame(const ImageRGB& frame, TimePoint captured) override;
  void on_text(const std::string& text, TimePoint when) override;
  void on_push_to_talk(bool pressed, TimePoint when) override;
  void on_settings(const std::string& settings_json, TimePoint when) override;
  void on_event(const SessionEvent& event) override;
  // Blocks until every queued item is encoded, written and flushed.
  void on_stop() override;

  RecordingWriterStats stats() const;
  const std::string& dir() const { return dir_; }

 private:
  // A run of audio frames the full queue refused, reported with the next audio item that gets through.
  struct LostAudio {
    int64_t samples = 0;
    TimePoint first_time{};
  };
  struct StartItem { std::string settings_json; TimePoint origin; };
  struct AudioItem { std::vector<float> samples; int64_t first_sample; TimePoint time; LostAudio lost_before; };
  struct VideoItem { ImageRGB frame; TimePoint time; };
  struct TextItem { std::string text; TimePoint time; };
  struct PushToTalkItem { bool pressed; TimePoint time; };
  struct SettingsItem { std::string json; TimePoint time; };
  struct EventItem { SessionEvent event; };
  struct StopItem { LostAudio lost_before; };
  using Item = std::variant<StartItem, AudioItem, VideoItem, TextItem, PushToTalkItem, SettingsItem, EventItem, StopItem>;
  struct Queued { Item item; size_t bytes; };

  // Session side.
  bool enqueue(Item item, size_t bytes, bool always);
  void finish();

  // Writer thread.
  void run();
  void handle(Item& item);
  void handle_audio(AudioItem& a);
  void write_lost_audio(const LostAudio& lost);
  void close_audio_run();
  void note_input_time(TimePoint t);
  void write_dropped_line_if_changed();
  bool flush_due() const;
  void flush();
  std::string ms_json(TimePoint t) const;

  const std::string dir_;
  const RecordingWriterOptions options_;

  mutable std::mutex mu_;               // guards the queue, queued_bytes_, stop_queued_ and stats_
  std::condition_variable queue_cv_;    // wakes the writer thread
  std::deque<Queued> queue_;
  size_t queued_bytes_ = 0;             // payload of queued items plus the one being written
  bool stop_queued_ = false;
  RecordingWriterStats stats_;

  // Session-thread state.
  int64_t next_stream_sample_ = 0;
  LostAudio lost_audio_;

  // Writer-thread state.
  std::FILE* audio_file_ = nullptr;
  std::FILE* timeline_file_ = nullptr;
  TimePoint origin_{};
  bool started_ = false, failed_ = false;
  int64_t samples_in_file_ = 0;         // audio samples handed to audio.f32 (including buffered ones)
  int frame_count_ = 0;
  std::vector<float> pending_audio_;
  std::string pending_lines_;
  int64_t run_first_sample_ = -1;       // the open run of audio frames (one timeline line), -1 = none
  int64_t run_samples_ = 0;
  TimePoint run_time_{};
  bool has_pending_input_time_ = false;
  TimePoint pending_first_input_{}, newest_input_{};
  SessionClock::time_point pending_since_wall_{};
  bool pending_ = false;
  int64_t dropped_written_ = 0;         // dropped_total() last written as a recorder_dropped line

  std::once_flag join_once_;            // on_stop and the destructor may both finish; one joins
  std::thread thread_;                  // last: starts after every member above exists
};

// ------------------------------------------------------------------------------------------- reading

struct RecordedInput {
  enum class Kind { Audio, Video, Text, PushToTalk, Settings } kind = Kind::Audio;
  SessionClock::duration offset{};  // input time relative to the recording's origin (nanosecond-exact)
  int line = 0;                     // 1-based line in timeline.jsonl; 0 for audio recovered past the timeline
  // Audio: samples [first_sample, first_sample + n_samples) of Recording::audio, whole contiguous frames on
  // the audio clock. `lost`: the writer's full queue refused these frames; audio.f32 holds zeros there.
  int64_t first_sample = 0, n_samples = 0;
  bool lost = false;
  std::string frame_path;           // Video: the PNG (absolute), decoded on demand by Recording::load_frame
  int width = 0, height = 0;        // Video
  std::string text;                 // Text
  bool pressed = false;             // PushToTalk
  std::string settings_json;        // Settings: live_settings_to_json of the update
};

// One answer as the timeline's events give it: answer_started, its tokens, answer_done.
struct RecordedAnswer {
  int turn = 0;
  std::vector<int32_t> tokens;
  std::string text;                 // from answer_done
  std::string trigger;              // from answer_done: end_of_speech, typed_text, ...
  bool interrupted = false;
  bool finished = false;            // answer_done was recorded (false only for an answer cut by a crash)
};

// What a crash left torn at the end of the files, and what the reader did about it.
struct RecordingTail {
  int64_t truncated_line_bytes = 0;    // an unterminated last line of timeline.jsonl, ignored
  int64_t partial_audio_bytes = 0;     // bytes of audio.f32 past its last whole frame, ignored
  int64_t recovered_audio_frames = 0;  // whole frames past the last audio line, kept (times follow from the clock)
  int64_t unplaced_audio_frames = 0;   // whole frames in audio.f32 with no audio line at all to time them, ignored
  int missing_frame_lines = 0;         // trailing video lines whose PNG is missing or damaged, ignored
  bool clean() const {
    return truncated_line_bytes == 0 && partial_audio_bytes == 0 && recovered_audio_frames == 0 &&
           unplaced_audio_frames == 0 && missing_frame_lines == 0;
  }
};

// The writer's own drop counts, from the last recorder_dropped line.
struct RecorderDrops {
  int64_t audio_frames = 0, video_frames = 0, texts = 0, push_to_talk = 0, events = 0;
};

struct Recording {
  std::string dir;
  int version = 0;
  std::string settings_json;          // session_settings_json() as the session gave it (for session_settings_from_json)
  int64_t origin_steady_ns = 0;       // the origin on the recording machine's steady clock (meaningful only there)
  std::string origin_utc;             // the origin as UTC wall time, for people
  std::vector<float> audio;           // every whole frame of audio.f32 (64 kB per second of input)
  bool has_audio = false;
  SessionClock::duration audio_clock_start{};  // offset of sample 0: the session's audio clock origin
  std::vector<RecordedInput> inputs;  // in consumption order
  std::vector<RecordedAnswer> answers;
  int64_t event_lines = 0;
  RecorderDrops recorder_dropped;
  RecordingTail tail;

  // Offset of audio sample `sample` from the origin, computed as the session computes its frame times.
  SessionClock::duration audio_time(int64_t sample) const;
  const float* samples(const RecordedInput& audio_input) const { return audio.data() + audio_input.first_sample; }
  // Decodes a video input's PNG. Throws naming the file if it cannot.
  ImageRGB load_frame(const RecordedInput& video_input) const;
};

struct RecordingLoadOptions {
  // Every PNG's signature, IHDR size and IEND trailer are checked; with this, every PNG is also fully
  // decoded (about 10 ms per 720p frame), which catches damage inside the compressed data too.
  bool decode_frames = false;
};

// Reads and validates a recording folder. Throws std::runtime_error as "<file>:<line>: <what is wrong>"
// for malformed input (bad JSON, unknown kind, missing field, audio beyond audio.f32, a missing or
// damaged PNG before the tail, times that go backwards or leave the audio clock).
Recording load_recording(const std::string& dir, const RecordingLoadOptions& options = {});

// Pushes a recording's inputs into `session` (started, with the recording's settings) with their recorded
// times moved onto `new_origin`, merging audio frames with the other inputs by time exactly as the session
// orders them. speed > 0 paces the pushes on the wall clock (1 = real time; a slow session then drops video
// frames as it would live); speed 0 pushes as fast as possible, waiting for the session to go idle before
// each video frame so that its drop-oldest queue never drops one. Returns after the last push; the caller
// calls wait_idle()/stop().
// `cancel` (optional): raising it makes the feed return within ~10 ms. `on_frame` (optional) sees each
// video frame just before it is pushed (a camera view).
void feed_recording(Session& session, const Recording& recording, TimePoint new_origin, double speed,
                    const std::atomic<bool>* cancel = nullptr,
                    const std::function<void(const ImageRGB&)>& on_frame = nullptr);

}  // namespace conflux
