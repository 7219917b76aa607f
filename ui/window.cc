// The desktop window: setup in labelled steps (GLFW, window + OpenGL 3.3 core context, Dear ImGui
// context, backends), then the live run, one main loop, and cleanup in reverse order. Each setup step
// is a guard object whose destructor undoes it, so the reverse order holds on every exit path.
//
// Per frame the UI thread: waits for input events at most until the next frame is due, drains the
// session's events (conversation, metrics, stdout mirror), reads one snapshot, refreshes the camera
// texture when a new frame arrived, draws the panels, renders, and in screenshot mode reads the back
// buffer before swapping. It never blocks on the session.
#include "ui/window.h"

#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "engine/image.h"
#include "engine/session/bounded_queue.h"
#include "ui/layout.h"
#include "ui/panels.h"

namespace conflux::ui {

namespace {

// GLSL version of the OpenGL 3.3 core context the window asks for.
constexpr const char* kGlslVersion = "#version 330";
constexpr int kGlMajor = 3, kGlMinor = 3;
// Frame pacing. 30 frames a second while something changes (session events, a new camera frame, user
// input): text streams smoothly at that rate. 10 a second otherwise, which keeps the level meter and
// the plots moving: on a machine without a GPU, Mesa's llvmpipe renders on the same cores as inference,
// about 13 ms of CPU for a 1280x720 frame, so idle frames would only take time from the model.
constexpr double kBusyFramePeriodSeconds = 1.0 / 30;
constexpr double kIdleFramePeriodSeconds = 1.0 / 10;
// Per-frame timing events for the overlay's plots (25 audio frames a second plus video): this many is
// seconds of backlog; when the UI falls behind the oldest go, the session never waits for the UI.
constexpr size_t kFrameEventCapacity = 1024;
// Debian's fonts-dejavu-core; Dear ImGui's built-in font is used when it is absent.
constexpr const char* kFontPath = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
constexpr float kFontPixels = 15.f;

std::atomic<bool> g_stop_requested{false};
void on_stop_signal(int) { g_stop_requested = true; }

class FramePacer;
// GLFW's C callbacks carry no context: the window's pacer is reachable from here while it exists.
FramePacer* g_pacer = nullptr;

// Decides when the next frame is drawn (see the periods above). Session events wake the loop at once
// through glfwPostEmptyEvent, so a token shows without waiting for the next idle frame; input wakes
// it through GLFW's own event wait. Key and mouse-button presses draw a frame at once: the ImGui 1.86
// GLFW backend keeps only whether a key is down, so a press and its release handled before the same
// frame would never be seen (Enter in the text box).
class FramePacer {
 public:
  using Clock = std::chrono::steady_clock;
  FramePacer() { g_pacer = this; }
  ~FramePacer() { g_pacer = nullptr; }
  FramePacer(const FramePacer&) = delete;
  FramePacer& operator=(const FramePacer&) = delete;
  // Any thread: something changed that the window should show.
  void wake() {
    changed_ = true;
    glfwPostEmptyEvent();
  }
  // UI thread (GLFW callbacks): a key or button press (`urgent`: drawn at once), or motion, scrolling, a resize.
  void note_input(bool urgent) {
    changed_ = true;
    urgent_ = urgent_ || urgent;
  }
  // Processes window events until the next frame is due: the busy period after the last frame when
  // something changed (or `changed_elsewhere` says so), the idle period otherwise; or a stop request.
  template <class ChangedElsewhere>
  void wait_for_next_frame(ChangedElsewhere changed_elsewhere) {
    const auto busy_due = last_frame_ + seconds(kBusyFramePeriodSeconds);
    const auto idle_due = last_frame_ + seconds(kIdleFramePeriodSeconds);
    glfwPollEvents();
    for (auto now = Clock::now(); now < busy_due && !g_stop_requested && !urgent_; now = Clock::now())
      glfwWaitEventsTimeout(std::chrono::duration<double>(busy_due - now).count());
    for (auto now = Clock::now(); now < idle_due && !g_stop_requested && !changed_ && !changed_elsewhere(); now = Clock::now())
      glfwWaitEventsTimeout(std::chrono::duration<double>(idle_due - now).count());
    changed_ = false;
    urgent_ = false;
    last_frame_ = Clock::now();
  }

