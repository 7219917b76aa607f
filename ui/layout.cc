// Panel placement: a left column for the conversation, a right column for the camera and the rest.
#include "ui/layout.h"

#include <algorithm>

namespace conflux::ui {

namespace {

constexpr float kGap = 6;               // between panels and at the window's edges
constexpr float kStatusBarHeight = 30;  // one line of text plus the window padding
constexpr float kInputBarHeight = 66;   // the text box row and the push-to-talk row
constexpr float kAudioPanelHeight = 74; // a title, the level meter and the VAD line
// The conversation is what the user reads most: it gets a bit more than half of the width.
constexpr float kConversationWidthShare = 0.52f;
// The camera view's share of the right column's height: a 4:3 frame at the column's width
// (~590 px at 1280 x 720) is taller than that, so the frame is fitted inside, aspect kept.
constexpr float kCameraHeightShare = 0.44f;

}  // namespace

Layout compute_layout(float width, float height) {
  Layout l;
  l.status_bar = {0, 0, width, kStatusBarHeight};
  const float top = kStatusBarHeight + kGap;
  const float bottom = height - kGap;
  const float left_w = std::max(0.f, (width - 3 * kGap) * kConversationWidthShare);
  const float right_x = kGap + left_w + kGap;
  const float right_w = std::max(0.f, width - right_x - kGap);
  const float column_h = std::max(0.f, bottom - top);

  l.input_bar = {kGap, bottom - kInputBarHeight, left_w, kInputBarHeight};
  l.conversation = {kGap, top, left_w, std::max(0.f, l.input_bar.y - kGap - top)};

  l.camera = {right_x, top, right_w, column_h * kCameraHeightShare};
  l.audio = {right_x, l.camera.y + l.camera.h + kGap, right_w, kAudioPanelHeight};
  l.info = {right_x, l.audio.y + l.audio.h + kGap, right_w, std::max(0.f, bottom - (l.audio.y + l.audio.h + kGap))};
  l.overlay = {right_x, l.audio.y, right_w, std::max(0.f, bottom - l.audio.y)};
  return l;
}

}  // namespace conflux::ui
