// `conflux serve`'s server on real loopback sockets with the tiny-a checkpoint: streamed audio + image +
// text give exactly what `conflux generate` gives offline; 8 concurrent clients each get their own answer
// and a 9th is refused; malformed and oversized messages get error events on a connection that stays
// usable; a client that never reads is cut off without stalling another; a client vanishing mid-answer
// frees its session; a non-loopback bind demands its token on the upgrade.
//
// The model: tiny-a's random weights make every answer one token repeated, and greedy decoding picks the
// same token whatever the input. So the tests use a copy of tiny-a (symlinked weights) whose
// generation_config.json suppresses <pad>/<unk>/<mask> and stops at <eos>/<turn|> (read by both the server
// and `conflux generate`), and sample with temperature 1 and a per-client seed: then answers differ from
// client to client, and a mix-up between sessions would show.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server/client.h"
#include "server/codec.h"
#include "server/server.h"
#include "tests/session/speech_timeline.h"

namespace conflux::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
const std::string kImagePng = kTinyA + "/cases/image.png";  // 480 x 336

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// `conflux ARGS`: stdout only (stderr carries the timing line), or both with `with_stderr`.
std::string run_conflux(const std::string& args, int* exit_code, bool with_stderr = false) {
  std::string out;
  FILE* p = popen((std::string(CONFLUX_BINARY) + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (!p) return out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// A 16 kHz mono PCM16 test signal: a tone with a slow vibrato and a little seeded noise, `seconds` long
// plus `extra` samples (so that it does not end on a 40 ms frame boundary).
std::vector<uint8_t> test_pcm(double freq, double seconds, int extra, uint32_t seed) {
  const size_t n = size_t(seconds * 16000) + size_t(extra);
  std::vector<float> x(n);
  uint32_t s = seed;
  for (size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    const double t = double(i) / 16000;
    x[i] = float(0.3 * std::sin(2 * M_PI * freq * t + 3 * std::sin(2 * M_PI * 3 * t)) + 0.01 * (double(s >> 8) / double(1 << 24) - 0.5));
  }
  return float_to_pcm16(x.data(), n);
}

void write_wav(const fs::path& path, const std::vector<uint8_t>& pcm) {
  std::ofstream f(path, std::ios::binary);
  auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
  f.write("RIFF", 4);
  u32(uint32_t(36 + pcm.size()));
  f.write("WAVEfmt ", 8);
  u32(16);
  u16(1);          // PCM
  u16(1);          // mono
  u32(16000);      // rate
  u32(16000 * 2);  // bytes per second
  u16(2);          // block align
  u16(16);         // bits
  f.write("data", 4);
  u32(uint32_t(pcm.size()));
  f.write(reinterpret_cast<const char*>(pcm.data()), std::streamsize(pcm.size()));
}

json text_item(const std::string& text) {
  return {{"type", "conversation.item.create"},
          {"item", {{"type", "message"}, {"role", "user"}, {"content", json::array({{{"type", "input_text"}, {"text", text}}})}}}};
}

struct Answer {
  std::string deltas;     // the response.text.delta events, concatenated
  json done;              // response.done
  json metrics;           // conflux.metrics
  std::vector<std::string> order;  // event types in arrival order
};

Answer read_answer(RealtimeClient& c, std::chrono::milliseconds timeout = 60s) {
  Answer a;
  c.read_until("conflux.metrics", timeout, [&](const json& ev) {
    const std::string type = ev["type"];
    a.order.push_back(type);
    if (type == "response.text.delta") a.deltas += ev["delta"].get<std::string>();
    if (type == "response.done") a.done = ev;
    if (type == "conflux.metrics") a.metrics = ev;
    if (type == "error") ADD_FAILURE() << "unexpected error event: " << ev.dump();
  });
  return a;
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("conflux_server_test_" + std::to_string(::getpid())));
    fs::create_directories(*dir_ / "tiny");
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"})
      fs::create_symlink(kTinyA + "/" + f, *dir_ / "tiny" / f);
    std::ofstream(*dir_ / "tiny" / "generation_config.json") << R"({"eos_token_id": [1, 106], "suppress_tokens": [0, 3, 4]})";
    model_ = Model::load((*dir_ / "tiny").string()).release();
    tok_ = new Tokenizer(Tokenizer::load(kTinyA + "/tokenizer.json"));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tok_;
    std::error_code ignored;
    fs::remove_all(*dir_, ignored);
    delete dir_;
  }

  static ServerConfig base_config() {
    ServerConfig c;
    c.port = 0;
    c.runtime.n_threads = 1;  // 8 sessions on a 2-core machine
    c.runtime.max_context = 2048;
    c.session.sampling.temperature = 0;
    c.session.image_budget = default_image_budget((*dir_ / "tiny").string());  // as `conflux serve` and `generate` do
    apply_model_stop_tokens((*dir_ / "tiny").string(), *tok_, c.session.sampling);
    return c;
  }
  ClientOptions client_options(const Server& s) {
    ClientOptions o;
    o.port = s.port();
    return o;
  }
  // Polls the server's counters until `pred` holds (freeing a session happens on the reaper thread).
  static bool wait_for(const Server& s, const std::function<bool(const ServerStats&)>& pred, std::chrono::seconds limit = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred(s.stats())) return true;
      std::this_thread::sleep_for(20ms);
    }
    return pred(s.stats());
  }

  // One client turn as the example client sends it: seed and answer length, then the image, the audio in
  // uneven chunks (base64 appends and binary frames alternating), commit, typed text, response.create.
  static void send_turn(RealtimeClient& c, int seed, int max_tokens, const std::vector<uint8_t>& pcm, const std::string& prompt) {
    c.send({{"type", "session.update"},
            {"session", {{"turn_detection", nullptr}, {"temperature", 1.0}, {"max_response_output_tokens", max_tokens},
                         {"conflux", {{"seed", seed}}}}}});
    const std::string png = read_file(kImagePng);
    c.send({{"type", "input_image_buffer.append"}, {"format", "png"}, {"image", base64_encode(png.data(), png.size())}});
    const size_t chunk = 1000;  // 500 samples: not a whole 640-sample frame
    for (size_t off = 0, k = 0; off < pcm.size(); off += chunk, ++k) {
      const size_t n = std::min(chunk, pcm.size() - off);
      if (k % 2) c.send_binary(pcm.data() + off, n);
      else c.send({{"type", "input_audio_buffer.append"}, {"audio", base64_encode(pcm.data() + off, n)}});
    }
    c.send({{"type", "input_audio_buffer.commit"}});
    c.send(text_item(prompt));
    c.send({{"type", "response.create"}});
  }

  // What `conflux generate` answers offline for the same image, audio, prompt and sampling.
  static std::string generate_offline(const fs::path& wav, const std::string& prompt, int seed, int max_tokens) {
    int code = -1;
    std::string out = run_conflux("generate --model " + (*dir_ / "tiny").string() + " --image " + kImagePng + " --audio " +
                                      wav.string() + " --prompt '" + prompt + "' --temperature 1 --seed " + std::to_string(seed) +
                                      " --max-tokens " + std::to_string(max_tokens) + " --threads 1",
                                  &code);
    EXPECT_EQ(code, 0) << out;
    if (!out.empty() && out.back() == '\n') out.pop_back();  // generate ends the answer with a newline
    return out;
  }

  static inline fs::path* dir_ = nullptr;
  static inline Model* model_ = nullptr;
  static inline Tokenizer* tok_ = nullptr;
};

