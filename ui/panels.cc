// The window's panels: status bar, conversation, input bar, camera view with the patch grid, microphone
// level and VAD, settings and model info, and the latency overlay. Each is a fixed Dear ImGui window
// placed by ui/layout.h; all of them read the UI thread's state and never wait on the session.
#include "ui/panels.h"

#include "capture/microphone.h"

#include <imgui.h>
#include <imgui_stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "engine/dtype.h"
#include "engine/image.h"
#include "ui/theme.h"

namespace conflux::ui {

namespace {

ImVec4 color(Rgb c, float alpha = 1.f) { return ImVec4(c.r / 255.f, c.g / 255.f, c.b / 255.f, alpha); }
ImU32 color_u32(Rgb c, uint8_t alpha = 255) { return IM_COL32(c.r, c.g, c.b, alpha); }

// Tiled panels: placed by the layout every frame, never moved, resized or raised above the overlay.
constexpr ImGuiWindowFlags kPanelFlags = ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse |
                                         ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;

void place_next_window(const Rect& r) {
  ImGui::SetNextWindowPos(ImVec2(r.x, r.y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(r.w, r.h), ImGuiCond_Always);
}

void text_wrapped(const std::string& s, Rgb c) {
  ImGui::PushStyleColor(ImGuiCol_Text, color(c));
  // TextUnformatted under a wrap position: ImGui::TextWrapped formats through a fixed-size buffer and
  // would cut long answers.
  ImGui::PushTextWrapPos(0.f);
  ImGui::TextUnformatted(s.data(), s.data() + s.size());
  ImGui::PopTextWrapPos();
  ImGui::PopStyleColor();
}

std::string human_bytes(double bytes) {
  char buf[32];
  if (bytes >= double(1 << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / double(1 << 30));
  else std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / double(1 << 20));
  return buf;
}

size_t read_resident_bytes() {
  // /proc/self/statm: total program size, then resident set size, both in pages.
  std::ifstream statm("/proc/self/statm");
  size_t total_pages = 0, resident_pages = 0;
  statm >> total_pages >> resident_pages;
  return resident_pages * size_t(::sysconf(_SC_PAGESIZE));
}

void refresh_transcript(UiState& ui) {
  if (ui.transcript_version == ui.conversation.version()) return;
  ui.transcript = ui.conversation.transcript();
  ui.transcript_version = ui.conversation.version();
}

const char* listening_state(const UiState& ui) {
  if (ui.snapshot.answering) return "answering";
  if (ui.snapshot.in_speech) return "hearing you";
  if (ui.run.input_ended()) return "input ended";
  return "listening";
}

// Two-column rows of a read-only settings table.
void setting_row(const char* name, const std::string& value) {
  ImGui::TableNextRow();
  ImGui::TableSetColumnIndex(0);
  ImGui::TextUnformatted(name);
  ImGui::TableSetColumnIndex(1);
  ImGui::PushTextWrapPos(0.f);
  ImGui::TextUnformatted(value.c_str());
  ImGui::PopTextWrapPos();
}

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// A rolling series as ImGui::PlotLines reads it: `count` floats `stride` bytes apart, oldest at `offset`.
struct SeriesView {
  const float* first = nullptr;
  int count = 0;
  int offset = 0;
  int stride = sizeof(float);
  float at(int i) const {
    const char* base = reinterpret_cast<const char*>(first);
    return *reinterpret_cast<const float*>(base + size_t((offset + i) % count) * size_t(stride));
  }
};

template <class T, size_t N>
SeriesView series(const Ring<T, N>& ring, const float* field_of_first) {
  return {field_of_first, int(ring.size()), int(ring.oldest_index()), int(sizeof(T))};
}

constexpr float kPlotHeight = 30;        // about two text lines: enough to read a trend
constexpr float kPlotHeadroom = 1.15f;   // the top of the curve stays inside the frame

void plot_cell(const char* id, const char* title, const char* unit, const SeriesView& s) {
  ImGui::TextUnformatted(title);
  float top = 0, last = 0;
  for (int i = 0; i < s.count; ++i) top = std::max(top, s.at(i));
  if (s.count) last = s.at(s.count - 1);
  char overlay[48];
  if (s.count) std::snprintf(overlay, sizeof overlay, "%.1f %s", last, unit);
  else std::snprintf(overlay, sizeof overlay, "no data");
  ImGui::PushStyleColor(ImGuiCol_PlotLines, color(kPlotLineColor));
  ImGui::PushStyleColor(ImGuiCol_PlotLinesHovered, color(kPlotLineColor));
  // An explicit width: Dear ImGui 1.86 collapses a plot of width -1 ("fill") inside a table cell.
  ImGui::PlotLines(id, s.first, s.count, s.offset, overlay, 0.f, top > 0 ? top * kPlotHeadroom : 1.f,
                   ImVec2(ImGui::GetContentRegionAvail().x, kPlotHeight), s.stride);
  ImGui::PopStyleColor(2);
}

std::string export_file_name(const char* extension) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &local);
  return std::string("conflux-metrics-") + stamp + extension;
}

void export_metrics(UiState& ui, bool json) {
  ui.metrics.sample(ui.snapshot, SessionClock::now());  // include the newest numbers
  const std::string name = export_file_name(json ? ".json" : ".csv");
  std::string error;
  const bool ok = write_text_file(name, json ? ui.metrics.to_json() : ui.metrics.to_csv(), &error);
  ui.export_message = ok ? "wrote " + (std::filesystem::current_path() / name).string() : error;
}

void draw_last_turn_timeline(const UiState& ui) {
  const auto& turns = ui.metrics.turns();
  if (turns.empty()) {
    ImGui::TextDisabled("Last turn: none answered yet");
    return;
  }
  const TurnRecord& t = turns.newest();
  ImGui::Text("Last turn %d (%s%s): first token after %.0f ms, %d tokens at %.1f/s", t.turn, trigger_name(t.trigger),
              t.interrupted ? ", interrupted" : "", t.end_to_first_ms, t.tokens, t.tokens_per_s);
  struct Stage {
    float ms;
    Rgb color;
    const char* label;
  };
  const Stage stages[] = {{t.end_to_closed_ms, kStageCloseColor, "end of turn -> turn closed"},
                          {t.closed_to_first_ms, kStageFirstTokenColor, "-> first token"},
                          {t.first_to_last_ms, kStageDecodeColor, "-> last token"}};
  constexpr float kBarHeight = 14;
  constexpr float kMinStageWidth = 3;  // a stage of ~0 ms stays visible as a sliver
  const float width = ImGui::GetContentRegionAvail().x;
  float total = 0;
  for (const Stage& s : stages) total += s.ms;
  float widths[3], sum = 0;
  for (int i = 0; i < 3; ++i) sum += widths[i] = std::max(kMinStageWidth, total > 0 ? width * stages[i].ms / total : width / 3);
  ImDrawList* draw = ImGui::GetWindowDrawList();
  ImVec2 p = ImGui::GetCursorScreenPos();
  for (int i = 0; i < 3; ++i) {
    const float w = widths[i] * width / sum;
    draw->AddRectFilled(p, ImVec2(p.x + w, p.y + kBarHeight), color_u32(stages[i].color));
    p.x += w;
  }
  ImGui::Dummy(ImVec2(width, kBarHeight));
  for (int i = 0; i < 3; ++i) {
    if (i) ImGui::SameLine();
    ImGui::TextColored(color(stages[i].color), "%s %.0f ms", stages[i].label, stages[i].ms);
  }
}

void percentile_row(const char* name, const Percentiles& p) {
  ImGui::TableNextRow();
  ImGui::TableSetColumnIndex(0);
  ImGui::TextUnformatted(name);
  const double values[] = {p.p50, p.p95, p.p99};
  for (int i = 0; i < 3; ++i) {
    ImGui::TableSetColumnIndex(1 + i);
    if (p.count) ImGui::Text("%.1f", values[i]);
    else ImGui::TextDisabled("-");
  }
  ImGui::TableSetColumnIndex(4);
  ImGui::Text("%zu", p.count);
}

}  // namespace

