// Session recordings on real sessions and real files: a tiny-a session with espeak speech, video and typed
// input is recorded and read back bit for bit; replaying it reproduces its answers token for token; a
// recording process killed with SIGKILL loses under a second; a full writer queue is counted, never
// silent; damaged folders are refused with the file and line, torn tails are tolerated and reported.
#include "capture/recording.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "engine/tokenizer.h"
#include "tests/session/speech_timeline.h"
#include "tests/session/tiny_session_assets.h"

namespace conflux {
namespace {

namespace fs = std::filesystem;
const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
constexpr int kRate = 16000;
constexpr size_t kFrame = 640;   // the session's 40 ms audio frame
constexpr size_t kChunk = 160;   // 10 ms pushes, as a capture callback delivers them

TimePoint at(TimePoint t0, double seconds) {
  return t0 + std::chrono::duration_cast<SessionClock::duration>(std::chrono::duration<double>(seconds));
}

// A frame whose every pixel depends on `shade`, so frames differ from each other everywhere.
ImageRGB test_image(int shade, int width = 480, int height = 336) {
  ImageRGB img;
  img.width = width;
  img.height = height;
  img.rgb.resize(size_t(width) * height * 3);
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = uint8_t((i * 7 + size_t(shade) * 31) % 251);
  return img;
}

bool same_image(const ImageRGB& a, const ImageRGB& b) { return a.width == b.width && a.height == b.height && a.rgb == b.rgb; }

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void write_lines(const fs::path& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& line : lines) out << line << '\n';
}

// Index of the n-th (0-based) timeline line of `kind`.
size_t find_line(const std::vector<std::string>& lines, const std::string& kind, int nth = 0) {
  for (size_t i = 0; i < lines.size(); ++i)
    if (nlohmann::json::parse(lines[i])["kind"] == kind && nth-- == 0) return i;
  throw std::runtime_error("no line of kind " + kind);
}

// The error load_recording gives for `dir`, or "" when it loads.
std::string load_error(const fs::path& dir, const RecordingLoadOptions& options = {}) {
  try {
    load_recording(dir.string(), options);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

// Passes every call on to a real recorder, counting in shared memory the samples handed over: what the
// recorder had been given when the process dies.
struct SharedCounters {
  std::atomic<int64_t> samples_to_recorder{0};
  std::atomic<int64_t> samples_pushed{0};
};
class CountingRecorder final : public SessionRecorder {
 public:
  CountingRecorder(SessionRecorder& inner, SharedCounters& counters) : inner_(inner), counters_(counters) {}
  void on_start(const std::string& s, TimePoint o) override { inner_.on_start(s, o); }
  void on_audio_frame(const float* samples, size_t n, TimePoint t) override {
    counters_.samples_to_recorder += int64_t(n);  // before forwarding: the count never lags the recorder
    inner_.on_audio_frame(samples, n, t);
  }
  void on_video_frame(const ImageRGB& f, TimePoint t) override { inner_.on_video_frame(f, t); }
  void on_text(const std::string& text, TimePoint t) override { inner_.on_text(text, t); }
  void on_push_to_talk(bool pressed, TimePoint t) override { inner_.on_push_to_talk(pressed, t); }
  void on_settings(const std::string& json, TimePoint t) override { inner_.on_settings(json, t); }
  void on_event(const SessionEvent& e) override { inner_.on_event(e); }
  void on_stop() override { inner_.on_stop(); }

 private:
  SessionRecorder& inner_;
  SharedCounters& counters_;
};

class RecordingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    assets_ = new TinySessionAssets("recording");
    model_ = assets_->model.get();
    tok_ = assets_->tokenizer.get();
    a_ = &assets_->a;
    b_ = &assets_->b;
    dir_ = assets_->dir;
    setup_error_ = assets_->error;
  }
  static void TearDownTestSuite() {
    // CONFLUX_KEEP_RECORDINGS=1 keeps the recorded folders for inspection.
    if (std::getenv("CONFLUX_KEEP_RECORDINGS")) {
      std::printf("recordings kept in %s\n", dir_.c_str());
      assets_->dir.clear();
    }
    delete assets_;
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static SessionConfig config() {
    SessionConfig c;
    c.image_budget = 70;
    c.video_fps = 1.0;
    c.max_answer_tokens = 4;
    c.sampling.stop_tokens = {tok_->eos_id(), tok_->token_id("<turn|>")};
    // tiny-a's random weights make <unk> the greedy pick after any input; without it the answers differ
    // from turn to turn (ids 424 / 330 here), so comparing them tests something.
    c.sampling.suppress_tokens = {tok_->token_id("<unk>")};
    c.record_rows = true;  // not a recorded setting: the replay test compares every decoder row
    // Where a barge-in cuts an answer depends on wall-clock speed (session.h), so replay exactness is
    // tested without it.
    c.barge_in = false;
    // Inputs are pushed faster than real time; a roomy video queue keeps the drop-oldest policy from
    // dropping frames before the session (and so the recorder) sees them.
    c.video_queue_frames = 64;
    return c;
  }
  static RuntimeConfig runtime() {
    RuntimeConfig rc;
    rc.n_threads = 1;
    rc.max_context = 2048;
    rc.max_chunk = 128;
    return rc;
  }

  // What a recorded session was given and what it answered.
  struct Recorded {
    std::vector<float> audio;
    std::vector<ImageRGB> frames;
    std::vector<double> frame_times_s, control_times_s;  // input times after t0
    std::string typed;
    std::vector<std::vector<int32_t>> answers;
    std::vector<std::string> answer_texts;
    std::vector<SessionRow> rows;
    std::string settings_json;
    SessionSnapshot snapshot;
    RecordingWriterStats writer_stats;
  };

  // Two spoken questions with 1 fps video, then a typed question, then an empty push-to-talk turn,
  // all pushed as fast as possible into a tiny-a session that records into `dir`.
  static Recorded record_session(const fs::path& dir) {
    const Timeline tl = build_timeline({a_, b_}, {1.0, 1.5, 1.5});
    Recorded r;
    r.audio = tl.samples;
    r.typed = "and what colour is it?";
    RecordingWriter writer(dir.string());
    SessionConfig cfg = config();
    cfg.recorder = &writer;
    r.settings_json = session_settings_json(*model_, runtime(), cfg);
    Session s(*model_, *tok_, runtime(), cfg);
    s.subscribe([&](const SessionEvent& e) {
      if (e.kind == SessionEvent::Kind::AnswerDone) r.answer_texts.push_back(e.text);
    });
    s.start();
    const TimePoint t0 = SessionClock::now();
    double next_video = 0;
    // Halfway through, a live settings update (video 1 -> 2 fps, a longer VAD hangover): recorded, and
    // replayed at the same input time.
    const double update_s = double(tl.samples.size()) / kRate / 2;
    bool updated = false;
    for (size_t off = 0; off < tl.samples.size(); off += kChunk) {
      const double t = double(off) / kRate;
      if (!updated && t >= update_s) {
        LiveSettings next = live_settings_of(config());
        next.video_fps = 2.0;
        next.vad.hangover_ms = 800;
        s.update_settings(next, at(t0, t));
        updated = true;
      }
      while (next_video <= t) {
        r.frames.push_back(test_image(int(r.frames.size())));
        r.frame_times_s.push_back(next_video);
        s.push_video(r.frames.back(), at(t0, next_video));
        next_video += 1.0;
      }
      s.push_audio(tl.samples.data() + off, std::min(kChunk, tl.samples.size() - off), at(t0, t));
    }
    const double end_s = double(tl.samples.size()) / kRate;
    r.control_times_s = {end_s + 0.1, end_s + 0.2, end_s + 0.3};
    s.push_text(r.typed, at(t0, r.control_times_s[0]));
    s.push_to_talk(true, at(t0, r.control_times_s[1]));
    s.push_to_talk(false, at(t0, r.control_times_s[2]));
    s.wait_idle();
    s.stop();
    r.answers = s.answers();
    r.rows = s.rows();
    r.snapshot = s.snapshot();
    r.writer_stats = writer.stats();
    return r;
  }

  static TinySessionAssets* assets_;
  static const Model* model_;
  static const Tokenizer* tok_;
  static const Clip *a_, *b_;
  static fs::path dir_;
  static std::string setup_error_;
};
TinySessionAssets* RecordingTest::assets_ = nullptr;
const Model* RecordingTest::model_ = nullptr;
const Tokenizer* RecordingTest::tok_ = nullptr;
const Clip* RecordingTest::a_ = nullptr;
const Clip* RecordingTest::b_ = nullptr;
fs::path RecordingTest::dir_;
std::string RecordingTest::setup_error_;

// Everything the session consumed comes back exactly: samples bit for bit, frames pixel for pixel, the
// typed text and push-to-talk, every input time to the nanosecond, the settings and the answers.
TEST_F(RecordingTest, RecordsExactlyWhatTheSessionConsumed) {
  const fs::path dir = dir_ / "record";
  const Recorded r = record_session(dir);
  ASSERT_EQ(r.snapshot.video_frames_dropped, 0u) << "the session itself dropped frames; the comparison below needs all";
  EXPECT_EQ(r.writer_stats.dropped_total(), 0);
  EXPECT_EQ(r.writer_stats.error, "");
  EXPECT_GT(r.writer_stats.flushes, 1) << "a ~7 s session is flushed every half second of input";

  const Recording rec = load_recording(dir.string(), {.decode_frames = true});
  EXPECT_TRUE(rec.tail.clean());
  EXPECT_EQ(rec.version, kRecordingFormatVersion);
  EXPECT_EQ(nlohmann::json::parse(rec.settings_json), nlohmann::json::parse(r.settings_json));

  // Audio: the timeline pads to whole frames, so every pushed sample was consumed.
  ASSERT_EQ(r.audio.size() % kFrame, 0u);
  ASSERT_EQ(rec.audio.size(), r.audio.size());
  EXPECT_EQ(std::memcmp(rec.audio.data(), r.audio.data(), r.audio.size() * sizeof(float)), 0);
  int64_t listed = 0;
  std::vector<const RecordedInput*> video, control, settings;
  for (const auto& in : rec.inputs) {
    if (in.kind == RecordedInput::Kind::Audio) {
      EXPECT_FALSE(in.lost);
      EXPECT_LE(in.n_samples, kRate) << "audio lines hold at most one second";
      listed += in.n_samples;
    } else if (in.kind == RecordedInput::Kind::Video) {
      video.push_back(&in);
    } else if (in.kind == RecordedInput::Kind::Settings) {
      settings.push_back(&in);
    } else {
      control.push_back(&in);
    }
  }
  EXPECT_EQ(listed, int64_t(r.audio.size()));
  ASSERT_EQ(settings.size(), 1u);  // the halfway update
  EXPECT_EQ(live_settings_from_json(settings[0]->settings_json).video_fps, 2.0);

  // Times relative to the audio clock's start (the first pushed audio, at t0) are the pushed times.
  const auto since_t0 = [&](const RecordedInput& in) { return in.offset - rec.audio_clock_start; };
  const TimePoint t0{};  // any origin: `at` is a pure offset
  ASSERT_EQ(video.size(), r.frames.size());
  for (size_t i = 0; i < video.size(); ++i) {
    EXPECT_TRUE(same_image(rec.load_frame(*video[i]), r.frames[i])) << "frame " << i;
    EXPECT_EQ(since_t0(*video[i]), at(t0, r.frame_times_s[i]) - t0) << "frame " << i;
  }
  ASSERT_EQ(control.size(), 3u);
  EXPECT_EQ(control[0]->kind, RecordedInput::Kind::Text);
  EXPECT_EQ(control[0]->text, r.typed);
  EXPECT_EQ(control[1]->kind, RecordedInput::Kind::PushToTalk);
  EXPECT_TRUE(control[1]->pressed);
  EXPECT_EQ(control[2]->kind, RecordedInput::Kind::PushToTalk);
  EXPECT_FALSE(control[2]->pressed);
  for (size_t i = 0; i < control.size(); ++i) EXPECT_EQ(since_t0(*control[i]), at(t0, r.control_times_s[i]) - t0);

  // Two spoken turns, the typed one and the push-to-talk one.
  ASSERT_EQ(r.answers.size(), 4u);
  ASSERT_EQ(rec.answers.size(), r.answers.size());
  for (size_t i = 0; i < r.answers.size(); ++i) {
    EXPECT_TRUE(rec.answers[i].finished);
    EXPECT_EQ(rec.answers[i].tokens, r.answers[i]) << "answer " << i;
    EXPECT_EQ(rec.answers[i].text, r.answer_texts[i]) << "answer " << i;
  }
  EXPECT_EQ(rec.answers[0].trigger, "end_of_speech");
  EXPECT_EQ(rec.answers[2].trigger, "typed_text");
  EXPECT_EQ(rec.answers[3].trigger, "push_to_talk");

  // The audio is an ordinary raw stream to standard tools.
  const std::string sox = "sox -t raw -r 16000 -e floating-point -b 32 -c 1 '" + (dir / "audio.f32").string() + "' -n stat 2>&1";
  FILE* pipe = popen(sox.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string report;
  for (char buf[256]; std::fgets(buf, sizeof buf, pipe);) report += buf;
  EXPECT_EQ(pclose(pipe), 0) << report;
  EXPECT_TRUE(contains(report, "Samples read:") && contains(report, std::to_string(r.audio.size()))) << report;
}

// A new session built from the recorded settings and fed the recorded inputs (as fast as possible, on an
// origin an hour away) appends exactly the same decoder rows (every token and every audio and image
// embedding, bit for bit), so it gives the recorded answers token for token; and its own recording has
// the same inputs at the same times.
TEST_F(RecordingTest, ReplayReproducesTheAnswersTokenForToken) {
  const fs::path original_dir = dir_ / "replay-original", replay_dir = dir_ / "replay-again";
  const Recorded r = record_session(original_dir);
  const Recording rec = load_recording(original_dir.string());
  int answer_tokens = 0;
  for (const auto& a : rec.answers) answer_tokens += int(a.tokens.size());
  ASSERT_GE(rec.answers.size(), 3u);
  ASSERT_GT(answer_tokens, 0) << "empty answers would make the comparison vacuous";

  RuntimeConfig rc = runtime();  // thread count is not a setting of the recording
  SessionConfig cfg;
  session_settings_from_json(rec.settings_json, rc, cfg);
  EXPECT_EQ(cfg.max_answer_tokens, 4);
  EXPECT_FALSE(cfg.barge_in);
  const auto update = std::find_if(rec.inputs.begin(), rec.inputs.end(),
                                   [](const RecordedInput& in) { return in.kind == RecordedInput::Kind::Settings; });
  ASSERT_NE(update, rec.inputs.end()) << "the live settings update was not recorded";
  EXPECT_EQ(live_settings_from_json(update->settings_json).vad.hangover_ms, 800);
  RecordingWriter writer(replay_dir.string());
  cfg.recorder = &writer;
  cfg.record_rows = true;
  Session s(*model_, *tok_, rc, cfg);
  s.start();
  feed_recording(s, rec, SessionClock::now() + std::chrono::hours(1), /*speed=*/0);
  s.wait_idle();
  s.stop();

  ASSERT_EQ(s.answers().size(), rec.answers.size());
  for (size_t i = 0; i < rec.answers.size(); ++i) EXPECT_EQ(s.answers()[i], rec.answers[i].tokens) << "answer " << i;
  ASSERT_EQ(s.rows().size(), r.rows.size());
  size_t differing_rows = 0;
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const SessionRow &x = r.rows[i], &y = s.rows()[i];
    if (x.token != y.token || x.is_embedding != y.is_embedding || x.image_block != y.image_block || x.embedding != y.embedding)
      ++differing_rows;
  }
  EXPECT_EQ(differing_rows, 0u);

  const Recording again = load_recording(replay_dir.string());
  EXPECT_EQ(again.audio, rec.audio);
  std::vector<const RecordedInput*> a, b;
  for (const auto& in : rec.inputs) if (in.kind != RecordedInput::Kind::Audio) a.push_back(&in);
  for (const auto& in : again.inputs) if (in.kind != RecordedInput::Kind::Audio) b.push_back(&in);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]->kind, b[i]->kind) << "input " << i;
    EXPECT_EQ(a[i]->offset - rec.audio_clock_start, b[i]->offset - again.audio_clock_start) << "input " << i;
  }
}