 private:
  static Clock::duration seconds(double s) { return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)); }
  std::atomic<bool> changed_{true};
  bool urgent_ = false;  // UI thread only
  Clock::time_point last_frame_{};
};

// Installed before the ImGui backend, which chains to them (mouse buttons, scroll, keys, characters);
// cursor motion and resizes are not among ImGui 1.86's callbacks, so those stay ours alone.
void install_input_wakeups(GLFWwindow* window) {
  glfwSetMouseButtonCallback(window, [](GLFWwindow*, int, int, int) { if (g_pacer) g_pacer->note_input(true); });
  glfwSetKeyCallback(window, [](GLFWwindow*, int, int, int, int) { if (g_pacer) g_pacer->note_input(true); });
  glfwSetCharCallback(window, [](GLFWwindow*, unsigned) { if (g_pacer) g_pacer->note_input(true); });
  glfwSetScrollCallback(window, [](GLFWwindow*, double, double) { if (g_pacer) g_pacer->note_input(false); });
  glfwSetCursorPosCallback(window, [](GLFWwindow*, double, double) { if (g_pacer) g_pacer->note_input(false); });
  glfwSetFramebufferSizeCallback(window, [](GLFWwindow*, int, int) { if (g_pacer) g_pacer->note_input(false); });
}

std::string glfw_error_text() {
  const char* description = nullptr;
  const int code = glfwGetError(&description);
  return "GLFW error " + std::to_string(code) + ": " + (description ? description : "no description");
}

// Step 1: the GLFW library (connects to the display).
struct GlfwLibrary {
  GlfwLibrary() {
    if (!glfwInit()) throw WindowSetupError("setup step 1 (GLFW init) failed: " + glfw_error_text());
  }
  ~GlfwLibrary() { glfwTerminate(); }
};

// Step 2: the window and its OpenGL 3.3 core context, made current on this thread.
struct GlfwWindow {
  GLFWwindow* handle = nullptr;
  GlfwWindow(const WindowOptions& o, const std::string& title) {
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, kGlMajor);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, kGlMinor);
    glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
    glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);  // required by macOS for a core context
    handle = glfwCreateWindow(o.width, o.height, title.c_str(), nullptr, nullptr);
    if (!handle) throw WindowSetupError("setup step 2 (window with an OpenGL 3.3 core context) failed: " + glfw_error_text());
    glfwMakeContextCurrent(handle);
    glfwSwapInterval(1);  // vsync where the display has it; the loop paces itself anyway
  }
  ~GlfwWindow() { glfwDestroyWindow(handle); }
};

// Step 3: the Dear ImGui context, its style and font.
struct ImGuiContextGuard {
  ImGuiContextGuard() {
    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;  // the layout is computed from the window size; nothing to remember
    io.ConfigFlags |= ImGuiConfigFlags_NavEnableKeyboard;
    ImGui::StyleColorsDark();
    ImGui::GetStyle().FrameRounding = 3.f;
    if (std::filesystem::exists(kFontPath) && io.Fonts->AddFontFromFileTTF(kFontPath, kFontPixels)) return;
    io.Fonts->AddFontDefault();
  }
  ~ImGuiContextGuard() { ImGui::DestroyContext(); }
};

// Step 4: the platform backend (GLFW input) and the renderer backend (OpenGL 3, which also loads the
// GL 3 entry points it needs).
struct ImGuiBackends {
  explicit ImGuiBackends(GLFWwindow* window) {
    if (!ImGui_ImplGlfw_InitForOpenGL(window, true)) throw WindowSetupError("setup step 4 (ImGui GLFW backend) failed");
    if (!ImGui_ImplOpenGL3_Init(kGlslVersion)) {
      ImGui_ImplGlfw_Shutdown();
      throw WindowSetupError("setup step 4 (ImGui OpenGL3 backend, GL loader) failed");
    }
  }
  ~ImGuiBackends() {
    ImGui_ImplOpenGL3_Shutdown();
    ImGui_ImplGlfw_Shutdown();
  }
};

