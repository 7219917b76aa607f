// Session recordings (see recording.h and docs/recording-format.md): the writer thread that turns the
// session's recorder calls into session.json, audio.f32, frames/*.png and timeline.jsonl; the validating
// reader; and the feeder that pushes a recording back into a session.
#include "capture/recording.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace conflux {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormatName = "conflux-recording";
constexpr int64_t kFrameBytes = int64_t(kRecordingFrameSamples) * int64_t(sizeof(float));
// Audio frames are coalesced into one timeline line per second of audio at most.
constexpr int64_t kMaxSamplesPerLine = kRecordingSampleRate;
// A line's time may differ from the audio clock's by the nanosecond truncations of the two computations
// and the microsecond the format promises; anything beyond is a different clock.
constexpr auto kAudioClockTolerance = std::chrono::microseconds(1);

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Milliseconds as a double: nanosecond counts below 2^50 (13 days) survive ms -> ns rounding exactly,
// and JSON numbers are printed with round-trip precision.
double to_ms(SessionClock::duration d) {
  return double(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()) / 1e6;
}
SessionClock::duration from_ms(double ms) {
  return std::chrono::duration_cast<SessionClock::duration>(std::chrono::nanoseconds(std::llround(ms * 1e6)));
}

// The session's frame time for a sample index on its audio clock (session.cc computes it the same way).
SessionClock::duration audio_clock_offset(int64_t sample) {
  return std::chrono::duration_cast<SessionClock::duration>(
      std::chrono::duration<double>(double(sample) / kRecordingSampleRate));
}

// audio.f32 is little-endian on every machine; swap on the (rare) big-endian host.
void swap_to_from_little_endian(float* samples, size_t n) {
  if constexpr (std::endian::native == std::endian::big) {
    for (size_t i = 0; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, samples + i, 4);
      bits = (bits >> 24) | ((bits >> 8) & 0xff00u) | ((bits << 8) & 0xff0000u) | (bits << 24);
      std::memcpy(samples + i, &bits, 4);
    }
  }
}

std::string utc_string(TimePoint steady_time) {
  const auto system_now = std::chrono::system_clock::now();
  const auto system_time =
      system_now - std::chrono::duration_cast<std::chrono::system_clock::duration>(SessionClock::now() - steady_time);
  const std::time_t seconds = std::chrono::system_clock::to_time_t(system_time);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(system_time.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)(micros < 0 ? micros + 1000000 : micros));
  return buf;
}

std::string read_whole_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

// ============================================================================================== writer

RecordingWriter::RecordingWriter(std::string dir, RecordingWriterOptions options)
    : dir_(std::move(dir)), options_(options) {
  const fs::path root(dir_);
  std::error_code ec;
  fs::create_directories(root / "frames", ec);
  if (ec) throw std::runtime_error("cannot create recording folder " + (root / "frames").string() + ": " + ec.message());
  for (const char* name : {"session.json", "timeline.jsonl", "audio.f32"})
    if (fs::exists(root / name))
      throw std::runtime_error(dir_ + " already holds a recording (" + name + "); not overwriting it");
  audio_file_ = std::fopen((root / "audio.f32").c_str(), "wb");
  timeline_file_ = std::fopen((root / "timeline.jsonl").c_str(), "wb");
  if (!audio_file_ || !timeline_file_) {
    const std::string why = std::strerror(errno);
    if (audio_file_) std::fclose(audio_file_);
    if (timeline_file_) std::fclose(timeline_file_);
    throw std::runtime_error("cannot create the data files in " + dir_ + ": " + why);
  }
  thread_ = std::thread([this] { run(); });
}

RecordingWriter::~RecordingWriter() { finish(); }

// ------------------------------------------------------------------ session side: copy and queue

bool RecordingWriter::enqueue(Item item, size_t bytes, bool always) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_queued_) return false;
    // An item larger than the whole budget still goes in when nothing else is queued.
    if (!always && queued_bytes_ > 0 && queued_bytes_ + bytes > options_.max_queue_bytes) return false;
    if (std::holds_alternative<StopItem>(item)) stop_queued_ = true;
    queue_.push_back(Queued{std::move(item), bytes});
    queued_bytes_ += bytes;
    stats_.queue_high_water_bytes = std::max(stats_.queue_high_water_bytes, queued_bytes_);
  }
  queue_cv_.notify_one();
  return true;
}

void RecordingWriter::on_start(const std::string& settings_json, TimePoint origin) {
  enqueue(StartItem{settings_json, origin}, sizeof(Queued) + settings_json.size(), /*always=*/true);
}

