// Synchronous Beast WebSocket client for the realtime API (see client.h). Reads with a timeout run one
// async read on a private io_context for at most that long.
#include "server/client.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility> (GCC 12, C++20).
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace conflux::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

struct RealtimeClient::Impl {
  net::io_context io;
  websocket::stream<tcp::socket> ws{io};
  beast::flat_buffer buffer;
};

RealtimeClient::RealtimeClient(const ClientOptions& o) : impl_(std::make_unique<Impl>()) {
  tcp::resolver resolver(impl_->io);
  const auto endpoints = resolver.resolve(o.host, std::to_string(o.port));
  tcp::socket& sock = impl_->ws.next_layer();
  sock.open(endpoints.begin()->endpoint().protocol());
  if (o.receive_buffer_bytes > 0) sock.set_option(net::socket_base::receive_buffer_size(o.receive_buffer_bytes));
  sock.set_option(tcp::no_delay(true));
  beast::error_code ec;
  sock.connect(*endpoints.begin(), ec);
  if (ec) throw std::runtime_error("cannot connect to " + o.host + ":" + std::to_string(o.port) + ": " + ec.message());
  impl_->ws.set_option(websocket::stream_base::decorator([token = o.bearer_token](websocket::request_type& req) {
    req.set(http::field::user_agent, "conflux-realtime-client");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  }));
  // The asynchronous handshake: in Boost 1.74 only it hands back a refusal's status and body.
  websocket::response_type res;
  impl_->ws.async_handshake(res, o.host + ":" + std::to_string(o.port), o.target, [&](beast::error_code e) { ec = e; });
  impl_->io.run_for(o.connect_timeout);
  if (!impl_->io.stopped()) {
    sock.cancel(ec);
    impl_->io.restart();
    impl_->io.run();
    throw std::runtime_error("WebSocket handshake with " + o.host + ":" + std::to_string(o.port) + " timed out");
  }
  if (ec) {
    if (res.result_int() != 0 && res.result() != http::status::switching_protocols) throw HandshakeRefused(res.result_int(), res.body());
    throw std::runtime_error("WebSocket handshake with " + o.host + ":" + std::to_string(o.port) + " failed: " + ec.message());
  }
  impl_->ws.auto_fragment(false);
  impl_->ws.read_message_max(0);
}

RealtimeClient::~RealtimeClient() {
  beast::error_code ignored;
  impl_->ws.next_layer().close(ignored);
}

void RealtimeClient::send(const nlohmann::json& event) { send_text(event.dump()); }

void RealtimeClient::send_text(const std::string& text) {
  impl_->ws.text(true);
  impl_->ws.write(net::buffer(text));
}

void RealtimeClient::send_binary(const void* data, size_t size) {
  impl_->ws.binary(true);
  impl_->ws.write(net::buffer(data, size));
}

std::optional<nlohmann::json> RealtimeClient::read(std::chrono::milliseconds timeout) {
  beast::error_code result = net::error::would_block;
  bool done = false;
  impl_->ws.async_read(impl_->buffer, [&](beast::error_code ec, size_t) {
    result = ec;
    done = true;
  });
  impl_->io.restart();
  impl_->io.run_for(timeout);
  if (!done) {
    // Cancel the read; the stream is unusable afterwards only if the cancel cut a frame in half, which a
    // timeout in a test makes moot.
    beast::error_code ignored;
    impl_->ws.next_layer().cancel(ignored);
    impl_->io.restart();
    impl_->io.run();
    if (result == net::error::operation_aborted) return std::nullopt;
  }
  if (result == websocket::error::closed) {
    const auto& r = impl_->ws.reason();
    throw ConnectionClosed("the server closed the WebSocket (" + std::to_string(r.code) + " " + std::string(r.reason.c_str()) + ")",
                           r.code, std::string(r.reason.c_str()));
  }
  if (result) throw ConnectionClosed("the connection ended: " + result.message(), 0, "");
  const std::string text = beast::buffers_to_string(impl_->buffer.data());
  impl_->buffer.consume(impl_->buffer.size());
  return nlohmann::json::parse(text);
}

nlohmann::json RealtimeClient::read_until(const std::string& type, std::chrono::milliseconds timeout,
                                          const std::function<void(const nlohmann::json&)>& seen) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto ev = read(left);
    if (!ev) break;
    if (seen) seen(*ev);
    if ((*ev)["type"] == type) return *ev;
  }
  throw std::runtime_error("no '" + type + "' event within " + std::to_string(timeout.count()) + " ms");
}

void RealtimeClient::close() {
  beast::error_code ignored;
  impl_->ws.close(websocket::close_code::normal, ignored);
}

void RealtimeClient::drop() {
  beast::error_code ignored;
  impl_->ws.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->ws.next_layer().close(ignored);
}

}  // namespace conflux::server