// Ctrl-C and SIGTERM close the window like its close button; the previous handlers come back after.
struct StopSignals {
  using Handler = void (*)(int);
  Handler old_int, old_term;
  StopSignals() {
    g_stop_requested = false;
    old_int = std::signal(SIGINT, on_stop_signal);
    old_term = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
  }
};

// Screenshot mode needs to know when a media file has been fully answered. Session::wait_idle blocks,
// so a helper thread waits and the UI thread only reads the flag.
class IdleWatcher {
 public:
  explicit IdleWatcher(app::LiveRun& run) : run_(run), thread_([this] { watch(); }) {}
  // Stops the run first: after LiveRun::stop the session is drained, so wait_idle returns and the
  // thread can be joined on every path (the window closed mid-answer included).
  ~IdleWatcher() {
    quit_ = true;
    run_.stop();
    thread_.join();
  }
  bool idle() const { return idle_; }

 private:
  void watch() {
    constexpr auto kPoll = std::chrono::milliseconds(10);
    while (!quit_ && !run_.input_ended()) std::this_thread::sleep_for(kPoll);
    if (quit_) return;
    run_.session().wait_idle();
    idle_ = true;
  }
  app::LiveRun& run_;
  std::atomic<bool> quit_{false}, idle_{false};
  std::thread thread_;
};

// The conversation mirrored on stdout, as the terminal front end prints it, so a window session can
// be logged or piped too.
class StdoutMirror {
 public:
  void on_event(const SessionEvent& e) {
    switch (e.kind) {
      case SessionEvent::Kind::SpeechStarted: speech_start_ = e.time; break;
      case SessionEvent::Kind::SpeechEnded:
        std::printf("[you] speech %.1f s\n", std::chrono::duration<double>(e.time - speech_start_).count());
        break;
      case SessionEvent::Kind::AnswerStarted:
      case SessionEvent::Kind::Token: {
        const std::string text = stream_text_.on_event(e);
        std::fwrite(text.data(), 1, text.size(), stdout);
        break;
      }
      case SessionEvent::Kind::AnswerDone: std::printf("\n          %s\n", Conversation::answer_footer(e.timing).c_str()); break;
      case SessionEvent::Kind::Error: std::fprintf(stderr, "conflux: session error: %s\n", e.text.c_str()); break;
      default: return;
    }
    std::fflush(stdout);
  }

 private:
  TimePoint speech_start_{};
  AnswerStreamText stream_text_;
};

bool is_frame_timing(const SessionEvent& e) {
  return e.kind == SessionEvent::Kind::AudioFrameInKv || e.kind == SessionEvent::Kind::VideoFrameInKv;
}

// The back buffer as an RGB image, top row first (OpenGL's rows start at the bottom).
ImageRGB read_back_buffer(int width, int height) {
  ImageRGB img;
  img.width = width;
  img.height = height;
  img.rgb.resize(size_t(width) * size_t(height) * 3);
  std::vector<uint8_t> gl_rows(img.rgb.size());
  glPixelStorei(GL_PACK_ALIGNMENT, 1);  // tightly packed RGB rows
  glReadBuffer(GL_BACK);
  glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE, gl_rows.data());
  const size_t row_bytes = size_t(width) * 3;
  for (int y = 0; y < height; ++y)
    std::copy_n(gl_rows.data() + size_t(height - 1 - y) * row_bytes, row_bytes, img.rgb.data() + size_t(y) * row_bytes);
  return img;
}

}  // namespace

bool display_available(std::string* why) {
  if (glfwInit()) {
    glfwTerminate();
    return true;
  }
  if (why) *why = glfw_error_text();
  return false;
}

