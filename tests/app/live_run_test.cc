// LiveRun's record toggle (the window's "Record this session" checkbox): the session is recorded from
// its start into a scratch folder, and the toggle decides at the end whether that recording is kept
// (moved to its target, complete and replayable) or discarded.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "app/live.h"
#include "capture/recording.h"
#include "tests/support/commands.h"

namespace conflux {
namespace {

namespace fs = std::filesystem;
const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";

class RecordToggle : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("conflux_live_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const auto made = testing_support::make_one_question_media(dir_);
    ASSERT_EQ(made.exit_code, 0) << made.output;
    previous_cwd_ = fs::current_path();
    fs::current_path(dir_);  // kept recordings go to ./recordings/
  }
  void TearDown() override {
    fs::current_path(previous_cwd_);
    fs::remove_all(dir_);
  }
  // Runs the demo clip through a LiveRun with the toggle, keeping the recording or not.
  std::string run_once(bool keep) {
    app::LiveOptions o;
    o.model_dir = kTinyA;
    o.media_file = (dir_ / "demo.webm").string();
    o.realtime = false;
    o.record_toggle = true;
    o.runtime.n_threads = 1;
    o.runtime.max_chunk = 512;
    o.session.image_budget = 70;
    o.session.max_answer_tokens = 4;
    app::LiveRun run(o);
    EXPECT_TRUE(run.recording_available());
    EXPECT_FALSE(run.recording_kept());  // off until the user ticks it
    run.start();
    run.set_recording_kept(keep);
    while (!run.input_ended()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    run.session().wait_idle();
    run.stop();
    return run.recording_target();
  }
  fs::path dir_, previous_cwd_;
};

TEST_F(RecordToggle, KeptRecordingIsCompleteAndDiscardedOneLeavesNothing) {
  const std::string kept = run_once(true);
  ASSERT_TRUE(fs::exists(fs::path(kept) / "session.json")) << kept;
  const Recording rec = load_recording(kept);
  EXPECT_TRUE(rec.tail.clean());
  EXPECT_EQ(rec.answers.size(), 1u);  // the clip's one question, answered
  EXPECT_GT(rec.audio.size(), 0u);

  fs::remove_all(dir_ / "recordings");
  const std::string discarded = run_once(false);
  EXPECT_FALSE(fs::exists(discarded));
  // And no scratch folder of this process is left behind.
  for (const auto& e : fs::directory_iterator(fs::temp_directory_path()))
    EXPECT_EQ(e.path().filename().string().rfind("conflux-recording-" + std::to_string(::getpid()) + "-", 0), std::string::npos)
        << e.path();
}

// The loading progress the window shows: stages in order, fractions rising to 1.
TEST_F(RecordToggle, LoadingReportsProgressUpToReady) {
  app::LiveOptions o;
  o.model_dir = kTinyA;
  o.media_file = (dir_ / "demo.webm").string();
  std::vector<float> fractions;
  std::vector<std::string> stages;
  o.progress = [&](float f, const char* stage) {
    fractions.push_back(f);
    stages.push_back(stage);
  };
  app::LiveRun run(o);
  ASSERT_GE(fractions.size(), 3u);
  EXPECT_EQ(fractions.front(), 0.0f);
  EXPECT_EQ(fractions.back(), 1.0f);
  EXPECT_TRUE(std::is_sorted(fractions.begin(), fractions.end()));
  EXPECT_EQ(stages.back(), "ready");
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// Inputs switched while the run goes on (the window's Settings tab): a camera pipeline starts
// delivering frames, "off" stops it, and a microphone that does not exist is refused by name.
TEST_F(RecordToggle, CameraAndMicrophoneSwitchWhileRunning) {
  app::LiveOptions o;
  o.model_dir = kTinyA;
  o.media_file = (dir_ / "demo.webm").string();
  o.realtime = true;
  o.runtime.n_threads = 1;
  o.session.image_budget = 70;
  app::LiveRun run(o);
  run.start();
  const uint64_t before = run.last_frame(nullptr);
  run.set_camera("videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=20/1");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (run.last_frame(nullptr) < before + 10 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(run.last_frame(nullptr), before + 10) << "the new camera delivered no frames";
  EXPECT_NE(run.inputs().find("camera"), std::string::npos) << run.inputs();
  run.set_camera("off");
  EXPECT_EQ(run.inputs().find("camera"), std::string::npos) << run.inputs();
  try {
    run.set_microphone("no-such-microphone-42");
    ADD_FAILURE() << "a missing microphone was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-microphone-42"), std::string::npos) << e.what();
  }
  run.stop();
}

}  // namespace
}  // namespace conflux