void RecordingWriter::on_audio_frame(const float* samples, size_t n, TimePoint input_time) {
  const int64_t first_sample = next_stream_sample_;
  next_stream_sample_ += int64_t(n);
  if (n != size_t(kRecordingFrameSamples)) {  // the format's frame invariants rest on this
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.dropped_audio_frames;
    if (stats_.error.empty()) stats_.error = "audio frame of " + std::to_string(n) + " samples (a frame is 640)";
    return;
  }
  AudioItem item{std::vector<float>(samples, samples + n), first_sample, input_time, lost_audio_};
  if (enqueue(std::move(item), sizeof(Queued) + n * sizeof(float), false)) {
    lost_audio_ = {};
    return;
  }
  // Refused: the writer fills the gap with zeros and an audio_lost line when the next frame gets through,
  // so sample indices stay the session's audio clock.
  if (lost_audio_.samples == 0) lost_audio_.first_time = input_time;
  lost_audio_.samples += int64_t(n);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.dropped_audio_frames;
}

void RecordingWriter::on_video_frame(const ImageRGB& frame, TimePoint captured) {
  const size_t bytes = sizeof(Queued) + frame.rgb.size();
  if (!enqueue(VideoItem{frame, captured}, bytes, false)) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.dropped_video_frames;
  }
}

void RecordingWriter::on_text(const std::string& text, TimePoint when) {
  if (!enqueue(TextItem{text, when}, sizeof(Queued) + text.size(), false)) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.dropped_texts;
  }
}

void RecordingWriter::on_settings(const std::string& settings_json, TimePoint when) {
  // Always queued (like start and stop): a lost settings line would make the replay diverge silently.
  enqueue(SettingsItem{settings_json, when}, sizeof(Queued) + settings_json.size(), true);
}

void RecordingWriter::on_push_to_talk(bool pressed, TimePoint when) {
  if (!enqueue(PushToTalkItem{pressed, when}, sizeof(Queued), false)) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.dropped_push_to_talk;
  }
}

void RecordingWriter::on_event(const SessionEvent& event) {
  if (!enqueue(EventItem{event}, sizeof(Queued) + event.text.size(), false)) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.dropped_events;
  }
}

void RecordingWriter::on_stop() { finish(); }

void RecordingWriter::finish() {
  enqueue(StopItem{lost_audio_}, sizeof(Queued), /*always=*/true);  // refused only if already queued
  std::call_once(join_once_, [this] {
    thread_.join();
    std::fclose(audio_file_);
    std::fclose(timeline_file_);
    audio_file_ = timeline_file_ = nullptr;
  });
}

RecordingWriterStats RecordingWriter::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  RecordingWriterStats s = stats_;
  s.queued_bytes = queued_bytes_;
  return s;
}

// ------------------------------------------------------------------ writer thread

