// The WebSocket server behind `conflux serve` (see server.h for the threads, docs/network-api.md for the
// protocol). One Connection per socket: HTTP upgrade checks (token, capacity), a read loop that bounds
// every message, the client events mapped onto Session calls, and a bounded send queue fed by the
// session's inference thread.
#include "server/server.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility> (GCC 12, C++20).
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "server/codec.h"

namespace conflux::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using json = nlohmann::json;

namespace {

constexpr int kSampleRate = 16000;   // PCM16 mono at the audio embedder's rate
constexpr int kFrameSamples = 640;   // 40 ms: one audio soft token; audio reaches the session in whole frames
constexpr size_t kReadChunk = 64 << 10;               // bytes taken per read_some: the buffer overshoots a limit by at most this
constexpr auto kHttpTimeout = std::chrono::seconds(10);  // to send a complete upgrade request
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kOverflowCloseGrace = std::chrono::seconds(1);  // for the close frame before the socket is cut

double ms_between(TimePoint a, TimePoint b) { return std::chrono::duration<double, std::milli>(b - a).count(); }
SessionClock::duration seconds_dur(double s) {
  return std::chrono::duration_cast<SessionClock::duration>(std::chrono::duration<double>(s));
}

// A client mistake: answered with an `error` event; the connection stays open.
struct ClientError {
  std::string code;
  std::string message;
};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json percentiles_json(const Percentiles& p) {
  return {{"p50", p.p50}, {"p95", p.p95}, {"p99", p.p99}, {"count", p.count}};
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned diff = unsigned(a.size() != b.size());
  for (size_t i = 0; i < a.size(); ++i) diff |= unsigned(uint8_t(a[i]) ^ uint8_t(i < b.size() ? b[i] : 0));
  return diff == 0;
}

// The value of `name` in a request target's query string, %XX-decoded.
std::string query_param(std::string_view target, std::string_view name) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name && eq != std::string_view::npos) {
      std::string out;
      const std::string_view v = pair.substr(eq + 1);
      auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
      for (size_t i = 0; i < v.size(); ++i) {
        if (v[i] == '%' && i + 2 < v.size() && hex(v[i + 1]) >= 0 && hex(v[i + 2]) >= 0) {
          out += char(hex(v[i + 1]) * 16 + hex(v[i + 2]));
          i += 2;
        } else {
          out += v[i] == '+' ? ' ' : v[i];
        }
      }
      return out;
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return "";
}

}  // namespace

void apply_model_stop_tokens(const std::string& model_dir, const Tokenizer& tok, SamplingParams& sp) {
  const std::filesystem::path gen = std::filesystem::path(model_dir) / "generation_config.json";
  if (std::filesystem::exists(gen)) {
    const GenerationConfig g = load_generation_config(gen.string());
    sp.stop_tokens = g.eos_token_ids;
    sp.suppress_tokens = g.suppress_tokens;
  }
  if (tok.eos_id() >= 0) sp.stop_tokens.push_back(tok.eos_id());
  if (const int32_t end = tok.token_id("<turn|>"); end >= 0) sp.stop_tokens.push_back(end);
}

bool is_loopback_address(const std::string& host) {
  boost::system::error_code ec;
  const net::ip::address a = net::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) throw std::runtime_error("--host '" + host + "' is not an IP address");
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return a.to_v6().to_v4().is_loopback();
  return a.is_loopback();
}

class Connection;

struct Server::Impl {
  Impl(const Model& m, const Tokenizer& t, ServerConfig c) : model(m), tok(t), cfg(std::move(c)), acceptor(io) {}

  const Model& model;
  const Tokenizer& tok;
  ServerConfig cfg;
  net::io_context io;
  tcp::acceptor acceptor;
  std::thread io_thread;
  std::vector<std::weak_ptr<Connection>> connections;  // network thread only (and stop(), after it ended)
  std::atomic<int> open_connections{0};                // accepted sockets not yet finished
  uint64_t next_id = 1;

  mutable std::mutex stats_mu;
  ServerStats stats;

  // The reaper: destroys the sessions of closed connections off the network thread.
  std::mutex reap_mu;
  std::condition_variable reap_cv;
  std::deque<std::unique_ptr<Session>> to_reap;
  bool reaper_stop = false;
  std::thread reaper;

  void log(const std::string& line) {
    if (cfg.log) cfg.log(line);
  }
  template <class F>
  void update_stats(F&& f) {
    std::lock_guard<std::mutex> lock(stats_mu);
    f(stats);
  }
  // Frees a connection's slot: through the reaper when it has a session (whose destruction joins a thread).
  void release_slot(std::unique_ptr<Session> session) {
    if (!session) {
      update_stats([](ServerStats& s) { --s.active_sessions; });
      return;
    }
    session->abandon();
    {
      std::lock_guard<std::mutex> lock(reap_mu);
      to_reap.push_back(std::move(session));
    }
    reap_cv.notify_one();
  }
  void reap_loop() {
    std::unique_lock<std::mutex> lock(reap_mu);
    for (;;) {
      reap_cv.wait(lock, [&] { return reaper_stop || !to_reap.empty(); });
      if (to_reap.empty()) return;  // reaper_stop and nothing left
      std::unique_ptr<Session> s = std::move(to_reap.front());
      to_reap.pop_front();
      lock.unlock();
      s.reset();  // joins the session thread (abandoned: it stops at the next token or input)
      update_stats([](ServerStats& st) {
        --st.active_sessions;
        ++st.sessions_freed;
      });
      lock.lock();
    }
  }

  void do_accept();
};

