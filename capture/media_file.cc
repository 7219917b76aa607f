// MediaFile: uridecodebin with audio and video branches linked on pad-added, appsink callbacks that hand
// 16 kHz mono float chunks and RGB frames to the user, and a bus thread that ends the stream.
#include "capture/media_file.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>

#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string_view>

namespace conflux::capture {
namespace {

constexpr const char* kAudioSinkName = "conflux_audio_sink";
constexpr const char* kVideoSinkName = "conflux_video_sink";

// appsink queue bound. The callbacks pull each sample as soon as it is queued, so the queue rarely holds
// more than one; the bound only guarantees memory stays bounded (drop=false: when full the decoder waits).
constexpr int kSinkMaxBuffers = 4;

// How long the bus thread waits per poll: bounds how late it notices stop().
constexpr GstClockTime kBusPollTimeout = 50 * GST_MSECOND;

// Set while a user callback runs on a streaming thread, so stop() from inside one fails loudly instead of
// deadlocking (setting the pipeline to NULL waits for the very thread it is called from).
thread_local bool in_media_callback = false;

std::string appsink_properties(MediaPacing pacing) {
  return std::string(" sync=") + (pacing == MediaPacing::kRealTime ? "true" : "false") +
         " max-buffers=" + std::to_string(kSinkMaxBuffers) + " drop=false enable-last-sample=false";
}

std::string audio_branch_description(MediaPacing pacing) {
  return "queue ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,layout=interleaved,rate=" +
         std::to_string(kMediaAudioSampleRate) + ",channels=1 ! appsink name=" + kAudioSinkName +
         appsink_properties(pacing);
}

std::string video_branch_description(MediaPacing pacing) {
  return std::string("queue ! videoconvert ! videoscale ! video/x-raw,format=RGB,pixel-aspect-ratio=1/1 ! ") +
         "appsink name=" + kVideoSinkName + appsink_properties(pacing);
}

// Posts an error on the bus on behalf of `source`; the bus thread turns it into the stream's end.
void post_error(GstElement* source, const std::string& message, const std::string& debug) {
  GError* error = g_error_new_literal(GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED, message.c_str());
  gst_element_post_message(source, gst_message_new_error(GST_OBJECT(source), error, debug.c_str()));
  g_error_free(error);
}

std::string caps_media_type(GstPad* pad) {
  GstCaps* caps = gst_pad_get_current_caps(pad);
  if (!caps) caps = gst_pad_query_caps(pad, nullptr);
  std::string media_type = caps && !gst_caps_is_empty(caps) && !gst_caps_is_any(caps)
                               ? gst_structure_get_name(gst_caps_get_structure(caps, 0))
                               : "";
  if (caps) gst_caps_unref(caps);
  return media_type;
}

}  // namespace

struct MediaFile::Pipeline {
  MediaFile* owner = nullptr;
  GstElement* pipeline = nullptr;
  GstElement* decoder = nullptr;  // uridecodebin, owned by the pipeline
  GstBus* bus = nullptr;
  std::unique_ptr<gst_internal::RunningTimeMapping> mapping;

  std::mutex link_mu;  // pad-added and no-more-pads may come from different streaming threads
  bool audio_linked = false;
  bool video_linked = false;

  // Audio time line for buffers without PTS (audio streaming thread only).
  bool have_previous_chunk = false;
  TimePoint previous_chunk_end{};

  ~Pipeline() {
    if (pipeline) gst_element_set_state(pipeline, GST_STATE_NULL);
    if (bus) gst_object_unref(bus);
    if (pipeline) gst_object_unref(pipeline);
  }

  enum class Branch { kAudio, kVideo, kDiscard };