TEST_F(ServerTest, StreamedAudioImageAndTextAnswerLikeConfluxGenerate) {
  const std::vector<uint8_t> pcm = test_pcm(220, 1.2, 300, 1);
  write_wav(*dir_ / "one.wav", pcm);
  const std::string expected = generate_offline(*dir_ / "one.wav", "what is this", 5, 24);
  ASSERT_FALSE(expected.empty());

  Server server(*model_, *tok_, base_config());
  server.start();
  RealtimeClient c(client_options(server));
  const json created = c.read_until("session.created", 10s);
  EXPECT_EQ(created["session"]["input_audio_format"], "pcm16");
  send_turn(c, 5, 24, pcm, "what is this");
  const Answer a = read_answer(c);
  EXPECT_EQ(a.deltas, expected);
  EXPECT_EQ(a.done["response"]["status"], "completed");
  EXPECT_EQ(a.done["response"]["output"][0]["content"][0]["text"], expected);
  // Event order: response.created, deltas, response.text.done, response.done, conflux.metrics.
  const auto at = [&](const std::string& t) { return std::find(a.order.begin(), a.order.end(), t) - a.order.begin(); };
  EXPECT_LT(at("response.created"), at("response.text.delta"));
  EXPECT_LT(at("response.text.delta"), at("response.text.done"));
  EXPECT_LT(at("response.text.done"), at("response.done"));
  const json& r = a.metrics["response"];
  EXPECT_EQ(r["trigger"], "request");
  EXPECT_GT(r["tokens"].get<int>(), 0);
  EXPECT_TRUE(r["turn_end_to_first_token_ms"].is_number());
  EXPECT_TRUE(r["last_audio_to_first_token_ms"].is_number());
  // Every audio frame (the 300-sample tail padded to a whole frame) went into the KV cache.
  EXPECT_EQ(a.metrics["session"]["audio_frames_in_kv"].get<int64_t>(), int64_t((pcm.size() / 2 + 639) / 640));
  EXPECT_EQ(a.metrics["session"]["video_frames_in_kv"].get<int64_t>(), 1);
  c.close();
}