void add_thumbnail(UiState& ui, int image_id, const ImageRGB& frame) {
  if (frame.width <= 0 || frame.height <= 0) return;
  const int h = UiState::kThumbnailHeight;
  const int w = std::max(1, int(std::lround(double(h) * frame.width / frame.height)));
  GlTexture texture;
  texture.upload(resize_bicubic_antialias(frame, w, h));
  if (ui.thumbnails.size() >= UiState::kMaxThumbnails) ui.thumbnails.pop_front();
  ui.thumbnails.emplace_back(image_id, std::move(texture));
}

void draw_status_bar(UiState& ui, const Rect& r) {
  place_next_window(r);
  ImGui::Begin("##status", nullptr, kPanelFlags | ImGuiWindowFlags_NoTitleBar | ImGuiWindowFlags_NoScrollbar);
  const SessionSnapshot& s = ui.snapshot;
  ImGui::Text("Conflux | %s | turn %d | %s | level %.0f dBFS | real-time factor %.2f", ui.run.inputs().c_str(), s.turn,
              listening_state(ui), s.level_db, s.realtime_factor);
  const char* label = ui.overlay_visible ? "Hide latency (F1)###overlay" : "Latency overlay (F1)###overlay";
  const float button_w = ImGui::CalcTextSize(label, nullptr, true).x + 2 * ImGui::GetStyle().FramePadding.x;
  ImGui::SameLine(ImGui::GetWindowContentRegionMax().x - button_w);
  if (ImGui::SmallButton(label)) ui.overlay_visible = !ui.overlay_visible;
  ImGui::End();
}