// Paced replay (4x real time): the pushes follow the recorded times on the wall clock, so the feed takes
// the recording's input span / 4, and the answers are still the recorded ones.
TEST_F(RecordingTest, PacedReplayFollowsTheRecordedTimes) {
  constexpr double kSpeed = 4;
  const fs::path dir = dir_ / "paced";
  record_session(dir);
  const Recording rec = load_recording(dir.string());
  SessionClock::duration first = SessionClock::duration::max(), last = SessionClock::duration::min();
  for (const auto& in : rec.inputs) {
    const auto end = in.kind == RecordedInput::Kind::Audio
                         ? rec.audio_time(in.first_sample + in.n_samples - int64_t(kFrame))  // its last frame's push
                         : in.offset;
    first = std::min(first, in.offset);
    last = std::max(last, end);
  }
  const double span_s = std::chrono::duration<double>(last - first).count();
  ASSERT_GT(span_s, 5.0) << "two utterances with pauses";

  RuntimeConfig rc = runtime();
  SessionConfig cfg;
  session_settings_from_json(rec.settings_json, rc, cfg);
  Session s(*model_, *tok_, rc, cfg);
  s.start();
  const auto wall_start = SessionClock::now();
  feed_recording(s, rec, SessionClock::now(), kSpeed);
  const double feed_s = std::chrono::duration<double>(SessionClock::now() - wall_start).count();
  s.wait_idle();
  s.stop();
  std::printf("paced replay: input span %.3f s fed in %.3f s at speed %.0f\n", span_s, feed_s, kSpeed);
  EXPECT_GE(feed_s, span_s / kSpeed - 0.005) << "pushed ahead of the recorded times";
  EXPECT_LE(feed_s, span_s / kSpeed + 0.5) << "fell far behind the recorded times";
  ASSERT_EQ(s.answers().size(), rec.answers.size());
  for (size_t i = 0; i < rec.answers.size(); ++i) EXPECT_EQ(s.answers()[i], rec.answers[i].tokens) << "answer " << i;
}