void RecordingWriter::run() {
  const auto flush_interval = std::chrono::duration_cast<SessionClock::duration>(
      std::chrono::duration<double>(options_.flush_interval_s));
  for (;;) {
    std::optional<Queued> next;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto has_item = [&] { return !queue_.empty(); };
      if (pending_) queue_cv_.wait_until(lock, pending_since_wall_ + flush_interval, has_item);
      else queue_cv_.wait(lock, has_item);
      if (!queue_.empty()) {
        next.emplace(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // Any I/O error stops the writing for good: later lines could not be trusted to follow earlier ones.
    const auto guarded = [&](auto&& step) {
      if (failed_) return;
      try {
        step();
      } catch (const std::exception& e) {
        failed_ = true;
        std::lock_guard<std::mutex> lock(mu_);
        if (stats_.error.empty()) stats_.error = e.what();
      }
    };
    if (!next) {  // input stalled with lines buffered: the wall-clock deadline
      guarded([&] { flush(); });
      continue;
    }
    const bool stop = std::holds_alternative<StopItem>(next->item);
    guarded([&] {
      handle(next->item);
      write_dropped_line_if_changed();
      if (stop || flush_due()) flush();
    });
    {
      // The item's memory is released only now, so the budget covers the item being encoded.
      std::lock_guard<std::mutex> lock(mu_);
      queued_bytes_ -= next->bytes;
    }
    if (stop) return;
  }
}

std::string RecordingWriter::ms_json(TimePoint t) const { return dump(json(to_ms(t - origin_))); }

void RecordingWriter::note_input_time(TimePoint t) {
  if (!has_pending_input_time_) {
    has_pending_input_time_ = true;
    pending_first_input_ = newest_input_ = t;
  }
  newest_input_ = std::max(newest_input_, t);
}

void RecordingWriter::handle(Item& item) {
  if (!std::holds_alternative<StartItem>(item) && !std::holds_alternative<StopItem>(item) && !started_)
    throw std::runtime_error("recorder input before on_start");
  if (!pending_) {
    pending_ = true;
    pending_since_wall_ = SessionClock::now();
  }
  if (auto* start = std::get_if<StartItem>(&item)) {
    origin_ = start->origin;
    started_ = true;
    json settings;
    try {
      settings = json::parse(start->settings_json);
    } catch (const json::exception& e) {
      throw std::runtime_error(std::string("session settings are not JSON: ") + e.what());
    }
    const json session = {
        {"format", kFormatName},
        {"version", kRecordingFormatVersion},
        {"origin", {{"steady_ns", std::chrono::duration_cast<std::chrono::nanoseconds>(origin_.time_since_epoch()).count()},
                    {"utc", utc_string(origin_)}}},
        {"audio", {{"file", "audio.f32"}, {"sample_rate", kRecordingSampleRate}, {"channels", 1},
                   {"sample_format", "float32le"}, {"frame_samples", kRecordingFrameSamples}}},
        {"settings", settings},
    };
    // Written whole under a temporary name and renamed: a reader sees all of it or none.
    const fs::path final_path = fs::path(dir_) / "session.json", temp_path = fs::path(dir_) / "session.json.tmp";
    {
      std::ofstream out(temp_path, std::ios::binary);
      out << session.dump(2) << '\n';
      if (!out.flush()) throw std::runtime_error("cannot write " + temp_path.string());
    }
    std::error_code ec;
    fs::rename(temp_path, final_path, ec);
    if (ec) throw std::runtime_error("cannot rename " + temp_path.string() + ": " + ec.message());
  } else if (auto* audio = std::get_if<AudioItem>(&item)) {
    handle_audio(*audio);
  } else if (auto* video = std::get_if<VideoItem>(&item)) {
    close_audio_run();
    char name[32];
    std::snprintf(name, sizeof name, "frames/%06d.png", ++frame_count_);
    // Encoded under a temporary name and renamed, so a PNG the timeline names is always complete.
    const fs::path final_path = fs::path(dir_) / name;
    const fs::path temp_path = final_path.string() + ".tmp";
    save_png(temp_path.string(), video->frame);
    std::error_code ec;
    fs::rename(temp_path, final_path, ec);
    if (ec) throw std::runtime_error("cannot rename " + temp_path.string() + ": " + ec.message());
    pending_lines_ += "{\"kind\":\"video\",\"file\":\"" + std::string(name) + "\",\"width\":" +
                      std::to_string(video->frame.width) + ",\"height\":" + std::to_string(video->frame.height) +
                      ",\"t_ms\":" + ms_json(video->time) + "}\n";
    note_input_time(video->time);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.video_frames;
  } else if (auto* text = std::get_if<TextItem>(&item)) {
    close_audio_run();
    pending_lines_ += dump(json{{"kind", "text"}, {"text", text->text}, {"t_ms", to_ms(text->time - origin_)}}) + "\n";
    note_input_time(text->time);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.texts;
  } else if (auto* update = std::get_if<SettingsItem>(&item)) {
    close_audio_run();
    pending_lines_ += "{\"kind\":\"settings\",\"settings\":" + update->json + ",\"t_ms\":" + ms_json(update->time) + "}\n";
    note_input_time(update->time);
  } else if (auto* ptt = std::get_if<PushToTalkItem>(&item)) {
    close_audio_run();
    pending_lines_ += "{\"kind\":\"ptt\",\"pressed\":" + std::string(ptt->pressed ? "true" : "false") +
                      ",\"t_ms\":" + ms_json(ptt->time) + "}\n";
    note_input_time(ptt->time);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.push_to_talk;
  } else if (auto* event = std::get_if<EventItem>(&item)) {
    close_audio_run();
    // event_to_json gives a non-empty object; "kind" goes in front of its first member.
    const std::string fields = event_to_json(event->event, origin_);
    pending_lines_ += "{\"kind\":\"event\"," + fields.substr(1) + "\n";
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.events;
  } else if (auto* stop = std::get_if<StopItem>(&item)) {
    if (started_) write_lost_audio(stop->lost_before);
  }
}

void RecordingWriter::handle_audio(AudioItem& a) {
  write_lost_audio(a.lost_before);
  if (a.first_sample != samples_in_file_)
    throw std::runtime_error("audio frame at sample " + std::to_string(a.first_sample) + " but audio.f32 is at " +
                             std::to_string(samples_in_file_));
  if (run_first_sample_ >= 0 && run_samples_ >= kMaxSamplesPerLine) close_audio_run();
  if (run_first_sample_ < 0) {
    run_first_sample_ = samples_in_file_;
    run_samples_ = 0;
    run_time_ = a.time;
  }
  pending_audio_.insert(pending_audio_.end(), a.samples.begin(), a.samples.end());
  samples_in_file_ += int64_t(a.samples.size());
  run_samples_ += int64_t(a.samples.size());
  note_input_time(a.time);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.audio_frames;
}

void RecordingWriter::write_lost_audio(const LostAudio& lost) {
  if (lost.samples == 0) return;
  close_audio_run();
  pending_audio_.resize(pending_audio_.size() + size_t(lost.samples), 0.f);
  pending_lines_ += "{\"kind\":\"audio_lost\",\"sample\":" + std::to_string(samples_in_file_) +
                    ",\"n\":" + std::to_string(lost.samples) + ",\"t_ms\":" + ms_json(lost.first_time) + "}\n";
  samples_in_file_ += lost.samples;
  note_input_time(lost.first_time);
}

void RecordingWriter::close_audio_run() {
  if (run_first_sample_ < 0) return;
  pending_lines_ += "{\"kind\":\"audio\",\"sample\":" + std::to_string(run_first_sample_) +
                    ",\"n\":" + std::to_string(run_samples_) + ",\"t_ms\":" + ms_json(run_time_) + "}\n";
  run_first_sample_ = -1;
  run_samples_ = 0;
}

void RecordingWriter::write_dropped_line_if_changed() {
  RecordingWriterStats s = stats();
  if (s.dropped_total() == dropped_written_) return;
  dropped_written_ = s.dropped_total();
  close_audio_run();
  pending_lines_ += dump(json{{"kind", "recorder_dropped"},
                              {"audio_frames", s.dropped_audio_frames},
                              {"video_frames", s.dropped_video_frames},
                              {"texts", s.dropped_texts},
                              {"push_to_talk", s.dropped_push_to_talk},
                              {"events", s.dropped_events}}) +
                    "\n";
}

bool RecordingWriter::flush_due() const {
  if (!pending_) return false;
  const auto interval = std::chrono::duration<double>(options_.flush_interval_s);
  if (has_pending_input_time_ && newest_input_ - pending_first_input_ >= interval) return true;
  return SessionClock::now() - pending_since_wall_ >= interval;
}

void RecordingWriter::flush() {
  if (failed_ || !pending_) return;
  close_audio_run();
  // Audio first: a timeline line only ever reaches the file after the samples it names.
  if (!pending_audio_.empty()) {
    swap_to_from_little_endian(pending_audio_.data(), pending_audio_.size());
    if (std::fwrite(pending_audio_.data(), sizeof(float), pending_audio_.size(), audio_file_) != pending_audio_.size())
      throw std::runtime_error("cannot write " + dir_ + "/audio.f32: " + std::strerror(errno));
  }
  if (std::fflush(audio_file_) != 0) throw std::runtime_error("cannot write " + dir_ + "/audio.f32: " + std::strerror(errno));
  if (!pending_lines_.empty() &&
      std::fwrite(pending_lines_.data(), 1, pending_lines_.size(), timeline_file_) != pending_lines_.size())
    throw std::runtime_error("cannot write " + dir_ + "/timeline.jsonl: " + std::strerror(errno));
  if (std::fflush(timeline_file_) != 0)
    throw std::runtime_error("cannot write " + dir_ + "/timeline.jsonl: " + std::strerror(errno));
  pending_audio_.clear();
  pending_lines_.clear();
  pending_ = false;
  has_pending_input_time_ = false;
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.flushes;
}

// ============================================================================================== reader

SessionClock::duration Recording::audio_time(int64_t sample) const { return audio_clock_start + audio_clock_offset(sample); }

ImageRGB Recording::load_frame(const RecordedInput& video_input) const {
  ImageRGB img = load_image(video_input.frame_path);
  if (img.width != video_input.width || img.height != video_input.height)
    throw std::runtime_error(video_input.frame_path + ": decoded as " + std::to_string(img.width) + "x" +
                             std::to_string(img.height) + " but timeline.jsonl line " + std::to_string(video_input.line) +
                             " says " + std::to_string(video_input.width) + "x" + std::to_string(video_input.height));
  return img;
}

namespace {

// What is wrong with a PNG, or "" when nothing is. PNG layout: an 8-byte signature, the IHDR chunk first
// (4-byte length, "IHDR", 4-byte big-endian width, 4-byte height, ...), and the 12-byte IEND chunk last
// (length 0, "IEND", CRC AE 42 60 82): checking both ends catches a missing, foreign or truncated file
// without decoding it.
std::string png_problem(const fs::path& path, int width, int height, bool decode) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "is missing";
  constexpr unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  constexpr unsigned char kIend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
  constexpr size_t kHeadBytes = 8 + 4 + 4 + 4 + 4;  // signature, IHDR length and type, width, height
  unsigned char head[kHeadBytes], tail[sizeof kIend];
  in.seekg(0, std::ios::end);
  const auto size = static_cast<int64_t>(in.tellg());
  if (size < int64_t(kHeadBytes + sizeof kIend)) return "is truncated (" + std::to_string(size) + " bytes)";
  in.seekg(0);
  in.read(reinterpret_cast<char*>(head), kHeadBytes);
  in.seekg(size - int64_t(sizeof kIend));
  in.read(reinterpret_cast<char*>(tail), sizeof kIend);
  if (!in) return "cannot be read";
  if (std::memcmp(head, kSignature, 8) != 0 || std::memcmp(head + 12, "IHDR", 4) != 0) return "is not a PNG";
  const auto be32 = [](const unsigned char* p) { return int64_t(p[0]) << 24 | int64_t(p[1]) << 16 | int64_t(p[2]) << 8 | p[3]; };
  if (be32(head + 16) != width || be32(head + 20) != height)
    return "is " + std::to_string(be32(head + 16)) + "x" + std::to_string(be32(head + 20)) + " but the line says " +
           std::to_string(width) + "x" + std::to_string(height);
  if (std::memcmp(tail, kIend, sizeof kIend) != 0) return "is truncated (no IEND chunk at its end)";
  if (decode) {
    try {
      const ImageRGB img = load_image(path.string());
      if (img.width != width || img.height != height) return "decodes to a different size";
    } catch (const std::exception& e) {
      return std::string("cannot be decoded: ") + e.what();
    }
  }
  return "";
}

// One timeline line being validated: every complaint names the file and the line.
struct LineReader {
  const std::string& file;
  int line;
  const json& j;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(file + ":" + std::to_string(line) + ": " + what);
  }
  const json& field(const char* key) const {
    const auto it = j.find(key);
    if (it == j.end()) fail(std::string("missing field \"") + key + "\"");
    return *it;
  }
  int64_t integer(const char* key) const {
    const json& v = field(key);
    if (!v.is_number_integer()) fail(std::string("field \"") + key + "\" is not an integer: " + dump(v));
    return v.get<int64_t>();
  }
  std::string string(const char* key) const {
    const json& v = field(key);
    if (!v.is_string()) fail(std::string("field \"") + key + "\" is not a string: " + dump(v));
    return v.get<std::string>();
  }
  bool boolean(const char* key) const {
    const json& v = field(key);
    if (!v.is_boolean()) fail(std::string("field \"") + key + "\" is not true/false: " + dump(v));
    return v.get<bool>();
  }
  SessionClock::duration time() const {
    const json& v = field("t_ms");
    if (!v.is_number() || !std::isfinite(v.get<double>())) fail("field \"t_ms\" is not a finite number: " + dump(v));
    return from_ms(v.get<double>());
  }
};

bool known_event(const std::string& name) {
  static const char* const kNames[] = {"speech_started", "speech_ended", "image_added", "answer_started", "token",
                                       "answer_done", "frame_dropped", "evicted", "audio_frame_in_kv",
                                       "video_frame_in_kv", "error"};
  return std::any_of(std::begin(kNames), std::end(kNames), [&](const char* n) { return name == n; });
}

// A frame path must stay inside the recording's frames/ folder.
bool safe_frame_path(const std::string& file) {
  return file.rfind("frames/", 0) == 0 && file.size() > 7 && file.find("..") == std::string::npos &&
         file.find('/', 7) == std::string::npos && file.find('\\') == std::string::npos;
}

}  // namespace

