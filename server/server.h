// `conflux serve`: a Realtime-style WebSocket server (Boost.Beast on Boost.Asio). Each connection gets
// its own streaming Session (its own KV cache and inference thread); the Model's weights are shared
// read-only. The protocol (JSON events named after OpenAI's Realtime API) is in docs/network-api.md.
//
// Threads: one network thread runs every socket (reads, writes, JSON parsing, base64, image decoding);
// each session's inference thread turns session events into JSON and hands them to its connection's
// bounded send queue, never waiting on the network. One reaper thread destroys the sessions of closed
// connections (abandon + join), so a disconnect never stalls the network thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "engine/model.h"
#include "engine/session/session.h"
#include "engine/tokenizer.h"

namespace conflux::server {

struct ServerConfig {
  std::string host = "127.0.0.1";  // loopback by default; any other address requires `token`
  int port = 8765;                 // 0 = any free port (tests); Server::port() tells which
  int max_sessions = 8;            // concurrent connections with a session; the next is refused (HTTP 503)
  std::string token;               // when set, the upgrade request must carry it (Bearer header or ?token=)

  // Limits (each refusal is an `error` event; the connection stays usable).
  size_t max_message_bytes = 16u << 20;  // one WebSocket message; a 1080p raw RGB frame in base64 is ~8.3 MB
  double max_queued_audio_s = 10;        // audio received but not yet taken by the session
  int64_t max_image_pixels = 3840 * 2160;  // width x height of one image, checked before decoding

  // Per-connection send queue: past either bound the client is not reading, and it is disconnected
  // (close code 1008 "send queue overflow"); the events it could not take are counted, never buffered.
  size_t send_queue_messages = 4096;
  size_t send_queue_bytes = 8u << 20;
  int socket_send_buffer_bytes = 0;  // SO_SNDBUF for accepted sockets; 0 = the OS default (tests shrink it)

  RuntimeConfig runtime;   // per session: threads, KV capacity, max_chunk (bounds the image budget)
  SessionConfig session;   // defaults for each new session (sampling, stop tokens, VAD, budget, ...)
  int max_answer_tokens_cap = 4096;  // what max_response_output_tokens "inf" means

  std::function<void(const std::string&)> log;  // one line per connection event; empty = quiet
};

struct ServerStats {
  int active_sessions = 0;          // connections holding a session slot (freed once the session is destroyed)
  uint64_t accepted = 0;            // upgrades accepted
  uint64_t refused_busy = 0;        // upgrades refused: max_sessions reached (HTTP 503)
  uint64_t refused_unauthorized = 0;// upgrades refused: missing or wrong token (HTTP 401)
  uint64_t closed_send_overflow = 0;// clients disconnected because their send queue overflowed
  uint64_t events_not_delivered = 0;// events dropped for those clients
  uint64_t sessions_freed = 0;      // sessions destroyed after their connection closed
};

class Server {
 public:
  // Binds and listens (throws std::runtime_error naming the problem: bad address, port in use, a
  // non-loopback host without a token). The model and tokenizer must outlive the server.
  Server(const Model& model, const Tokenizer& tokenizer, ServerConfig config);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  void start();  // runs the network thread
  void stop();   // closes every connection, destroys every session, joins the threads
  ServerStats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Stop tokens and suppressed tokens for a checkpoint: generation_config.json's when it has one, plus the
// tokenizer's <eos> and the chat format's <turn|> (an answer ends with its turn), as the live run uses.
void apply_model_stop_tokens(const std::string& model_dir, const Tokenizer& tok, SamplingParams& sampling);

// True for 127.0.0.0/8 and ::1 (and ::ffff:127.x.y.z). Throws for a string that is not an address.
bool is_loopback_address(const std::string& host);

}  // namespace conflux::server