void draw_conversation(UiState& ui, const Rect& r) {
  place_next_window(r);
  ImGui::Begin("Conversation", nullptr, kPanelFlags);
  if (ImGui::BeginTabBar("##conversation_views")) {
    if (ImGui::TabItemButton("Copy all", ImGuiTabItemFlags_Trailing)) {
      refresh_transcript(ui);
      ImGui::SetClipboardText(ui.transcript.c_str());
    }
    if (ImGui::BeginTabItem("Chat")) {
      ImGui::BeginChild("##chat");
      const auto& entries = ui.conversation.entries();
      const float thumbnail_gap = ImGui::GetStyle().ItemSpacing.x;
      const float right_edge = ImGui::GetWindowContentRegionMax().x;
      bool previous_was_image = false;
      int index = 0;
      for (const ConversationEntry& e : entries) {
        ImGui::PushID(index++);
        using Kind = ConversationEntry::Kind;
        if (e.kind == Kind::Image) {
          const auto it = std::find_if(ui.thumbnails.begin(), ui.thumbnails.end(),
                                       [&](const auto& t) { return t.first == e.image_id; });
          if (!previous_was_image) {
            ImGui::TextColored(color(kUserTextColor), "[you] image");
            ImGui::SameLine();
          }
          if (it != ui.thumbnails.end()) {
            const ImVec2 size(float(it->second.width()), float(it->second.height()));
            // Thumbnails of one turn flow left to right and wrap at the panel's edge.
            if (previous_was_image && ImGui::GetItemRectMax().x - ImGui::GetWindowPos().x + thumbnail_gap + size.x <= right_edge)
              ImGui::SameLine();
            ImGui::Image(it->second.imgui_id(), size);
          } else {
            if (previous_was_image) ImGui::SameLine();
            ImGui::TextDisabled("[image]");
          }
          if (ImGui::IsItemHovered()) ImGui::SetTooltip("camera frame in the KV cache: %lld soft tokens", (long long)e.image_tokens);
          previous_was_image = true;
          ImGui::PopID();
          continue;
        }
        previous_was_image = false;
        switch (e.kind) {
          case Kind::Speech:
          case Kind::PushToTalk:
          case Kind::Typed: text_wrapped(Conversation::line(e), kUserTextColor); break;
          case Kind::Notice: text_wrapped(Conversation::line(e), kNoteTextColor); break;
          case Kind::Answer: {
            if (!e.thought.empty()) text_wrapped("(thinking) " + e.thought, kNoteTextColor);
            ImGui::TextColored(color(kAnswerTextColor), "[conflux]");
            ImGui::SameLine();
            text_wrapped(e.text.empty() && e.streaming ? "..." : e.text, kAnswerTextColor);
            if (ImGui::BeginPopupContextItem("##answer_menu")) {
              if (ImGui::MenuItem("Copy answer")) ImGui::SetClipboardText(e.text.c_str());
              ImGui::EndPopup();
            }
            if (!e.footer.empty()) text_wrapped("          " + e.footer, kNoteTextColor);
            break;
          }
          default: break;
        }
        ImGui::PopID();
      }
      if (entries.empty()) ImGui::TextDisabled("Speak, show something to the camera, or type below.");
      // Follow the stream while the view is at the bottom; stay put when the user scrolled up to read.
      if (ImGui::GetScrollY() >= ImGui::GetScrollMaxY()) ImGui::SetScrollHereY(1.0f);
      ImGui::EndChild();
      ImGui::EndTabItem();
    }
    if (ImGui::BeginTabItem("Text")) {
      // The same conversation as plain text: select with the mouse or Ctrl+A, copy with Ctrl+C.
      refresh_transcript(ui);
      ImGui::InputTextMultiline("##transcript", &ui.transcript, ImVec2(-1, -1), ImGuiInputTextFlags_ReadOnly);
      ImGui::EndTabItem();
    }
    ImGui::EndTabBar();
  }
  ImGui::End();
}

