// VideoSource: a user-supplied GStreamer source, converted to RGB, pulled from a bounded dropping appsink
// by our own streaming thread; plus the GStreamer helpers shared with media_file.cc.
#include "capture/video_source.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <atomic>
#include <cstring>
#include <stdexcept>

namespace conflux::capture {
namespace {

constexpr const char* kSinkName = "conflux_sink";

// How long one try_pull_sample waits for a frame. It bounds how late the streaming thread notices stop()
// and errors posted on the bus; 50 ms is invisible to a user stopping a stream and costs 20 wake-ups a
// second when no frames come.
constexpr GstClockTime kPullTimeout = 50 * GST_MSECOND;

// qdata key under which each buffer entering the appsink is stamped with its arrival number.
GQuark arrival_number_quark() {
  static const GQuark quark = g_quark_from_static_string("conflux-arrival-number");
  return quark;
}

// Pops every message waiting on the bus (nothing else drains it, so it must not grow) and returns the
// first error among them, if any. End of stream is detected on the appsink instead, after its last frame.
std::optional<StreamStatus> drain_bus_for_error(GstBus* bus) {
  std::optional<StreamStatus> first_error;
  while (GstMessage* message = gst_bus_pop(bus)) {
    if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR && !first_error) {
      first_error = gst_internal::error_status_from_message(message);
    }
    gst_message_unref(message);
  }
  return first_error;
}

}  // namespace

const char* to_string(StreamStatus::State state) {
  switch (state) {
    case StreamStatus::State::kNotStarted: return "not started";
    case StreamStatus::State::kRunning: return "running";
    case StreamStatus::State::kEndOfStream: return "end of stream";
    case StreamStatus::State::kError: return "error";
    case StreamStatus::State::kStopped: return "stopped";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------------
// Shared helpers.

namespace gst_internal {

void ensure_gstreamer_initialized() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    GError* error = nullptr;
    if (!gst_init_check(nullptr, nullptr, &error)) {
      failure = error ? error->message : "gst_init_check returned false without an error";
      g_clear_error(&error);
    }
  });
  if (!failure.empty()) throw std::runtime_error("GStreamer failed to initialise: " + failure);
}

ImageRGB copy_rgb_frame(GstSample* sample) {
  GstCaps* caps = gst_sample_get_caps(sample);
  GstBuffer* buffer = gst_sample_get_buffer(sample);
  if (!caps || !buffer) throw std::runtime_error("video sample without caps or buffer");
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps)) {
    gchar* text = gst_caps_to_string(caps);
    std::string described = text;
    g_free(text);
    throw std::runtime_error("video sample with unusable caps: " + described);
  }
  if (GST_VIDEO_INFO_FORMAT(&info) != GST_VIDEO_FORMAT_RGB) {
    throw std::runtime_error(std::string("video sample is ") + GST_VIDEO_INFO_NAME(&info) + ", expected RGB");
  }
  // gst_video_frame_map takes the strides from the buffer's GstVideoMeta when it has one, otherwise from
  // the caps (RGB rows padded to a multiple of 4 bytes); either way the stride below is the real one.
  GstVideoFrame frame;
  if (!gst_video_frame_map(&frame, &info, buffer, GST_MAP_READ)) {
    throw std::runtime_error("cannot map video buffer for reading");
  }
  ImageRGB image;
  image.width = GST_VIDEO_FRAME_WIDTH(&frame);
  image.height = GST_VIDEO_FRAME_HEIGHT(&frame);
  const size_t row_bytes = static_cast<size_t>(image.width) * 3;
  const auto* source = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
  const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
  image.rgb.resize(row_bytes * image.height);
  for (int y = 0; y < image.height; ++y) {
    std::memcpy(image.rgb.data() + row_bytes * y, source + static_cast<ptrdiff_t>(stride) * y, row_bytes);
  }
  gst_video_frame_unmap(&frame);
  return image;
}

