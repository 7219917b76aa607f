// The window's panels, drawn each frame from the UI thread's state (ui/window.cc owns the loop and the
// state; this file only draws and turns clicks into session inputs).
#pragma once
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "app/live.h"
#include "ui/conversation.h"
#include "ui/gl_texture.h"
#include "ui/layout.h"
#include "ui/metrics.h"

namespace conflux::ui {

// Everything the panels read and change, kept on the UI thread.
struct UiState {
  UiState(app::LiveRun& r) : run(r), metrics(r.origin()) {}

  app::LiveRun& run;
  Conversation conversation;
  MetricsHistory metrics;
  SessionSnapshot snapshot;          // read once per frame

  // Camera view: the newest frame and its number (0 = none yet).
  GlTexture camera;
  uint64_t camera_frame_number = 0;
  // Conversation thumbnails by image id, newest last. Older ones are dropped past the bound and
  // their entries show as text only.
  static constexpr size_t kMaxThumbnails = 48;
  static constexpr int kThumbnailHeight = 54;   // about three lines of text
  std::deque<std::pair<int, GlTexture>> thumbnails;

  // Input bar.
  std::string typed_text;
  bool push_to_talk_down = false;

  bool overlay_visible = false;

  // The live settings as edited in the Settings tab (first taken from the session's snapshot; every
  // change is sent with Session::update_settings, which applies it at the current input time).
  std::optional<LiveSettings> settings_edit;
  // Inputs chosen in the Settings tab.
  std::optional<std::vector<std::string>> microphone_names;  // listed once, when the tab first shows
  std::string camera_edit;                                   // the pipeline being typed
  std::string source_error;                                  // why the last switch failed
  std::string export_message;        // the last export's result, shown in the overlay

  // The conversation's plain-text view, rebuilt only when the conversation changes.
  std::string transcript;
  uint64_t transcript_version = ~uint64_t(0);

  size_t resident_bytes = 0;         // process memory, refreshed about once a second
  TimePoint resident_read_at{};
};

// Keeps the thumbnail for an image entry: `frame` is downscaled to kThumbnailHeight and uploaded.
void add_thumbnail(UiState& ui, int image_id, const ImageRGB& frame);

void draw_status_bar(UiState& ui, const Rect& r);
void draw_conversation(UiState& ui, const Rect& r);
void draw_input_bar(UiState& ui, const Rect& r);
void draw_camera(UiState& ui, const Rect& r);
void draw_audio(UiState& ui, const Rect& r);
void draw_info(UiState& ui, const Rect& r);
void draw_latency_overlay(UiState& ui, const Rect& r);

}  // namespace conflux::ui