TEST_F(ServerTest, EightConcurrentClientsGetTheirOwnAnswersAndANinthIsRefused) {
  constexpr int kClients = 8;
  std::vector<std::vector<uint8_t>> pcm;
  std::vector<std::string> expected;
  for (int k = 0; k < kClients; ++k) {
    pcm.push_back(test_pcm(150 + 70 * k, 0.6, 123 * k, uint32_t(k + 10)));
    const fs::path wav = *dir_ / ("client" + std::to_string(k) + ".wav");
    write_wav(wav, pcm.back());
    expected.push_back(generate_offline(wav, "client " + std::to_string(k), 100 + k, 16));
  }
  // The check has teeth only if the answers differ between clients.
  EXPECT_GE(std::set<std::string>(expected.begin(), expected.end()).size(), 3u);

  ServerConfig cfg = base_config();
  cfg.max_sessions = kClients;
  Server server(*model_, *tok_, cfg);
  server.start();
  std::vector<std::unique_ptr<RealtimeClient>> clients;
  for (int k = 0; k < kClients; ++k) {
    clients.push_back(std::make_unique<RealtimeClient>(client_options(server)));
    clients.back()->read_until("session.created", 10s);
  }
  try {
    RealtimeClient ninth(client_options(server));
    ADD_FAILURE() << "a 9th client was admitted over a limit of 8";
  } catch (const HandshakeRefused& e) {
    EXPECT_EQ(e.status, 503);
    const json body = json::parse(e.body);
    EXPECT_EQ(body["error"]["code"], "server_busy");
    EXPECT_NE(e.body.find("8 sessions"), std::string::npos) << e.body;
  }
  EXPECT_EQ(server.stats().refused_busy, 1u);

  std::vector<Answer> answers(kClients);
  std::vector<std::thread> threads;
  for (int k = 0; k < kClients; ++k)
    threads.emplace_back([&, k] {
      send_turn(*clients[size_t(k)], 100 + k, 16, pcm[size_t(k)], "client " + std::to_string(k));
      answers[size_t(k)] = read_answer(*clients[size_t(k)], 120s);
    });
  for (auto& t : threads) t.join();
  for (int k = 0; k < kClients; ++k) EXPECT_EQ(answers[size_t(k)].deltas, expected[size_t(k)]) << "client " << k;

  for (auto& c : clients) c->close();
  clients.clear();
  EXPECT_TRUE(wait_for(server, [](const ServerStats& s) { return s.active_sessions == 0 && s.sessions_freed == 8; }));
  RealtimeClient again(client_options(server));  // slots are free again
  again.read_until("session.created", 10s);
}