void draw_input_bar(UiState& ui, const Rect& r) {
  place_next_window(r);
  ImGui::Begin("##input", nullptr, kPanelFlags | ImGuiWindowFlags_NoTitleBar | ImGuiWindowFlags_NoScrollbar);
  const char* send_label = "Send";
  const float send_w = ImGui::CalcTextSize(send_label).x + 2 * ImGui::GetStyle().FramePadding.x;
  ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - send_w - ImGui::GetStyle().ItemSpacing.x);
  bool send = ImGui::InputTextWithHint("##typed", "Type a message and press Enter", &ui.typed_text,
                                       ImGuiInputTextFlags_EnterReturnsTrue);
  if (send) ImGui::SetKeyboardFocusHere(-1);  // keep typing after Enter
  ImGui::SameLine();
  send |= ImGui::Button(send_label);
  if (send && !ui.typed_text.empty()) {
    ui.run.session().push_text(ui.typed_text, SessionClock::now());
    ui.conversation.add_typed(ui.typed_text, ui.snapshot.turn);
    ui.typed_text.clear();
  }
  // Push-to-talk: the turn is what the microphone hears while the button is held.
  // One ID ("###push_to_talk") for both labels: the button must stay the active item while held.
  ImGui::Button(ui.push_to_talk_down ? "Talking... (release to send)###push_to_talk" : "Hold to talk###push_to_talk");
  if (ImGui::IsItemActivated()) {
    ui.push_to_talk_down = true;
    ui.run.session().push_to_talk(true, SessionClock::now());
    ui.conversation.push_to_talk(true, SessionClock::now(), ui.snapshot.turn);
  }
  if (ImGui::IsItemDeactivated() && ui.push_to_talk_down) {
    ui.push_to_talk_down = false;
    ui.run.session().push_to_talk(false, SessionClock::now());
    ui.conversation.push_to_talk(false, SessionClock::now(), ui.snapshot.turn);
  }
  ImGui::SameLine();
  ImGui::BeginDisabled(!ui.snapshot.answering);
  if (ImGui::Button("Stop answer")) ui.run.session().cancel_answer();
  ImGui::EndDisabled();
  ImGui::End();
}