namespace {

// What the session thread and the network thread share for one connection: the bounded send queue, and
// the state the session's events are translated with. The session's subscriber holds it, so it lives as
// long as either side needs it.
struct Outbox {
  std::mutex mu;
  std::deque<std::string> queue;  // whole JSON messages, oldest first
  size_t bytes = 0;
  bool flush_posted = false;
  bool overflowed = false;
  uint64_t dropped = 0;
  size_t max_messages = 0, max_bytes = 0;
  std::function<void()> post_flush, post_overflow;  // set by the connection; run on the network thread
  std::atomic<uint64_t> event_seq{0};

  void push(std::string message) {
    bool flush = false, overflow = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (overflowed) {
        ++dropped;
        return;
      }
      if (queue.size() + 1 > max_messages || bytes + message.size() > max_bytes) {
        overflowed = true;
        ++dropped;
        overflow = true;
      } else {
        bytes += message.size();
        queue.push_back(std::move(message));
        flush = !flush_posted;
        flush_posted = true;
      }
    }
    if (overflow) post_overflow();
    if (flush) post_flush();
  }
  void send(json j) {
    j["event_id"] = "event_" + std::to_string(event_seq.fetch_add(1) + 1);
    push(dump(j));
  }
};

// Turns one session's events into server events (runs on the session thread).
struct EventTranslator {
  std::shared_ptr<Outbox> out;
  Session* session = nullptr;
  std::atomic<int64_t> audio_t0_ns{0};          // input time of the first audio sample (steady clock ns)
  std::atomic<int64_t> last_audio_arrival_ns{0};  // wall (steady) time the last audio message arrived; 0 = none
  std::atomic<bool> answering{false};
  int responses = 0;
  std::string response_id;
  TimePoint answer_started{};
  int64_t last_audio_at_start_ns = 0;  // last_audio_arrival_ns when this answer began

  static int64_t ns(TimePoint t) { return t.time_since_epoch().count(); }
  static TimePoint tp(int64_t n) { return TimePoint(SessionClock::duration(n)); }

  void on_event(const SessionEvent& e) {
    using K = SessionEvent::Kind;
    switch (e.kind) {
      case K::SpeechStarted:
        out->send({{"type", "input_audio_buffer.speech_started"}, {"audio_start_ms", audio_ms(e.time)}, {"item_id", nullptr}});
        break;
      case K::SpeechEnded:
        out->send({{"type", "input_audio_buffer.speech_stopped"}, {"audio_end_ms", audio_ms(e.time)}, {"item_id", nullptr}});
        break;
      case K::AnswerStarted:
        response_id = "resp_" + std::to_string(++responses);
        answering = true;
        answer_started = SessionClock::now();
        last_audio_at_start_ns = last_audio_arrival_ns.load();
        out->send({{"type", "response.created"},
                   {"response", {{"id", response_id}, {"object", "realtime.response"}, {"status", "in_progress"}, {"output", json::array()}}}});
        break;
      case K::Token:  // the thought (thinking on) is not streamed; response.done carries it
        if (!e.text.empty() && !e.in_thought)
          out->send({{"type", "response.text.delta"}, {"response_id", response_id}, {"output_index", 0}, {"content_index", 0}, {"delta", e.text}});
        break;
      case K::AnswerDone:
        answer_done(e);
        break;
      case K::Error:
        out->send({{"type", "error"}, {"error", {{"type", "invalid_request_error"}, {"code", "session_error"}, {"message", e.text}}}});
        break;
      default:
        break;  // frame timings, images, drops, evictions: summarized in conflux.metrics
    }
  }

  json audio_ms(TimePoint t) const {
    const int64_t t0 = audio_t0_ns.load();
    return t0 == 0 ? json(nullptr) : json(std::llround(ms_between(tp(t0), t)));
  }

