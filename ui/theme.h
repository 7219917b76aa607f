// The colours that carry meaning in the window. They are distinct in hue from Dear ImGui's dark style
// (blue-grey frames, white text), so each kind of content can be told apart on a screenshot: the
// screenshot test looks for answer-coloured pixels in the conversation and plot-coloured pixels in
// the latency overlay.
#pragma once
#include <cstdint>

namespace conflux::ui {

struct Rgb {
  uint8_t r, g, b;
};

constexpr Rgb kAnswerTextColor{130, 230, 140};   // green: the model's streamed answers
constexpr Rgb kUserTextColor{150, 200, 255};     // light blue: the user's turns
constexpr Rgb kNoteTextColor{170, 170, 170};     // grey: footers and notices
constexpr Rgb kPlotLineColor{255, 160, 40};      // orange: every rolling plot in the overlay
constexpr Rgb kPatchGridColor{255, 235, 60};     // yellow: the 48x48 patch grid over the camera view
constexpr uint8_t kPatchGridAlpha = 170;         // the grid stays visible over any frame without hiding it
constexpr Rgb kLevelMeterColor{70, 130, 220};    // the microphone level meter outside speech
constexpr Rgb kSpeechColor{90, 200, 110};        // VAD "speech" state and the level meter while speaking
// Timeline stages of the last turn (blue, teal, violet: none of them orange, so they never count as plot).
constexpr Rgb kStageCloseColor{80, 120, 220};
constexpr Rgb kStageFirstTokenColor{60, 180, 190};
constexpr Rgb kStageDecodeColor{150, 110, 220};

}  // namespace conflux::ui