Recording load_recording(const std::string& dir, const RecordingLoadOptions& options) {
  Recording rec;
  rec.dir = dir;
  const fs::path root(dir);

  // ---- session.json
  const fs::path session_path = root / "session.json";
  const std::string session_file = session_path.string();
  if (!fs::exists(session_path))
    throw std::runtime_error(session_file + ": missing (not a recording, or it crashed before starting)");
  json session;
  try {
    session = json::parse(read_whole_file(session_path));
  } catch (const json::exception& e) {
    throw std::runtime_error(session_file + ": bad JSON: " + e.what());
  }
  const auto session_fail = [&](const std::string& what) { throw std::runtime_error(session_file + ": " + what); };
  if (!session.is_object() || session.value("format", "") != kFormatName)
    session_fail("not a conflux recording (\"format\" is not \"conflux-recording\")");
  if (!session.contains("version") || !session["version"].is_number_integer()) session_fail("missing integer \"version\"");
  rec.version = session["version"].get<int>();
  if (rec.version != kRecordingFormatVersion)
    session_fail("format version " + std::to_string(rec.version) + " (this reader knows " +
                 std::to_string(kRecordingFormatVersion) + ")");
  if (!session.contains("settings") || !session["settings"].is_object()) session_fail("missing object \"settings\"");
  rec.settings_json = session["settings"].dump();
  const json& origin = session.value("origin", json::object());
  if (!origin.contains("steady_ns") || !origin["steady_ns"].is_number_integer())
    session_fail("missing integer \"origin.steady_ns\"");
  rec.origin_steady_ns = origin["steady_ns"].get<int64_t>();
  rec.origin_utc = origin.value("utc", "");
  const json& audio_spec = session.value("audio", json::object());
  if (audio_spec.value("sample_rate", 0) != kRecordingSampleRate || audio_spec.value("channels", 0) != 1 ||
      audio_spec.value("sample_format", "") != "float32le" || audio_spec.value("frame_samples", 0) != kRecordingFrameSamples)
    session_fail("\"audio\" must be 16000 Hz, 1 channel, float32le, 640-sample frames: " + audio_spec.dump());

  // ---- audio.f32: whole frames only; a torn last frame is a crash's tail
  const fs::path audio_path = root / "audio.f32";
  const std::string audio_file = audio_path.string();
  std::error_code ec;
  const int64_t audio_bytes = fs::exists(audio_path) ? int64_t(fs::file_size(audio_path, ec)) : -1;
  if (audio_bytes < 0 || ec) throw std::runtime_error(audio_file + ": missing");
  rec.tail.partial_audio_bytes = audio_bytes % kFrameBytes;
  const int64_t whole_samples = audio_bytes / kFrameBytes * kRecordingFrameSamples;
  rec.audio.resize(size_t(whole_samples));
  {
    std::ifstream in(audio_path, std::ios::binary);
    in.read(reinterpret_cast<char*>(rec.audio.data()), std::streamsize(whole_samples * int64_t(sizeof(float))));
    if (!in) throw std::runtime_error(audio_file + ": cannot read " + std::to_string(whole_samples) + " samples");
    swap_to_from_little_endian(rec.audio.data(), rec.audio.size());
  }

  // ---- timeline.jsonl
  const fs::path timeline_path = root / "timeline.jsonl";
  const std::string timeline_file = timeline_path.string();
  if (!fs::exists(timeline_path)) throw std::runtime_error(timeline_file + ": missing");
  const std::string text = read_whole_file(timeline_path);
  // Only the part after the last newline can be torn: every line before it was written whole.
  const size_t complete_end = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  rec.tail.truncated_line_bytes = int64_t(text.size() - complete_end);

  int64_t audio_end = 0;                                   // samples covered by audio lines so far
  std::optional<SessionClock::duration> last_video, last_control;
  std::optional<std::pair<int, std::string>> first_bad_frame;  // (line, description) of the first missing PNG
  std::optional<std::string> answer_problem;               // checked at the end against the writer's drops
  size_t begin = 0;
  int line_no = 0;
  while (begin < complete_end) {
    const size_t end = text.find('\n', begin);
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_no;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      throw std::runtime_error(timeline_file + ":" + std::to_string(line_no) + ": bad JSON: " + e.what());
    }
    const LineReader r{timeline_file, line_no, j};
    if (!j.is_object()) r.fail("not a JSON object");
    const std::string kind = r.string("kind");
    const bool is_input =
        kind == "audio" || kind == "audio_lost" || kind == "video" || kind == "text" || kind == "ptt" || kind == "settings";
    // A missing PNG is a torn tail only if no input was recorded after it.
    if (is_input && first_bad_frame && kind != "video")
      r.fail(first_bad_frame->second + " (line " + std::to_string(first_bad_frame->first) +
             "), yet inputs were recorded after it, so it is not a torn tail");

    if (kind == "audio" || kind == "audio_lost") {
      RecordedInput in;
      in.kind = RecordedInput::Kind::Audio;
      in.line = line_no;
      in.lost = kind == "audio_lost";
      in.first_sample = r.integer("sample");
      in.n_samples = r.integer("n");
      in.offset = r.time();
      if (in.n_samples <= 0 || in.n_samples % kRecordingFrameSamples != 0)
        r.fail("\"n\" = " + std::to_string(in.n_samples) + " is not a positive whole number of 640-sample frames");
      if (in.first_sample != audio_end)
        r.fail("audio starts at sample " + std::to_string(in.first_sample) + " but the audio before it ended at sample " +
               std::to_string(audio_end) + " (audio lines are contiguous)");
      if (in.first_sample + in.n_samples > whole_samples)
        r.fail("audio samples [" + std::to_string(in.first_sample) + ", " + std::to_string(in.first_sample + in.n_samples) +
               ") lie beyond the end of " + audio_file + ", which holds " + std::to_string(whole_samples) + " whole-frame samples");
      if (!rec.has_audio) {
        rec.has_audio = true;
        rec.audio_clock_start = in.offset - audio_clock_offset(in.first_sample);
      } else {
        const auto expected = rec.audio_time(in.first_sample);
        const auto error = in.offset > expected ? in.offset - expected : expected - in.offset;
        if (error > kAudioClockTolerance)
          r.fail("t_ms = " + std::to_string(to_ms(in.offset)) + " leaves the audio clock: sample " +
                 std::to_string(in.first_sample) + " falls at " + std::to_string(to_ms(expected)) + " ms");
      }
      audio_end += in.n_samples;
      rec.inputs.push_back(std::move(in));
    } else if (kind == "video") {
      RecordedInput in;
      in.kind = RecordedInput::Kind::Video;
      in.line = line_no;
      const std::string file = r.string("file");
      if (!safe_frame_path(file)) r.fail("\"file\" = \"" + file + "\" is not a file directly inside frames/");
      in.width = int(r.integer("width"));
      in.height = int(r.integer("height"));
      if (in.width <= 0 || in.height <= 0) r.fail("frame size " + std::to_string(in.width) + "x" + std::to_string(in.height));
      in.offset = r.time();
      if (last_video && in.offset < *last_video)
        r.fail("video time goes backwards (t_ms = " + std::to_string(to_ms(in.offset)) + ")");
      last_video = in.offset;
      in.frame_path = (root / file).string();
      const std::string problem = png_problem(root / file, in.width, in.height, options.decode_frames);
      if (!problem.empty()) {
        if (!first_bad_frame) first_bad_frame.emplace(line_no, in.frame_path + " " + problem);
        ++rec.tail.missing_frame_lines;
        continue;
      }
      if (first_bad_frame)
        r.fail(first_bad_frame->second + " (line " + std::to_string(first_bad_frame->first) +
               "), yet inputs were recorded after it, so it is not a torn tail");
      rec.inputs.push_back(std::move(in));
    } else if (kind == "text" || kind == "ptt" || kind == "settings") {
      RecordedInput in;
      in.line = line_no;
      in.offset = r.time();
      if (kind == "text") {
        in.kind = RecordedInput::Kind::Text;
        in.text = r.string("text");
      } else if (kind == "settings") {
        in.kind = RecordedInput::Kind::Settings;
        const json& update = r.field("settings");
        if (!update.is_object()) r.fail("field \"settings\" is not an object: " + dump(update));
        in.settings_json = update.dump();
        try {
          live_settings_from_json(in.settings_json);
        } catch (const std::exception& e) {
          r.fail(std::string("settings: ") + e.what());
        }
      } else {
        in.kind = RecordedInput::Kind::PushToTalk;
        in.pressed = r.boolean("pressed");
      }
      // Typed text, push-to-talk and settings share the session's control queue, consumed in order.
      if (last_control && in.offset < *last_control)
        r.fail(kind + " time goes backwards (t_ms = " + std::to_string(to_ms(in.offset)) + ")");
      last_control = in.offset;
      rec.inputs.push_back(std::move(in));
    } else if (kind == "event") {
      ++rec.event_lines;
      const std::string name = r.string("event");
      if (!known_event(name)) r.fail("unknown event \"" + name + "\"");
      const int turn = int(r.integer("turn"));
      const json& t = r.field("t_ms");
      if (!t.is_null() && !t.is_number()) r.fail("field \"t_ms\" is neither a number nor null: " + dump(t));
      const bool open = !rec.answers.empty() && !rec.answers.back().finished;
      const auto problem = [&](const std::string& what) {
        if (!answer_problem) answer_problem = timeline_file + ":" + std::to_string(line_no) + ": " + what;
      };
      if (name == "answer_started") {
        if (open) problem("answer_started while the previous answer is unfinished");
        rec.answers.push_back(RecordedAnswer{});
        rec.answers.back().turn = turn;
      } else if (name == "token") {
        const int64_t token = r.integer("token");
        r.string("text");
        if (!open) problem("token event outside an answer");
        else rec.answers.back().tokens.push_back(int32_t(token));
      } else if (name == "answer_done") {
        const int64_t n_tokens = r.integer("tokens");
        const std::string answer_text = r.string("text");
        const std::string trigger = r.string("trigger");
        const bool interrupted = r.boolean("interrupted");
        if (!open) {
          problem("answer_done without answer_started");
        } else {
          RecordedAnswer& a = rec.answers.back();
          if (int64_t(a.tokens.size()) != n_tokens)
            problem("answer_done counts " + std::to_string(n_tokens) + " tokens but " + std::to_string(a.tokens.size()) +
                    " token events precede it");
          a.text = answer_text;
          a.trigger = trigger;
          a.interrupted = interrupted;
          a.finished = true;
        }
      }
    } else if (kind == "recorder_dropped") {
      rec.recorder_dropped = {r.integer("audio_frames"), r.integer("video_frames"), r.integer("texts"),
                              r.integer("push_to_talk"), r.integer("events")};
    } else {
      r.fail("unknown kind \"" + kind + "\"");
    }
  }
  // Events the writer's queue refused leave gaps in the answers; without such drops a gap is damage.
  if (answer_problem && rec.recorder_dropped.events == 0) throw std::runtime_error(*answer_problem);

  // Whole frames written after the last audio line (the timeline's flush follows the audio's): their times
  // follow from the audio clock, so they are kept. Without any audio line there is no clock to place them.
  if (whole_samples > audio_end) {
    if (rec.has_audio) {
      RecordedInput in;
      in.kind = RecordedInput::Kind::Audio;
      in.first_sample = audio_end;
      in.n_samples = whole_samples - audio_end;
      in.offset = rec.audio_time(audio_end);
      rec.inputs.push_back(in);
      rec.tail.recovered_audio_frames = in.n_samples / kRecordingFrameSamples;
    } else {
      rec.tail.unplaced_audio_frames = (whole_samples - audio_end) / kRecordingFrameSamples;
      rec.audio.clear();
    }
  }
  return rec;
}