TEST_F(ServerTest, BadMessagesGetErrorEventsAndTheConnectionStaysUsable) {
  ServerConfig cfg = base_config();
  cfg.max_message_bytes = 1 << 20;  // the test PNG in base64 (~620 KB) fits
  cfg.max_image_pixels = 100000;  // the 480 x 336 test image (161280 pixels) is over it
  Server server(*model_, *tok_, cfg);
  server.start();
  RealtimeClient c(client_options(server));
  c.read_until("session.created", 10s);
  auto expect_error = [&](const std::string& code, const std::string& what) {
    const json ev = c.read_until("error", 10s);
    EXPECT_EQ(ev["error"]["code"], code) << what << ": " << ev.dump();
    EXPECT_FALSE(ev["error"]["message"].get<std::string>().empty()) << what;
  };
  c.send_text("this is not json");
  expect_error("invalid_json", "plain text");
  c.send_text("[1, 2, 3]");
  expect_error("invalid_event", "a JSON array");
  c.send({{"type", "input_audio_buffer.appendx"}, {"event_id", "mine"}});
  const json unknown = c.read_until("error", 10s);
  EXPECT_EQ(unknown["error"]["code"], "unknown_event");
  EXPECT_EQ(unknown["error"]["event_id"], "mine");  // the offending client event is named
  c.send({{"type", "input_audio_buffer.append"}, {"audio", "@@not base64@@"}});
  expect_error("invalid_base64", "bad base64");
  c.send({{"type", "input_audio_buffer.append"}, {"audio", base64_encode("abc", 3)}});
  expect_error("invalid_audio", "odd PCM16 byte count");
  c.send({{"type", "input_audio_buffer.append"}, {"audio", 42}});
  expect_error("invalid_value", "audio of the wrong type");
  const std::string junk = "definitely not a PNG";
  c.send({{"type", "input_image_buffer.append"}, {"image", base64_encode(junk.data(), junk.size())}});
  expect_error("invalid_image", "undecodable image");
  const std::string png = read_file(kImagePng);
  c.send({{"type", "input_image_buffer.append"}, {"image", base64_encode(png.data(), png.size())}});
  expect_error("image_too_large", "image over the pixel limit");
  c.send({{"type", "input_image_buffer.append"}, {"format", "rgb"}, {"width", 4}, {"height", 4}, {"image", base64_encode("rgbrgb", 6)}});
  expect_error("invalid_image", "raw RGB of the wrong size");
  c.send_text(std::string(3 << 20, ' '));  // 3 MiB of whitespace: valid JSON framing, over the limit
  expect_error("message_too_large", "oversized message");
  c.send({{"type", "session.update"}, {"session", {{"conflux", {{"image_budget", 2000}}}}}});
  expect_error("invalid_value", "an image budget past what this server allows");
  c.send({{"type", "response.cancel"}});
  expect_error("response_cancel_not_active", "cancel with no response");

  // Still usable: a typed question is answered (greedy, so its length is the token limit).
  c.send({{"type", "session.update"}, {"session", {{"max_response_output_tokens", 5}}}});
  c.read_until("session.updated", 10s);
  c.send(text_item("hello"));
  c.read_until("conversation.item.created", 10s);
  c.send({{"type", "response.create"}});
  const Answer a = read_answer(c);
  EXPECT_EQ(a.done["response"]["status"], "completed");
  EXPECT_EQ(a.done["response"]["usage"]["output_tokens"], 5);
  // Instructions are fixed once the session has started.
  c.send({{"type", "session.update"}, {"session", {{"instructions", "be brief"}}}});
  expect_error("session_started", "instructions after the first input");
}

