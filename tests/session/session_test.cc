// The streaming session on the tiny-a reference model with real speech (espeak-ng + WebRTC VAD):
// streaming changes timing, never results; turns close where speech ends; queues stay bounded under
// a slow consumer with exact drop counts; a long accelerated session keeps memory flat and positions
// inside the budget.
#include "engine/session/session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <unistd.h>

#include "engine/sequence.h"
#include <nlohmann/json.hpp>
#include "tests/session/speech_timeline.h"
#include "tests/session/tiny_session_assets.h"

namespace conflux {
namespace {

namespace fs = std::filesystem;
const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
constexpr int kRate = 16000;
constexpr size_t kChunk = 160;  // 10 ms pushes, as a capture callback delivers them

TimePoint at(TimePoint t0, double seconds) {
  return t0 + std::chrono::duration_cast<SessionClock::duration>(std::chrono::duration<double>(seconds));
}

ImageRGB test_image(int shade) {
  ImageRGB img;
  img.width = 480;  // 10 x 7 patches: budget 70 keeps it as is
  img.height = 336;
  img.rgb.resize(size_t(img.width) * img.height * 3);
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = uint8_t((i * 7 + size_t(shade) * 31) % 251);
  return img;
}

class SessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    assets_ = new TinySessionAssets("session");
    model_ = assets_->model.get();
    tok_ = assets_->tokenizer.get();
    a_ = &assets_->a;
    b_ = &assets_->b;
    setup_error_ = assets_->error;
  }
  static void TearDownTestSuite() { delete assets_; }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static SessionConfig config() {
    SessionConfig c;
    c.image_budget = 70;
    c.video_fps = 1.0;
    c.max_answer_tokens = 6;
    c.sampling.stop_tokens = {tok_->eos_id(), tok_->token_id("<turn|>")};
    // tiny-a's random weights make <unk> the greedy pick after any input; without it the answers vary
    // from turn to turn, so comparing streamed and offline tokens tests something.
    c.sampling.suppress_tokens = {tok_->token_id("<unk>")};
    return c;
  }
  static RuntimeConfig runtime() {
    RuntimeConfig rc;
    rc.n_threads = 1;
    rc.max_context = 2048;
    rc.max_chunk = 128;
    return rc;
  }

  // Pushes a timeline's audio in 10 ms pieces and one video frame every `video_period_s`, interleaved
  // in timestamp order, as capture threads would. Returns the number of video frames pushed.
  static int play(Session& s, const std::vector<float>& audio, TimePoint t0, double video_period_s) {
    double next_video = 0;
    int shade = 0;
    for (size_t off = 0; off < audio.size(); off += kChunk) {
      const double t = double(off) / kRate;
      while (video_period_s > 0 && next_video <= t) {
        s.push_video(test_image(shade++), at(t0, next_video));
        next_video += video_period_s;
      }
      s.push_audio(audio.data() + off, std::min(kChunk, audio.size() - off), at(t0, t));
    }
    return shade;
  }

  static TinySessionAssets* assets_;
  static const Model* model_;
  static const Tokenizer* tok_;
  static const Clip *a_, *b_;
  static std::string setup_error_;
};
TinySessionAssets* SessionTest::assets_ = nullptr;
const Model* SessionTest::model_ = nullptr;
const Tokenizer* SessionTest::tok_ = nullptr;
const Clip* SessionTest::a_ = nullptr;
const Clip* SessionTest::b_ = nullptr;
std::string SessionTest::setup_error_;