// A child process records a session fed in real time and is SIGKILLed once 2.5 s of audio is on disk.
// "Fed at kill time" is the number of samples the session had handed to the recorder (counted in shared
// memory just before each hand-over); "recovered" is the whole-frame audio load_recording returns. The
// folder must load, and recovered must be a prefix of the fed audio at most one second shorter.
TEST_F(RecordingTest, KilledRecorderLosesAtMostTheLastSecond) {
  constexpr double kFeedSeconds = 10;        // long enough that the kill always lands mid-feed
  constexpr double kKillAfterSeconds = 2.5;  // audio confirmed in audio.f32 before the kill
  constexpr uint32_t kNoiseSeed = 77;
  const std::vector<float> noise = noise_bed(size_t(kFeedSeconds * kRate), kNoiseSeed);
  // How long after the threshold the kill comes: mid-way between two half-second flushes, and just
  // before the next one is due (the worst case for what is still buffered).
  for (const int kill_delay_ms : {230, 490}) {
    SCOPED_TRACE("kill " + std::to_string(kill_delay_ms) + " ms after the threshold");
    const fs::path dir = dir_ / ("crash-" + std::to_string(kill_delay_ms));
    void* shared = mmap(nullptr, sizeof(SharedCounters), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(shared, MAP_FAILED);
    auto* counters = new (shared) SharedCounters;

    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      int status = 0;
      try {
        RecordingWriter writer(dir.string());
        CountingRecorder counting(writer, *counters);
        SessionConfig cfg = config();
        cfg.recorder = &counting;
        Session s(*model_, *tok_, runtime(), cfg);
        s.start();
        const TimePoint t0 = SessionClock::now();
        int video_frames = 0;
        bool typed = false;
        for (size_t off = 0; off < noise.size(); off += kChunk) {
          const double t = double(off) / kRate;
          std::this_thread::sleep_until(at(t0, t));
          if (video_frames <= t) {
            s.push_video(test_image(video_frames), at(t0, video_frames));
            ++video_frames;
          }
          if (!typed && t >= 1.5) {  // one answer, so the timeline holds events as well
            s.push_text("what is this?", at(t0, t));
            typed = true;
          }
          s.push_audio(noise.data() + off, kChunk, at(t0, t));
          counters->samples_pushed = int64_t(off + kChunk);
        }
        s.stop();
      } catch (...) {
        status = 2;
      }
      _exit(status);  // never back into the test runner
    }

    const int64_t threshold_bytes = int64_t(kKillAfterSeconds * kRate) * int64_t(sizeof(float));
    const auto deadline = SessionClock::now() + std::chrono::seconds(60);
    std::error_code ec;
    while (SessionClock::now() < deadline) {
      const auto size = fs::file_size(dir / "audio.f32", ec);
      if (!ec && int64_t(size) >= threshold_bytes) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_delay_ms));
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    const int64_t fed = counters->samples_to_recorder, pushed = counters->samples_pushed;
    munmap(shared, sizeof(SharedCounters));
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child ended on its own (status " << status << ")";
    ASSERT_LT(pushed, int64_t(noise.size())) << "the kill came after the feed ended";
    ASSERT_GE(fed, int64_t(kKillAfterSeconds * kRate));

    Recording rec;
    ASSERT_NO_THROW(rec = load_recording(dir.string()));
    const int64_t recovered = int64_t(rec.audio.size());
    std::printf("crash after +%d ms: fed %lld samples, pushed %lld, recovered %lld (lost %.3f s); tail: torn line %lld B, partial "
                "audio %lld B, recovered frames %lld, missing frames %d\n",
                kill_delay_ms, (long long)fed, (long long)pushed, (long long)recovered, double(fed - recovered) / kRate,
                (long long)rec.tail.truncated_line_bytes, (long long)rec.tail.partial_audio_bytes,
                (long long)rec.tail.recovered_audio_frames, rec.tail.missing_frame_lines);
    EXPECT_LE(recovered, fed);
    EXPECT_LE(fed - recovered, kRate) << "more than one second of audio lost";
    EXPECT_EQ(std::memcmp(rec.audio.data(), noise.data(), size_t(recovered) * sizeof(float)), 0);
    int video = 0;
    for (const auto& in : rec.inputs)
      if (in.kind == RecordedInput::Kind::Video) {
        EXPECT_TRUE(same_image(rec.load_frame(in), test_image(video))) << "frame " << video;
        ++video;
      }
    EXPECT_GE(video, 2) << "frames at 0 s and 1 s precede the 2.5 s of audio on disk";
  }
}