TEST_F(ServerTest, ServerVadEndsTheTurnAndAnswers) {
  for (const char* tool : {"espeak-ng", "sox"}) ASSERT_TRUE(tool_available(tool)) << tool << " is missing: tools/setup.sh installs it";
  const Clip clip = synthesize(*dir_, "vad", "-v en-us -s 160", "what do you see on the table");
  const Timeline timeline = build_timeline({&clip}, {1.0, 1.5});
  const std::vector<uint8_t> pcm = float_to_pcm16(timeline.samples.data(), timeline.samples.size());
  Server server(*model_, *tok_, base_config());  // server_vad is the default
  server.start();
  RealtimeClient c(client_options(server));
  const json created = c.read_until("session.created", 10s);
  ASSERT_EQ(created["session"]["turn_detection"]["type"], "server_vad");
  EXPECT_EQ(created["session"]["turn_detection"]["min_snr_db"], 10.0) << "the noise gate is on by default";
  c.send({{"type", "session.update"},
          {"session", {{"max_response_output_tokens", 6}, {"turn_detection", {{"type", "server_vad"}, {"min_snr_db", 12}}}}}});
  EXPECT_EQ(c.read_until("session.updated", 10s)["session"]["turn_detection"]["min_snr_db"], 12.0);
  for (size_t off = 0; off < pcm.size(); off += 3200) c.send_binary(pcm.data() + off, std::min<size_t>(3200, pcm.size() - off));
  const json started = c.read_until("input_audio_buffer.speech_started", 30s);
  const json stopped = c.read_until("input_audio_buffer.speech_stopped", 30s);
  // Onset and end on the audio timeline, near the utterance's true extent (VAD debounce and hangover:
  // onset within 0.5 s before/after, end up to 1.2 s after the true end).
  const double start_s = started["audio_start_ms"].get<double>() / 1000, end_s = stopped["audio_end_ms"].get<double>() / 1000;
  EXPECT_NEAR(start_s, timeline.true_start_s[0], 0.5);
  EXPECT_GT(end_s, timeline.true_end_s[0]);
  EXPECT_LT(end_s, timeline.true_end_s[0] + 1.2);
  const Answer a = read_answer(c);
  EXPECT_EQ(a.metrics["response"]["trigger"], "end_of_speech");
  EXPECT_TRUE(a.metrics["response"]["turn_end_to_first_token_ms"].is_number());
  EXPECT_TRUE(a.metrics["response"]["last_audio_to_first_token_ms"].is_null());  // only for response.create
  EXPECT_EQ(a.done["response"]["usage"]["output_tokens"], 6);
}