// Streaming changes timing, never results: the rows the session appended, fed offline through the
// engine in other chunkings, give exactly the answers it streamed (greedy).
TEST_F(SessionTest, StreamingGivesTheSameTokensAsOfflineEngine) {
  const Timeline tl = build_timeline({a_, b_}, {1.0, 1.5, 1.5});
  SessionConfig cfg = config();
  cfg.record_rows = true;
  cfg.system_prompt = "Answer briefly.";
  cfg.video_queue_waits = true;  // no frame dropped by the fast feed: the same rows every run
  Session s(*model_, *tok_, runtime(), cfg);
  std::vector<std::string> answers_text;
  s.subscribe([&](const SessionEvent& e) {
    if (e.kind == SessionEvent::Kind::AnswerDone) answers_text.push_back(e.text);
  });
  s.start();
  const TimePoint t0 = SessionClock::now();
  play(s, tl.samples, t0, 0.5);
  s.push_text("and what colour is it?", at(t0, double(tl.samples.size()) / kRate + 0.1));
  s.wait_idle();
  s.stop();

  // Two spoken turns and one typed turn, each answered.
  ASSERT_EQ(s.answers().size(), 3u);
  ASSERT_EQ(answers_text.size(), 3u);
  const auto& rows = s.rows();
  const int D = model_->config().text.hidden_size;
  InputSequence seq(D);
  std::vector<uint8_t> want;
  std::vector<int32_t> expected;  // the answer token that follows each row that wants logits
  std::vector<bool> is_answer(rows.size(), false);
  for (size_t i = 0; i < s.answers().size(); ++i)
    for (size_t k = 0; k < s.answers()[i].size(); ++k) is_answer[size_t(s.answer_starts()[i]) + k] = true;
  int images = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    seq.tokens.push_back(rows[r].token);
    seq.is_embedding.push_back(rows[r].is_embedding);
    seq.image_block.push_back(rows[r].image_block);
    if (rows[r].is_embedding) seq.embeddings.insert(seq.embeddings.end(), rows[r].embedding.begin(), rows[r].embedding.end());
    else seq.embeddings.resize(seq.embeddings.size() + size_t(D), 0.f);
    const bool next_is_answer = r + 1 < rows.size() && is_answer[r + 1];
    want.push_back(next_is_answer);
    if (next_is_answer) expected.push_back(rows[r + 1].token);
    if (rows[r].image_block >= 0 && (r == 0 || rows[r - 1].image_block != rows[r].image_block)) ++images;
  }
  EXPECT_GE(images, 2) << "frames sampled at 1 fps during speech should reach the model";
  RuntimeConfig rc = runtime();
  Context ctx(*model_, rc);
  std::vector<float> logits;
  feed_sequence(ctx, seq, {29, true, 77}, want, logits);
  const int V = model_->config().text.vocab_size;
  ASSERT_EQ(logits.size(), expected.size() * size_t(V));
  // The same greedy choice the session made (suppressed tokens excluded), from the offline logits.
  Sampler greedy(cfg.sampling, V);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(greedy.sample(logits.data() + i * V), expected[i]) << "answer token " << i;
  // The answers are not all the same token (the comparison would then prove little).
  EXPECT_GT(std::set<int32_t>(expected.begin(), expected.end()).size(), 1u);
}