// ------------------------------------------------------------------------ recordings written directly

// A small recording made through the recorder interface alone (no session): 3 s of audio frames on the
// audio clock, a 64x48 frame at 0.5, 1.5 and 2.5 s, typed text at 2 s, push-to-talk at 2.2 / 2.6 s, and
// one two-token answer's events.
void write_synthetic(const fs::path& dir) {
  constexpr int kFrames = 75;  // 3 s of 40 ms frames
  RecordingWriter w(dir.string());
  const TimePoint origin = SessionClock::now();
  const TimePoint audio_t0 = at(origin, 0.05);
  w.on_start(R"({"session":{"max_answer_tokens":4}})", origin);
  const std::vector<float> noise = noise_bed(kFrames * kFrame, 5);
  std::vector<double> video_s = {0.5, 1.5, 2.5}, control_s = {2.0, 2.2, 2.6};
  size_t next_video = 0, next_control = 0;
  for (int k = 0; k < kFrames; ++k) {
    const TimePoint t = audio_t0 + std::chrono::duration_cast<SessionClock::duration>(
                                       std::chrono::duration<double>(double(k * kFrame) / kRate));
    while (next_video < video_s.size() && at(origin, video_s[next_video]) < t) {
      w.on_video_frame(test_image(int(next_video), 64, 48), at(origin, video_s[next_video]));
      ++next_video;
    }
    while (next_control < control_s.size() && at(origin, control_s[next_control]) < t) {
      const TimePoint when = at(origin, control_s[next_control]);
      if (next_control == 0) w.on_text("typed words", when);
      else w.on_push_to_talk(next_control == 1, when);
      ++next_control;
    }
    w.on_audio_frame(noise.data() + size_t(k) * kFrame, kFrame, t);
  }
  const TimePoint answer_t = at(origin, 3.1);
  w.on_event({SessionEvent::Kind::AnswerStarted, 1, -1, "", answer_t, 0, {}, {}});
  w.on_event({SessionEvent::Kind::Token, 1, 42, "Hi", answer_t, 0, {}, {}});
  w.on_event({SessionEvent::Kind::Token, 1, 43, "!", answer_t, 0, {}, {}});
  TurnTiming timing;
  timing.trigger = TurnTrigger::PushToTalkRelease;
  timing.n_tokens = 2;
  w.on_event({SessionEvent::Kind::AnswerDone, 1, -1, "Hi!", answer_t, 2, timing, {}});
  w.on_stop();
  const RecordingWriterStats s = w.stats();
  if (s.dropped_total() != 0 || !s.error.empty()) throw std::runtime_error("synthetic recording incomplete: " + s.error);
}

class RecordingFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("conflux_recording_files_" + std::to_string(::getpid()) + "_" +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    write_synthetic(root_ / "good");
  }
  void TearDown() override { fs::remove_all(root_); }
  // A fresh copy of the good recording to damage.
  fs::path copy(const std::string& name) {
    const fs::path to = root_ / name;
    fs::copy(root_ / "good", to, fs::copy_options::recursive);
    return to;
  }
  fs::path root_;
};

TEST_F(RecordingFilesTest, SyntheticRecordingLoadsWhole) {
  const Recording rec = load_recording((root_ / "good").string(), {.decode_frames = true});
  EXPECT_TRUE(rec.tail.clean());
  EXPECT_EQ(rec.audio.size(), 75 * kFrame);
  int video = 0, text = 0, ptt = 0;
  for (const auto& in : rec.inputs) {
    video += in.kind == RecordedInput::Kind::Video;
    text += in.kind == RecordedInput::Kind::Text;
    ptt += in.kind == RecordedInput::Kind::PushToTalk;
  }
  EXPECT_EQ(video, 3);
  EXPECT_EQ(text, 1);
  EXPECT_EQ(ptt, 2);
  ASSERT_EQ(rec.answers.size(), 1u);
  EXPECT_EQ(rec.answers[0].tokens, (std::vector<int32_t>{42, 43}));
  EXPECT_EQ(rec.answers[0].text, "Hi!");
  EXPECT_EQ(rec.answers[0].trigger, "push_to_talk");
  // The audio clock starts 50 ms after the origin.
  EXPECT_EQ(rec.audio_clock_start, std::chrono::milliseconds(50));
  // A second writer refuses to overwrite it.
  EXPECT_THROW(RecordingWriter((root_ / "good").string()), std::runtime_error);
}