std::optional<uint64_t> running_time_ns(GstSample* sample) {
  GstBuffer* buffer = gst_sample_get_buffer(sample);
  if (!buffer || !GST_BUFFER_PTS_IS_VALID(buffer)) return std::nullopt;
  const GstClockTime pts = GST_BUFFER_PTS(buffer);
  const GstSegment* segment = gst_sample_get_segment(sample);
  // Without a time segment the PTS is taken as the running time (what the default segment — start 0,
  // rate 1 — would give).
  if (!segment || segment->format != GST_FORMAT_TIME) return pts;
  const guint64 running_time = gst_segment_to_running_time(segment, GST_FORMAT_TIME, pts);
  if (running_time == GST_CLOCK_TIME_NONE) return std::nullopt;  // buffer outside its segment
  return running_time;
}

StreamStatus error_status_from_message(GstMessage* error_message) {
  GError* error = nullptr;
  gchar* debug = nullptr;
  gst_message_parse_error(error_message, &error, &debug);
  StreamStatus status;
  status.state = StreamStatus::State::kError;
  status.element = GST_MESSAGE_SRC_NAME(error_message) ? GST_MESSAGE_SRC_NAME(error_message) : "(unknown)";
  status.message = error ? error->message : "(no message)";
  if (debug && *debug) status.message += std::string(" (") + debug + ")";
  g_clear_error(&error);
  g_free(debug);
  return status;
}

RunningTimeMapping::RunningTimeMapping(Mode mode, GstElement* pipeline) : mode_(mode), pipeline_(pipeline) {}

TimePoint RunningTimeMapping::to_steady(uint64_t running_time) {
  using std::chrono::nanoseconds;
  std::lock_guard<std::mutex> lock(mu_);
  if (!anchored_) {
    anchored_ = true;
    if (mode_ == Mode::kPipelineClock) {
      GstClock* clock = gst_element_get_clock(pipeline_);
      if (clock) {
        base_time_ns_ = gst_element_get_base_time(pipeline_);
        // Read back to back: the offset is off by at most the few hundred ns between the two reads.
        const GstClockTime clock_now = gst_clock_get_time(clock);
        const auto steady_now = std::chrono::steady_clock::now();
        clock_to_steady_ns_ =
            std::chrono::duration_cast<nanoseconds>(steady_now.time_since_epoch()).count() -
            static_cast<int64_t>(clock_now);
        gst_object_unref(clock);
      } else {
        // A pipeline without a clock has no instants to map; place frames relative to the first one.
        mode_ = Mode::kFirstBufferAnchor;
      }
    }
    if (mode_ == Mode::kFirstBufferAnchor) {
      anchor_steady_ = std::chrono::steady_clock::now();
      anchor_running_time_ns_ = running_time;
    }
  }
  if (mode_ == Mode::kPipelineClock) {
    const int64_t steady_ns = static_cast<int64_t>(base_time_ns_ + running_time) + clock_to_steady_ns_;
    return TimePoint(std::chrono::duration_cast<TimePoint::duration>(nanoseconds(steady_ns)));
  }
  const int64_t since_anchor = static_cast<int64_t>(running_time) - static_cast<int64_t>(anchor_running_time_ns_);
  return anchor_steady_ + std::chrono::duration_cast<TimePoint::duration>(nanoseconds(since_anchor));
}

}  // namespace gst_internal

// ---------------------------------------------------------------------------------------------------
// VideoSource.

struct VideoSource::Pipeline {
  GstElement* pipeline = nullptr;
  GstElement* sink = nullptr;  // the appsink (our own reference)
  GstBus* bus = nullptr;
  GstPad* sink_pad = nullptr;
  std::atomic<uint64_t> arrivals{0};       // buffers that entered the appsink, numbered from 1
  uint64_t last_pulled_arrival = 0;        // arrival number of the last frame pulled (streaming thread)
  std::unique_ptr<gst_internal::RunningTimeMapping> mapping;