// Turns close where the speech ends: end of speech is reported within the VAD's stated tolerance of the
// true end plus the hangover (WebRTC's own ~100 ms decision lag and 40 ms frames: +-200 ms), and each
// answer starts right after.
TEST_F(SessionTest, TurnsCloseWhereSpeechEnds) {
  const Timeline tl = build_timeline({a_, b_}, {1.0, 1.5, 1.5});
  SessionConfig cfg = config();
  Session s(*model_, *tok_, runtime(), cfg);
  const TimePoint t0 = SessionClock::now();
  std::vector<double> ends, starts;
  int answers = 0, frame_events = 0, misordered_stages = 0;
  std::vector<std::string> lines;
  s.subscribe([&](const SessionEvent& e) {
    lines.push_back(event_to_json(e, t0));
    if (e.kind == SessionEvent::Kind::AudioFrameInKv) {
      ++frame_events;
      const FrameTiming& f = e.frame;
      // Capture times are input timestamps, ahead of the wall clock in this accelerated feed; the
      // session's own stages must be in order.
      if (!(f.dequeued <= f.preprocessed && f.preprocessed <= f.embedded && f.embedded <= f.in_kv))
        ++misordered_stages;
    }
    if (e.kind == SessionEvent::Kind::SpeechEnded) ends.push_back(std::chrono::duration<double>(e.time - t0).count());
    if (e.kind == SessionEvent::Kind::SpeechStarted) starts.push_back(std::chrono::duration<double>(e.time - t0).count());
    if (e.kind == SessionEvent::Kind::AnswerStarted) ++answers;
  });
  s.start();
  play(s, tl.samples, t0, 0);
  s.wait_idle();
  s.stop();
  ASSERT_EQ(ends.size(), 2u);
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(answers, 2);
  // The metrics stream: one event per audio frame in the cache, stages in order, valid JSON lines.
  EXPECT_EQ(frame_events, s.snapshot().audio_frames);
  EXPECT_EQ(misordered_stages, 0);
  int answer_lines = 0;
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_TRUE(j.contains("event")) << line;
    if (j["event"] == "answer_done") {
      ++answer_lines;
      EXPECT_EQ(j["trigger"], "end_of_speech");
      EXPECT_LE(j["turn_closed_ms"].get<double>(), j["first_token_ms"].get<double>());
    }
  }
  EXPECT_EQ(answer_lines, 2);
  const double hangover_s = cfg.vad.hangover_ms / 1000.0;
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(ends[i], tl.true_end_s[i] + hangover_s, 0.2) << "utterance " << i;
    EXPECT_NEAR(starts[i], tl.true_start_s[i], 0.25) << "utterance " << i;
  }
}

// A consumer made slow on purpose (each image takes 40 ms more in a subscriber) while 30 fps video is
// pushed as fast as possible: the video queue never exceeds its capacity, every pushed frame is either
// taken or counted as dropped, and every audio sample still reaches the session.
TEST_F(SessionTest, SlowConsumerKeepsQueuesBoundedAndCountsDrops) {
  const Timeline tl = build_timeline({a_}, {0.5, 1.0});
  SessionConfig cfg = config();
  cfg.video_fps = 30;
  cfg.video_queue_frames = 3;
  cfg.audio_queue_seconds = 0.5;
  Session s(*model_, *tok_, runtime(), cfg);
  s.subscribe([&](const SessionEvent& e) {
    if (e.kind == SessionEvent::Kind::ImageAdded) std::this_thread::sleep_for(std::chrono::milliseconds(40));
  });
  s.start();
  const TimePoint t0 = SessionClock::now();
  const int frames = play(s, tl.samples, t0, 1.0 / 30);
  s.wait_idle();
  s.stop();
  const SessionSnapshot snap = s.snapshot();
  EXPECT_EQ(snap.video_frames_in + int64_t(snap.video_frames_dropped), frames);
  EXPECT_GT(snap.video_frames_dropped, 0u) << "the slow consumer should have forced drops";
  EXPECT_LE(snap.video_queue_high_water, size_t(cfg.video_queue_frames));
  EXPECT_LE(snap.audio_queue_high_water, size_t(cfg.audio_queue_seconds * 25));  // 25 frames per second
  EXPECT_EQ(snap.audio_frames_in, int64_t(tl.samples.size() / 640));
}