// ============================================================================================== replay

namespace {
struct FeedCancelled {};  // unwinds feed_recording_paced when its cancel flag is raised
}  // namespace

static void feed_recording_paced(Session& session, const Recording& rec, TimePoint new_origin, double speed,
                                 const std::atomic<bool>* cancel, const std::function<void(const ImageRGB&)>& on_frame);

void feed_recording(Session& session, const Recording& rec, TimePoint new_origin, double speed,
                    const std::atomic<bool>* cancel, const std::function<void(const ImageRGB&)>& on_frame) {
  try {
    feed_recording_paced(session, rec, new_origin, speed, cancel, on_frame);
  } catch (const FeedCancelled&) {
  }
}

static void feed_recording_paced(Session& session, const Recording& rec, TimePoint new_origin, double speed,
                                 const std::atomic<bool>* cancel, const std::function<void(const ImageRGB&)>& on_frame) {
  using Clock = SessionClock;
  const Clock::time_point wall_start = Clock::now();
  std::optional<Clock::duration> first_offset;
  // Sleeps until the input's time, in slices short enough that a cancel is noticed within ~10 ms.
  const auto pace = [&](Clock::duration offset) {
    if (cancel && cancel->load()) throw FeedCancelled{};
    if (speed <= 0) return;
    if (!first_offset) first_offset = offset;
    const auto wait = std::chrono::duration<double, std::nano>(offset - *first_offset) / speed;
    const auto until = wall_start + std::chrono::duration_cast<Clock::duration>(wait);
    constexpr auto kSlice = std::chrono::milliseconds(10);
    for (auto now = Clock::now(); now < until; now = Clock::now()) {
      std::this_thread::sleep_for(std::min<Clock::duration>(kSlice, until - now));
      if (cancel && cancel->load()) throw FeedCancelled{};
    }
  };

  // The audio is one contiguous stream on the audio clock (audio lines are contiguous); the session takes an
  // audio frame before another stream's item whenever the frame's time is <= the item's.
  const int64_t audio_samples = [&] {
    int64_t end = 0;
    for (const auto& in : rec.inputs)
      if (in.kind == RecordedInput::Kind::Audio) end = std::max(end, in.first_sample + in.n_samples);
    return end;
  }();
  int64_t next_sample = 0;
  // The session takes another stream's item at time T after every audio frame that ENDS by T and
  // before the frame that contains T, once its audio has reached T. So before such an item the feeder
  // pushes exactly the samples before T (a partial frame included): the session then neither waits for
  // more audio nor sees a frame it would have taken after the item.
  const auto first_sample_at_or_after = [&](Clock::duration t) {
    int64_t s = int64_t(std::ceil(std::chrono::duration<double>(t - rec.audio_time(0)).count() * kRecordingSampleRate));
    s = std::clamp<int64_t>(s, 0, audio_samples);
    while (s < audio_samples && rec.audio_time(s) < t) ++s;
    while (s > 0 && rec.audio_time(s - 1) >= t) --s;
    return s;
  };
  const auto push_audio_through = [&](std::optional<Clock::duration> limit) {
    const int64_t end = limit ? std::max(next_sample, first_sample_at_or_after(*limit)) : audio_samples;
    if (end == next_sample) return;
    if (speed <= 0) {
      session.push_audio(rec.audio.data() + next_sample, size_t(end - next_sample), new_origin + rec.audio_time(next_sample));
      next_sample = end;
      return;
    }
    while (next_sample < end) {  // paced: frame by frame (the last piece may be partial)
      const int64_t frame_end = (next_sample / kRecordingFrameSamples + 1) * kRecordingFrameSamples;
      const int64_t piece_end = std::min(end, frame_end);
      pace(rec.audio_time(next_sample));
      session.push_audio(rec.audio.data() + next_sample, size_t(piece_end - next_sample), new_origin + rec.audio_time(next_sample));
      next_sample = piece_end;
    }
  };

  for (const auto& in : rec.inputs) {
    if (in.kind == RecordedInput::Kind::Audio) continue;
    push_audio_through(in.offset);
    pace(in.offset);
    const TimePoint when = new_origin + in.offset;
    switch (in.kind) {
      case RecordedInput::Kind::Video:
        if (speed <= 0) session.wait_idle();  // room in the drop-oldest video queue
        if (on_frame) {
          ImageRGB frame = rec.load_frame(in);
          on_frame(frame);
          session.push_video(std::move(frame), when);
        } else {
          session.push_video(rec.load_frame(in), when);
        }
        break;
      case RecordedInput::Kind::Text: session.push_text(in.text, when); break;
      case RecordedInput::Kind::Settings: session.update_settings(live_settings_from_json(in.settings_json), when); break;
      case RecordedInput::Kind::PushToTalk: session.push_to_talk(in.pressed, when); break;
      case RecordedInput::Kind::Audio: break;
    }
  }
  push_audio_through(std::nullopt);
}

}  // namespace conflux