  ~Pipeline() {
    if (pipeline) gst_element_set_state(pipeline, GST_STATE_NULL);
    if (sink_pad) gst_object_unref(sink_pad);
    if (bus) gst_object_unref(bus);
    if (sink) gst_object_unref(sink);
    if (pipeline) gst_object_unref(pipeline);
  }

  // Runs in GStreamer's streaming thread for every buffer entering the appsink, before it is queued (and
  // possibly dropped later): stamps it with its arrival number so the puller can see gaps.
  static GstPadProbeReturn stamp_arrival(GstPad*, GstPadProbeInfo* info, gpointer user_data) {
    auto* self = static_cast<Pipeline*>(user_data);
    GstBuffer* buffer = GST_PAD_PROBE_INFO_BUFFER(info);
    const uint64_t number = self->arrivals.fetch_add(1) + 1;
    // qdata may be set on a buffer that is not writable (it is not part of the buffer's contents).
    gst_mini_object_set_qdata(GST_MINI_OBJECT_CAST(buffer), arrival_number_quark(),
                              GSIZE_TO_POINTER(static_cast<gsize>(number)), nullptr);
    return GST_PAD_PROBE_OK;
  }
};

VideoSource::VideoSource(VideoSourceConfig config, FrameCallback on_frame, StatusCallback on_end)
    : config_(std::move(config)), on_frame_(std::move(on_frame)), on_end_(std::move(on_end)) {
  if (!on_frame_) throw std::invalid_argument("VideoSource: a frame callback is required");
}

VideoSource::~VideoSource() { stop(); }

std::string VideoSource::pipeline_description() const {
  return config_.source + " ! videoconvert ! video/x-raw,format=RGB ! appsink name=" + kSinkName +
         " max-buffers=" + std::to_string(config_.max_buffers) + " drop=true sync=" +
         (config_.sync ? "true" : "false");
}

void VideoSource::start() {
  gst_internal::ensure_gstreamer_initialized();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.state == StreamStatus::State::kRunning) throw std::logic_error("VideoSource: already running");
  }
  // appsink reads max-buffers=0 as "unlimited": the queue must stay bounded.
  if (config_.max_buffers < 1) throw std::invalid_argument("VideoSource: max_buffers must be at least 1");
  stop();  // joins the thread and frees the pipeline of a previous run that ended on its own

  auto p = std::make_unique<Pipeline>();
  const std::string description = pipeline_description();
  GError* error = nullptr;
  // FATAL_ERRORS: an unknown element or property fails the parse instead of yielding a partial pipeline.
  p->pipeline = gst_parse_launch_full(description.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &error);
  if (!p->pipeline || error) {
    const std::string reason = error ? error->message : "gst_parse_launch returned nothing";
    g_clear_error(&error);
    throw std::runtime_error("VideoSource: cannot build pipeline \"" + description + "\": " + reason);
  }
  p->sink = gst_bin_get_by_name(GST_BIN(p->pipeline), kSinkName);
  if (!p->sink || !GST_IS_APP_SINK(p->sink)) {
    throw std::runtime_error("VideoSource: no appsink named " + std::string(kSinkName) + " in \"" +
                             description + "\"");
  }
  p->bus = gst_element_get_bus(p->pipeline);
  p->sink_pad = gst_element_get_static_pad(p->sink, "sink");
  gst_pad_add_probe(p->sink_pad, GST_PAD_PROBE_TYPE_BUFFER, &Pipeline::stamp_arrival, p.get(), nullptr);

  // PAUSED first: its answer says whether the source is live (NO_PREROLL), which decides the time mapping.
  const GstStateChangeReturn paused = gst_element_set_state(p->pipeline, GST_STATE_PAUSED);
  const GstStateChangeReturn playing =
      paused == GST_STATE_CHANGE_FAILURE ? paused : gst_element_set_state(p->pipeline, GST_STATE_PLAYING);
  if (playing == GST_STATE_CHANGE_FAILURE) {
    const std::optional<StreamStatus> cause = drain_bus_for_error(p->bus);
    throw std::runtime_error("VideoSource: pipeline \"" + description + "\" failed to start: " +
                             (cause ? cause->element + ": " + cause->message : "no error was posted"));
  }
  const bool live = paused == GST_STATE_CHANGE_NO_PREROLL;
  p->mapping = std::make_unique<gst_internal::RunningTimeMapping>(
      live || config_.sync ? gst_internal::RunningTimeMapping::Mode::kPipelineClock
                           : gst_internal::RunningTimeMapping::Mode::kFirstBufferAnchor,
      p->pipeline);

  {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = StreamStatus{};
    status_.state = StreamStatus::State::kRunning;
    stats_ = VideoSourceStats{};
    stop_requested_ = false;
  }
  pipeline_ = std::move(p);
  streaming_thread_ = std::thread([this] { run_streaming_loop(); });
}