// Loads the LiveRun on a helper thread and draws a progress bar with the current stage until it is
// ready. Returns null if the window was closed first; rethrows a loading error on this thread.
std::unique_ptr<app::LiveRun> load_with_progress(GLFWwindow* handle, FramePacer& pacer, app::LiveOptions live) {
  std::mutex mu;
  float fraction = 0;
  std::string stage = "starting";
  std::atomic<bool> done{false};
  std::unique_ptr<app::LiveRun> run;
  std::exception_ptr error;
  live.progress = [&](float f, const char* s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      fraction = f;
      stage = s;
    }
    pacer.wake();
  };
  const std::string model = live.model_dir;
  std::thread loader([&] {
    try {
      run = std::make_unique<app::LiveRun>(std::move(live));
    } catch (...) {
      error = std::current_exception();
    }
    done = true;
    pacer.wake();
  });
  bool closed = false;
  while (!done) {
    pacer.wait_for_next_frame([] { return false; });
    if (glfwWindowShouldClose(handle) || g_stop_requested) closed = true;  // still wait for the loader
    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    ImGui::NewFrame();
    const ImGuiViewport* vp = ImGui::GetMainViewport();
    ImGui::SetNextWindowPos(ImVec2(vp->WorkSize.x * 0.25f, vp->WorkSize.y * 0.4f));
    ImGui::SetNextWindowSize(ImVec2(vp->WorkSize.x * 0.5f, 0));
    ImGui::Begin("Loading", nullptr, ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoSavedSettings);
    {
      std::lock_guard<std::mutex> lock(mu);
      ImGui::Text("Loading %s", model.c_str());
      ImGui::ProgressBar(fraction, ImVec2(-1, 0));
      ImGui::TextDisabled("%s", stage.c_str());
    }
    ImGui::End();
    ImGui::Render();
    int w = 0, h = 0;
    glfwGetFramebufferSize(handle, &w, &h);
    glViewport(0, 0, w, h);
    glClearColor(0.06f, 0.06f, 0.07f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
    glfwSwapBuffers(handle);
  }
  loader.join();
  if (error) std::rethrow_exception(error);
  if (closed) return nullptr;
  return run;
}