TEST_F(RecordingFilesTest, BadJsonInTheMiddleNamesFileAndLine) {
  const fs::path dir = copy("bad-json");
  auto lines = read_lines(dir / "timeline.jsonl");
  const size_t i = find_line(lines, "video", 1);
  lines[i] = "{\"kind\": \"vid";
  write_lines(dir / "timeline.jsonl", lines);
  const std::string error = load_error(dir);
  EXPECT_TRUE(contains(error, "timeline.jsonl:" + std::to_string(i + 1) + ": bad JSON")) << error;
}

TEST_F(RecordingFilesTest, MissingPngInTheMiddleIsNamed) {
  const fs::path dir = copy("missing-png");
  fs::remove(dir / "frames" / "000002.png");
  const std::string error = load_error(dir);
  EXPECT_TRUE(contains(error, "frames/000002.png is missing")) << error;
  EXPECT_TRUE(contains(error, "not a torn tail")) << error;
}

TEST_F(RecordingFilesTest, TruncatedPngInTheMiddleIsNamed) {
  const fs::path dir = copy("truncated-png");
  const fs::path png = dir / "frames" / "000002.png";
  fs::resize_file(png, fs::file_size(png) / 2);
  const std::string error = load_error(dir);
  EXPECT_TRUE(contains(error, "frames/000002.png is truncated")) << error;
}