  // pad-added: links each new decoded stream to its branch (streaming thread of the decoder).
  static void on_pad_added(GstElement* decoder, GstPad* pad, gpointer user_data) {
    auto* self = static_cast<Pipeline*>(user_data);
    const std::string media_type = caps_media_type(pad);
    const MediaPacing pacing = self->owner->config_.pacing;
    Branch branch = Branch::kDiscard;
    std::string description = "fakesink sync=false async=false";
    {
      std::lock_guard<std::mutex> lock(self->link_mu);
      if (media_type.rfind("audio/", 0) == 0 && !self->audio_linked) {
        branch = Branch::kAudio;
        description = audio_branch_description(pacing);
        self->audio_linked = true;
      } else if (media_type.rfind("video/", 0) == 0 && !self->video_linked) {
        branch = Branch::kVideo;
        description = video_branch_description(pacing);
        self->video_linked = true;
      }
    }
    try {
      self->link_branch(pad, branch, description);
    } catch (const std::exception& e) {
      post_error(decoder, e.what(), "linking the stream of type " + media_type);
      return;
    }
    std::lock_guard<std::mutex> lock(self->owner->mu_);
    if (branch == Branch::kAudio) self->owner->stats_.has_audio = true;
    if (branch == Branch::kVideo) self->owner->stats_.has_video = true;
  }

  // no-more-pads: every stream has been exposed; a file with neither audio nor video is an error rather
  // than an empty success.
  static void on_no_more_pads(GstElement* decoder, gpointer user_data) {
    auto* self = static_cast<Pipeline*>(user_data);
    std::lock_guard<std::mutex> lock(self->link_mu);
    if (!self->audio_linked && !self->video_linked) {
      post_error(decoder, "the file has no audio or video stream", "");
    }
  }

  void link_branch(GstPad* decoder_pad, Branch branch, const std::string& description) {
    GError* error = nullptr;
    GstElement* bin = gst_parse_bin_from_description(description.c_str(), TRUE, &error);
    if (!bin || error) {
      const std::string reason = error ? error->message : "no bin";
      g_clear_error(&error);
      if (bin) gst_object_unref(bin);
      throw std::runtime_error("cannot build branch \"" + description + "\": " + reason);
    }
    if (branch != Branch::kDiscard) {
      GstElement* sink = gst_bin_get_by_name(GST_BIN(bin), branch == Branch::kAudio ? kAudioSinkName : kVideoSinkName);
      if (!sink) {
        gst_object_unref(bin);
        throw std::runtime_error("branch \"" + description + "\" has no appsink");
      }
      GstAppSinkCallbacks callbacks{};
      callbacks.new_sample = branch == Branch::kAudio ? &Pipeline::on_audio_sample : &Pipeline::on_video_sample;
      gst_app_sink_set_callbacks(GST_APP_SINK(sink), &callbacks, this, nullptr);
      gst_object_unref(sink);
    }
    gst_bin_add(GST_BIN(pipeline), bin);  // the pipeline takes the floating reference
    // Bring the branch up to the pipeline's state before linking, so the first buffer finds it running.
    if (!gst_element_sync_state_with_parent(bin)) {
      throw std::runtime_error("branch \"" + description + "\" failed to start");
    }
    GstPad* branch_pad = gst_element_get_static_pad(bin, "sink");
    const GstPadLinkReturn linked = gst_pad_link(decoder_pad, branch_pad);
    gst_object_unref(branch_pad);
    if (linked != GST_PAD_LINK_OK) {
      throw std::runtime_error("cannot link to branch \"" + description + "\": " + gst_pad_link_get_name(linked));
    }
  }

  // Runs a user callback; an exception becomes an error on the bus (it must not unwind through C).
  template <class Body>
  static GstFlowReturn run_callback(GstAppSink* sink, Body&& body) {
    in_media_callback = true;
    try {
      body();
    } catch (const std::exception& e) {
      in_media_callback = false;
      post_error(GST_ELEMENT(sink), std::string("callback failed: ") + e.what(), "");
      return GST_FLOW_ERROR;
    }
    in_media_callback = false;
    return GST_FLOW_OK;
  }

  static GstFlowReturn on_audio_sample(GstAppSink* sink, gpointer user_data) {
    auto* self = static_cast<Pipeline*>(user_data);
    GstSample* sample = gst_app_sink_pull_sample(sink);
    if (!sample) return GST_FLOW_EOS;  // flushing or at end of stream: nothing to hand over
    const GstFlowReturn result = run_callback(sink, [&] { self->deliver_audio(sample); });
    gst_sample_unref(sample);
    return result;
  }

