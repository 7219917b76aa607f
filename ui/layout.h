// Where each panel of the window goes, computed from the framebuffer size alone, so the window
// re-lays itself out on resize and the screenshot test can find each panel's pixels.
//
//   +--------------------------- status bar ---------------------------+
//   | conversation                       | camera view                  |
//   |                                    +------------------------------+
//   |                                    | microphone + VAD   } latency |
//   |                                    | settings / model   } overlay |
//   +- text box, send, push-to-talk -----+------------------------------+
//
// The latency overlay, when shown, covers the lower right panels (their essentials, state and level,
// are repeated in the status bar) and leaves the conversation and the camera visible.
#pragma once

namespace conflux::ui {

struct Rect {
  float x = 0, y = 0, w = 0, h = 0;
  bool contains(float px, float py) const { return px >= x && px < x + w && py >= y && py < y + h; }
};

struct Layout {
  Rect status_bar, conversation, input_bar, camera, audio, info, overlay;
};

// Pixel sizes assume the default 1:1 framebuffer scale.
Layout compute_layout(float width, float height);

}  // namespace conflux::ui