// Process memory in kB (resident set), from /proc.
long rss_kb() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// Two hours of input (speech every 6 s, 1 fps video) fed as fast as possible: eviction keeps the
// positions inside the budget, and memory stays flat after warm-up.
TEST_F(SessionTest, LongAcceleratedSessionHasFlatMemoryAndBoundedPositions) {
  SessionConfig cfg = config();
  cfg.context_budget = 600;
  cfg.max_answer_tokens = 3;
  RuntimeConfig rc = runtime();
  rc.max_context = 1024;
  Session s(*model_, *tok_, rc, cfg);
  s.start();
  const TimePoint t0 = SessionClock::now();
  const Timeline cycle = build_timeline({a_}, {1.0, 6.0 - 1.0 - double(a_->samples.size()) / kRate});
  const double cycle_s = double(cycle.samples.size()) / kRate;
  const int cycles = int(2 * 3600 / cycle_s);
  long rss_warm = 0;
  for (int c = 0; c < cycles; ++c) {
    const double base = c * cycle_s;
    for (size_t off = 0; off < cycle.samples.size(); off += kRate) {  // one second at a time
      const double t = base + double(off) / kRate;
      s.push_video(test_image(c), at(t0, t));
      s.push_audio(cycle.samples.data() + off, std::min(size_t(kRate), cycle.samples.size() - off), at(t0, t));
    }
    if (c == cycles / 10) {
      s.wait_idle();
      rss_warm = rss_kb();
    }
  }
  s.wait_idle();
  const long rss_end = rss_kb();
  const SessionSnapshot snap = s.snapshot();
  s.stop();
  std::printf("long session: %d cycles, %lld audio frames, %lld evicted positions, max positions %lld, RSS %ld -> %ld kB\n",
              cycles, (long long)snap.audio_frames_in, (long long)snap.evicted_positions, (long long)snap.max_positions,
              rss_warm, rss_end);
  EXPECT_EQ(snap.audio_frames_in, int64_t(cycles) * int64_t(cycle.samples.size() / 640));
  EXPECT_GT(snap.evicted_positions, 0);
  EXPECT_LE(snap.max_positions, cfg.context_budget);
  EXPECT_LE(snap.max_positions, model_->config().text.max_position_embeddings);
  // Growth after warm-up: only the per-answer token lists (3 ids each) may grow; 8 MB bounds it with
  // room for allocator noise, while a leak of one frame or image per cycle would be ~20x that.
  EXPECT_LE(rss_end - rss_warm, 8 * 1024);
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// Barge-in: speech during an answer stops it (when enabled), and that speech opens the next turn;
// with barge-in off the answer runs to its end and the speech still becomes the next turn.
TEST_F(SessionTest, BargeInStopsTheAnswerAndOpensTheNextTurn) {
  for (bool barge_in : {true, false}) {
    SessionConfig cfg = config();
    cfg.barge_in = barge_in;
    cfg.max_answer_tokens = 1500;   // long enough (~1 s on tiny-a) for speech to arrive during it
    cfg.sampling.stop_tokens.clear();
    RuntimeConfig rc = runtime();
    rc.max_context = 4096;
    Session s(*model_, *tok_, rc, cfg);
    std::atomic<int> answers_started{0};
    std::vector<bool> interrupted;
    std::mutex mu;
    s.subscribe([&](const SessionEvent& e) {
      if (e.kind == SessionEvent::Kind::AnswerStarted) ++answers_started;
      if (e.kind == SessionEvent::Kind::AnswerDone) {
        std::lock_guard<std::mutex> lock(mu);
        interrupted.push_back(e.timing.interrupted);
      }
    });
    s.start();
    const TimePoint t0 = SessionClock::now();
    const Timeline first = build_timeline({a_}, {0.5, 1.0});
    play(s, first.samples, t0, 0);
    while (answers_started.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // The second utterance arrives while the first answer is being generated.
    const Timeline second = build_timeline({b_}, {0.3, 1.0});
    const double offset = double(first.samples.size()) / kRate;
    for (size_t off = 0; off < second.samples.size(); off += kChunk)
      s.push_audio(second.samples.data() + off, std::min(kChunk, second.samples.size() - off), at(t0, offset + double(off) / kRate));
    s.wait_idle();
    s.stop();
    ASSERT_EQ(s.answers().size(), 2u) << "barge_in " << barge_in;
    ASSERT_EQ(interrupted.size(), 2u);
    EXPECT_EQ(interrupted[0], barge_in);
    if (barge_in) EXPECT_LT(s.answers()[0].size(), size_t(cfg.max_answer_tokens));
    else EXPECT_EQ(s.answers()[0].size(), size_t(cfg.max_answer_tokens));
  }
}

// Push-to-talk: audio between press and release is the turn (whatever the VAD says), and the release
// ends it; typed text ends a turn too.
TEST_F(SessionTest, PushToTalkAndTypedTextEndTurns) {
  SessionConfig cfg = config();
  Session s(*model_, *tok_, runtime(), cfg);
  std::vector<std::string> triggers;
  const TimePoint t0 = SessionClock::now();
  s.subscribe([&](const SessionEvent& e) {
    if (e.kind == SessionEvent::Kind::AnswerDone) triggers.push_back(nlohmann::json::parse(event_to_json(e, t0))["trigger"]);
  });
  s.start();
  const std::vector<float> quiet = noise_bed(size_t(kRate), 3);  // 1 s of room noise: the VAD hears nothing
  s.push_to_talk(true, at(t0, 0.1));
  s.push_audio(quiet.data(), quiet.size(), at(t0, 0.0));
  s.push_to_talk(false, at(t0, 0.9));
  s.push_audio(quiet.data(), quiet.size(), at(t0, 1.0));
  s.push_text("hello", at(t0, 1.5));
  s.push_audio(quiet.data(), quiet.size(), at(t0, 2.0));
  s.wait_idle();
  s.stop();
  EXPECT_EQ(triggers, (std::vector<std::string>{"push_to_talk", "typed_text"}));
  // Only the push-to-talk window's frames went in (0.1 s .. 0.9 s: 20 frames of 40 ms, give or take the
  // frames straddling the press and release).
  EXPECT_NEAR(double(s.snapshot().audio_frames), 20.0, 2.0);
}

// The hooks the network server uses: text added to the open turn does not answer, request_answer does
// (trigger "request"); abandon() ends a running answer at its next token and stops the session.
TEST_F(SessionTest, UserTextWaitsForARequestAndAbandonCutsTheAnswer) {
  SessionConfig cfg = config();
  cfg.record_rows = true;
  cfg.inputs_in_order = true;
  std::vector<std::string> triggers;
  const TimePoint t0 = SessionClock::now();
  {
    Session s(*model_, *tok_, runtime(), cfg);
    s.subscribe([&](const SessionEvent& e) {
      if (e.kind == SessionEvent::Kind::AnswerDone) triggers.push_back(nlohmann::json::parse(event_to_json(e, t0))["trigger"]);
    });
    s.start();
    s.push_user_text("hello", at(t0, 0.1));
    s.push_user_text("world", at(t0, 0.2));
    s.wait_idle();
    EXPECT_TRUE(triggers.empty()) << "text alone must not answer";
    s.request_answer(at(t0, 0.3));
    s.wait_idle();
    s.stop();
    EXPECT_EQ(triggers, (std::vector<std::string>{"request"}));
    // Both texts are in the one user turn, in order, before the answer.
    std::vector<int32_t> ids;
    for (const SessionRow& r : s.rows()) ids.push_back(r.token);
    std::vector<int32_t> both = tok_->encode("hello", false);
    const std::vector<int32_t> world = tok_->encode("world", false);
    both.insert(both.end(), world.begin(), world.end());
    const auto at_text = std::search(ids.begin(), ids.end(), both.begin(), both.end());
    ASSERT_NE(at_text, ids.end());
    EXPECT_LT(at_text - ids.begin(), s.answer_starts()[0]);
  }
  cfg.max_answer_tokens = 500;
  Session s(*model_, *tok_, runtime(), cfg);
  s.subscribe([&](const SessionEvent& e) {
    if (e.kind == SessionEvent::Kind::Token) s.abandon();  // on the session thread, right after the first token
  });
  s.start();
  s.push_user_text("talk", at(t0, 0.1));
  s.request_answer(at(t0, 0.2));
  s.push_text("never processed", at(t0, 5.0));
  s.stop();  // returns once the session has noticed
  ASSERT_EQ(s.answers().size(), 1u);
  EXPECT_EQ(s.answers()[0].size(), 1u);
}

// Thinking (Gemma 4's enable_thinking) with the image at turn end: the conversation opens with the system
// turn <|think|>; a turn that showed the camera gets its newest sampled frame once more right before it
// closes; the generation prompt leaves the thought channel to the model; a turn without a frame gets none.
// On the bundled model, whose tokenizer has the thought channel; tiny-a's has none, and is refused.
TEST_F(SessionTest, ThinkingLayoutShowsTheNewestFrameAgainAtTurnEnd) {
  SessionConfig cfg = config();
  cfg.thinking = true;
  try {
    Session refused(*model_, *tok_, runtime(), cfg);
    ADD_FAILURE() << "thinking accepted without <|channel> and <channel|> tokens";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("<|channel>"), std::string::npos) << e.what();
  }
  const std::string bundled = std::string(CONFLUX_SOURCE_DIR) + "/assets/model";
  const auto model = Model::load(bundled);
  const Tokenizer tok = Tokenizer::load(bundled + "/tokenizer.json");
  cfg.sampling.stop_tokens = {tok.eos_id(), tok.token_id("<turn|>")};
  cfg.sampling.suppress_tokens = {};
  cfg.record_rows = true;
  cfg.inputs_in_order = true;
  cfg.image_at_turn_end = true;
  Session s(*model, tok, runtime(), cfg);
  s.start();
  const TimePoint t0 = SessionClock::now();
  s.push_video(test_image(1), at(t0, 0.0));
  s.push_video(test_image(2), at(t0, 1.5));  // also sampled (1 fps): the newest, held for the next turn
  s.push_user_text("what is this", at(t0, 2.0));
  s.request_answer(at(t0, 2.1));
  s.wait_idle();
  s.push_user_text("and now", at(t0, 3.0));  // no frame since the last turn
  s.request_answer(at(t0, 3.1));
  s.wait_idle();
  s.stop();
  ASSERT_EQ(s.answers().size(), 2u);

  // The rows as text: answers elided, each image block as [image N].
  const auto& rows = s.rows();
  std::string layout;
  size_t answer = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (answer < s.answers().size() && int64_t(r) == s.answer_starts()[answer]) {
      layout += "[answer]";
      r += s.answers()[answer++].size() - 1;
      continue;
    }
    if (rows[r].image_block >= 0) {
      if (r == 0 || rows[r - 1].image_block != rows[r].image_block) layout += "[image " + std::to_string(rows[r].image_block) + "]";
      continue;
    }
    layout += tok.decode({rows[r].token});
  }
  EXPECT_EQ(layout,
            "<bos><|turn>system\n<|think|>\n<turn|>\n"
            "<|turn>user\n<|image>[image 0]<image|>what is this<|image>[image 1]<image|><turn|>\n<|turn>model\n[answer]<turn|>\n"
            "<|turn>user\nand now<turn|>\n<|turn>model\n[answer]<turn|>\n");
  // Block 1 is block 0's frame shown again (the newest sampled, the second pushed): the same embeddings.
  std::vector<const SessionRow*> block[2];
  for (const SessionRow& r : rows)
    if (r.image_block == 0 || r.image_block == 1) block[r.image_block].push_back(&r);
  ASSERT_EQ(block[0].size(), block[1].size());
  for (size_t i = 0; i < block[0].size(); ++i) ASSERT_EQ(block[0][i]->embedding, block[1][i]->embedding) << "patch " << i;
  // Neither the held frame nor the one shown again measures the pipeline: no frame-to-KV sample.
  EXPECT_EQ(s.snapshot().video_frame_to_kv_ms.count, 0);
}

