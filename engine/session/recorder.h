// What a session consumed, in the order it consumed it: the hook a recording writer implements
// (capture/recording.h). Called on the session thread, so implementations buffer and write in batches;
// no call may block for long.
#pragma once
#include <cstddef>
#include <string>

#include "engine/image.h"
#include "engine/session/session.h"

namespace conflux {

class SessionRecorder {
 public:
  virtual ~SessionRecorder() = default;
  // Once, before any input: model identity and every setting, as session_settings_json() gives them.
  virtual void on_start(const std::string& settings_json, TimePoint origin) = 0;
  // Every 640-sample audio frame the session took in (speech or not), in order, with its input time.
  // Together they are the complete audio the VAD saw, so a replay reaches the same decisions.
  virtual void on_audio_frame(const float* samples, size_t n, TimePoint input_time) = 0;
  // Every video frame that passed the frame-rate sampler, at full resolution, with its capture time,
  // whether or not it then went into the model (a frame held outside a turn may be superseded).
  virtual void on_video_frame(const ImageRGB& frame, TimePoint captured) = 0;
  virtual void on_text(const std::string& text, TimePoint when) = 0;
  virtual void on_push_to_talk(bool pressed, TimePoint when) = 0;
  // A live settings update (live_settings_to_json), in input order. A recorder that writes recordings
  // must keep it, or a replay would not change the settings at the same point.
  virtual void on_settings(const std::string& settings_json, TimePoint when) = 0;
  // The timeline: turn boundaries, tokens and text, answers with their timings, drops.
  virtual void on_event(const SessionEvent& event) = 0;
  // Once, after the last input: everything buffered must reach the disk.
  virtual void on_stop() = 0;
};

}  // namespace conflux