void draw_camera(UiState& ui, const Rect& r) {
  place_next_window(r);
  ImGui::Begin("Camera (what the model sees)", nullptr, kPanelFlags | ImGuiWindowFlags_NoScrollbar);
  const int budget = ui.run.options().session.image_budget;
  if (!ui.camera.valid()) {
    ImGui::TextDisabled("No frame yet: the newest camera or media frame shows here,");
    ImGui::TextDisabled("with the %d-token patch grid the model cuts it into.", budget);
    ImGui::End();
    return;
  }
  const int fw = ui.camera.width(), fh = ui.camera.height();
  ResizePlan plan;
  std::string caption;
  try {
    plan = plan_resize(fw, fh, budget);
    char buf[200];
    std::snprintf(buf, sizeof buf, "frame %llu, %dx%d -> %dx%d: %d x %d patches of 48x48 = %d tokens (budget %d), %.2g fps",
                  (unsigned long long)ui.camera_frame_number, fw, fh, plan.width, plan.height, plan.grid_cols,
                  plan.grid_rows, plan.n_tokens(), budget, ui.run.options().session.video_fps);
    caption = buf;
  } catch (const std::exception& e) {
    caption = std::string("no patch grid: ") + e.what();
  }
  // The frame fills the space above the caption, aspect kept, centred.
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float caption_h = ImGui::GetTextLineHeightWithSpacing();
  const float scale = std::min(avail.x / float(fw), std::max(1.f, avail.y - caption_h) / float(fh));
  const ImVec2 size(float(fw) * scale, float(fh) * scale);
  ImGui::SetCursorPosX(ImGui::GetCursorPosX() + (avail.x - size.x) / 2);
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  ImGui::Image(ui.camera.imgui_id(), size);
  // The grid: the frame is resized to plan.width x plan.height and cut into grid_cols x grid_rows
  // patches, so on the displayed frame the lines divide it evenly.
  ImDrawList* draw = ImGui::GetWindowDrawList();
  const ImU32 grid = color_u32(kPatchGridColor, kPatchGridAlpha);
  for (int c = 0; c <= plan.grid_cols && plan.grid_cols > 0; ++c) {
    const float x = origin.x + size.x * float(c) / float(plan.grid_cols);
    draw->AddLine(ImVec2(x, origin.y), ImVec2(x, origin.y + size.y), grid);
  }
  for (int row = 0; row <= plan.grid_rows && plan.grid_rows > 0; ++row) {
    const float y = origin.y + size.y * float(row) / float(plan.grid_rows);
    draw->AddLine(ImVec2(origin.x, y), ImVec2(origin.x + size.x, y), grid);
  }
  ImGui::TextUnformatted(caption.c_str());
  ImGui::End();
}

void draw_audio(UiState& ui, const Rect& r) {
  place_next_window(r);
  ImGui::Begin("Microphone", nullptr, kPanelFlags | ImGuiWindowFlags_NoScrollbar);
  const SessionSnapshot& s = ui.snapshot;
  // The meter spans -60..0 dBFS: below -60 dBFS is room noise on any microphone, 0 is full scale.
  constexpr float kMeterFloorDb = -60.f;
  const float fraction = std::clamp((s.level_db - kMeterFloorDb) / -kMeterFloorDb, 0.f, 1.f);
  char level[32];
  std::snprintf(level, sizeof level, "%.1f dBFS", s.level_db);
  ImGui::PushStyleColor(ImGuiCol_PlotHistogram, color(s.in_speech ? kSpeechColor : kLevelMeterColor));
  ImGui::ProgressBar(fraction, ImVec2(-1, 0), level);
  ImGui::PopStyleColor();
  const SessionConfig& cfg = ui.run.options().session;
  ImGui::TextUnformatted("VAD:");
  ImGui::SameLine();
  if (!cfg.vad.enabled) ImGui::TextDisabled("off (every frame goes into the model)");
  else if (s.in_speech) ImGui::TextColored(color(kSpeechColor), "speech");
  else ImGui::TextDisabled("silence");
  ImGui::SameLine();
  ImGui::Text("| %s | %lld audio frames in the model", s.answering ? "answering" : "not answering", (long long)s.audio_frames);
  ImGui::End();
}

