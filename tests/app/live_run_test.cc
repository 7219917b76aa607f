// LiveRun's record toggle (the window's "Record this session" checkbox): the session is recorded from
// its start into a scratch folder, and the toggle decides at the end whether that recording is kept
// (moved to its target, complete and replayable) or discarded.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <vector>

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

// The window's conversation thumbnails: each image the model was given is found by its ImageAdded
// event's time, and it is that turn's scene. The demo recording shows one scene per question, and at full
// speed the newest frame is often the next scene by the time an event is read (the window used to show
// that frame, and so a turn-end image of the wrong scene).
TEST_F(RecordToggle, ThumbnailsAreTheFramesTheModelWasGiven) {
  const std::string demo = std::string(CONFLUX_SOURCE_DIR) + "/assets/demo";
  const Recording rec = load_recording(demo);
  app::LiveOptions o;
  o.model_dir = kTinyA;
  session_settings_from_json(rec.settings_json, o.runtime, o.session);
  o.recording = demo;
  o.use_mic = o.use_camera = false;
  o.realtime = false;
  o.runtime.n_threads = 1;
  o.keep_sampled_frames = true;
  app::LiveRun run(o);
  run.start();
  std::map<int, std::vector<ImageRGB>> images_by_turn;
  int not_found = 0;
  auto drain = [&] {
    while (auto e = run.next_event()) {
      if (e->kind != SessionEvent::Kind::ImageAdded) continue;
      ImageRGB frame;
      if (run.sampled_frame(e->time, &frame)) images_by_turn[e->turn].push_back(std::move(frame));
      else ++not_found;
    }
  };
  while (!run.input_ended()) {  // read as a window does, once per frame drawn (~30 a second)
    drain();
    std::this_thread::sleep_for(std::chrono::milliseconds(33));
  }
  run.session().wait_idle();
  drain();
  run.stop();
  drain();
  EXPECT_EQ(not_found, 0);
  ASSERT_EQ(images_by_turn.size(), 4u) << "the demo has four questions, each over a scene";
  const ImageRGB* previous_scene = nullptr;
  for (const auto& [turn, images] : images_by_turn) {
    ASSERT_GE(images.size(), 2u) << "turn " << turn;  // frames while speaking, and again at turn end
    for (const ImageRGB& img : images) EXPECT_EQ(img.rgb, images.front().rgb) << "turn " << turn << " shows two scenes";
    if (previous_scene) {
      EXPECT_NE(images.front().rgb, previous_scene->rgb) << "turn " << turn << " shows the last turn's scene";
    }
    previous_scene = &images.front();
  }
}

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
