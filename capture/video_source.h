// Live video from a GStreamer pipeline (camera, screen, test pattern): RGB frames with capture times on
// std::chrono::steady_clock, delivered from a streaming thread through a bounded, dropping appsink.
// capture/ knows nothing of the model; the only thing it takes from engine/ is the ImageRGB type.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "engine/image.h"

// GStreamer types, forward-declared exactly as GStreamer declares them, so that this header does not pull
// GStreamer's headers into every user of capture/ (only the internal helpers below mention them).
extern "C" {
typedef struct _GstElement GstElement;
typedef struct _GstSample GstSample;
typedef struct _GstMessage GstMessage;
}

namespace conflux::capture {

// The session's clock (design.md: one clock, device timestamps mapped onto it once per stream).
using TimePoint = std::chrono::steady_clock::time_point;

using FrameCallback = std::function<void(ImageRGB&& frame, TimePoint captured)>;

// Where a stream stands. A stream ends exactly once, by end of stream, an error, or stop().
struct StreamStatus {
  enum class State { kNotStarted, kRunning, kEndOfStream, kError, kStopped };
  State state = State::kNotStarted;
  std::string element;  // kError: name of the element that reported it (e.g. "v4l2src0")
  std::string message;  // kError: GStreamer's message, then its debug details in parentheses
};
const char* to_string(StreamStatus::State state);

// Called once when the stream ends on its own (end of stream or error), from the streaming thread.
// Not called for stop(): the caller already knows.
using StatusCallback = std::function<void(const StreamStatus&)>;

struct VideoSourceConfig {
  // Everything before the conversion to RGB, as gst-launch syntax, e.g. "v4l2src device=/dev/video0" or
  // "videotestsrc pattern=ball ! video/x-raw,width=640,height=480,framerate=30/1". VideoSource appends
  // "! videoconvert ! video/x-raw,format=RGB ! appsink ...".
  std::string source = "autovideosrc";
  // appsink queue length. Each queued frame is one more frame period of latency for a live camera, so the
  // queue holds the newest frame plus the one being handed over; when full, the oldest is dropped
  // (drop=true) so a slow consumer never blocks the capture thread.
  int max_buffers = 2;
  // sync=false hands frames over as soon as they exist (lowest latency, the usual choice for a live
  // source); sync=true paces non-live sources (a test pattern, a file) to real time on the pipeline clock.
  bool sync = false;
};

struct VideoSourceStats {
  uint64_t frames_delivered = 0;
  // Frames that reached the appsink but were discarded because its queue was full (drop=true). Exact:
  // every buffer is numbered as it enters the appsink, so a gap between two pulled frames is a drop.
  // Frames a device loses before the pipeline (e.g. a camera's own overruns) are not visible here, and
  // frames still queued when stop() is called are neither delivered nor counted as dropped.
  uint64_t frames_dropped = 0;
  // Frames whose buffer had no timestamp; they are stamped with the instant they were pulled instead.
  uint64_t frames_without_pts = 0;
};

// Capture-time mapping (buffer PTS -> steady_clock), fixed once at the first buffer of each start():
//  - live source, or sync=true: a buffer's PTS, as running time r, is an instant on the pipeline clock:
//    base_time + r. At the first buffer the pipeline clock and steady_clock are read back to back, which
//    gives their offset; captured = base_time + r + offset. (GStreamer's system clock is CLOCK_MONOTONIC
//    like steady_clock on Linux, so the offset is ~0, but it is measured rather than assumed.)
//  - non-live source with sync=false: running times are positions in the stream, not instants, since
//    buffers come as fast as they are made. The first buffer is anchored at the steady_clock instant it
//    was pulled: captured = anchor + (r - r_first). Differences between frames stay exact.
// A later change of the pipeline's base time (pause/resume) is not followed.
class VideoSource {
 public:
  VideoSource(VideoSourceConfig config, FrameCallback on_frame, StatusCallback on_end = {});
  ~VideoSource();  // stop()
  VideoSource(const VideoSource&) = delete;
  VideoSource& operator=(const VideoSource&) = delete;

  // Builds the pipeline, sets it playing and starts the streaming thread. Throws std::runtime_error with
  // GStreamer's message if the pipeline string does not parse (unknown element, bad property, syntax) or
  // the pipeline fails to start (e.g. the device does not exist); std::logic_error if already running.
  void start();
  // Stops the streaming thread and tears the pipeline down. Safe to call repeatedly; start() may follow.
  // Must not be called from the frame or status callback (it joins the thread that runs them).
  void stop();

  // Waits until the stream has ended (end of stream, error or stop). Returns false on timeout.
  bool wait_until_finished(std::chrono::milliseconds timeout);
  StreamStatus status() const;
  VideoSourceStats stats() const;
  // The full pipeline description that start() parses (source + conversion + appsink).
  std::string pipeline_description() const;

 private:
  struct Pipeline;  // the GStreamer objects, owned for one start()..stop()

  void run_streaming_loop();
  void deliver(GstSample* sample);
  void finish(StreamStatus final_status);

  VideoSourceConfig config_;
  FrameCallback on_frame_;
  StatusCallback on_end_;

  std::unique_ptr<Pipeline> pipeline_;
  std::thread streaming_thread_;

  mutable std::mutex mu_;
  std::condition_variable finished_cv_;
  StreamStatus status_;
  VideoSourceStats stats_;
  bool stop_requested_ = false;
};

// ---- Shared with media_file.cc; not part of the public API. ----
namespace gst_internal {

// gst_init once per process, thread-safe. Throws std::runtime_error if GStreamer cannot initialise.
void ensure_gstreamer_initialized();

// Copies an RGB sample into a tightly packed ImageRGB, honouring the row stride GStreamer used (RGB rows
// are padded to 4 bytes, so for odd widths stride != 3 * width). Throws if the sample is not RGB.
ImageRGB copy_rgb_frame(GstSample* sample);

// The buffer's PTS as running time in nanoseconds, or nullopt when the buffer has none.
std::optional<uint64_t> running_time_ns(GstSample* sample);

// "element: message (debug)" parts of an error message from the bus.
StreamStatus error_status_from_message(GstMessage* error_message);

// Running time -> steady_clock, anchored once at the first buffer (see VideoSource's comment). Thread-safe:
// MediaFile's audio and video branches share one so both streams stay on the same time line.
class RunningTimeMapping {
 public:
  enum class Mode { kPipelineClock, kFirstBufferAnchor };
  RunningTimeMapping(Mode mode, GstElement* pipeline);
  TimePoint to_steady(uint64_t running_time_ns);

 private:
  Mode mode_;
  GstElement* pipeline_;  // not owned; outlives the mapping
  std::mutex mu_;
  bool anchored_ = false;
  // kPipelineClock: steady = base_time + r + clock_to_steady_ns_.
  // kFirstBufferAnchor: steady = anchor_steady_ + (r - anchor_running_time_ns_).
  int64_t clock_to_steady_ns_ = 0;
  uint64_t base_time_ns_ = 0;
  TimePoint anchor_steady_{};
  uint64_t anchor_running_time_ns_ = 0;
};

}  // namespace gst_internal
}  // namespace conflux::capture