void draw_info(UiState& ui, const Rect& r) {
  place_next_window(r);
  ImGui::Begin("Setup", nullptr, kPanelFlags);
  const app::LiveOptions& o = ui.run.options();
  const SessionConfig& s = o.session;
  const ImGuiTableFlags table_flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_SizingStretchProp;
  if (ImGui::BeginTabBar("##setup")) {
    if (ImGui::BeginTabItem("Settings")) {
      // The record toggle: the session is recorded from its start (so a recording replays exactly);
      // the checkbox decides whether that recording is kept when the run ends.
      if (ui.run.recording_available()) {
        bool keep = ui.run.recording_kept();
        const bool fixed = !ui.run.options().record_dir.empty();  // --record DIR always keeps it
        if (fixed) ImGui::BeginDisabled();
        if (ImGui::Checkbox("Record this session", &keep)) ui.run.set_recording_kept(keep);
        if (fixed) ImGui::EndDisabled();
        ImGui::SameLine();
        ImGui::TextDisabled("-> %s", ui.run.recording_target().c_str());
      }
      // Live settings: applied by the session from the current input time on (and recorded).
      if (!ui.settings_edit) ui.settings_edit = ui.snapshot.settings;
      LiveSettings& edit = *ui.settings_edit;
      bool changed = false;
      const int max_chunk = o.runtime.max_chunk;  // an image is one chunk: larger budgets need a restart
      if (ImGui::BeginCombo("patch budget", (std::to_string(edit.image_budget) + " soft tokens per frame").c_str())) {
        // HF's five budgets, plus the model's own when it declares another (the bundled model: 16).
        std::vector<int> budgets(std::begin(kHfImageBudgets), std::end(kHfImageBudgets));
        const int model_budget = default_image_budget(o.model_dir);
        if (std::find(budgets.begin(), budgets.end(), model_budget) == budgets.end())
          budgets.insert(std::upper_bound(budgets.begin(), budgets.end(), model_budget), model_budget);
        for (int b : budgets) {
          if (b > max_chunk) continue;
          if (ImGui::Selectable(std::to_string(b).c_str(), b == edit.image_budget)) {
            edit.image_budget = b;
            changed = true;
          }
        }
        ImGui::EndCombo();
      }
      float fps = float(edit.video_fps);
      if (ImGui::SliderFloat("video fps", &fps, 0.2f, 5.0f, "%.1f frames/s into the model")) {
        edit.video_fps = fps;
        changed = true;
      }
      changed |= ImGui::Checkbox("voice activity detection", &edit.vad.enabled);
      changed |= ImGui::SliderInt("VAD sensitivity", &edit.vad.likelihood, 0, 3, "%d (0 = least speech, 3 = most)");
      changed |= ImGui::SliderInt("VAD hangover", &edit.vad.hangover_ms, 200, 2000, "%d ms");
      changed |= ImGui::SliderFloat("VAD noise gate", &edit.vad.min_snr_db, 0.0f, 30.0f, "%.0f dB above the floor");
      changed |= ImGui::Checkbox("barge-in (speech stops an answer)", &edit.barge_in);
      float commentary = float(edit.commentary_interval_s);
      if (ImGui::SliderFloat("commentary", &commentary, 0.0f, 60.0f, commentary > 0 ? "every %.0f s" : "off")) {
        edit.commentary_interval_s = commentary;
        changed = true;
      }
      changed |= ImGui::SliderInt("answer length", &edit.max_answer_tokens, 8, 1024, "%d tokens at most");
      changed |= ImGui::Checkbox("encoder baseline (E4B-sized stand-in encoders, timed; ~1 GB)", &edit.encoder_baseline);
      if (changed) ui.run.session().update_settings(edit, SessionClock::now());

      // Inputs: the old source stops, the new one starts; a failure is shown and that input stays off.
      auto try_switch = [&](auto&& fn) {
        try {
          fn();
          ui.source_error.clear();
        } catch (const std::exception& e) {
          ui.source_error = e.what();
        }
      };
      if (!ui.microphone_names) {
        ui.microphone_names.emplace();
        for (const auto& d : capture::Microphone::list_devices()) ui.microphone_names->push_back(d.name);
      }
      const std::string mic_now = !o.use_mic ? "off" : o.mic_device.empty() ? "default input" : o.mic_device;
      if (ImGui::BeginCombo("microphone", mic_now.c_str())) {
        if (ImGui::Selectable("off")) try_switch([&] { ui.run.set_microphone("off"); });
        if (ImGui::Selectable("default input")) try_switch([&] { ui.run.set_microphone(""); });
        for (const std::string& name : *ui.microphone_names)
          if (ImGui::Selectable(name.c_str(), name == o.mic_device)) try_switch([&] { ui.run.set_microphone(name); });
        ImGui::EndCombo();
      }
      if (ui.camera_edit.empty() && o.use_camera) ui.camera_edit = o.camera_pipeline;
      ImGui::InputText("##camera", &ui.camera_edit);
      ImGui::SameLine();
      if (ImGui::Button("use camera")) try_switch([&] { ui.run.set_camera(ui.camera_edit.empty() ? "off" : ui.camera_edit); });
      ImGui::SameLine();
      if (ImGui::Button("off##camera")) try_switch([&] { ui.run.set_camera("off"); });
      if (!ui.source_error.empty()) ImGui::TextColored(ImVec4(1.0f, 0.45f, 0.4f, 1.0f), "%s", ui.source_error.c_str());
      ImGui::TextDisabled("Sampling and threads are set with `conflux run` options.");
      if (ImGui::BeginTable("##settings", 2, table_flags)) {
        setting_row("inputs", ui.run.inputs());
        if (!o.media_file.empty()) setting_row("media file", o.media_file + (o.realtime ? " (real time)" : " (as fast as possible)"));
        setting_row("record", ui.run.recording_kept() ? "kept: " + ui.run.recording_target() : "not kept");
        setting_row("sampling", s.sampling.temperature > 0 ? format("temperature %.2f", s.sampling.temperature) : "greedy");
        setting_row("threads", o.runtime.n_threads > 0 ? std::to_string(o.runtime.n_threads) : "all cores");
        ImGui::EndTable();
      }
      ImGui::EndTabItem();
    }
    if (ImGui::BeginTabItem("Model")) {
      const Model& m = ui.run.model();
      const ModelConfig& c = m.config();
      const TimePoint now = SessionClock::now();
      if (now - ui.resident_read_at > std::chrono::seconds(1)) {
        ui.resident_bytes = read_resident_bytes();
        ui.resident_read_at = now;
      }
      if (ImGui::BeginTable("##model", 2, table_flags)) {
        setting_row("name", std::filesystem::path(m.dir()).filename().string());
        setting_row("folder", m.dir());
        setting_row("type", c.model_type.empty() ? "(bare text config)" : c.model_type);
        setting_row("weights", std::string(dtype_name(m.weight_dtype())) + ", " + human_bytes(double(m.weight_bytes())) +
                                   " (memory-mapped)");
        setting_row("decoder", std::to_string(c.text.num_layers) + " layers, hidden " + std::to_string(c.text.hidden_size) +
                                   ", vocabulary " + std::to_string(c.text.vocab_size));
        setting_row("embedders", std::string(c.vision.present ? "vision" : "") + (c.vision.present && c.audio.present ? " + " : "") +
                                     (c.audio.present ? "audio" : "") + (c.vision.present || c.audio.present ? "" : "none"));
        setting_row("KV cache", std::to_string(ui.snapshot.positions) + " of " + std::to_string(o.runtime.max_context) +
                                    " positions (" + std::to_string(ui.snapshot.evicted_positions) + " evicted)");
        setting_row("process memory", human_bytes(double(ui.resident_bytes)) + " resident");
        ImGui::EndTable();
      }
      ImGui::EndTabItem();
    }
    ImGui::EndTabBar();
  }
  ImGui::End();
}