TEST_F(ServerTest, Base64AndPcm16RoundTrip) {
  // Every length mod 3 (padding 0, 1, 2), all byte values.
  for (size_t n : {0, 1, 2, 3, 4, 5, 255, 256, 257}) {
    std::vector<uint8_t> bytes(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = uint8_t(i * 37 + 11);
    const std::string text = base64_encode(bytes.data(), n);
    EXPECT_EQ(text.size() % 4, 0u);
    std::string error;
    const auto back = base64_decode(text, error);
    ASSERT_TRUE(back) << error;
    EXPECT_EQ(*back, bytes) << n;
  }
  std::string error;
  EXPECT_EQ(*base64_decode("aGVsbG8=", error), std::vector<uint8_t>({'h', 'e', 'l', 'l', 'o'}));
  EXPECT_EQ(*base64_decode("aGVsbG8", error), std::vector<uint8_t>({'h', 'e', 'l', 'l', 'o'}));  // unpadded
  EXPECT_FALSE(base64_decode("aGV$bG8=", error));
  EXPECT_NE(error.find("offset 3"), std::string::npos) << error;
  EXPECT_FALSE(base64_decode("aGVsb", error));  // one character left over
  EXPECT_FALSE(base64_decode("a=GV", error));   // padding inside
  // PCM16: s / 32768 exactly (as read_wav), and back to the same integers.
  const int16_t ints[] = {-32768, -1, 0, 1, 12345, 32767};
  std::vector<float> f;
  pcm16_to_float(reinterpret_cast<const uint8_t*>(ints), 6, f);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(f[size_t(i)], float(ints[i]) / 32768.f);
  const std::vector<uint8_t> again = float_to_pcm16(f.data(), f.size());
  EXPECT_EQ(0, std::memcmp(again.data(), ints, sizeof ints));
}

TEST_F(ServerTest, QueuedAudioIsBounded) {
  ServerConfig cfg = base_config();
  cfg.max_queued_audio_s = 0.5;
  Server server(*model_, *tok_, cfg);
  server.start();
  RealtimeClient c(client_options(server));
  c.read_until("session.created", 10s);
  c.send({{"type", "session.update"}, {"session", {{"turn_detection", nullptr}, {"max_response_output_tokens", 1500}}}});
  c.read_until("session.updated", 10s);
  const std::vector<uint8_t> second = test_pcm(300, 1.0, 0, 3), part = test_pcm(300, 0.3, 0, 4);  // 16000 and 4800 samples
  c.send_binary(second.data(), second.size());  // alone more than the limit
  const json refused = c.read_until("error", 10s);
  EXPECT_EQ(refused["error"]["code"], "audio_queue_full") << refused.dump();
  c.send_binary(part.data(), part.size());  // 0.3 s: taken (7.5 frames; the half frame is padded below)
  c.send({{"type", "input_audio_buffer.commit"}});
  c.read_until("input_audio_buffer.committed", 10s);
  c.send({{"type", "response.create"}});
  c.read_until("response.text.delta", 30s);
  // While the answer runs the session takes no audio into the model: the second 0.3 s chunk brings the
  // waiting audio to 0.6 s and is refused; nothing blocks.
  c.send_binary(part.data(), part.size());
  c.send_binary(part.data(), part.size());
  const json full = c.read_until("error", 10s);
  EXPECT_EQ(full["error"]["code"], "audio_queue_full") << full.dump();
  c.send({{"type", "response.cancel"}});
  const Answer a = read_answer(c, 60s);
  EXPECT_EQ(a.done["response"]["status"], "cancelled");
  // Only the accepted 0.3 s (8 frames, the last one padded) reached the model before the answer.
  EXPECT_EQ(a.metrics["session"]["audio_frames_in_kv"].get<int64_t>(), 8);
}

TEST_F(ServerTest, CancelStopsARunningResponse) {
  Server server(*model_, *tok_, base_config());
  server.start();
  RealtimeClient c(client_options(server));
  c.read_until("session.created", 10s);
  c.send({{"type", "session.update"}, {"session", {{"max_response_output_tokens", 1500}}}});
  c.send(text_item("talk for a long time"));
  c.send({{"type", "response.create"}});
  c.read_until("response.text.delta", 30s);
  c.send({{"type", "response.cancel"}});
  const json done = c.read_until("response.done", 60s);
  EXPECT_EQ(done["response"]["status"], "cancelled");
  EXPECT_LT(done["response"]["usage"]["output_tokens"].get<int>(), 1500);
}

TEST_F(ServerTest, AClientThatNeverReadsIsCutOffWithoutStallingAnother) {
  ServerConfig cfg = base_config();
  cfg.socket_send_buffer_bytes = 4096;  // small kernel buffers so that a stalled reader fills them quickly
  cfg.send_queue_messages = 32;
  Server server(*model_, *tok_, cfg);
  server.start();
  ClientOptions stalled_opts = client_options(server);
  stalled_opts.receive_buffer_bytes = 4096;
  RealtimeClient stalled(stalled_opts);
  // Never reads: asks for long answers, one after another (every token is a ~150-byte delta).
  stalled.send({{"type", "session.update"}, {"session", {{"max_response_output_tokens", 1000}}}});
  for (int i = 0; i < 4; ++i) {
    stalled.send(text_item("go on"));
    stalled.send({{"type", "response.create"}});
  }
  RealtimeClient reader(client_options(server));
  reader.read_until("session.created", 10s);
  reader.send({{"type", "session.update"}, {"session", {{"max_response_output_tokens", 8}}}});
  reader.send(text_item("hello"));
  reader.send({{"type", "response.create"}});
  const Answer a = read_answer(reader, 60s);
  EXPECT_EQ(a.done["response"]["usage"]["output_tokens"], 8);

  EXPECT_TRUE(wait_for(server, [](const ServerStats& s) { return s.closed_send_overflow == 1 && s.active_sessions == 1 && s.events_not_delivered > 0; }))
      << "the stalled client was not disconnected";
  const ServerStats s = server.stats();
  EXPECT_GT(s.events_not_delivered, 0u);
  EXPECT_EQ(s.sessions_freed, 1u);
  // The reader is unaffected and keeps going.
  reader.send(text_item("again"));
  reader.send({{"type", "response.create"}});
  EXPECT_EQ(read_answer(reader, 60s).done["response"]["status"], "completed");
}

TEST_F(ServerTest, AClientVanishingMidAnswerFreesItsSession) {
  ServerConfig cfg = base_config();
  cfg.max_sessions = 1;
  Server server(*model_, *tok_, cfg);
  server.start();
  {
    RealtimeClient c(client_options(server));
    c.read_until("session.created", 10s);
    c.send({{"type", "session.update"}, {"session", {{"max_response_output_tokens", 1500}}}});
    c.send(text_item("a long answer please"));
    c.send({{"type", "response.create"}});
    c.read_until("response.text.delta", 30s);
    c.drop();  // no close frame: the TCP connection just ends
  }
  EXPECT_TRUE(wait_for(server, [](const ServerStats& s) { return s.active_sessions == 0 && s.sessions_freed == 1; }));
  RealtimeClient next(client_options(server));  // the only slot is free again
  next.read_until("session.created", 10s);
}

TEST_F(ServerTest, NonLoopbackBindRequiresAndChecksTheToken) {
  ServerConfig cfg = base_config();
  cfg.host = "0.0.0.0";
  try {
    Server open_to_all(*model_, *tok_, cfg);
    ADD_FAILURE() << "bound 0.0.0.0 without a token";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("token"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(is_loopback_address("127.0.0.2"));
  EXPECT_TRUE(is_loopback_address("::1"));
  EXPECT_FALSE(is_loopback_address("0.0.0.0"));
  EXPECT_FALSE(is_loopback_address("192.168.1.10"));

  // The command refuses the same before loading anything.
  int code = -1;
  const std::string said = run_conflux("serve --model " + kTinyA + " --host 0.0.0.0 --port 0", &code, true);
  EXPECT_EQ(code, 2) << said;
  EXPECT_NE(said.find("--token"), std::string::npos) << said;

  cfg.token = "s3cret-token";
  Server server(*model_, *tok_, cfg);  // all interfaces; the test connects through 127.0.0.1
  server.start();
  ClientOptions o = client_options(server);
  for (const std::string& wrong : {std::string(), std::string("guess")}) {
    o.bearer_token = wrong;
    try {
      RealtimeClient c(o);
      ADD_FAILURE() << "upgrade accepted with token '" << wrong << "'";
    } catch (const HandshakeRefused& e) {
      EXPECT_EQ(e.status, 401);
      EXPECT_EQ(json::parse(e.body)["error"]["code"], "unauthorized");
    }
  }
  EXPECT_EQ(server.stats().refused_unauthorized, 2u);
  EXPECT_EQ(server.stats().accepted, 0u);
  o.bearer_token = "s3cret-token";
  RealtimeClient with_header(o);
  with_header.read_until("session.created", 10s);
  o.bearer_token.clear();
  o.target = "/?token=s3cret-token";
  RealtimeClient with_query(o);
  with_query.read_until("session.created", 10s);
}

}  // namespace
}  // namespace conflux::server

namespace conflux::server {
namespace {

// The command itself: `conflux serve --port 0` prints the port it got, answers a client, and on SIGTERM
// closes the connection, prints its totals and exits 0.
// Also serves from weights converted to q8 at load, with a bf16 KV cache (the options `run` has).
TEST(ServeCommand, ServesAClientAndStopsCleanlyOnSigterm) {
  const fs::path log = fs::temp_directory_path() / ("conflux_serve_cmd_" + std::to_string(::getpid()) + ".log");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    execl(CONFLUX_BINARY, CONFLUX_BINARY, "serve", "--model", kTinyA.c_str(), "--port", "0", "--threads", "1", "--max-tokens", "4",
          "--quantize", "q8", "--kv-cache", "bf16", static_cast<char*>(nullptr));
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 300 && port == 0; ++i) {  // up to 30 s for the model to load
    const std::string text = read_file(log);
    const size_t at = text.find("listening on ws://127.0.0.1:");
    if (at != std::string::npos) port = std::atoi(text.c_str() + at + std::strlen("listening on ws://127.0.0.1:"));
    else std::this_thread::sleep_for(100ms);
  }
  ASSERT_GT(port, 0) << read_file(log);
  {
    ClientOptions o;
    o.port = port;
    RealtimeClient c(o);
    c.read_until("session.created", 10s);
    c.send(text_item("hello"));
    c.send({{"type", "response.create"}});
    const json done = c.read_until("response.done", 60s);
    EXPECT_EQ(done["response"]["usage"]["output_tokens"], 4);  // --max-tokens 4 is the session default
    ::kill(pid, SIGTERM);  // while the client is still connected
    try {
      for (;;) c.read(10s);
    } catch (const ConnectionClosed& e) {
      EXPECT_EQ(e.code, 1001) << e.what();  // going away
      EXPECT_EQ(e.reason, "server shutting down");
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  const std::string text = read_file(log);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  EXPECT_NE(text.find("1 sessions served"), std::string::npos) << text;
  fs::remove(log);
}

}  // namespace
}  // namespace conflux::server
