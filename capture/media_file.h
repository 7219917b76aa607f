// Media files: decodes anything GStreamer can read (uridecodebin) into 16 kHz mono float audio chunks and
// RGB video frames, with times on steady_clock, either paced in real time or as fast as possible.
// Files with only audio or only video work; the missing stream simply never calls its callback.
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

#include "capture/video_source.h"

namespace conflux::capture {

// The audio embedder's input rate (design.md: 16 kHz, 640 samples = 40 ms = one token).
constexpr int kMediaAudioSampleRate = 16000;

struct AudioChunk {
  std::vector<float> samples;  // mono, kMediaAudioSampleRate, as decoded (chunk sizes follow the file)
  TimePoint captured;          // time of samples[0]
};
using AudioCallback = std::function<void(AudioChunk&& chunk)>;

enum class MediaPacing {
  kRealTime,         // appsinks sync to the pipeline clock: a 10 s file takes 10 s, like a live source
  kAsFastAsPossible  // no clock sync: decoding speed only (tests, offline evaluation)
};

struct MediaFileConfig {
  std::string path;
  MediaPacing pacing = MediaPacing::kAsFastAsPossible;
};

struct MediaFileStats {
  bool has_audio = false;  // an audio stream was found and linked
  bool has_video = false;  // a video stream was found and linked
  uint64_t audio_chunks = 0;
  uint64_t audio_samples = 0;  // at kMediaAudioSampleRate
  uint64_t video_frames = 0;
  // Buffers without a timestamp: audio chunks then continue the previous chunk's time line (previous
  // time + its duration), video frames take the instant they were decoded.
  uint64_t buffers_without_pts = 0;
};

// Pipeline: uridecodebin; each stream it exposes is linked when it appears (pad-added):
//   audio: queue ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! appsink
//   video: queue ! videoconvert ! videoscale ! video/x-raw,format=RGB,pixel-aspect-ratio=1/1 ! appsink
//   anything else (a second audio or video track, subtitles): fakesink, so it cannot stall the demuxer.
// (videoscale makes pixels square: ImageRGB has no pixel aspect ratio.) Nothing is dropped: the appsinks
// block when full (bounded queues, back-pressure to the decoder) because a file has no real-time deadline
// that would justify losing data.
//
// Times: both streams share one mapping (see VideoSource): kRealTime maps the pipeline clock onto
// steady_clock, so times are the instants the samples were due; kAsFastAsPossible anchors the first
// buffer at the instant it was decoded and places everything at anchor + its position in the file, so
// audio and video stay aligned with each other.
//
// Threads: the callbacks run on GStreamer's streaming threads, one for audio and one for video, so the
// audio and video callbacks may run concurrently (each one is never called concurrently with itself).
// A bus thread of ours watches for end of stream and errors.
class MediaFile {
 public:
  // Either callback may be empty to ignore that stream (it is still decoded, and counted).
  MediaFile(MediaFileConfig config, AudioCallback on_audio, FrameCallback on_frame,
            StatusCallback on_end = {});
  ~MediaFile();  // stop()
  MediaFile(const MediaFile&) = delete;
  MediaFile& operator=(const MediaFile&) = delete;

  // Throws std::runtime_error naming the file if it does not exist, is not a regular file, or the
  // pipeline fails to start; std::logic_error if already running. Errors found while decoding (not a
  // media file, no decoder for it) end the stream with State::kError and a message naming the file.
  void start();
  // Tears the pipeline down; call it after an error too. Must not be called from a callback.
  void stop();

  bool wait_until_finished(std::chrono::milliseconds timeout);  // false on timeout
  StreamStatus status() const;
  MediaFileStats stats() const;

 private:
  struct Pipeline;

  void run_bus_loop();
  void finish(StreamStatus final_status);

  MediaFileConfig config_;
  AudioCallback on_audio_;
  FrameCallback on_frame_;
  StatusCallback on_end_;

  std::unique_ptr<Pipeline> pipeline_;
  std::thread bus_thread_;

  mutable std::mutex mu_;
  std::condition_variable finished_cv_;
  StreamStatus status_;
  MediaFileStats stats_;
  bool stop_requested_ = false;
};

// Decodes a whole file, blocking until its end. Throws std::runtime_error naming the file on any error.
MediaFileStats decode_media_file(const MediaFileConfig& config, AudioCallback on_audio, FrameCallback on_frame);

}  // namespace conflux::capture