void draw_latency_overlay(UiState& ui, const Rect& r) {
  if (!ui.overlay_visible) return;
  place_next_window(r);
  ImGui::SetNextWindowBgAlpha(1.f);  // opaque: the panels it covers are not drawn meanwhile
  ImGui::Begin("Latency (F1)", &ui.overlay_visible,
               ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse | ImGuiWindowFlags_NoSavedSettings);
  // Half the default vertical spacing: nine plots, the timeline and the table fit at 1280 x 720.
  ImGui::PushStyleVar(ImGuiStyleVar_ItemSpacing, ImVec2(ImGui::GetStyle().ItemSpacing.x, ImGui::GetStyle().ItemSpacing.y / 2));
  ImGui::PushStyleVar(ImGuiStyleVar_CellPadding, ImVec2(ImGui::GetStyle().CellPadding.x, ImGui::GetStyle().CellPadding.y / 2));
  if (ImGui::SmallButton("Export CSV")) export_metrics(ui, false);
  ImGui::SameLine();
  if (ImGui::SmallButton("Export JSON")) export_metrics(ui, true);
  ImGui::SameLine();
  ImGui::TextDisabled("%s", ui.export_message.empty() ? "to the current folder" : ui.export_message.c_str());

  const MetricsHistory& m = ui.metrics;
  const auto& samples = m.samples();
  const MetricsSample* s0 = samples.data();
  const auto& turns = m.turns();
  const TurnRecord* t0 = turns.data();
  constexpr int kPlotColumns = 3;
  if (ImGui::BeginTable("##plots", kPlotColumns, ImGuiTableFlags_SizingStretchSame)) {
    struct Cell {
      const char* id;
      const char* title;
      const char* unit;
      SeriesView view;
    };
    const Cell cells[] = {
        {"##audio_kv", "audio frame->KV", "ms", series(m.audio_frame_to_kv_ms(), m.audio_frame_to_kv_ms().data())},
        {"##video_kv", "video frame->KV", "ms", series(m.video_frame_to_kv_ms(), m.video_frame_to_kv_ms().data())},
        {"##first_token", "end of turn->1st token", "ms", series(turns, &t0->end_to_first_ms)},
        {"##tokens_per_s", "tokens/s", "tok/s", series(samples, &s0->tokens_per_s)},
        {"##audio_queue", "audio queue", "ms", series(samples, &s0->audio_queue_ms)},
        {"##video_queue", "video queue", "frames", series(samples, &s0->video_queue_frames)},
        {"##dropped", "video frames dropped", "total", series(samples, &s0->video_frames_dropped)},
        {"##rtf", "real-time factor", "x", series(samples, &s0->realtime_factor)},
        {"##kv", "KV positions", "", series(samples, &s0->kv_positions)},
    };
    for (const Cell& c : cells) {
      ImGui::TableNextColumn();
      plot_cell(c.id, c.title, c.unit, c.view);
    }
    ImGui::EndTable();
  }
  draw_last_turn_timeline(ui);
  const SessionSnapshot& s = ui.snapshot;
  if (ImGui::BeginTable("##percentiles", 5, ImGuiTableFlags_RowBg | ImGuiTableFlags_SizingStretchProp)) {
    ImGui::TableSetupColumn("stage (ms)");
    ImGui::TableSetupColumn("p50");
    ImGui::TableSetupColumn("p95");
    ImGui::TableSetupColumn("p99");
    ImGui::TableSetupColumn("samples");
    ImGui::TableHeadersRow();
    percentile_row("audio frame -> KV", s.audio_frame_to_kv_ms);
    // With the encoder baseline on, its own share sits beside each latency it is part of: the encoder-free
    // path is what remains.
    if (s.audio_encoder_ms.count) percentile_row("  of which encoder baseline", s.audio_encoder_ms);
    percentile_row("video frame -> KV", s.video_frame_to_kv_ms);
    if (s.video_encoder_ms.count) percentile_row("  of which encoder baseline", s.video_encoder_ms);
    percentile_row("end of turn -> first token", s.turn_end_to_first_token_ms);
    // With thinking, the answer starts after the thought; without, this row equals the one above.
    if (s.turn_end_to_answer_ms.p50 != s.turn_end_to_first_token_ms.p50)
      percentile_row("end of turn -> answer", s.turn_end_to_answer_ms);
    percentile_row("decode, per token", s.decode_token_ms);
    ImGui::EndTable();
  }
  ImGui::PopStyleVar(2);
  ImGui::End();
}

}  // namespace conflux::ui
