// `conflux record` and `conflux replay` end to end, through the real binary: a generated audio+video
// file (espeak-ng speech muxed with videotestsrc by gst-launch-1.0) is recorded, replayed with identical
// answers, a tampered recording is reported as diverging, and foreign or broken inputs give clear errors.
#include "tests/support/commands.h"
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

namespace {

namespace fs = std::filesystem;
const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";

using Result = conflux::testing_support::CommandResult;
Result run(const std::string& command) { return conflux::testing_support::run_shell(command); }

class RecordReplay : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::path(::testing::TempDir()) / ("conflux_replay_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    setup_ = conflux::testing_support::make_one_question_media(dir_);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override { ASSERT_EQ(setup_.exit_code, 0) << "making the demo media failed (espeak-ng, sox, gst-launch-1.0):\n" << setup_.output; }

  static std::string conflux(const std::string& args) { return std::string(CONFLUX_BINARY) + " " + args; }
  static std::string record(const std::string& name, const std::string& extra = "") {
    const std::string rec = (dir_ / name).string();
    fs::remove_all(rec);
    const Result r = run(conflux("record " + rec + " --model " + kTinyA + " --media " + (dir_ / "demo.webm").string() +
                                 " --speed max --budget 70 --max-tokens 6 --threads 1 --no-status" + extra));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return rec;
  }

  static fs::path dir_;
  static Result setup_;
};
fs::path RecordReplay::dir_;
Result RecordReplay::setup_;

TEST_F(RecordReplay, ReplayReproducesTheRecordedAnswers) {
  const std::string rec = record("a");
  for (const char* speed : {"max", "4"}) {
    const Result r = run(conflux("replay " + rec + " --speed " + speed + " --threads 2"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("identical to the recording, token for token"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("1 recorded answers"), std::string::npos) << r.output;
  }
}

// A run recorded on weights quantized at load replays on the same format (read from its settings)
// token for token; --quantize overrides it, and the replay says the model differs.
TEST_F(RecordReplay, QuantizedRunReplaysOnTheSameWeightFormat) {
  const std::string rec = record("q8", " --quantize q8");
  const Result same = run(conflux("replay " + rec + " --speed max --threads 1 --headless"));
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_NE(same.output.find("identical to the recording, token for token"), std::string::npos) << same.output;
  EXPECT_EQ(same.output.find("not the recorded model"), std::string::npos) << same.output;
  const Result other = run(conflux("replay " + rec + " --speed max --threads 1 --headless --quantize q4"));
  EXPECT_NE(other.output.find("not the recorded model"), std::string::npos) << other.output;
}

TEST_F(RecordReplay, TamperedRecordingIsReportedAsDiverging) {
  const std::string rec = record("b");
  // Change the first recorded answer token: the replay must notice.
  std::ifstream in(rec + "/timeline.jsonl");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const std::regex token(R"re("event":"token",(.*?)"token":(\d+))re");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, token)) << "no token event in the timeline";
  const int original = std::stoi(m[2]);
  text.replace(size_t(m.position(2)), size_t(m.length(2)), std::to_string(original == 7 ? 8 : 7));
  std::ofstream(rec + "/timeline.jsonl") << text;
  const Result r = run(conflux("replay " + rec + " --speed max"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("diverges at token 0"), std::string::npos) << r.output;
}

TEST_F(RecordReplay, ForeignAndBrokenInputsGiveClearErrors) {
  // A folder that is not a recording.
  const fs::path empty = dir_ / "not-a-recording";
  fs::create_directories(empty);
  Result r = run(conflux("replay " + empty.string() + " --speed max"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("session.json"), std::string::npos) << r.output;
  // A foreign file as media: GStreamer cannot decode it.
  const fs::path text = dir_ / "notes.txt";
  std::ofstream(text) << "not audio, not video\n";
  r = run(conflux("replay " + text.string() + " --model " + kTinyA + " --speed max"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cannot decode '" + text.string() + "'"), std::string::npos) << r.output;
  // A recording whose timeline has garbage in the middle: the file and line are named.
  const std::string rec = record("c");
  std::ifstream in(rec + "/timeline.jsonl");
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  in.close();
  ASSERT_GT(lines.size(), 4u);
  lines[2] = "{\"kind\": \"audio\", broken";
  std::ofstream out(rec + "/timeline.jsonl");
  for (const auto& l : lines) out << l << '\n';
  out.close();
  r = run(conflux("replay " + rec + " --speed max"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("timeline.jsonl:3"), std::string::npos) << r.output;
  // Nothing at all.
  r = run(conflux("replay " + (dir_ / "missing").string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no such file"), std::string::npos) << r.output;
}

}  // namespace

namespace {

// Ctrl-C in the terminal front end while an answer streams and a media file is read at full speed
// (its reader then waits on the session): the run stops promptly and cleanly, the answer marked
// interrupted.
TEST_F(RecordReplay, CtrlCMidAnswerStopsCleanly) {
  const std::string out = (dir_ / "ctrlc.txt").string();
  const std::string cmd = "timeout 60 " + conflux("run --headless --model " + kTinyA + " --media " + (dir_ / "demo.webm").string() +
                                                  " --speed max --budget 70 --max-tokens 20000 --threads 1") +
                          " > " + out + " 2>&1 & pid=$!; "
                          "for i in $(seq 1 200); do grep -q '\\[conflux\\]' " + out + " && break; sleep 0.05; done; "
                          "sleep 0.3; kill -INT $pid; wait $pid";
  const std::string script = (dir_ / "ctrlc.sh").string();
  std::ofstream(script) << cmd << "\n";
  const Result r = run("bash " + script);
  std::ifstream in(out);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(r.exit_code, 0) << text;  // 124 would mean the timeout killed a hung process
  EXPECT_NE(text.find("interrupted"), std::string::npos) << text;
}

}  // namespace

namespace {

// Without a microphone, camera or media file, `conflux` plays the demo recording shipped in assets/ as
// if live on the bundled model (assets/model), says so, and answers its four spoken questions (these test
// machines have no devices).
TEST_F(RecordReplay, NoDevicesPlaysTheDemoRecording) {
  const Result r = run("cd " + dir_.string() + " && " + conflux("--headless --speed max --threads 1"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("playing the demo recording"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("assets/model"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4 turns"), std::string::npos) << r.output;
}

}  // namespace