int run_window(app::LiveOptions live, const WindowOptions& opt) {
  live.keep_sampled_frames = true;  // the conversation's thumbnails
  const std::string title = "Conflux - " + std::filesystem::path(live.model_dir).filename().string();
  GlfwLibrary glfw;                       // 1
  GlfwWindow window(opt, title);          // 2
  FramePacer pacer;
  install_input_wakeups(window.handle);
  ImGuiContextGuard imgui;                // 3
  ImGuiBackends backends(window.handle);  // 4

  // 5. The live run, loaded on a helper thread while the window shows a progress bar. A failure from
  //    here on (no model, no input) is an error, not a reason to fall back to the terminal, which
  //    would fail the same way.
  std::unique_ptr<app::LiveRun> loaded = load_with_progress(window.handle, pacer, std::move(live));
  if (!loaded) return 130;  // closed (or Ctrl-C) while loading
  app::LiveRun& run = *loaded;
  auto frame_events = std::make_shared<BoundedQueue<SessionEvent>>(kFrameEventCapacity, OverflowPolicy::DropOldest);
  run.session().subscribe([frame_events, &pacer](const SessionEvent& e) {
    if (is_frame_timing(e)) frame_events->push(e);  // plotted at the next frame, whenever it comes
    else pacer.wake();                               // shown now
  });
  run.start();
  std::unique_ptr<IdleWatcher> idle_watcher;
  const bool waits_for_input_end =
      !opt.screenshot_path.empty() && (!run.options().media_file.empty() || !run.options().recording.empty());
  if (waits_for_input_end) idle_watcher = std::make_unique<IdleWatcher>(run);
  StopSignals signals;
  // Declared after the GL context's guards: its textures are deleted while the context still exists.
  UiState ui(run);
  ui.overlay_visible = opt.overlay;
  StdoutMirror mirror;
  ImageRGB frame;
  std::fprintf(stderr, "conflux: window open: %s with %s; close it or Ctrl-C to stop\n", run.inputs().c_str(),
               run.options().model_dir.c_str());

  int screenshot_frames_left = -1;  // counting starts when the screenshot's condition holds
  bool stopped_by_user = false;
  std::string screenshot_error;
  auto drain_events = [&] {
    while (auto e = frame_events->try_pop()) ui.metrics.on_event(*e);
    while (auto e = run.next_event()) {
      mirror.on_event(*e);
      ui.metrics.on_event(*e);
      const int image_id = ui.conversation.on_event(*e);
      if (image_id >= 0 && run.sampled_frame(e->time, &frame)) add_thumbnail(ui, image_id, frame);
    }
  };

  while (!glfwWindowShouldClose(window.handle)) {
    pacer.wait_for_next_frame([&] { return run.last_frame(nullptr) != ui.camera_frame_number; });
    if (g_stop_requested) {
      stopped_by_user = true;
      break;
    }

    drain_events();
    const TimePoint now = SessionClock::now();
    ui.snapshot = run.session().snapshot();
    ui.metrics.maybe_sample(ui.snapshot, now);
    if (const uint64_t n = run.last_frame(nullptr); n != ui.camera_frame_number) {
      ui.camera_frame_number = run.last_frame(&frame);
      ui.camera.upload(frame);
    }
    if (run.options().duration_s > 0 && std::chrono::duration<double>(now - run.origin()).count() >= run.options().duration_s)
      glfwSetWindowShouldClose(window.handle, GLFW_TRUE);

    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    ImGui::NewFrame();
    if (ImGui::IsKeyPressed(GLFW_KEY_F1, false)) ui.overlay_visible = !ui.overlay_visible;
    int fb_w = 0, fb_h = 0;
    glfwGetFramebufferSize(window.handle, &fb_w, &fb_h);
    const Layout layout = compute_layout(float(fb_w), float(fb_h));
    draw_status_bar(ui, layout.status_bar);
    draw_conversation(ui, layout.conversation);
    draw_input_bar(ui, layout.input_bar);
    draw_camera(ui, layout.camera);
    if (ui.overlay_visible) {
      draw_latency_overlay(ui, layout.overlay);  // covers the microphone and setup panels (not drawn meanwhile)
    } else {
      draw_audio(ui, layout.audio);
      draw_info(ui, layout.info);
    }
    ImGui::Render();

    glViewport(0, 0, fb_w, fb_h);
    const ImVec4 clear = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];
    glClearColor(clear.x, clear.y, clear.z, 1.f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

    if (!opt.screenshot_path.empty()) {
      if (screenshot_frames_left < 0 && (!waits_for_input_end || idle_watcher->idle()))
        screenshot_frames_left = std::max(1, opt.screenshot_frames);
      if (screenshot_frames_left > 0 && --screenshot_frames_left == 0) {
        try {
          save_png(opt.screenshot_path, read_back_buffer(fb_w, fb_h));  // before the swap: the back buffer is this frame
          std::fprintf(stderr, "conflux: screenshot %s (%dx%d)\n", opt.screenshot_path.c_str(), fb_w, fb_h);
        } catch (const std::exception& e) {  // reported after the run has stopped cleanly
          screenshot_error = e.what();
        }
        glfwSetWindowShouldClose(window.handle, GLFW_TRUE);
      }
    }
    glfwSwapBuffers(window.handle);
  }

  // Cleanup: the run first (LiveRun::stop cancels the answer, releases sources waiting on the session
  // and keeps the events it reports meanwhile), then those events, then the guards above in reverse
  // order as they go out of scope.
  const bool was_answering = ui.snapshot.answering;
  idle_watcher.reset();  // stops the run too
  run.stop();
  drain_events();
  const SessionSnapshot s = run.session().snapshot();
  std::fprintf(stderr, "conflux: %s%s; %d turns, %lld audio frames and %lld images in the model, %llu video frames dropped\n",
               stopped_by_user ? "stopped" : "window closed", was_answering ? " mid-answer" : "", s.turn,
               (long long)s.audio_frames, (long long)s.video_frames_sampled, (unsigned long long)s.video_frames_dropped);
  if (!screenshot_error.empty()) {
    std::fprintf(stderr, "conflux: %s\n", screenshot_error.c_str());
    return 1;
  }
  return run.input_failed() ? 1 : 0;
}

}  // namespace conflux::ui
