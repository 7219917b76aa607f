// Example client for `conflux serve`: streams a 16 kHz WAV file (and optionally images shown before it)
// over the realtime WebSocket API and prints the answer's text deltas as they arrive.
//
//   conflux-realtime-client --wav question.wav [--image frame.png] [--prompt TEXT] [--realtime]
//   conflux-realtime-client --wav question.wav --clients 8 --turns 5      # latency: p50/p95
//
// Turn taking is explicit (turn_detection null): after the audio it sends input_audio_buffer.commit and
// response.create. With --vad the server's voice activity detection ends the turn instead (the WAV then
// needs trailing silence). Latency is measured from the moment the last audio message has been written to
// the socket to the arrival of the first response.text.delta, on the client's clock.
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/sequence.h"  // read_wav
#include "server/client.h"
#include "server/codec.h"

namespace {

using Clock = std::chrono::steady_clock;
using conflux::server::RealtimeClient;
using nlohmann::json;

struct Options {
  conflux::server::ClientOptions net;
  std::string wav;
  std::vector<std::string> images;
  std::string prompt;
  bool realtime = false;  // pace audio at 1x instead of sending it as fast as the socket takes it
  bool vad = false;
  int chunk_ms = 40;
  int max_tokens = 64;
  int clients = 1;
  int turns = 1;
  bool quiet = false;
};

const char* kUsage =
    "usage: conflux-realtime-client --wav FILE.wav [options]\n"
    "  --host H --port N --token T   server (default 127.0.0.1:8765)\n"
    "  --image FILE                  a PNG/JPEG frame sent before the audio (repeatable)\n"
    "  --prompt TEXT                 typed text after the audio\n"
    "  --realtime                    send audio at 1x speed (default: as fast as possible)\n"
    "  --chunk-ms N                  audio per message (default 40)\n"
    "  --vad                         let the server's VAD end the turn (no commit/response.create)\n"
    "  --max-tokens N                answer length (default 64)\n"
    "  --clients N --turns R         N concurrent clients, R turns each: prints latency percentiles\n"
    "  --quiet                       do not print the answers\n";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

// One client: connect, configure, then `turns` x (images, audio, commit, text, response.create, answer).
// Returns the last-audio -> first-delta latency of each turn.
struct TurnTimes {
  std::vector<double> last_audio_to_first_delta_ms;  // client clock
  std::vector<double> turn_end_to_first_token_ms;    // server's conflux.metrics
  std::vector<double> decode_ms_per_token;           // server's conflux.metrics
};

TurnTimes run_client(const Options& o, const std::vector<uint8_t>& pcm, int index, std::barrier<>* start) {
  RealtimeClient c(o.net);
  c.read_until("session.created", std::chrono::seconds(30));
  json td = nullptr;
  if (o.vad) td = {{"type", "server_vad"}};
  c.send({{"type", "session.update"}, {"session", {{"turn_detection", td}, {"max_response_output_tokens", o.max_tokens}}}});
  c.read_until("session.updated", std::chrono::seconds(30));
  if (start) start->arrive_and_wait();
  TurnTimes times;
  std::vector<double>& latencies = times.last_audio_to_first_delta_ms;
  const size_t chunk_bytes = size_t(o.chunk_ms) * 16 * 2;  // 16 samples per ms, 2 bytes each
  for (int turn = 0; turn < o.turns; ++turn) {
    for (const std::string& path : o.images) {
      const std::string bytes = read_file(path);
      const bool png = path.size() > 4 && path.substr(path.size() - 4) == ".png";
      c.send({{"type", "input_image_buffer.append"}, {"format", png ? "png" : "jpeg"},
              {"image", conflux::server::base64_encode(bytes.data(), bytes.size())}});
    }
    const Clock::time_point t0 = Clock::now();
    for (size_t off = 0; off < pcm.size(); off += chunk_bytes) {
      const size_t n = std::min(chunk_bytes, pcm.size() - off);
      c.send({{"type", "input_audio_buffer.append"}, {"audio", conflux::server::base64_encode(pcm.data() + off, n)}});
      if (o.realtime) std::this_thread::sleep_until(t0 + std::chrono::microseconds((off + n) * 1000000 / 32000));
    }
    const Clock::time_point last_audio = Clock::now();
    if (!o.vad) {
      c.send({{"type", "input_audio_buffer.commit"}});
      if (!o.prompt.empty())
        c.send({{"type", "conversation.item.create"},
                {"item", {{"type", "message"}, {"role", "user"}, {"content", json::array({{{"type", "input_text"}, {"text", o.prompt}}})}}}});
      c.send({{"type", "response.create"}});
    }
    bool first = true;
    std::string answer;
    json metrics;
    c.read_until("conflux.metrics", std::chrono::seconds(600), [&](const json& ev) {
      if (ev["type"] == "response.text.delta") {
        if (first) latencies.push_back(ms(last_audio, Clock::now()));
        first = false;
        answer += ev["delta"].get<std::string>();
        if (!o.quiet && o.clients == 1) {
          std::fputs(ev["delta"].get<std::string>().c_str(), stdout);
          std::fflush(stdout);
        }
      } else if (ev["type"] == "error") {
        std::fprintf(stderr, "client %d: error: %s\n", index, ev["error"].dump().c_str());
      } else if (ev["type"] == "conflux.metrics") {
        metrics = ev;
      }
    });
    if (first) latencies.push_back(-1);  // an empty answer: no delta to time
    const json& r = metrics["response"];
    if (r["turn_end_to_first_token_ms"].is_number()) times.turn_end_to_first_token_ms.push_back(r["turn_end_to_first_token_ms"]);
    if (r["decode_ms_per_token"].is_number()) times.decode_ms_per_token.push_back(r["decode_ms_per_token"]);
    if (!o.quiet && o.clients == 1) std::printf("\n[metrics] %s\n", metrics["response"].dump().c_str());
    else if (!o.quiet) std::printf("client %d turn %d: %s\n", index, turn, answer.c_str());
  }
  c.close();
  return times;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5))];  // nearest rank, as latency.h
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error("option " + a + " needs a value");
        return argv[++i];
      };
      if (a == "--help" || a == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (a == "--host") o.net.host = value();
      else if (a == "--port") o.net.port = std::stoi(value());
      else if (a == "--token") o.net.bearer_token = value();
      else if (a == "--wav") o.wav = value();
      else if (a == "--image") o.images.push_back(value());
      else if (a == "--prompt") o.prompt = value();
      else if (a == "--realtime") o.realtime = true;
      else if (a == "--vad") o.vad = true;
      else if (a == "--chunk-ms") o.chunk_ms = std::max(1, std::stoi(value()));
      else if (a == "--max-tokens") o.max_tokens = std::stoi(value());
      else if (a == "--clients") o.clients = std::max(1, std::stoi(value()));
      else if (a == "--turns") o.turns = std::max(1, std::stoi(value()));
      else if (a == "--quiet") o.quiet = true;
      else throw std::runtime_error("unknown option " + a);
    }
    if (o.wav.empty()) throw std::runtime_error("--wav FILE is required");
    int rate = 0;
    const std::vector<float> samples = conflux::read_wav(o.wav, &rate);
    if (rate != 16000) throw std::runtime_error(o.wav + " is " + std::to_string(rate) + " Hz; the API takes 16 kHz (sox in.wav -r 16000 out.wav)");
    const std::vector<uint8_t> pcm = conflux::server::float_to_pcm16(samples.data(), samples.size());

    std::vector<TurnTimes> per_client(size_t(o.clients));
    std::barrier<> start(o.clients);
    std::vector<std::thread> threads;
    std::mutex err_mu;
    int failures = 0;
    for (int k = 0; k < o.clients; ++k)
      threads.emplace_back([&, k] {
        try {
          per_client[size_t(k)] = run_client(o, pcm, k, o.clients > 1 ? &start : nullptr);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(err_mu);
          std::fprintf(stderr, "client %d: %s\n", k, e.what());
          ++failures;
          if (o.clients > 1) start.arrive_and_drop();
        }
      });
    for (auto& t : threads) t.join();
    std::vector<double> all, turn_end, decode;
    for (const auto& t : per_client) {
      for (double x : t.last_audio_to_first_delta_ms)
        if (x >= 0) all.push_back(x);
      turn_end.insert(turn_end.end(), t.turn_end_to_first_token_ms.begin(), t.turn_end_to_first_token_ms.end());
      decode.insert(decode.end(), t.decode_ms_per_token.begin(), t.decode_ms_per_token.end());
    }
    if (o.clients > 1 || o.turns > 1) {
      std::printf("last-audio -> first-delta over %zu turns (%d clients x %d turns): p50 %.1f ms, p95 %.1f ms, max %.1f ms\n",
                  all.size(), o.clients, o.turns, percentile(all, 0.5), percentile(all, 0.95), percentile(all, 1.0));
      std::printf("server: turn end -> first token p50 %.1f ms, p95 %.1f ms; decode p50 %.1f ms/token\n", percentile(turn_end, 0.5),
                  percentile(turn_end, 0.95), percentile(decode, 0.5));
    }
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "conflux-realtime-client: %s\n", e.what());
    return 1;
  }
}