  static GstFlowReturn on_video_sample(GstAppSink* sink, gpointer user_data) {
    auto* self = static_cast<Pipeline*>(user_data);
    GstSample* sample = gst_app_sink_pull_sample(sink);
    if (!sample) return GST_FLOW_EOS;
    const GstFlowReturn result = run_callback(sink, [&] { self->deliver_video(sample); });
    gst_sample_unref(sample);
    return result;
  }

  void deliver_audio(GstSample* sample) {
    GstBuffer* buffer = gst_sample_get_buffer(sample);
    if (!buffer) throw std::runtime_error("audio sample without a buffer");
    GstMapInfo map;
    if (!gst_buffer_map(buffer, &map, GST_MAP_READ)) throw std::runtime_error("cannot map audio buffer");
    AudioChunk chunk;
    chunk.samples.resize(map.size / sizeof(float));  // caps fix F32LE mono: 4 bytes per sample
    std::memcpy(chunk.samples.data(), map.data, chunk.samples.size() * sizeof(float));
    gst_buffer_unmap(buffer, &map);

    const std::optional<uint64_t> running_time = gst_internal::running_time_ns(sample);
    if (running_time) {
      chunk.captured = mapping->to_steady(*running_time);
    } else {
      chunk.captured = have_previous_chunk ? previous_chunk_end : std::chrono::steady_clock::now();
    }
    const auto duration = std::chrono::duration_cast<TimePoint::duration>(
        std::chrono::duration<double>(static_cast<double>(chunk.samples.size()) / kMediaAudioSampleRate));
    previous_chunk_end = chunk.captured + duration;
    have_previous_chunk = true;

    const size_t sample_count = chunk.samples.size();
    if (owner->on_audio_) owner->on_audio_(std::move(chunk));
    std::lock_guard<std::mutex> lock(owner->mu_);
    ++owner->stats_.audio_chunks;
    owner->stats_.audio_samples += sample_count;
    if (!running_time) ++owner->stats_.buffers_without_pts;
  }

  void deliver_video(GstSample* sample) {
    ImageRGB frame = gst_internal::copy_rgb_frame(sample);
    const std::optional<uint64_t> running_time = gst_internal::running_time_ns(sample);
    const TimePoint captured = running_time ? mapping->to_steady(*running_time) : std::chrono::steady_clock::now();
    if (owner->on_frame_) owner->on_frame_(std::move(frame), captured);
    std::lock_guard<std::mutex> lock(owner->mu_);
    ++owner->stats_.video_frames;
    if (!running_time) ++owner->stats_.buffers_without_pts;
  }
};

MediaFile::MediaFile(MediaFileConfig config, AudioCallback on_audio, FrameCallback on_frame, StatusCallback on_end)
    : config_(std::move(config)), on_audio_(std::move(on_audio)), on_frame_(std::move(on_frame)),
      on_end_(std::move(on_end)) {}

MediaFile::~MediaFile() { stop(); }

void MediaFile::start() {
  gst_internal::ensure_gstreamer_initialized();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.state == StreamStatus::State::kRunning) throw std::logic_error("MediaFile: already running");
  }
  stop();  // joins and frees a previous run that ended on its own

  const std::string& path = config_.path;
  std::error_code fs_error;
  if (!std::filesystem::exists(path, fs_error)) {
    throw std::runtime_error("MediaFile: no such file: '" + path + "'");
  }
  if (!std::filesystem::is_regular_file(path, fs_error)) {
    throw std::runtime_error("MediaFile: not a regular file: '" + path + "'");
  }
  GError* error = nullptr;
  gchar* uri = gst_filename_to_uri(path.c_str(), &error);  // absolute, percent-escaped
  if (!uri) {
    const std::string reason = error ? error->message : "unknown reason";
    g_clear_error(&error);
    throw std::runtime_error("MediaFile: cannot make a URI of '" + path + "': " + reason);
  }

  auto p = std::make_unique<Pipeline>();
  p->owner = this;
  p->pipeline = gst_pipeline_new("conflux_media_file");
  p->decoder = gst_element_factory_make("uridecodebin", "decoder");
  if (!p->decoder) {
    g_free(uri);
    throw std::runtime_error("MediaFile: GStreamer has no uridecodebin (gstreamer1.0-plugins-base missing?)");
  }
  gst_bin_add(GST_BIN(p->pipeline), p->decoder);
  g_object_set(p->decoder, "uri", uri, nullptr);
  g_free(uri);
  g_signal_connect(p->decoder, "pad-added", G_CALLBACK(&Pipeline::on_pad_added), p.get());
  g_signal_connect(p->decoder, "no-more-pads", G_CALLBACK(&Pipeline::on_no_more_pads), p.get());
  p->bus = gst_element_get_bus(p->pipeline);
  p->mapping = std::make_unique<gst_internal::RunningTimeMapping>(
      config_.pacing == MediaPacing::kRealTime ? gst_internal::RunningTimeMapping::Mode::kPipelineClock
                                               : gst_internal::RunningTimeMapping::Mode::kFirstBufferAnchor,
      p->pipeline);
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = StreamStatus{};
    status_.state = StreamStatus::State::kRunning;
    stats_ = MediaFileStats{};
    stop_requested_ = false;
  }
  if (gst_element_set_state(p->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    std::string cause = "no error was posted";
    if (GstMessage* message = gst_bus_pop_filtered(p->bus, GST_MESSAGE_ERROR)) {
      const StreamStatus status = gst_internal::error_status_from_message(message);
      cause = status.element + ": " + status.message;
      gst_message_unref(message);
    }
    p.reset();
    std::lock_guard<std::mutex> lock(mu_);
    status_ = StreamStatus{StreamStatus::State::kError, "", cause};
    throw std::runtime_error("MediaFile: cannot decode '" + path + "': " + cause);
  }
  pipeline_ = std::move(p);
  bus_thread_ = std::thread([this] { run_bus_loop(); });
}