// Damage inside the compressed data passes the cheap header/trailer check and is caught by decoding.
TEST_F(RecordingFilesTest, CorruptPngDataIsCaughtByDecoding) {
  const fs::path dir = copy("corrupt-png");
  const fs::path png = dir / "frames" / "000002.png";
  std::string bytes;
  {
    std::ifstream in(png, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // Signature (8) + IHDR chunk (25) + IDAT length and type (8): the zlib stream starts at byte 41; the
  // last 12 bytes are IEND. Zeroing everything between breaks the zlib header.
  constexpr size_t kZlibStart = 41, kIendBytes = 12;
  ASSERT_GT(bytes.size(), kZlibStart + kIendBytes);
  std::fill(bytes.begin() + kZlibStart, bytes.end() - kIendBytes, '\0');
  std::ofstream(png, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_EQ(load_error(dir), "");
  const std::string error = load_error(dir, {.decode_frames = true});
  EXPECT_TRUE(contains(error, "frames/000002.png cannot be decoded")) << error;
}

TEST_F(RecordingFilesTest, AudioBeyondTheFileIsAnError) {
  const fs::path dir = copy("short-audio");
  constexpr int64_t kKeptSamples = kRate;  // keep one second of the three
  fs::resize_file(dir / "audio.f32", kKeptSamples * sizeof(float));
  const auto lines = read_lines(dir / "timeline.jsonl");
  size_t expected_line = 0;
  for (size_t i = 0; i < lines.size() && expected_line == 0; ++i) {
    const auto j = nlohmann::json::parse(lines[i]);
    if (j["kind"] == "audio" && j["sample"].get<int64_t>() + j["n"].get<int64_t>() > kKeptSamples) expected_line = i + 1;
  }
  ASSERT_GT(expected_line, 0u);
  const std::string error = load_error(dir);
  EXPECT_TRUE(contains(error, "timeline.jsonl:" + std::to_string(expected_line) + ":")) << error;
  EXPECT_TRUE(contains(error, "beyond the end of") && contains(error, "audio.f32")) << error;
}

TEST_F(RecordingFilesTest, UnknownKindIsAnError) {
  const fs::path dir = copy("unknown-kind");
  auto lines = read_lines(dir / "timeline.jsonl");
  const size_t i = find_line(lines, "text");
  auto j = nlohmann::json::parse(lines[i]);
  j["kind"] = "smell";
  lines[i] = j.dump();
  write_lines(dir / "timeline.jsonl", lines);
  const std::string error = load_error(dir);
  EXPECT_TRUE(contains(error, "timeline.jsonl:" + std::to_string(i + 1) + ": unknown kind \"smell\"")) << error;
}

TEST_F(RecordingFilesTest, MissingFieldIsAnError) {
  const fs::path dir = copy("missing-field");
  auto lines = read_lines(dir / "timeline.jsonl");
  const size_t i = find_line(lines, "ptt");
  auto j = nlohmann::json::parse(lines[i]);
  j.erase("t_ms");
  lines[i] = j.dump();
  write_lines(dir / "timeline.jsonl", lines);
  const std::string error = load_error(dir);
  EXPECT_TRUE(contains(error, "timeline.jsonl:" + std::to_string(i + 1) + ": missing field \"t_ms\"")) << error;
}

TEST_F(RecordingFilesTest, TimesThatGoBackwardsAreAnError) {
  {
    const fs::path dir = copy("video-backwards");
    auto lines = read_lines(dir / "timeline.jsonl");
    const size_t i = find_line(lines, "video", 2);
    auto j = nlohmann::json::parse(lines[i]);
    j["t_ms"] = 100.0;  // before the second frame's 1500 ms
    lines[i] = j.dump();
    write_lines(dir / "timeline.jsonl", lines);
    const std::string error = load_error(dir);
    EXPECT_TRUE(contains(error, "timeline.jsonl:" + std::to_string(i + 1) + ": video time goes backwards")) << error;
  }
  {
    const fs::path dir = copy("audio-off-clock");
    auto lines = read_lines(dir / "timeline.jsonl");
    const size_t i = find_line(lines, "audio", 2);
    auto j = nlohmann::json::parse(lines[i]);
    j["t_ms"] = j["t_ms"].get<double>() - 40.0;  // one frame early
    lines[i] = j.dump();
    write_lines(dir / "timeline.jsonl", lines);
    const std::string error = load_error(dir);
    EXPECT_TRUE(contains(error, "timeline.jsonl:" + std::to_string(i + 1) + ": t_ms")) << error;
    EXPECT_TRUE(contains(error, "leaves the audio clock")) << error;
  }
}

// What a crash leaves at the end (a torn last line, a partial audio frame, whole frames the timeline never
// listed, a video line whose PNG never appeared) loads, and every piece is reported.
TEST_F(RecordingFilesTest, TornTailIsToleratedAndReported) {
  const fs::path dir = copy("torn-tail");
  const Recording before = load_recording(dir.string());
  constexpr int kExtraFrames = 2, kPartialBytes = 100;
  {
    std::ofstream audio(dir / "audio.f32", std::ios::binary | std::ios::app);
    const std::vector<float> extra = noise_bed(kExtraFrames * kFrame, 9);
    audio.write(reinterpret_cast<const char*>(extra.data()), std::streamsize(extra.size() * sizeof(float)));
    audio.write(reinterpret_cast<const char*>(extra.data()), kPartialBytes);
  }
  const std::string torn = "{\"kind\":\"audio\",\"sam";
  {
    std::ofstream timeline(dir / "timeline.jsonl", std::ios::app);
    timeline << R"({"kind":"video","file":"frames/000004.png","width":64,"height":48,"t_ms":3500})" << '\n' << torn;
  }
  Recording rec;
  ASSERT_NO_THROW(rec = load_recording(dir.string()));
  EXPECT_EQ(rec.tail.truncated_line_bytes, int64_t(torn.size()));
  EXPECT_EQ(rec.tail.partial_audio_bytes, kPartialBytes);
  EXPECT_EQ(rec.tail.recovered_audio_frames, kExtraFrames);
  EXPECT_EQ(rec.tail.missing_frame_lines, 1);
  EXPECT_EQ(rec.audio.size(), before.audio.size() + kExtraFrames * kFrame);
  const RecordedInput& last = rec.inputs.back();
  EXPECT_EQ(last.kind, RecordedInput::Kind::Audio);
  EXPECT_EQ(last.first_sample, int64_t(before.audio.size()));
  EXPECT_EQ(last.offset, rec.audio_time(last.first_sample));
  EXPECT_EQ(rec.inputs.size(), before.inputs.size() + 1);

  // The same missing PNG followed by an input is damage, not a tail.
  auto lines = read_lines(dir / "timeline.jsonl");
  lines.pop_back();  // the torn line
  lines.push_back(R"({"kind":"text","text":"later","t_ms":3600})");
  write_lines(dir / "timeline.jsonl", lines);
  const std::string error = load_error(dir);
  EXPECT_TRUE(contains(error, "frames/000004.png is missing")) << error;
}

// A writer whose queue holds one frame's bytes. Each round waits for an empty queue, then hands over a
// 640x480 frame (taken: the queue was empty), five audio frames and a second video frame at once: while
// the first frame is PNG-encoded (milliseconds) the queue is full, so those six are refused. Every refusal
// is counted, written to the timeline, and the lost audio keeps its place on the clock as zeros.
TEST(RecordingWriterTest, FullQueueDropsAreCountedAndRecorded) {
  constexpr int kRounds = 10, kAudioFramesPerRound = 5;
  const fs::path dir = fs::path(::testing::TempDir()) / ("conflux_recording_queue_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const ImageRGB frame = test_image(0, 640, 480);
  RecordingWriterOptions options;
  options.max_queue_bytes = frame.rgb.size();
  RecordingWriterStats stats;
  {
    RecordingWriter w(dir.string(), options);
    const auto wait_for_empty_queue = [&] {
      while (w.stats().queued_bytes > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    };
    const TimePoint origin = SessionClock::now();
    w.on_start("{}", origin);
    const std::vector<float> samples(kFrame, 0.25f);
    int64_t audio_frames = 0;
    const auto push_audio_frames = [&](int n) {
      for (int k = 0; k < n; ++k, ++audio_frames)
        w.on_audio_frame(samples.data(), kFrame, at(origin, 0.04 * double(audio_frames)));
    };
    for (int round = 0; round < kRounds; ++round) {
      wait_for_empty_queue();
      w.on_video_frame(frame, at(origin, 0.2 * round));
      push_audio_frames(kAudioFramesPerRound);
      w.on_video_frame(frame, at(origin, 0.2 * round + 0.1));
    }
    wait_for_empty_queue();
    push_audio_frames(kAudioFramesPerRound);  // taken: they carry the last lost run to the writer
    w.on_stop();
    stats = w.stats();
  }
  std::printf("queue of %zu bytes: wrote %lld video frames and %lld audio frames, dropped %lld and %lld\n",
              options.max_queue_bytes, (long long)stats.video_frames, (long long)stats.audio_frames,
              (long long)stats.dropped_video_frames, (long long)stats.dropped_audio_frames);
  EXPECT_EQ(stats.error, "");
  EXPECT_EQ(stats.video_frames, kRounds);
  EXPECT_EQ(stats.dropped_video_frames, kRounds);
  EXPECT_EQ(stats.dropped_audio_frames, kRounds * kAudioFramesPerRound);
  EXPECT_EQ(stats.audio_frames, kAudioFramesPerRound);

  const Recording rec = load_recording(dir.string());
  EXPECT_EQ(rec.recorder_dropped.video_frames, stats.dropped_video_frames);
  EXPECT_EQ(rec.recorder_dropped.audio_frames, stats.dropped_audio_frames);
  EXPECT_EQ(rec.audio.size(), size_t((kRounds + 1) * kAudioFramesPerRound) * kFrame) << "lost audio keeps its place";
  int64_t lost_samples = 0, video = 0;
  for (const auto& in : rec.inputs) {
    if (in.kind == RecordedInput::Kind::Audio && in.lost) {
      lost_samples += in.n_samples;
      for (int64_t i = 0; i < in.n_samples; ++i) ASSERT_EQ(rec.samples(in)[i], 0.f);
    }
    video += in.kind == RecordedInput::Kind::Video;
  }
  EXPECT_EQ(lost_samples, stats.dropped_audio_frames * int64_t(kFrame));
  EXPECT_EQ(video, stats.video_frames);
  fs::remove_all(dir);
}

// The VAD's noise gate is recorded; recordings from before it existed replay without it (0), as recorded.
TEST_F(RecordingTest, VadNoiseGateIsRecordedAndOldRecordingsReplayWithout) {
  SessionConfig gated = config();
  gated.vad.min_snr_db = 14.0f;
  RuntimeConfig rc = runtime();
  const std::string json = session_settings_json(*model_, rc, gated);
  SessionConfig back;
  session_settings_from_json(json, rc, back);
  EXPECT_EQ(back.vad.min_snr_db, 14.0f);
  nlohmann::json old = nlohmann::json::parse(json);
  old["session"]["vad"].erase("min_snr_db");
  SessionConfig fresh;  // its default is the gate on (10 dB): the absent field must still read as 0
  ASSERT_GT(fresh.vad.min_snr_db, 0.0f);
  session_settings_from_json(old.dump(), rc, fresh);
  EXPECT_EQ(fresh.vad.min_snr_db, 0.0f);
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// The KV cache format is part of the recorded runtime (a bf16 cache changes the answers), and recordings
// from before it existed read back as float32.
TEST_F(RecordingTest, KvCacheFormatIsRecordedAndReadBack) {
  RuntimeConfig rc = runtime();
  rc.kv_dtype = DType::BF16;
  const std::string json = session_settings_json(*model_, rc, config());
  RuntimeConfig back;
  SessionConfig cfg;
  session_settings_from_json(json, back, cfg);
  EXPECT_EQ(back.kv_dtype, DType::BF16);
  nlohmann::json old = nlohmann::json::parse(json);
  old["runtime"].erase("kv_cache");
  RuntimeConfig fresh;  // an absent field keeps the base's value: float32 for a fresh RuntimeConfig
  session_settings_from_json(old.dump(), fresh, cfg);
  EXPECT_EQ(fresh.kv_dtype, DType::F32);
  old["runtime"]["kv_cache"] = "f16";
  try {
    session_settings_from_json(old.dump(), back, cfg);
    ADD_FAILURE() << "an unknown KV cache format was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("runtime.kv_cache"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace conflux