// What a terminal prints for a thinking answer: the thought in parentheses without its channel name.
TEST(AnswerStreamText, ShowsTheThoughtInParenthesesWithoutItsChannelName) {
  auto token = [](const char* text, bool in_thought) {
    SessionEvent e{SessionEvent::Kind::Token, 0, -1, text};
    e.in_thought = in_thought;
    return e;
  };
  AnswerStreamText printer;
  std::string out;
  for (const SessionEvent& e : {token("", true), token("thought", true), token("\n", true), token("a red", true),
                                token(" circle", true), token("", true), token("red", false)})
    out += printer.push(e);
  EXPECT_EQ(out, "(thinking: a red circle) red");
  printer.push(token("", true));  // a thought cut off: the next answer starts afresh
  EXPECT_EQ(printer.on_event(SessionEvent{SessionEvent::Kind::AnswerStarted, 0, -1, ""}), "[conflux] ");
  EXPECT_EQ(printer.on_event(token("hello", false)), "hello");  // no thought: the answer as it comes
  EXPECT_EQ(thought_without_channel_name("thought\na red circle"), "a red circle");
  EXPECT_EQ(thought_without_channel_name("thou"), "");  // the channel name still incomplete
}

// The commentary timer closes a turn every N seconds of input time, even in silence.
TEST_F(SessionTest, CommentaryTimerAnswersPeriodically) {
  SessionConfig cfg = config();
  cfg.commentary_interval_s = 2.0;
  Session s(*model_, *tok_, runtime(), cfg);
  s.start();
  const TimePoint t0 = SessionClock::now();
  const std::vector<float> quiet = noise_bed(size_t(kRate) * 7, 4);  // 7 s
  play(s, quiet, t0, 1.0);
  s.wait_idle();
  s.stop();
  // Input time 2, 4 and 6 s: three answers.
  EXPECT_EQ(s.answers().size(), 3u);
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// Live settings change at their input time: images after the update use the new budget; an invalid
// update is refused with an error and changes nothing.
TEST_F(SessionTest, LiveSettingsApplyFromTheirInputTime) {
  SessionConfig cfg = config();
  cfg.video_queue_waits = true;  // every pushed frame is taken: the image counts below are exact
  RuntimeConfig rc = runtime();
  rc.max_chunk = 256;  // room for a 140-token image
  Session s(*model_, *tok_, rc, cfg);
  std::vector<int64_t> image_tokens;
  std::vector<std::string> errors;
  s.subscribe([&](const SessionEvent& e) {
    if (e.kind == SessionEvent::Kind::ImageAdded) image_tokens.push_back(e.count);
    if (e.kind == SessionEvent::Kind::Error) errors.push_back(e.text);
  });
  s.start();
  const TimePoint t0 = SessionClock::now();
  // Two turns of speech with 1 fps video; the budget goes from 70 to 140 between them.
  const Timeline first = build_timeline({a_}, {0.5, 1.5});
  play(s, first.samples, t0, 1.0);
  s.wait_idle();
  const double second_start = double(first.samples.size()) / kRate;
  LiveSettings bad = s.snapshot().settings;
  bad.image_budget = 2000;
  s.update_settings(bad, at(t0, second_start));
  LiveSettings good = s.snapshot().settings;
  good.image_budget = 140;
  s.update_settings(good, at(t0, second_start));
  const Timeline second = build_timeline({b_}, {0.5, 1.5});
  double next_video = second_start;
  for (size_t off = 0; off < second.samples.size(); off += kChunk) {
    const double t = second_start + double(off) / kRate;
    while (next_video <= t) {
      s.push_video(test_image(7), at(t0, next_video));
      next_video += 1.0;
    }
    s.push_audio(second.samples.data() + off, std::min(kChunk, second.samples.size() - off), at(t0, t));
  }
  s.wait_idle();
  s.stop();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("image budget 2000"), std::string::npos) << errors[0];
  EXPECT_EQ(s.snapshot().settings.image_budget, 140);
  // 480x336 at 70 tokens stays 10 x 7; at 140 it becomes 14 x 9 = 126 (plan_resize).
  ASSERT_GE(image_tokens.size(), 2u);
  EXPECT_EQ(image_tokens.front(), 70);
  EXPECT_EQ(image_tokens.back(), plan_resize(480, 336, 140).n_tokens());
  EXPECT_EQ(s.answers().size(), 2u);
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// The encoder baseline runs its E4B-sized stand-in on every frame the model takes: each frame's own
// encoder time is measured and reported beside the frame-to-KV latency it is part of, while the
// rows that reach the model (the encoder-free embeddings) are the same as without it.
TEST_F(SessionTest, EncoderBaselineTimesEachFrameAndLeavesTheRowsAlone) {
  const std::vector<float> quiet = noise_bed(size_t(kRate) / 2, 5);  // 0.5 s: 12 frames
  std::vector<std::vector<SessionRow>> rows;
  std::vector<Percentiles> encoder;
  for (bool baseline : {false, true}) {
    SessionConfig cfg = config();
    cfg.vad.enabled = false;  // every frame goes in
    cfg.record_rows = true;
    cfg.encoder_baseline = baseline;
    Session s(*model_, *tok_, runtime(), cfg);
    int frames_with_encoder_time = 0;
    s.subscribe([&](const SessionEvent& e) {
      if (e.kind == SessionEvent::Kind::AudioFrameInKv && e.frame.encoder_ms > 0) ++frames_with_encoder_time;
    });
    s.start();
    s.push_audio(quiet.data(), quiet.size(), SessionClock::now());
    s.wait_idle();
    s.stop();
    rows.push_back(s.rows());
    encoder.push_back(s.snapshot().audio_encoder_ms);
    EXPECT_EQ(frames_with_encoder_time, baseline ? 12 : 0);
  }
  EXPECT_EQ(encoder[0].count, 0u);
  EXPECT_EQ(encoder[1].count, 12u);
  EXPECT_GT(encoder[1].p50, 0.0);
  ASSERT_EQ(rows[0].size(), rows[1].size());
  for (size_t i = 0; i < rows[0].size(); ++i) EXPECT_EQ(rows[0][i].embedding, rows[1][i].embedding) << "row " << i;
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// The encoder baseline switched on while running (a live setting): frames before the switch carry no
// encoder time, frames after it do.
TEST_F(SessionTest, EncoderBaselineCanBeSwitchedOnWhileRunning) {
  SessionConfig cfg = config();
  cfg.vad.enabled = false;
  Session s(*model_, *tok_, runtime(), cfg);
  std::vector<double> encoder_ms;
  s.subscribe([&](const SessionEvent& e) {
    if (e.kind == SessionEvent::Kind::AudioFrameInKv) encoder_ms.push_back(e.frame.encoder_ms);
  });
  s.start();
  const std::vector<float> quiet = noise_bed(size_t(kRate) / 5, 6);  // 0.2 s: 5 frames
  const TimePoint t0 = SessionClock::now();
  s.push_audio(quiet.data(), quiet.size(), t0);
  s.wait_idle();
  LiveSettings on = s.snapshot().settings;
  on.encoder_baseline = true;
  s.update_settings(on, at(t0, 0.2));
  s.push_audio(quiet.data(), quiet.size(), at(t0, 0.2));
  s.wait_idle();
  s.stop();
  ASSERT_EQ(encoder_ms.size(), 10u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(encoder_ms[size_t(i)], 0.0) << "frame " << i;
  for (int i = 5; i < 10; ++i) EXPECT_GT(encoder_ms[size_t(i)], 0.0) << "frame " << i;
  EXPECT_TRUE(s.snapshot().settings.encoder_baseline);
}

}  // namespace
}  // namespace conflux