void VideoSource::run_streaming_loop() {
  GstAppSink* sink = GST_APP_SINK(pipeline_->sink);
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_requested_) return;
    }
    if (std::optional<StreamStatus> error = drain_bus_for_error(pipeline_->bus)) {
      finish(*error);
      return;
    }
    GstSample* sample = gst_app_sink_try_pull_sample(sink, kPullTimeout);
    if (sample) {
      std::optional<StreamStatus> failure;
      try {
        deliver(sample);
      } catch (const std::exception& e) {
        failure = StreamStatus{StreamStatus::State::kError, "conflux frame delivery", e.what()};
      }
      gst_sample_unref(sample);
      if (failure) {
        finish(*failure);
        return;
      }
    } else if (gst_app_sink_is_eos(sink)) {
      // is_eos is true only once EOS arrived and every queued frame has been pulled.
      finish(StreamStatus{StreamStatus::State::kEndOfStream, "", ""});
      return;
    }
  }
}

void VideoSource::deliver(GstSample* sample) {
  ImageRGB frame = gst_internal::copy_rgb_frame(sample);

  const auto arrival = static_cast<uint64_t>(GPOINTER_TO_SIZE(
      gst_mini_object_get_qdata(GST_MINI_OBJECT_CAST(gst_sample_get_buffer(sample)), arrival_number_quark())));
  if (arrival == 0) throw std::logic_error("frame reached the appsink without passing the arrival probe");
  // Arrival numbers only grow (the probe restamps a recycled buffer), so a gap is the frames dropped.
  const uint64_t last = pipeline_->last_pulled_arrival;
  const uint64_t dropped_before_this = arrival > last ? arrival - last - 1 : 0;
  pipeline_->last_pulled_arrival = arrival;

  const std::optional<uint64_t> running_time = gst_internal::running_time_ns(sample);
  const TimePoint captured =
      running_time ? pipeline_->mapping->to_steady(*running_time) : std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.frames_dropped += dropped_before_this;
    if (!running_time) ++stats_.frames_without_pts;
  }
  on_frame_(std::move(frame), captured);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.frames_delivered;
}

void VideoSource::finish(StreamStatus final_status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.state != StreamStatus::State::kRunning) return;
    status_ = final_status;
  }
  finished_cv_.notify_all();
  if (on_end_) on_end_(final_status);
}

void VideoSource::stop() {
  if (streaming_thread_.joinable()) {
    if (std::this_thread::get_id() == streaming_thread_.get_id()) {
      throw std::logic_error("VideoSource::stop() called from its own frame or status callback");
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_requested_ = true;
    }
    streaming_thread_.join();
  }
  pipeline_.reset();  // NULL state, then every GStreamer object released
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.state != StreamStatus::State::kRunning) return;
    status_.state = StreamStatus::State::kStopped;
  }
  finished_cv_.notify_all();
}

bool VideoSource::wait_until_finished(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return finished_cv_.wait_for(lock, timeout, [&] { return status_.state != StreamStatus::State::kRunning; });
}

StreamStatus VideoSource::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

VideoSourceStats VideoSource::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace conflux::capture
