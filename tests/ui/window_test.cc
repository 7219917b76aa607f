// The desktop window. In-process: the conversation model, the overlay's metrics and exports, and the
// layout. End to end through the real `conflux` binary under Xvfb (Mesa llvmpipe): a screenshot after
// a spoken question was answered shows the streamed answer in the conversation panel, the patch grid
// over the camera view and the overlay's plots (and no plots without --overlay); --headless and a
// missing display run in the terminal; Ctrl-C or SIGTERM mid-answer shuts down cleanly with exit code 0.
// A missing Xvfb fails the window tests with the package to install; they never skip.
#include "tests/support/commands.h"
#include <gtest/gtest.h>
#include <csignal>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "engine/image.h"
#include "ui/conversation.h"
#include "ui/layout.h"
#include "ui/metrics.h"
#include "ui/theme.h"

namespace {

namespace fs = std::filesystem;
using conflux::ImageRGB;
using conflux::SessionClock;
using conflux::SessionEvent;
using conflux::TimePoint;
using namespace conflux::ui;
using std::chrono::milliseconds;

const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
const char* const kScreenGeometry = "1280x720x24";  // the window's default size fits this screen

SessionEvent event(SessionEvent::Kind kind, TimePoint t, int turn = 1) {
  SessionEvent e{};
  e.kind = kind;
  e.time = t;
  e.turn = turn;
  return e;
}

// ---- In-process: the conversation model ----

TEST(Conversation, SpeechImagesAndAStreamedAnswerBecomeTranscriptLines) {
  Conversation c;
  const TimePoint t0 = SessionClock::now();
  c.on_event(event(SessionEvent::Kind::SpeechStarted, t0));
  EXPECT_EQ(Conversation::line(c.entries().back()), "[you] speech ...");
  c.on_event(event(SessionEvent::Kind::SpeechEnded, t0 + milliseconds(2300)));
  SessionEvent image = event(SessionEvent::Kind::ImageAdded, t0 + milliseconds(2400));
  image.count = 70;
  EXPECT_EQ(c.on_event(image), 0);  // the first image's id: the window uploads its thumbnail under it
  EXPECT_EQ(c.on_event(image), 1);
  c.on_event(event(SessionEvent::Kind::AnswerStarted, t0 + milliseconds(2500)));
  for (const char* piece : {"Hel", "lo", "", " there"}) {
    SessionEvent tok = event(SessionEvent::Kind::Token, t0);
    tok.text = piece;
    c.on_event(tok);
  }
  EXPECT_TRUE(c.answering());
  EXPECT_EQ(c.entries().back().text, "Hello there");  // streamed token by token
  SessionEvent done = event(SessionEvent::Kind::AnswerDone, t0);
  done.text = "Hello there";
  done.timing.trigger_time = t0 + milliseconds(2300);
  done.timing.first_token = t0 + milliseconds(2420);
  done.timing.last_token = t0 + milliseconds(2520);
  done.timing.n_tokens = 3;
  done.timing.interrupted = true;
  c.on_event(done);
  EXPECT_FALSE(c.answering());
  EXPECT_EQ(c.transcript(),
            "[you] speech 2.3 s\n"
            "[you] image (70 tokens)\n"
            "[you] image (70 tokens)\n"
            "[conflux] Hello there\n"
            "          (3 tokens, first token 120 ms after the end of the turn, 20.0 tokens/s, interrupted)\n");
}

TEST(Conversation, TypedTextPushToTalkAndBoundedLength) {
  Conversation c;
  const TimePoint t0 = SessionClock::now();
  c.add_typed("what is this?", 0);
  c.on_event(event(SessionEvent::Kind::SpeechStarted, t0));
  // Push-to-talk takes the turn over from the VAD (whose end of speech the session then ignores).
  c.push_to_talk(true, t0 + milliseconds(700), 1);
  c.push_to_talk(false, t0 + milliseconds(2200), 1);
  EXPECT_EQ(c.transcript(), "[you] what is this?\n[you] speech 0.7 s\n[you] push-to-talk 1.5 s\n");
  const uint64_t before = c.version();
  for (size_t i = 0; i < Conversation::kMaxEntries + 10; ++i) c.add_typed("x" + std::to_string(i), 2);
  EXPECT_GT(c.version(), before);
  ASSERT_EQ(c.entries().size(), Conversation::kMaxEntries);
  EXPECT_EQ(c.entries().front().text, "x10");  // the oldest went first
}

// ---- In-process: the overlay's metrics ----

TEST(Metrics, TurnStagesFrameLatenciesAndSamplesExportAsCsvAndJson) {
  const TimePoint t0 = SessionClock::now();
  MetricsHistory m(t0);
  SessionEvent frame = event(SessionEvent::Kind::AudioFrameInKv, t0);
  frame.frame.captured = frame.frame.arrived = t0;
  frame.frame.in_kv = t0 + milliseconds(12);
  m.on_event(frame);
  ASSERT_EQ(m.audio_frame_to_kv_ms().size(), 1u);
  EXPECT_NEAR(m.audio_frame_to_kv_ms().newest(), 12.0, 1e-3);
  EXPECT_TRUE(m.video_frame_to_kv_ms().empty());

  SessionEvent done = event(SessionEvent::Kind::AnswerDone, t0, 4);
  done.timing.trigger = conflux::TurnTrigger::EndOfSpeech;
  done.timing.trigger_time = t0;
  done.timing.turn_closed = t0 + milliseconds(30);
  done.timing.first_token = t0 + milliseconds(80);
  done.timing.last_token = t0 + milliseconds(580);
  done.timing.n_tokens = 11;
  for (int i = 0; i < 11; ++i) m.on_event(event(SessionEvent::Kind::Token, t0));
  m.on_event(done);
  ASSERT_EQ(m.turns().size(), 1u);
  const TurnRecord& r = m.turns().newest();
  EXPECT_NEAR(r.end_to_closed_ms, 30, 1e-3);
  EXPECT_NEAR(r.closed_to_first_ms, 50, 1e-3);
  EXPECT_NEAR(r.first_to_last_ms, 500, 1e-3);
  EXPECT_NEAR(r.end_to_first_ms, 80, 1e-3);
  EXPECT_NEAR(r.tokens_per_s, 20, 1e-3);  // 10 tokens after the first in 0.5 s

  conflux::SessionSnapshot snap;
  snap.audio_queue_samples = 3200;  // 200 ms at 16 kHz
  snap.video_frames_dropped = 5;
  snap.realtime_factor = 2.5;
  snap.turn_end_to_first_token_ms = {80, 90, 95, 1};
  EXPECT_FALSE(m.maybe_sample(snap, t0 + milliseconds(50)));  // not a sample period yet
  EXPECT_TRUE(m.maybe_sample(snap, t0 + milliseconds(500)));
  ASSERT_EQ(m.samples().size(), 1u);
  EXPECT_NEAR(m.samples().newest().tokens_per_s, 22, 1e-3);  // 11 tokens in 0.5 s
  EXPECT_NEAR(m.samples().newest().audio_queue_ms, 200, 1e-3);

  std::istringstream csv(m.to_csv());
  std::string header, row, extra;
  ASSERT_TRUE(std::getline(csv, header));
  ASSERT_TRUE(std::getline(csv, row));
  EXPECT_FALSE(std::getline(csv, extra));
  EXPECT_EQ(header.rfind("t_s,audio_frame_to_kv_p50_ms,", 0), 0u) << header;
  EXPECT_EQ(row, "0.500,0.000,0.000,80.000,22.00,200.0,0,5,2.500,0");

  const nlohmann::json j = nlohmann::json::parse(m.to_json());
  EXPECT_EQ(j["turns"].size(), 1u);
  EXPECT_EQ(j["turns"][0]["tokens"], 11);
  EXPECT_EQ(j["turns"][0]["trigger"], "end of speech");
  EXPECT_NEAR(j["turns"][0]["end_to_first_token_ms"].get<double>(), 80, 1e-3);
  EXPECT_NEAR(j["percentiles"]["turn_end_to_first_token_ms"]["p95"].get<double>(), 90, 1e-9);
  EXPECT_EQ(j["samples"].size(), 1u);
  EXPECT_EQ(j["frame_latencies_ms"]["audio"].size(), 1u);
}

TEST(Metrics, RingsKeepTheNewestValuesInOrder) {
  Ring<float, 4> ring;
  for (int i = 1; i <= 6; ++i) ring.push(float(i));
  ASSERT_EQ(ring.size(), 4u);
  EXPECT_EQ(ring.oldest_index(), 2u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(ring.at(i), float(i + 3));
  EXPECT_EQ(ring.newest(), 6.f);
}

// ---- In-process: the layout ----

bool overlaps(const Rect& a, const Rect& b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

TEST(Layout, PanelsTileTheWindowAndTheOverlayLeavesConversationAndCameraVisible) {
  for (const auto& [w, h] : {std::pair{1280.f, 720.f}, std::pair{1920.f, 1080.f}, std::pair{800.f, 600.f}}) {
    const Layout l = compute_layout(w, h);
    const Rect tiles[] = {l.status_bar, l.conversation, l.input_bar, l.camera, l.audio, l.info};
    for (size_t i = 0; i < std::size(tiles); ++i) {
      EXPECT_GT(tiles[i].w, 0) << i;
      EXPECT_GT(tiles[i].h, 0) << i;
      EXPECT_LE(tiles[i].x + tiles[i].w, w) << i;
      EXPECT_LE(tiles[i].y + tiles[i].h, h) << i;
      for (size_t k = i + 1; k < std::size(tiles); ++k) EXPECT_FALSE(overlaps(tiles[i], tiles[k])) << i << " " << k;
    }
    EXPECT_FALSE(overlaps(l.overlay, l.conversation));
    EXPECT_FALSE(overlaps(l.overlay, l.camera));
    EXPECT_TRUE(overlaps(l.overlay, l.info));
    EXPECT_GT(l.conversation.w, w / 2);  // the conversation is the widest panel
  }
}

// ---- End to end through the binary ----

using Result = conflux::testing_support::CommandResult;
Result run(const std::string& command) { return conflux::testing_support::run_shell(command); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool has_xvfb() { return run("command -v Xvfb").exit_code == 0; }

// One virtual X server for the whole test binary. Xvfb picks a free display itself (-displayfd) and
// writes its number only once it accepts connections, so there is no race with other servers (other
// test binaries under ctest -j) and no wait-for-ready guesswork.
struct VirtualDisplay {
  pid_t pid = -1;
  std::string display;  // ":N"
  std::string error;

  VirtualDisplay() {
    int fds[2];
    if (pipe(fds) != 0) {
      error = "pipe failed";
      return;
    }
    pid = fork();
    if (pid == 0) {
      close(fds[0]);  // first: the read end may itself be fd 3
      if (fds[1] != 3) {
        dup2(fds[1], 3);
        close(fds[1]);
      }
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      const int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      // -noreset: the default server reset when the last client leaves refuses connections for a moment,
      // and every test here runs conflux (one client) several times in a row.
      execlp("Xvfb", "Xvfb", "-displayfd", "3", "-screen", "0", kScreenGeometry, "-nolisten", "tcp", "-noreset",
             static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    std::string number;
    char c;
    pollfd pfd{fds[0], POLLIN, 0};
    while (poll(&pfd, 1, 20000) > 0 && read(fds[0], &c, 1) == 1 && c != '\n') number += c;
    close(fds[0]);
    if (number.empty()) error = "Xvfb did not report a display within 20 s";
    else display = ":" + number;
  }
  ~VirtualDisplay() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

// Pixels of a theme colour, drawn at full strength or blended at `alpha` over a near-black
// background. The tolerance covers antialiasing and the video codec's noise, and is well below the
// distance between the theme's meaningful colours and Dear ImGui's own (blue-grey, white).
constexpr int kColourTolerance = 48;

int count_pixels(const ImageRGB& img, const Rect& r, Rgb c, uint8_t alpha = 255) {
  const int er = c.r * alpha / 255, eg = c.g * alpha / 255, eb = c.b * alpha / 255;
  int n = 0;
  for (int y = std::max(0, int(r.y)); y < std::min(img.height, int(r.y + r.h)); ++y)
    for (int x = std::max(0, int(r.x)); x < std::min(img.width, int(r.x + r.w)); ++x) {
      const uint8_t* p = &img.rgb[(size_t(y) * img.width + x) * 3];
      if (std::abs(p[0] - er) <= kColourTolerance && std::abs(p[1] - eg) <= kColourTolerance &&
          std::abs(p[2] - eb) <= kColourTolerance)
        ++n;
    }
  return n;
}

class Window : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::path(::testing::TempDir()) / ("conflux_window_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    setup_ = conflux::testing_support::make_one_question_media(dir_);
  }
  static void TearDownTestSuite() {
    delete xvfb_;
    xvfb_ = nullptr;
    fs::remove_all(dir_);
  }
  void SetUp() override {
    ASSERT_EQ(setup_.exit_code, 0) << "making the demo media failed (espeak-ng, sox, gst-launch-1.0):\n" << setup_.output;
  }
  static void require_xvfb() {
    ASSERT_TRUE(has_xvfb()) << "Xvfb not found: the window tests need a virtual X display; install Debian's "
                               "xvfb package (apt-get install xvfb, or tools/setup.sh)";
    if (!xvfb_) xvfb_ = new VirtualDisplay();
    ASSERT_TRUE(xvfb_->error.empty()) << xvfb_->error;
  }
  static std::string media() { return (dir_ / "demo.webm").string(); }
  static std::string conflux_run(const std::string& args) {
    return std::string(CONFLUX_BINARY) + " run --model " + kTinyA + " --media " + media() + " " + args;
  }
  static std::string under_xvfb(const std::string& command) { return "DISPLAY=" + xvfb_->display + " " + command; }

  static VirtualDisplay* xvfb_;
  static fs::path dir_;
  static Result setup_;
};
VirtualDisplay* Window::xvfb_ = nullptr;
fs::path Window::dir_;
Result Window::setup_;

TEST_F(Window, ScreenshotShowsTheStreamedAnswerThePatchGridAndTheOverlay) {
  ASSERT_NO_FATAL_FAILURE(require_xvfb());
  const std::string shot = (dir_ / "overlay.png").string();
  // 15 frames, at least half a second after the answer (the window draws 30 frames a second at most),
  // so the overlay's snapshot samples (ten a second) have drawn lines, not single points.
  const Result r = run(under_xvfb(conflux_run("--speed max --budget 70 --max-tokens 8 --overlay --screenshot " + shot +
                                              " --frames 15")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("window open"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[conflux] "), std::string::npos) << r.output;  // the answer streamed (mirrored on stdout)
  EXPECT_NE(r.output.find("(8 tokens"), std::string::npos) << r.output;   // and was complete before the shot
  const ImageRGB img = conflux::load_image(shot);
  ASSERT_EQ(img.width, 1280);
  ASSERT_EQ(img.height, 720);
  const Layout l = compute_layout(float(img.width), float(img.height));
  // Text of the model's colour where the conversation is, and nowhere near the camera view.
  EXPECT_GT(count_pixels(img, l.conversation, kAnswerTextColor), 30) << "no streamed answer text in the conversation panel";
  EXPECT_EQ(count_pixels(img, l.camera, kAnswerTextColor), 0);
  // The patch grid over the (mostly black) camera frame.
  EXPECT_GT(count_pixels(img, l.camera, kPatchGridColor, kPatchGridAlpha), 200) << "no patch grid over the camera view";
  // Plot lines in the overlay, and only there.
  EXPECT_GT(count_pixels(img, l.overlay, kPlotLineColor), 200) << "no plot lines in the latency overlay";
  EXPECT_EQ(count_pixels(img, l.conversation, kPlotLineColor), 0);
  const auto size = fs::file_size(shot);
  EXPECT_LT(size, 300u * 1024) << "screenshot is " << size << " bytes";

  // Without --overlay the same region shows the microphone and setup panels: no plots.
  const std::string plain = (dir_ / "plain.png").string();
  const Result p = run(under_xvfb(conflux_run("--speed max --budget 70 --max-tokens 8 --screenshot " + plain + " --frames 15")));
  ASSERT_EQ(p.exit_code, 0) << p.output;
  const ImageRGB plain_img = conflux::load_image(plain);
  EXPECT_EQ(count_pixels(plain_img, l.overlay, kPlotLineColor), 0);
  EXPECT_GT(count_pixels(plain_img, l.conversation, kAnswerTextColor), 30);
}

// `conflux replay` drives the same window from a recording (the demo recording in assets/), and writes
// the same --transcript and --metrics files as the terminal does.
TEST_F(Window, ReplayOfARecordingOpensTheWindowAndStreamsItsAnswers) {
  ASSERT_NO_FATAL_FAILURE(require_xvfb());
  const std::string shot = (dir_ / "replay.png").string();
  const fs::path transcript = dir_ / "replay-transcript.jsonl", metrics = dir_ / "replay-metrics.jsonl";
  const Result r = run(under_xvfb(std::string(CONFLUX_BINARY) + " replay " + CONFLUX_SOURCE_DIR + "/assets/demo --model " +
                                  kTinyA + " --speed max --screenshot " + shot + " --frames 5 --transcript " +
                                  transcript.string() + " --metrics " + metrics.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("in the window"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4 turns"), std::string::npos) << r.output;  // every recorded question answered
  const ImageRGB img = conflux::load_image(shot);
  const Layout l = compute_layout(float(img.width), float(img.height));
  EXPECT_GT(count_pixels(img, l.conversation, kAnswerTextColor), 30) << "no streamed answer text in the conversation panel";

  // One transcript line per answered turn; the metrics hold every event, answers included.
  std::ifstream in(transcript);
  int answers = 0;
  for (std::string line; std::getline(in, line);) {
    EXPECT_NE(line.find("\"event\":\"answer_done\""), std::string::npos) << line;
    ++answers;
  }
  EXPECT_EQ(answers, 4) << "the transcript should hold the demo's four answers";
  const std::string all_events = read_file(metrics);
  EXPECT_NE(all_events.find("\"event\":\"speech_started\""), std::string::npos);
  EXPECT_NE(all_events.find("\"event\":\"answer_done\""), std::string::npos);
}

TEST_F(Window, WithoutADisplayItRunsInTheTerminalAndSaysWhy) {
  const std::string no_display = "env -u DISPLAY -u WAYLAND_DISPLAY ";
  const Result r = run(no_display + conflux_run("--speed max --budget 70 --max-tokens 8 --no-status"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("conflux: no window ("), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("DISPLAY"), std::string::npos) << r.output;  // GLFW's reason names what is missing
  EXPECT_NE(r.output.find("running in the terminal"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[conflux] "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(8 tokens"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("window open"), std::string::npos) << r.output;
  // A screenshot cannot be made without a window: a clear usage error, not a silent terminal run.
  const Result s = run(no_display + conflux_run("--speed max --screenshot " + (dir_ / "none.png").string()));
  EXPECT_EQ(s.exit_code, 2) << s.output;
  EXPECT_NE(s.output.find("--screenshot needs a window"), std::string::npos) << s.output;
  EXPECT_FALSE(fs::exists(dir_ / "none.png"));
}

TEST_F(Window, HeadlessFlagRunsInTheTerminalEvenWithADisplay) {
  ASSERT_NO_FATAL_FAILURE(require_xvfb());
  const Result r = run(under_xvfb(conflux_run("--headless --speed max --budget 70 --max-tokens 8 --no-status")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[conflux] "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("window open"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("no window"), std::string::npos) << r.output;  // chosen, not a fallback
}

// Starts `command` with /bin/sh in the background; returns its pid.
pid_t spawn_shell(const std::string& command) {
  const pid_t pid = fork();
  if (pid == 0) {
    // A clean signal state for the child: the signals this test sends must reach conflux, whatever mask
    // or disposition this (multi-threaded) test process has.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGUSR1, SIGINT, SIGTERM, SIGCHLD}) signal(sig, SIG_DFL);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Waits for `pid` up to `timeout`; returns its wait status, or -1 on timeout.
int wait_for(pid_t pid, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return -1;
}

TEST_F(Window, ShutsDownCleanlyMidAnswerOnCtrlCAndSigterm) {
  ASSERT_NO_FATAL_FAILURE(require_xvfb());
  for (const int sig : {SIGINT, SIGTERM}) {
    SCOPED_TRACE(sig == SIGINT ? "SIGINT" : "SIGTERM");
    const fs::path run_dir = dir_ / ("mid" + std::to_string(sig));
    fs::create_directories(run_dir);
    const fs::path pid_file = run_dir / "pid", out_file = run_dir / "out.txt", script = run_dir / "run.sh";
    // An answer of 20000 tokens takes tiny-a about two minutes: the signal lands in the middle of it.
    // The script records its pid and becomes conflux (exec), so the signal reaches conflux itself.
    std::ofstream(script) << "echo $$ > " << pid_file << "\nexec "
                          << conflux_run("--speed max --budget 70 --max-tokens 20000 --max-context 32768 --no-status")
                          << " > " << out_file << " 2>&1\n";
    const pid_t xvfb = spawn_shell(under_xvfb("sh " + script.string()));
    ASSERT_GT(xvfb, 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    bool answering = false;
    while (!answering && std::chrono::steady_clock::now() < deadline) {
      const std::string out = read_file(out_file);
      const size_t answer = out.find("[conflux] ");
      answering = answer != std::string::npos && out.size() > answer + 10;  // tokens are streaming
      if (!answering) std::this_thread::sleep_for(milliseconds(50));
    }
    const pid_t conflux_pid = pid_t(std::atoi(read_file(pid_file).c_str()));
    if (!answering || conflux_pid <= 0) {
      if (conflux_pid > 0) kill(conflux_pid, SIGKILL);
      wait_for(xvfb, std::chrono::seconds(30));
      FAIL() << "the answer never started streaming:\n" << read_file(out_file);
    }
    ASSERT_EQ(kill(conflux_pid, sig), 0);
    const int status = wait_for(xvfb, std::chrono::seconds(60));
    if (status == -1) {
      kill(conflux_pid, SIGKILL);
      wait_for(xvfb, std::chrono::seconds(30));
      FAIL() << "conflux did not exit within 60 s of the signal:\n" << read_file(out_file);
    }
    const std::string out = read_file(out_file);
    ASSERT_TRUE(WIFEXITED(status)) << out;
    EXPECT_EQ(WEXITSTATUS(status), 0) << out;  // the shell exec'd conflux: this is conflux's exit code
    EXPECT_NE(out.find("conflux: stopped mid-answer"), std::string::npos) << out;
    EXPECT_NE(out.find(", interrupted)"), std::string::npos) << out;  // the answer was cut, not finished
  }
}

}  // namespace
