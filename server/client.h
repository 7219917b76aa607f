// A small synchronous client for the Conflux realtime WebSocket API (Boost.Beast): what the tests, the
// example client (examples/realtime_client.cc) and the latency measurement use. One client per thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

namespace conflux::server {

struct ClientOptions {
  std::string host = "127.0.0.1";
  int port = 8765;
  std::string target = "/";        // request path (may carry ?token=)
  std::string bearer_token;        // sent as 'Authorization: Bearer ...' when set
  int receive_buffer_bytes = 0;    // SO_RCVBUF before connecting; 0 = OS default (tests make it tiny)
  std::chrono::milliseconds connect_timeout{10000};
};

// The server answered the upgrade with an HTTP status instead of switching protocols.
struct HandshakeRefused : std::runtime_error {
  HandshakeRefused(int s, std::string b)
      : std::runtime_error("upgrade refused with HTTP " + std::to_string(s) + ": " + b), status(s), body(std::move(b)) {}
  int status;
  std::string body;
};

// The server closed the WebSocket (close frame) or the connection dropped.
struct ConnectionClosed : std::runtime_error {
  ConnectionClosed(std::string what, int c, std::string r) : std::runtime_error(std::move(what)), code(c), reason(std::move(r)) {}
  int code;            // WebSocket close code, 0 when the TCP connection simply ended
  std::string reason;  // the close frame's reason text
};

class RealtimeClient {
 public:
  // Connects and upgrades. Throws HandshakeRefused (HTTP status and body) or std::runtime_error.
  explicit RealtimeClient(const ClientOptions& options);
  ~RealtimeClient();
  RealtimeClient(const RealtimeClient&) = delete;
  RealtimeClient& operator=(const RealtimeClient&) = delete;

  void send(const nlohmann::json& event);
  void send_text(const std::string& text);           // any text message (tests send malformed ones)
  void send_binary(const void* data, size_t size);   // raw PCM16 mono 16 kHz
  // The next server event; nullopt when none arrives within `timeout`. Throws ConnectionClosed.
  std::optional<nlohmann::json> read(std::chrono::milliseconds timeout);
  // Reads events until one of `type` arrives and returns it; throws std::runtime_error on timeout.
  // Every event read on the way (that one included) is passed to `seen` when given.
  nlohmann::json read_until(const std::string& type, std::chrono::milliseconds timeout,
                            const std::function<void(const nlohmann::json&)>& seen = {});
  void close();  // WebSocket close handshake
  void drop();   // closes the TCP connection without a close frame (a client that vanishes)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace conflux::server
