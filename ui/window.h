// The desktop window of `conflux run`: Dear ImGui on GLFW + OpenGL 3.3, driven by a LiveRun. Panels:
// the conversation (streaming answers), the camera view with the model's 48x48 patch grid, the
// microphone level and VAD state, a text box and push-to-talk, settings and model info, and a latency
// overlay (F1) with rolling plots, the last turn's stage timeline, p50/p95/p99 and CSV/JSON export.
//
// The UI thread never waits on inference: each frame it drains LiveRun::next_event() and reads
// session().snapshot(). conflux_ui uses app/live.h and is linked into the `conflux` executable, which
// defines LiveRun.
#pragma once
#include <stdexcept>
#include <string>

#include "app/live.h"

namespace conflux::ui {

// Whether a window can be opened here: GLFW initialises (an X display is reachable). When it cannot,
// *why says so in one line, e.g. "GLFW error 65544: X11: The DISPLAY environment variable is missing".
bool display_available(std::string* why);

// A setup step failed before the live run started (nothing was loaded yet): the caller can fall back
// to the terminal. what() names the step.
struct WindowSetupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct WindowOptions {
  int width = 1280;
  int height = 720;
  bool overlay = false;          // the latency overlay is shown from the start (F1 toggles it)
  // Screenshot mode: render, save the window as this PNG, exit. Frames are counted once the input
  // has ended and the session is idle (a media file), or from the start (live devices, which never end).
  std::string screenshot_path;
  int screenshot_frames = 3;
};

// Opens the window, runs `live` in it until the window is closed, Ctrl-C, --duration or the screenshot
// is saved; then stops the run (mid-answer too) and cleans up in reverse order. Returns the exit code
// (1 if the media file could not be decoded). Throws WindowSetupError when the window cannot be made.
int run_window(app::LiveOptions live, const WindowOptions& options);

}  // namespace conflux::ui