  void answer_done(const SessionEvent& e) {
    const TurnTiming& t = e.timing;
    const char* status = t.interrupted ? "cancelled" : "completed";
    out->send({{"type", "response.text.done"}, {"response_id", response_id}, {"output_index", 0}, {"content_index", 0}, {"text", e.text}});
    out->send({{"type", "response.done"},
               {"response", {{"id", response_id},
                             {"object", "realtime.response"},
                             {"status", status},
                             {"output", json::array({{{"type", "message"}, {"role", "assistant"},
                                                      {"content", json::array({{{"type", "text"}, {"text", e.text}}})}}})},
                             {"usage", {{"output_tokens", t.n_tokens}}},
                             {"conflux_thought", e.thought}}}});
    answering = false;
    // Per-stage latencies: this answer's, then the session's rolling statistics.
    static const char* const kTriggers[] = {"end_of_speech", "typed_text", "push_to_talk", "commentary", "request"};
    auto opt_ms = [](TimePoint a, TimePoint b) { return a == TimePoint{} || b == TimePoint{} ? json(nullptr) : json(ms_between(a, b)); };
    // Only for answers the client asked for: with the VAD the client keeps streaming (silence) after the
    // turn ends, and turn_end_to_first_token_ms is the measure.
    const int64_t last_audio = t.trigger == TurnTrigger::Request ? last_audio_at_start_ns : 0;
    json response = {{"trigger", kTriggers[int(t.trigger)]},
                     {"tokens", t.n_tokens},
                     {"interrupted", t.interrupted},
                     {"turn_end_to_turn_closed_ms", opt_ms(t.trigger_time, t.turn_closed)},
                     {"turn_end_to_first_token_ms", opt_ms(t.trigger_time, t.first_token)},
                     {"last_audio_to_first_token_ms", last_audio ? opt_ms(tp(last_audio), t.first_token) : json(nullptr)},
                     {"decode_ms_per_token", t.n_tokens > 1 ? json(ms_between(t.first_token, t.last_token) / (t.n_tokens - 1)) : json(nullptr)}};
    const SessionSnapshot s = session->snapshot();
    uint64_t dropped;
    {
      std::lock_guard<std::mutex> lock(out->mu);
      dropped = out->dropped;
    }
    out->send({{"type", "conflux.metrics"},
               {"response_id", response_id},
               {"response", response},
               {"session", {{"audio_frame_to_kv_ms", percentiles_json(s.audio_frame_to_kv_ms)},
                            {"video_frame_to_kv_ms", percentiles_json(s.video_frame_to_kv_ms)},
                            {"turn_end_to_first_token_ms", percentiles_json(s.turn_end_to_first_token_ms)},
                            {"decode_token_ms", percentiles_json(s.decode_token_ms)},
                            {"audio_frames_in", s.audio_frames_in},
                            {"audio_frames_in_kv", s.audio_frames},
                            {"video_frames_in", s.video_frames_in},
                            {"video_frames_in_kv", s.video_frames_sampled},
                            {"video_frames_dropped", s.video_frames_dropped},
                            {"positions", s.positions},
                            {"max_positions", s.max_positions},
                            {"evicted_positions", s.evicted_positions},
                            {"audio_queue_high_water_frames", s.audio_queue_high_water},
                            {"realtime_factor", s.realtime_factor}}},
               {"connection", {{"events_not_delivered", dropped}}}});
  }
};

}  // namespace

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server::Impl& server, tcp::socket socket, uint64_t id)
      : srv_(server), id_(id), ws_(std::move(socket)), overflow_timer_(server.io) {
    ++srv_.open_connections;
    cfg_ = srv_.cfg.session;
    cfg_.inputs_in_order = true;  // one producer, stamped in message order (see stamp())
    // The session's own audio queue (producer blocks when full) is sized past the server's limit, which
    // is checked before every push: the network thread never blocks on it.
    cfg_.audio_queue_seconds = 2 * srv_.cfg.max_queued_audio_s + 1;
    cfg_.record_rows = false;
    cfg_.recorder = nullptr;
  }

  void run() {
    outbox_ = std::make_shared<Outbox>();
    outbox_->max_messages = std::max<size_t>(1, srv_.cfg.send_queue_messages);
    outbox_->max_bytes = std::max<size_t>(1, srv_.cfg.send_queue_bytes);
    std::weak_ptr<Connection> weak = shared_from_this();
    auto exec = ws_.get_executor();
    outbox_->post_flush = [weak, exec] {
      net::post(exec, [weak] {
        if (auto c = weak.lock()) c->flush();
      });
    };
    outbox_->post_overflow = [weak, exec] {
      net::post(exec, [weak] {
        if (auto c = weak.lock()) c->on_overflow();
      });
    };
    translator_ = std::make_shared<EventTranslator>();
    translator_->out = outbox_;
    parser_.header_limit(8 << 10);
    parser_.body_limit(0);
    beast::get_lowest_layer(ws_).expires_after(kHttpTimeout);
    http::async_read(ws_.next_layer(), http_buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_http(ec); });
  }

  // Server::stop(), on the network thread: a close frame 1001 "server shutting down" to an upgraded
  // client (the session is abandoned at once); anything else is just closed.
  void close_going_away() {
    if (finished_) return;
    release_session();
    if (!upgraded_ || writing_ || closing_) return finish("server stopped");
    closing_ = true;  // no more reads handled, no more writes started
    ws_.async_close(websocket::close_reason(websocket::close_code::going_away, "server shutting down"),
                    [self = shared_from_this()](beast::error_code) { self->finish("server stopped"); });
  }

  // Server::stop(), after the network thread ended: the session goes now, on the caller's thread.
  void shut_down_now() {
    if (finished_) return;
    finished_ = true;
    --srv_.open_connections;
    if (holds_slot_) {
      holds_slot_ = false;
      if (session_) session_->abandon();
      session_.reset();
      srv_.update_stats([](ServerStats& s) { --s.active_sessions; });
    }
  }

 private:
  // ------------------------------------------------------------------ upgrade
  void on_http(beast::error_code ec) {
    if (ec) return finish("no valid upgrade request (" + ec.message() + ")");
    const auto& req = parser_.get();
    if (!websocket::is_upgrade(req))
      return refuse(http::status::upgrade_required, "upgrade_required",
                    "this is the Conflux realtime WebSocket endpoint; connect with a WebSocket client (docs/network-api.md)");
    if (!srv_.cfg.token.empty()) {
      std::string given = query_param(std::string_view(req.target().data(), req.target().size()), "token");
      const auto auth = req[http::field::authorization];
      if (auth.substr(0, 7) == "Bearer ") given = std::string(auth.substr(7));
      if (!constant_time_equal(given, srv_.cfg.token)) {
        srv_.update_stats([](ServerStats& s) { ++s.refused_unauthorized; });
        return refuse(http::status::unauthorized, "unauthorized",
                      given.empty() ? "this server requires a token: 'Authorization: Bearer TOKEN' or ?token=TOKEN"
                                    : "the token is wrong");
      }
    }
    bool admitted = false;
    int active = 0;
    srv_.update_stats([&](ServerStats& s) {
      active = s.active_sessions;
      if (s.active_sessions < srv_.cfg.max_sessions) {
        ++s.active_sessions;
        ++s.accepted;
        admitted = true;
      } else {
        ++s.refused_busy;
      }
    });
    if (!admitted)
      return refuse(http::status::service_unavailable, "server_busy",
                    "all " + std::to_string(srv_.cfg.max_sessions) + " sessions are in use (" + std::to_string(active) +
                        " active); try again later");
    holds_slot_ = true;
    beast::get_lowest_layer(ws_).expires_never();
    // A connection that sends nothing for kIdleTimeout is pinged halfway through; no answer (no pong, no
    // message) by the end of it closes the connection and frees its slot (a peer that vanished).
    websocket::stream_base::timeout timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
    timeouts.idle_timeout = kIdleTimeout;
    timeouts.keep_alive_pings = true;
    ws_.set_option(timeouts);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "conflux-serve"); }));
    // Messages past max_message_bytes are read and discarded piecewise (an error event, the connection
    // stays); only a message 64 times larger still is a protocol violation that closes it (1009).
    ws_.read_message_max(uint64_t(srv_.cfg.max_message_bytes) * 64);
    ws_.auto_fragment(false);
    ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

  void refuse(http::status status, const std::string& code, const std::string& message) {
    srv_.log("connection " + std::to_string(id_) + ": refused (" + std::to_string(int(status)) + " " + code + ")");
    auto res = std::make_shared<http::response<http::string_body>>(status, parser_.get().version());
    res->set(http::field::server, "conflux-serve");
    res->set(http::field::content_type, "application/json");
    if (status == http::status::unauthorized) res->set(http::field::www_authenticate, "Bearer");
    res->keep_alive(false);
    res->body() = dump({{"error", {{"type", "connection_refused"}, {"code", code}, {"message", message}}}}) + "\n";
    res->prepare_payload();
    http::async_write(ws_.next_layer(), *res, [self = shared_from_this(), res](beast::error_code, size_t) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
      self->finish("refused");
    });
  }

  void on_accept(beast::error_code ec) {
    if (ec) return finish("WebSocket handshake failed (" + ec.message() + ")");
    upgraded_ = true;
    srv_.log("connection " + std::to_string(id_) + ": session started");
    outbox_->send({{"type", "session.created"}, {"session", session_object()}});
    read_more();
  }

  // ------------------------------------------------------------------ reading
  void read_more() {
    ws_.async_read_some(read_buffer_, kReadChunk,
                        [self = shared_from_this()](beast::error_code ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec) {
      if (ec == websocket::error::closed) return finish("client closed the connection");
      return finish("read failed (" + ec.message() + ")");
    }
    if (finished_) return;
    if (closing_) {  // closing: keep reading only so that the close handshake can complete
      read_buffer_.consume(read_buffer_.size());
      return read_more();
    }
    if (!oversized_ && read_buffer_.size() > srv_.cfg.max_message_bytes) oversized_ = true;
    if (oversized_) {  // keep reading to the message's end, keeping nothing
      discarded_ += read_buffer_.size();
      read_buffer_.consume(read_buffer_.size());
    }
    if (ws_.is_message_done()) {
      if (oversized_) {
        send_error("message_too_large", "a message of " + std::to_string(discarded_) + " bytes exceeds the limit of " +
                                            std::to_string(srv_.cfg.max_message_bytes) + " bytes; it was ignored");
        oversized_ = false;
        discarded_ = 0;
      } else {
        handle_message(ws_.got_binary());
      }
      read_buffer_.consume(read_buffer_.size());
    }
    read_more();
  }

  void send_error(const std::string& code, const std::string& message, const json& event_id = nullptr) {
    outbox_->send({{"type", "error"},
                   {"error", {{"type", "invalid_request_error"}, {"code", code}, {"message", message}, {"event_id", event_id}}}});
  }

  void handle_message(bool binary) {
    const auto data = read_buffer_.cdata();
    const auto* bytes = static_cast<const uint8_t*>(data.data());
    json event_id = nullptr;
    try {
      if (binary) {  // raw PCM16 mono 16 kHz: the same as input_audio_buffer.append
        append_audio(bytes, data.size());
        return;
      }
      json ev;
      try {
        ev = json::parse(std::string_view(reinterpret_cast<const char*>(bytes), data.size()));
      } catch (const json::exception& e) {
        throw ClientError{"invalid_json", std::string("the message is not valid JSON: ") + e.what()};
      }
      if (!ev.is_object()) throw ClientError{"invalid_event", "an event must be a JSON object"};
      if (ev.contains("event_id")) event_id = ev["event_id"];
      if (!ev.contains("type") || !ev["type"].is_string()) throw ClientError{"invalid_event", "the event has no string field 'type'"};
      handle_event(ev["type"].get<std::string>(), ev);
    } catch (const ClientError& e) {
      send_error(e.code, e.message, event_id);
    } catch (const json::exception& e) {  // a field of the wrong type that a handler did not check itself
      send_error("invalid_value", e.what(), event_id);
    } catch (const std::exception& e) {
      send_error("server_error", e.what(), event_id);
    }
  }

  static const json& field(const json& obj, const char* name, const char* where) {
    if (!obj.is_object() || !obj.contains(name)) throw ClientError{"missing_field", std::string(where) + " needs the field '" + name + "'"};
    return obj[name];
  }
  static std::string string_field(const json& obj, const char* name, const char* where) {
    const json& v = field(obj, name, where);
    if (!v.is_string()) throw ClientError{"invalid_value", std::string(where) + "." + name + " must be a string"};
    return v.get<std::string>();
  }

  void handle_event(const std::string& type, const json& ev) {
    if (type == "input_audio_buffer.append") {
      const std::string audio = string_field(ev, "audio", type.c_str());
      std::string problem;
      const auto pcm = base64_decode(audio, problem);
      if (!pcm) throw ClientError{"invalid_base64", "input_audio_buffer.append.audio: " + problem};
      append_audio(pcm->data(), pcm->size());
    } else if (type == "input_audio_buffer.commit") {
      complete_partial_frame();
      outbox_->send({{"type", "input_audio_buffer.committed"}, {"item_id", "item_audio_" + std::to_string(++commits_)}, {"previous_item_id", nullptr}});
    } else if (type == "input_image_buffer.append") {
      push_image(decode_image_event(ev));
    } else if (type == "conversation.item.create") {
      create_item(field(ev, "item", type.c_str()));
    } else if (type == "response.create") {
      complete_partial_frame();
      ensure_session().request_answer(stamp());
    } else if (type == "response.cancel") {
      if (!session_ || !translator_->answering) throw ClientError{"response_cancel_not_active", "there is no response in progress to cancel"};
      session_->cancel_answer();
    } else if (type == "session.update") {
      update_session(field(ev, "session", type.c_str()));
      outbox_->send({{"type", "session.updated"}, {"session", session_object()}});
    } else {
      throw ClientError{"unknown_event", "unknown event type '" + type + "' (supported: session.update, input_audio_buffer.append, "
                                         "input_audio_buffer.commit, input_image_buffer.append, conversation.item.create, "
                                         "response.create, response.cancel)"};
    }
  }

  // ------------------------------------------------------------------ inputs
  Session& ensure_session() {
    if (!session_) {
      RuntimeConfig rc = srv_.cfg.runtime;
      session_ = std::make_unique<Session>(srv_.model, srv_.tok, rc, cfg_);
      translator_->session = session_.get();
      auto t = translator_;
      session_->subscribe([t](const SessionEvent& e) { t->on_event(e); });
      session_->start();
    }
    return *session_;
  }

  // The connection's input timeline (what the session orders inputs and samples video by): the audio
  // clock (first sample at audio_t0_, one sample per 1/16000 s) while audio flows, running on with the
  // wall clock from the last audio message when it stops; the wall clock before any audio. Every stamp
  // is later than the one before, so the session sees the inputs in message order.
  TimePoint stamp() {
    const TimePoint now = SessionClock::now();
    TimePoint t = now;
    if (audio_started_) t = audio_end() + std::max(SessionClock::duration::zero(), now - last_audio_wall_);
    t = std::max(t, last_when_ + std::chrono::microseconds(1));
    last_when_ = t;
    return t;
  }
  TimePoint audio_end() const { return audio_t0_ + seconds_dur(double(samples_received_) / kSampleRate); }

  void append_audio(const uint8_t* bytes, size_t n_bytes) {
    if (n_bytes % 2) throw ClientError{"invalid_audio", "PCM16 audio needs an even number of bytes, got " + std::to_string(n_bytes)};
    const size_t n = n_bytes / 2;
    if (n == 0) return;
    Session& s = ensure_session();
    // Audio received but not yet framed by the session (its published count lags, so this errs high).
    const int64_t framed = s.snapshot().audio_frames_in * kFrameSamples;
    const int64_t waiting = samples_received_ - framed;
    const int64_t limit = int64_t(srv_.cfg.max_queued_audio_s * kSampleRate);
    if (waiting + int64_t(n) > limit) {
      ++audio_chunks_refused_;
      throw ClientError{"audio_queue_full",
                        std::to_string(waiting * 1000 / kSampleRate) + " ms of audio are waiting for the session (limit " +
                            std::to_string(limit * 1000 / kSampleRate) + " ms); this " + std::to_string(n * 1000 / kSampleRate) +
                            " ms chunk was dropped (" + std::to_string(audio_chunks_refused_) + " so far)"};
    }
    const TimePoint now = SessionClock::now();
    if (!audio_started_) {
      audio_started_ = true;
      audio_t0_ = std::max(now, last_when_ + std::chrono::microseconds(1));
      translator_->audio_t0_ns = EventTranslator::ns(audio_t0_);
    }
    last_audio_wall_ = now;
    translator_->last_audio_arrival_ns = EventTranslator::ns(now);
    pcm16_to_float(bytes, n, samples_);
    partial_.insert(partial_.end(), samples_.begin(), samples_.end());
    samples_received_ += int64_t(n);
    push_whole_frames();
  }

  // Audio goes to the session in whole 40 ms frames (one queue item each, so the queue's bound in items
  // is a bound in samples); the remainder waits for the next chunk.
  void push_whole_frames() {
    const size_t whole = partial_.size() / kFrameSamples * kFrameSamples;
    if (whole == 0) return;
    const TimePoint captured = audio_t0_ + seconds_dur(double(samples_pushed_) / kSampleRate);
    session_->push_audio(partial_.data(), whole, captured);
    samples_pushed_ += int64_t(whole);
    partial_.erase(partial_.begin(), partial_.begin() + long(whole));
  }

  // Commit, typed text and response.create end what the client said: a partial last frame is completed
  // with silence (as `conflux generate` pads a WAV's last frame) so that all of it is in the model.
  void complete_partial_frame() {
    if (partial_.empty()) return;
    samples_received_ += int64_t(kFrameSamples - partial_.size());
    partial_.resize(kFrameSamples, 0.f);
    push_whole_frames();
  }

  ImageRGB decode_image_event(const json& ev) {
    std::string format = ev.contains("format") ? string_field(ev, "format", "input_image_buffer.append") : "";
    std::string b64;
    if (ev.contains("image_url")) {
      const std::string url = string_field(ev, "image_url", "input_image_buffer.append");
      b64 = data_url_payload(url, format);
    } else {
      b64 = string_field(ev, "image", "input_image_buffer.append");
    }
    std::string problem;
    const auto bytes = base64_decode(b64, problem);
    if (!bytes) throw ClientError{"invalid_base64", "input_image_buffer.append image: " + problem};
    if (format == "rgb") {
      auto dim = [&](const char* name) {
        const json& v = field(ev, name, "input_image_buffer.append with format rgb");
        if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > 65535)
          throw ClientError{"invalid_value", std::string("input_image_buffer.append.") + name + " must be an integer in 1..65535"};
        return int(v.get<int64_t>());
      };
      const int w = dim("width"), h = dim("height");
      check_pixels(w, h);
      if (bytes->size() != size_t(w) * size_t(h) * 3)
        throw ClientError{"invalid_image", "raw RGB of " + std::to_string(w) + "x" + std::to_string(h) + " needs " +
                                               std::to_string(size_t(w) * h * 3) + " bytes, got " + std::to_string(bytes->size())};
      ImageRGB img;
      img.width = w;
      img.height = h;
      img.rgb = std::move(*bytes);
      return img;
    }
    if (!format.empty() && format != "jpeg" && format != "png")
      throw ClientError{"invalid_value", "input_image_buffer.append.format must be jpeg, png or rgb, got '" + format + "'"};
    int w = 0, h = 0;
    if (!image_dimensions(bytes->data(), bytes->size(), w, h))
      throw ClientError{"invalid_image", "the image (" + std::to_string(bytes->size()) + " bytes) is not a readable PNG or JPEG"};
    check_pixels(w, h);
    try {
      return decode_image(bytes->data(), bytes->size(), "from the client");
    } catch (const std::exception& e) {
      throw ClientError{"invalid_image", e.what()};
    }
  }

  static std::string data_url_payload(const std::string& url, std::string& format) {
    const size_t comma = url.find(',');
    if (url.rfind("data:", 0) != 0 || comma == std::string::npos || url.substr(0, comma).find(";base64") == std::string::npos)
      throw ClientError{"invalid_value", "image_url must be a data URL (data:image/png;base64,...); remote URLs are not fetched"};
    const std::string mime = url.substr(5, url.find(';') - 5);
    if (format.empty()) format = mime == "image/png" ? "png" : mime == "image/jpeg" ? "jpeg" : "";
    return url.substr(comma + 1);
  }

  void check_pixels(int w, int h) const {
    if (int64_t(w) * h > srv_.cfg.max_image_pixels)
      throw ClientError{"image_too_large", "a " + std::to_string(w) + "x" + std::to_string(h) + " image exceeds the limit of " +
                                               std::to_string(srv_.cfg.max_image_pixels) + " pixels"};
  }

  void push_image(ImageRGB img) {
    Session& s = ensure_session();
    s.push_video(std::move(img), stamp());
  }

  void create_item(const json& item) {
    if (!item.is_object()) throw ClientError{"invalid_value", "conversation.item.create.item must be an object"};
    const std::string type = item.contains("type") ? string_field(item, "type", "item") : "message";
    if (type != "message") throw ClientError{"not_supported", "only items of type 'message' are supported, got '" + type + "'"};
    const std::string role = item.contains("role") ? string_field(item, "role", "item") : "user";
    if (role != "user")
      throw ClientError{"not_supported", "only user messages can be added (role '" + role + "'); set the system prompt with session.update instructions"};
    const json& content = field(item, "content", "item");
    if (!content.is_array() || content.empty()) throw ClientError{"invalid_value", "item.content must be a non-empty array"};
    // Check every part before any goes in, so a bad part leaves the conversation unchanged.
    std::vector<std::pair<std::string, std::optional<ImageRGB>>> parts;
    for (const json& part : content) {
      const std::string kind = string_field(part, "type", "item.content[]");
      if (kind == "input_text") {
        parts.push_back({string_field(part, "text", "item.content[] input_text"), std::nullopt});
      } else if (kind == "input_image") {
        parts.push_back({"", decode_image_event(part)});
      } else {
        throw ClientError{"not_supported", "content parts of type '" + kind + "' are not supported (input_text, input_image)"};
      }
    }
    complete_partial_frame();
    Session& s = ensure_session();
    for (auto& [text, image] : parts) {
      if (image) s.push_video(std::move(*image), stamp());
      else s.push_user_text(text, stamp());
    }
    json echo = item;
    echo["id"] = "item_" + std::to_string(++items_);
    outbox_->send({{"type", "conversation.item.created"}, {"previous_item_id", nullptr}, {"item", echo}});
  }

  // ------------------------------------------------------------------ session settings
  json session_object() const {
    const LiveSettings s = live_settings_of(cfg_);
    json td = nullptr;
    if (s.vad.enabled)
      td = {{"type", "server_vad"}, {"prefix_padding_ms", s.vad.preroll_ms}, {"silence_duration_ms", s.vad.hangover_ms},
            {"create_response", true}, {"likelihood", s.vad.likelihood}, {"min_speech_ms", s.vad.min_speech_ms},
            {"min_snr_db", s.vad.min_snr_db}};
    return {{"id", "sess_" + std::to_string(id_)},
            {"object", "realtime.session"},
            {"model", std::filesystem::path(srv_.model.dir()).filename().string()},
            {"modalities", json::array({"text"})},
            {"instructions", cfg_.system_prompt},
            {"input_audio_format", "pcm16"},
            {"turn_detection", td},
            {"temperature", cfg_.sampling.temperature},
            {"max_response_output_tokens", s.max_answer_tokens},
            {"conflux", {{"image_budget", s.image_budget},
                         {"video_fps", s.video_fps},
                         {"barge_in", s.barge_in},
                         {"commentary_interval_s", s.commentary_interval_s},
                         {"top_k", cfg_.sampling.top_k},
                         {"top_p", cfg_.sampling.top_p},
                         {"seed", cfg_.sampling.seed},
                         {"limits", {{"max_message_bytes", srv_.cfg.max_message_bytes},
                                     {"max_queued_audio_s", srv_.cfg.max_queued_audio_s},
                                     {"max_image_pixels", srv_.cfg.max_image_pixels},
                                     {"max_image_budget", srv_.cfg.runtime.max_chunk}}}}}};
  }

  static double number(const json& obj, const char* name, const std::string& where, double lo, double hi) {
    const json& v = obj[name];
    if (!v.is_number()) throw ClientError{"invalid_value", where + "." + name + " must be a number"};
    const double x = v.get<double>();
    if (!(x >= lo && x <= hi))
      throw ClientError{"invalid_value", where + "." + name + " = " + v.dump() + " is out of range [" + json(lo).dump() + ", " + json(hi).dump() + "]"};
    return x;
  }

  // Validates the whole update first; applies nothing if any field is bad. Instructions and sampling are
  // fixed once the session has started (they shape its first rows and its sampler).
  void update_session(const json& u) {
    if (!u.is_object()) throw ClientError{"invalid_value", "session.update.session must be an object"};
    SessionConfig next = cfg_;
    LiveSettings live = live_settings_of(cfg_);
    bool fixed_changed = false;
    if (u.contains("instructions")) {
      if (!u["instructions"].is_string()) throw ClientError{"invalid_value", "session.instructions must be a string"};
      fixed_changed |= u["instructions"].get<std::string>() != next.system_prompt;
      next.system_prompt = u["instructions"].get<std::string>();
    }
    if (u.contains("temperature")) {
      next.sampling.temperature = float(number(u, "temperature", "session", 0, 100));
      fixed_changed |= next.sampling.temperature != cfg_.sampling.temperature;
    }
    if (u.contains("max_response_output_tokens")) {
      const json& v = u["max_response_output_tokens"];
      if (v == "inf") live.max_answer_tokens = srv_.cfg.max_answer_tokens_cap;
      else live.max_answer_tokens = int(number(u, "max_response_output_tokens", "session", 1, srv_.cfg.max_answer_tokens_cap));
    }
    if (u.contains("turn_detection")) {
      const json& td = u["turn_detection"];
      if (td.is_null()) {
        live.vad.enabled = false;
      } else if (td.is_object()) {
        const std::string type = td.contains("type") ? string_field(td, "type", "session.turn_detection") : "server_vad";
        if (type != "server_vad") throw ClientError{"not_supported", "turn_detection.type '" + type + "' is not supported (server_vad or null)"};
        if (td.contains("create_response") && td["create_response"] != true)
          throw ClientError{"not_supported", "turn_detection.create_response must be true: end of speech always answers"};
        live.vad.enabled = true;
        const std::string where = "session.turn_detection";
        if (td.contains("threshold"))  // OpenAI's 0..1 (higher = less sensitive) onto WebRTC's likelihood 3..0
          live.vad.likelihood = 3 - std::min(3, int(number(td, "threshold", where, 0, 1) * 4));
        if (td.contains("likelihood")) live.vad.likelihood = int(number(td, "likelihood", where, 0, 3));
        if (td.contains("prefix_padding_ms")) live.vad.preroll_ms = int(number(td, "prefix_padding_ms", where, 0, 2000));
        if (td.contains("silence_duration_ms")) live.vad.hangover_ms = int(number(td, "silence_duration_ms", where, 0, 10000));
        if (td.contains("min_speech_ms")) live.vad.min_speech_ms = int(number(td, "min_speech_ms", where, 0, 5000));
        if (td.contains("min_snr_db")) live.vad.min_snr_db = float(number(td, "min_snr_db", where, 0, 60));
      } else {
        throw ClientError{"invalid_value", "session.turn_detection must be an object or null"};
      }
    }
    if (u.contains("conflux")) {
      const json& c = u["conflux"];
      if (!c.is_object()) throw ClientError{"invalid_value", "session.conflux must be an object"};
      const std::string where = "session.conflux";
      if (c.contains("image_budget")) {
        const int b = int(number(c, "image_budget", where, 1, kMaxImageBudget));
        if (!is_supported_budget(b) || b > srv_.cfg.runtime.max_chunk)
          throw ClientError{"invalid_value", "session.conflux.image_budget must be from 1 to " +
                                                 std::to_string(srv_.cfg.runtime.max_chunk) + " on this server"};
        live.image_budget = b;
      }
      if (c.contains("video_fps")) live.video_fps = number(c, "video_fps", where, 0.01, 60);
      if (c.contains("barge_in")) {
        if (!c["barge_in"].is_boolean()) throw ClientError{"invalid_value", "session.conflux.barge_in must be true or false"};
        live.barge_in = c["barge_in"].get<bool>();
      }
      if (c.contains("commentary_interval_s")) live.commentary_interval_s = number(c, "commentary_interval_s", where, 0, 3600);
      if (c.contains("top_k")) {
        next.sampling.top_k = int(number(c, "top_k", where, 0, 1e6));
        fixed_changed |= next.sampling.top_k != cfg_.sampling.top_k;
      }
      if (c.contains("top_p")) {
        next.sampling.top_p = float(number(c, "top_p", where, 1e-6, 1));
        fixed_changed |= next.sampling.top_p != cfg_.sampling.top_p;
      }
      if (c.contains("seed")) {
        next.sampling.seed = uint64_t(number(c, "seed", where, 0, 9007199254740992.0));
        fixed_changed |= next.sampling.seed != cfg_.sampling.seed;
      }
    }
    if (fixed_changed && session_)
      throw ClientError{"session_started", "instructions, temperature, top_k, top_p and seed can only be set before the first "
                                           "input (audio, image, text or response.create); nothing was changed"};
    apply_live_settings(live, next);
    cfg_ = next;
    if (session_) session_->update_settings(live, stamp());
  }

  // ------------------------------------------------------------------ writing
  void flush() {
    if (writing_ || finished_ || closing_) return;
    {
      std::lock_guard<std::mutex> lock(outbox_->mu);
      if (outbox_->queue.empty()) {
        outbox_->flush_posted = false;
        return;
      }
      write_msg_ = std::move(outbox_->queue.front());
      outbox_->queue.pop_front();
      outbox_->bytes -= write_msg_.size();
    }
    writing_ = true;
    ws_.text(true);
    ws_.async_write(net::buffer(write_msg_), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (ec) return self->finish("write failed (" + ec.message() + ")");
      self->flush();
    });
  }

  // The client stopped reading and its queue overflowed: its session goes at once (inference stops), a
  // close frame is attempted, and the socket is cut if that cannot be sent within a second.
  void on_overflow() {
    if (finished_ || closing_) return;
    closing_ = true;
    srv_.update_stats([](ServerStats& s) { ++s.closed_send_overflow; });
    srv_.log("connection " + std::to_string(id_) + ": send queue overflow: closing (client is not reading)");
    release_session();
    if (!writing_) {
      ws_.async_close(websocket::close_reason(websocket::close_code::policy_error, "send queue overflow: client is not reading"),
                      [self = shared_from_this()](beast::error_code) {});
    }
    overflow_timer_.expires_after(kOverflowCloseGrace);
    overflow_timer_.async_wait([self = shared_from_this()](beast::error_code) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->ws_).socket().close(ignored);
      self->finish("send queue overflow");
    });
  }

  void release_session() {
    if (!holds_slot_) return;
    holds_slot_ = false;
    srv_.release_slot(std::move(session_));
  }

  void finish(const std::string& why) {
    if (finished_) return;
    finished_ = true;
    --srv_.open_connections;
    const bool had_slot = holds_slot_;
    release_session();
    uint64_t dropped = 0;
    if (outbox_) {
      std::lock_guard<std::mutex> lock(outbox_->mu);
      dropped = outbox_->dropped;
      outbox_->queue.clear();
    }
    if (dropped) srv_.update_stats([&](ServerStats& s) { s.events_not_delivered += dropped; });
    if (had_slot || closing_)
      srv_.log("connection " + std::to_string(id_) + ": closed: " + why + (dropped ? " (" + std::to_string(dropped) + " events not delivered)" : ""));
    beast::error_code ignored;
    overflow_timer_.cancel();
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  Server::Impl& srv_;
  const uint64_t id_;
  websocket::stream<beast::tcp_stream> ws_;
  net::steady_timer overflow_timer_;
  beast::flat_buffer http_buffer_;
  http::request_parser<http::empty_body> parser_;
  beast::flat_buffer read_buffer_;
  bool oversized_ = false;
  size_t discarded_ = 0;
  std::string write_msg_;
  bool writing_ = false, finished_ = false, closing_ = false, holds_slot_ = false, upgraded_ = false;
  std::shared_ptr<Outbox> outbox_;
  std::shared_ptr<EventTranslator> translator_;

  SessionConfig cfg_;                 // applied at session start; live part mirrored afterwards
  std::unique_ptr<Session> session_;  // created at the first input
  // Input timeline and audio framing (see stamp()).
  TimePoint last_when_{};
  bool audio_started_ = false;
  TimePoint audio_t0_{}, last_audio_wall_{};
  int64_t samples_received_ = 0, samples_pushed_ = 0;
  std::vector<float> partial_;   // (< 640) samples of the frame being completed
  std::vector<float> samples_;   // (n) scratch: one message's samples
  uint64_t audio_chunks_refused_ = 0, commits_ = 0, items_ = 0;
};