void MediaFile::run_bus_loop() {
  GstBus* bus = pipeline_->bus;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_requested_) return;
    }
    // Other message types are popped and discarded by the filter, so the bus cannot grow.
    GstMessage* message = gst_bus_timed_pop_filtered(
        bus, kBusPollTimeout, static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_EOS));
    if (!message) continue;
    StreamStatus final_status;
    if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
      final_status = gst_internal::error_status_from_message(message);
      final_status.message = "cannot decode '" + config_.path + "': " + final_status.message;
    } else {
      // The pipeline posts EOS once every sink has it; a sink takes EOS only after its last sample's
      // callback returned (same streaming thread), so every sample has been delivered by now.
      final_status.state = StreamStatus::State::kEndOfStream;
    }
    gst_message_unref(message);
    finish(final_status);
    return;
  }
}

void MediaFile::finish(StreamStatus final_status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.state != StreamStatus::State::kRunning) return;
    status_ = final_status;
  }
  finished_cv_.notify_all();
  if (on_end_) on_end_(final_status);
}

void MediaFile::stop() {
  if (in_media_callback) throw std::logic_error("MediaFile::stop() called from an audio or video callback");
  if (bus_thread_.joinable()) {
    if (std::this_thread::get_id() == bus_thread_.get_id()) {
      throw std::logic_error("MediaFile::stop() called from its status callback");
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_requested_ = true;
    }
    bus_thread_.join();
  }
  pipeline_.reset();  // NULL state: streaming threads stop, then every GStreamer object is released
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.state != StreamStatus::State::kRunning) return;
    status_.state = StreamStatus::State::kStopped;
  }
  finished_cv_.notify_all();
}

bool MediaFile::wait_until_finished(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return finished_cv_.wait_for(lock, timeout, [&] { return status_.state != StreamStatus::State::kRunning; });
}

StreamStatus MediaFile::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

MediaFileStats MediaFile::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

MediaFileStats decode_media_file(const MediaFileConfig& config, AudioCallback on_audio, FrameCallback on_frame) {
  MediaFile file(config, std::move(on_audio), std::move(on_frame));
  file.start();
  // No overall deadline: a long file in real time legitimately takes as long as it lasts.
  while (!file.wait_until_finished(std::chrono::seconds(1))) {
  }
  const StreamStatus status = file.status();
  const MediaFileStats stats = file.stats();
  file.stop();
  if (status.state == StreamStatus::State::kError) {
    throw std::runtime_error("MediaFile: " + status.element + ": " + status.message);
  }
  return stats;
}

}  // namespace conflux::capture
