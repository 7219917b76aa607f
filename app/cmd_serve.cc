// `conflux serve`: the realtime WebSocket API (server/server.h, docs/network-api.md). Loads the model
// once; every connection gets its own session and KV cache over the shared weights. Runs until Ctrl-C.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "app/cli.h"
#include "app/live.h"
#include "engine/image.h"
#include "engine/sampler.h"
#include "server/server.h"

namespace conflux::app {

namespace {

const char* kUsage =
    "usage: conflux serve --model DIR [options]\n"
    "\n"
    "Serves the model over WebSocket with OpenAI-Realtime-style JSON events (docs/network-api.md).\n"
    "Each connection gets its own session and KV cache; the weights are shared.\n"
    "\n"
    "  --host ADDR             address to bind (default 127.0.0.1); a non-loopback address needs --token\n"
    "  --port N                TCP port (default 8765; 0 = any free port, printed at start)\n"
    "  --max-sessions N        concurrent sessions; the next upgrade is refused with HTTP 503 (default 8)\n"
    "  --token T               clients must send 'Authorization: Bearer T' or ?token=T (default: none)\n"
    "  --threads N             worker threads per session (default: all cores)\n"
    "  --max-context N         KV capacity per session in positions (default 4096)\n"
    "  --quantize FMT          convert the weights at load: q8, q4, bf16 or f32 (default: as stored)\n"
    "  --mmap                  read weights in place from the file mapping instead of copying them\n"
    "  --kv-cache f32|bf16     KV cache entries (default f32; bf16 halves their memory and reads)\n"
    "  --max-image-budget N    largest image budget a client may choose (default 560; bounds per-session scratch)\n"
    "  --max-message-mb N      largest WebSocket message in MiB (default 16)\n"
    "  --max-queued-audio S    seconds of audio a session may have waiting (default 10)\n"
    "  --max-image-pixels N    largest image in pixels (default 8294400 = 3840x2160)\n"
    "Session defaults (clients change them with session.update):\n"
    "  --system TEXT --budget N --fps F --no-vad --max-tokens N --temperature T --top-k K --top-p P --seed S\n"
    "  --thinking on|off --image-at-turn-end on|off   (default: the model's generation_config.json)\n"
    "  --quiet                 no per-connection log lines\n";

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

}  // namespace

int cmd_serve(int argc, char** argv) {
  Args a(argc, argv, {"no-vad", "quiet", "mmap"});
  if (a.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  a.reject_unknown({"model", "host", "port", "max-sessions", "token", "threads", "max-context", "quantize", "mmap", "kv-cache", "max-image-budget",
                    "max-message-mb", "max-queued-audio", "max-image-pixels", "system", "budget", "fps", "no-vad",
                    "max-tokens", "temperature", "top-k", "top-p", "seed", "quiet", "thinking", "image-at-turn-end"});
  const std::string dir = a.require("model");
  server::ServerConfig c;
  c.host = a.get_or("host", "127.0.0.1");
  c.port = a.get_int("port", 8765);
  c.max_sessions = a.get_int("max-sessions", 8);
  c.token = a.get_or("token", "");
  c.runtime.n_threads = a.get_int("threads", 0);
  c.runtime.max_context = a.get_int("max-context", 4096);
  c.runtime.max_chunk = std::max(512, a.get_int("max-image-budget", 560));
  c.runtime.kv_dtype = kv_cache_option(a);
  const LoadOptions load = load_options(a);  // checked before the model loads
  c.max_message_bytes = size_t(a.get_double("max-message-mb", 16) * (1 << 20));
  c.max_queued_audio_s = a.get_double("max-queued-audio", 10);
  c.max_image_pixels = a.get_int("max-image-pixels", 3840 * 2160);
  if (c.port < 0 || c.port > 65535) throw CliError("--port must be 0..65535");
  // Fail on a bad address or a missing token before the model loads.
  if (!server::is_loopback_address(c.host) && c.token.empty())
    throw CliError("--host " + c.host + " is not a loopback address: pass --token to serve beyond this machine");
  SessionConfig& s = c.session;
  s.system_prompt = a.get_or("system", "");
  s.image_budget = a.get_int("budget", default_image_budget(dir));
  if (s.image_budget > c.runtime.max_chunk) throw CliError("--budget exceeds --max-image-budget");
  s.video_fps = a.get_double("fps", 1.0);
  s.vad.enabled = !a.flag("no-vad");
  s.max_answer_tokens = a.get_int("max-tokens", 256);
  s.sampling.temperature = float(a.get_double("temperature", 0));
  s.sampling.top_k = a.get_int("top-k", 0);
  s.sampling.top_p = float(a.get_double("top-p", 1.0));
  s.sampling.seed = uint64_t(a.get_int("seed", 0));
  apply_model_session_defaults(dir, a, s);

  const auto model = Model::load(dir, load);
  const Tokenizer tok = Tokenizer::load((std::filesystem::path(dir) / "tokenizer.json").string());
  server::apply_model_stop_tokens(dir, tok, s.sampling);
  if (!a.flag("quiet")) c.log = [](const std::string& line) { std::fprintf(stderr, "conflux serve: %s\n", line.c_str()); };

  server::Server srv(*model, tok, c);
  srv.start();
  std::fprintf(stderr, "conflux serve: listening on ws://%s:%d/ (model %s, up to %d sessions%s)\n", c.host.c_str(), srv.port(),
               dir.c_str(), c.max_sessions, c.token.empty() ? "" : ", token required");
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::fprintf(stderr, "conflux serve: stopping\n");
  srv.stop();
  const server::ServerStats st = srv.stats();
  std::fprintf(stderr, "conflux serve: %llu sessions served, %llu refused (busy), %llu refused (token), %llu closed for not reading\n",
               (unsigned long long)st.accepted, (unsigned long long)st.refused_busy,
               (unsigned long long)st.refused_unauthorized, (unsigned long long)st.closed_send_overflow);
  return 0;
}

}  // namespace conflux::app