void Server::Impl::do_accept() {
  acceptor.async_accept(io, [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);  // deltas are small: send each at once
      if (cfg.socket_send_buffer_bytes > 0) socket.set_option(net::socket_base::send_buffer_size(cfg.socket_send_buffer_bytes), ignored);
      auto c = std::make_shared<Connection>(*this, std::move(socket), next_id++);
      connections.erase(std::remove_if(connections.begin(), connections.end(), [](const auto& w) { return w.expired(); }),
                        connections.end());
      connections.push_back(c);
      c->run();
    }
    do_accept();
  });
}

Server::Server(const Model& model, const Tokenizer& tokenizer, ServerConfig config)
    : impl_(std::make_unique<Impl>(model, tokenizer, std::move(config))) {
  ServerConfig& c = impl_->cfg;
  if (c.max_sessions < 1) throw std::runtime_error("--max-sessions must be at least 1");
  if (!is_loopback_address(c.host) && c.token.empty())
    throw std::runtime_error("--host " + c.host + " is not a loopback address: a --token is required to serve beyond this machine");
  boost::system::error_code ec;
  const auto address = net::ip::make_address(c.host == "localhost" ? "127.0.0.1" : c.host, ec);
  const tcp::endpoint endpoint(address, uint16_t(c.port));
  auto& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on " + c.host + ":" + std::to_string(c.port) + ": " + ec.message());
}

Server::~Server() { stop(); }

int Server::port() const { return impl_->acceptor.local_endpoint().port(); }

void Server::start() {
  if (impl_->io_thread.joinable()) return;
  impl_->reaper = std::thread([this] { impl_->reap_loop(); });
  impl_->do_accept();
  impl_->io_thread = std::thread([this] { impl_->io.run(); });
}

void Server::stop() {
  if (!impl_ || !impl_->io_thread.joinable()) return;
  net::post(impl_->io, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    for (auto& w : impl_->connections)
      if (auto c = w.lock()) c->close_going_away();
  });
  // Up to a second for the close handshakes; a client that does not answer is cut below.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (impl_->open_connections > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  impl_->io.stop();
  impl_->io_thread.join();
  for (auto& w : impl_->connections)
    if (auto c = w.lock()) c->shut_down_now();
  {
    std::lock_guard<std::mutex> lock(impl_->reap_mu);
    impl_->reaper_stop = true;
  }
  impl_->reap_cv.notify_one();
  impl_->reaper.join();
}

ServerStats Server::stats() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  return impl_->stats;
}

}  // namespace conflux::server
