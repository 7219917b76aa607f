// The streaming session's inference thread: orders inputs by their timestamps, runs the VAD, lays out
// turns, appends each item to the KV cache as soon as it is complete, answers, and keeps the latency
// statistics. See session.h for the layout and determinism rules.
#include "engine/session/session.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <optional>

#include "engine/chat_template.h"
#include "engine/encoder_baseline.h"
#include "engine/session/recorder.h"
#include "engine/sequence.h"


namespace conflux {

namespace {

constexpr int kSampleRate = 16000;                         // the audio embedder's rate
constexpr int kFrameSamples = 640;                         // 40 ms: one audio soft token
constexpr double kFrameSeconds = double(kFrameSamples) / kSampleRate;
constexpr auto kFrameDuration = std::chrono::microseconds(40000);
// How long an item from another stream may wait for audio up to its timestamp before it is processed
// anyway (the audio stream may have stopped). Only then does ordering depend on wall-clock time.
constexpr auto kAudioOrderingWait = std::chrono::milliseconds(250);

double ms_between(TimePoint a, TimePoint b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

struct AudioPiece {
  std::vector<float> samples;  // at most one frame's worth
  TimePoint captured;
  TimePoint arrived;
};

struct VideoItem {
  ImageRGB image;
  TimePoint captured;
  TimePoint arrived;
};

struct ControlItem {
  enum class Kind { Text, PushToTalkDown, PushToTalkUp, Settings, UserText, Request } kind;
  std::string text;
  TimePoint when;
  LiveSettings settings{};  // Kind::Settings
};

// One 640-sample frame with the VAD's verdict, classified once, consumed possibly later (frames that
// arrive during an answer are classified for barge-in but appended after it).
struct AudioFrame {
  std::array<float, kFrameSamples> samples;
  TimePoint input_time;   // session input time of the first sample (audio clock)
  FrameTiming timing;
  VadEvent event = VadEvent::None;
  bool in_speech = false;
  int preroll = 0;
};

}  // namespace

struct Session::Impl {
  Impl(Session& owner, const Model& m, const Tokenizer& t, const RuntimeConfig& r, const SessionConfig& c)
      : self(owner),
        model(m),
        tok(t),
        rc(r),
        cfg(c),
        ctx(m, r),
        vad(c.vad),
        sampler(c.sampling, m.config().text.vocab_size),
        detok(t),
        audio_queue(size_t(std::max(1.0, c.audio_queue_seconds / kFrameSeconds)), OverflowPolicy::Block),
        video_queue(size_t(std::max(1, c.video_queue_frames)), c.video_queue_waits ? OverflowPolicy::Block : OverflowPolicy::DropOldest),
        control_queue(256, OverflowPolicy::Block),
        preroll_ring(size_t(vad.max_preroll_frames() + 1)),
        logits(size_t(m.config().text.vocab_size)) {
    budget = cfg.context_budget > 0 ? std::min(cfg.context_budget, rc.max_context) : rc.max_context;
    budget = std::min<int64_t>(budget, m.config().text.max_position_embeddings);
    snap.settings = live_settings_of(c);
    if (c.encoder_baseline) encoder = make_encoder(c.image_budget);
    if (c.thinking) {
      channel_open = t.token_id("<|channel>");
      channel_close = t.token_id("<channel|>");
      if (channel_open < 0 || channel_close < 0)
        throw std::runtime_error("thinking needs the tokenizer's <|channel> and <channel|> tokens; this one lacks them");
    }
  }

  // The encoder baseline's stand-in encoders, scratch sized for the largest image this session can take
  // (a budget change up to max_chunk needs no rebuild).
  std::unique_ptr<EncoderBaseline> make_encoder(int image_budget) {
    EncoderBaselineConfig ec = encoder_baseline_e4b_config(model.config().text.hidden_size, /*seed=*/4);
    ec.max_image_tokens = std::max({image_budget, 70, std::min(rc.max_chunk, 1120)});
    return std::make_unique<EncoderBaseline>(ec, ctx.pool());
  }

  Session& self;
  const Model& model;
  const Tokenizer& tok;
  RuntimeConfig rc;
  SessionConfig cfg;
  Context ctx;
  std::unique_ptr<EncoderBaseline> encoder;  // only with SessionConfig::encoder_baseline
  VoiceActivityDetector vad;
  Sampler sampler;
  StreamingDetokenizer detok;
  std::vector<Subscriber> subscribers;

  BoundedQueue<AudioPiece> audio_queue;
  BoundedQueue<VideoItem> video_queue;
  BoundedQueue<ControlItem> control_queue;
  std::atomic<bool> cancel{false};
  std::atomic<bool> abandoned{false};

  // Wake-up and idle tracking.
  std::mutex wake_mu;
  std::condition_variable wake_cv;
  uint64_t pushed = 0, consumed = 0;
  bool stopping = false, busy = false, drained = true;
  std::condition_variable idle_cv;
  std::thread thread;

  // Audio framing on the audio clock.
  bool audio_clock_started = false;
  TimePoint audio_t0;
  int64_t samples_framed = 0;
  AudioFrame building;
  int building_fill = 0;
  std::deque<AudioFrame> ready_frames;  // classified, not yet consumed (bounded by the audio queue + one answer)

  // Turn state.
  int64_t budget = 0;
  int turn = 0;
  bool turn_open = false, segment_open = false, ptt_down = false, answering = false;
  int64_t turn_start = 0;                       // position where the open user turn began
  std::deque<std::pair<int64_t, int64_t>> turns;  // [begin, end) positions of finished turn pairs
  int image_blocks = 0;
  std::optional<VideoItem> held_frame;
  std::optional<VideoItem> newest_sampled;      // image_at_turn_end: the last frame sampled (held or appended)
  bool turn_showed_image = false;               // an image went into the open user turn
  int32_t channel_open = -1, channel_close = -1;  // thinking: the thought channel's markers
  std::optional<TimePoint> next_video_due;
  std::optional<TimePoint> last_commentary;
  std::vector<AudioFrame> preroll_ring;         // frames not appended, newest at preroll_head - 1
  size_t preroll_head = 0, preroll_count = 0;
  std::vector<float> logits;                    // (V) of the last appended row
  std::vector<float> embed_buf;                 // (n, D) scratch for embeddings
  // Audio frames embedded but not yet appended (one batch). Capacity grows to max_chunk once.
  std::vector<float> pending_embeddings;        // (n, D)
  std::vector<FrameTiming> pending_timing;      // (n)
  std::vector<TimePoint> pending_input_time;    // (n)
  std::vector<int32_t> pending_ids;             // (n)
  std::vector<uint8_t> pending_flags, pending_want;  // (n)
  std::vector<float> patches;                   // (n, 6912) patches of the image being appended
  std::vector<int32_t> patch_x, patch_y;        // (n) their grid columns and rows

  // Metrics.
  mutable std::mutex snap_mu;
  SessionSnapshot snap;
  RollingStat audio_kv_ms, video_kv_ms, first_token_ms, answer_ms, token_ms, audio_encoder_ms, video_encoder_ms;
  TimePoint started_at;
  int64_t audio_frames_consumed = 0, video_sampled = 0, audio_frames_in = 0, video_frames_in = 0;
  int64_t max_positions = 0, evicted_total = 0;

  void emit(const SessionEvent& e) {
    if (cfg.recorder && e.kind != SessionEvent::Kind::AudioFrameInKv && e.kind != SessionEvent::Kind::VideoFrameInKv)
      cfg.recorder->on_event(e);
    for (auto& s : subscribers) s(e);
  }

  void notify_pushed() {
    {
      std::lock_guard<std::mutex> lock(wake_mu);
      ++pushed;
    }
    wake_cv.notify_all();
  }

  // ------------------------------------------------------------------ appending rows
  void record_rows(const int32_t* ids, int n, const float* emb, int block) {
    if (!cfg.record_rows) return;
    const int D = model.config().text.hidden_size;
    for (int j = 0; j < n; ++j) {
      SessionRow r;
      r.token = ids[j];
      r.image_block = block;
      if (emb) {
        r.is_embedding = true;
        r.embedding.assign(emb + size_t(j) * D, emb + size_t(j + 1) * D);
      }
      self.rows_.push_back(std::move(r));
    }
  }

  // Makes room for n more rows (plus an answer's worth) by evicting the oldest finished turns.
  void ensure_room(int64_t n) {
    const int64_t reserve = cfg.max_answer_tokens + 16;  // the answer and its closing tokens
    const int64_t window_keep = model.config().text.sliding_window - 1;
    int64_t evicted = 0;
    while (ctx.n_past() + n + reserve > budget && !turns.empty()) {
      const auto [b, e] = turns.front();
      if (e > ctx.n_past() - window_keep) break;  // the sliding window still needs these keys
      turns.pop_front();
      ctx.evict(b, e);
      const int64_t shift = e - b;
      for (auto& t : turns) t = {t.first - shift, t.second - shift};
      turn_start -= shift;
      evicted += shift;
    }
    evicted_total += evicted;
    if (evicted) emit({SessionEvent::Kind::Evicted, turn, -1, "", SessionClock::now(), evicted, {}});
  }

  void append_text(const std::string& text, bool want_logits) {
    const std::vector<int32_t> ids = tok.encode(text, false);
    append_ids(ids, want_logits);
  }

  void append_ids(const std::vector<int32_t>& ids, bool want_logits) {
    if (ids.empty()) return;
    flush_audio();
    ensure_room(int64_t(ids.size()));
    for (size_t off = 0; off < ids.size(); off += size_t(rc.max_chunk)) {
      const int m = int(std::min(ids.size() - off, size_t(rc.max_chunk)));
      DecodeBatch b;
      b.n = m;
      b.tokens = ids.data() + off;
      const bool last = off + size_t(m) == ids.size();
      std::vector<uint8_t> none;
      if (!(last && want_logits)) {
        none.assign(size_t(m), 0);
        b.want_logits = none.data();
      }
      ctx.decode(b, last && want_logits ? logits.data() : nullptr);
    }
    note_positions();
    record_rows(ids.data(), int(ids.size()), nullptr, -1);
  }

  // One generated token back into the cache; allocation-free unless rows are being recorded.
  void append_answer_token(int32_t id) {
    flush_audio();
    ensure_room(1);
    DecodeBatch b;
    b.n = 1;
    b.tokens = &id;
    ctx.decode(b, logits.data());
    note_positions();
    record_rows(&id, 1, nullptr, -1);
  }

  void note_positions() { max_positions = std::max(max_positions, ctx.n_past()); }

  void open_turn() {
    if (turn_open) return;
    ++turn;
    turn_open = true;
    turn_start = ctx.n_past();
    turn_showed_image = false;
    append_text(chat_turn_header("user"), false);
    if (held_frame) {  // what the camera shows as the user starts
      VideoItem f = std::move(*held_frame);
      held_frame.reset();
      append_image(f, SessionClock::now(), /*held=*/true);
    }
  }

  void open_segment() {
    if (segment_open) return;
    append_ids({model.config().tokens.boa}, false);
    segment_open = true;
  }

  void close_segment() {
    if (!segment_open) return;
    append_ids({model.config().tokens.eoa}, false);
    segment_open = false;
  }

  // Audio frames are embedded at once but appended in batches: consecutive frames wait in `pending_*`
  // until something else must be appended, no input is ready, or a chunk is full. A session that keeps
  // up appends one frame per batch; one that fell behind catches up at prefill speed (a chunk of n rows
  // costs far less than n single-row steps). The rows and their order are the same either way, and the
  // engine's results do not depend on the chunking, so answers are unchanged.
  void append_audio_frame(AudioFrame& f) {
    if (!turn_open || !segment_open) {
      flush_audio();
      open_turn();
      open_segment();
    }
    const int D = model.config().text.hidden_size;
    if (encoder) {  // the baseline's cost; output discarded
      const TimePoint t = SessionClock::now();
      encoder->encode_audio(f.samples.data(), 1);
      f.timing.encoder_ms = ms_between(t, SessionClock::now());
      audio_encoder_ms.add(f.timing.encoder_ms);
    }
    const size_t row = pending_timing.size();
    pending_embeddings.resize((row + 1) * size_t(D));
    ctx.embed_audio_frames(f.samples.data(), 1, pending_embeddings.data() + row * D);
    f.timing.embedded = SessionClock::now();
    pending_timing.push_back(f.timing);
    pending_input_time.push_back(f.input_time);
    if (int(pending_timing.size()) >= rc.max_chunk) flush_audio();
  }

  void flush_audio() {
    const int n = int(pending_timing.size());
    if (n == 0) return;
    ensure_room(n);
    const int32_t id = model.config().tokens.audio;
    pending_ids.assign(size_t(n), id);
    pending_flags.assign(size_t(n), 1);
    pending_want.assign(size_t(n), 0);
    DecodeBatch b;
    b.n = n;
    b.tokens = pending_ids.data();
    b.embeddings = pending_embeddings.data();
    b.is_embedding = pending_flags.data();
    b.want_logits = pending_want.data();
    ctx.decode(b, nullptr);
    const TimePoint in_kv = SessionClock::now();
    note_positions();
    record_rows(pending_ids.data(), n, pending_embeddings.data(), -1);
    audio_frames_consumed += n;
    for (int j = 0; j < n; ++j) {
      FrameTiming& t = pending_timing[size_t(j)];
      t.in_kv = in_kv;
      audio_kv_ms.add(ms_between(t.latency_origin(), t.in_kv));
      if (!subscribers.empty()) {
        SessionEvent e{SessionEvent::Kind::AudioFrameInKv, turn, -1, "", pending_input_time[size_t(j)], 0, {}};
        e.frame = t;
        emit(e);
      }
    }
    pending_timing.clear();
    pending_input_time.clear();
  }

  // `held`: the frame waited outside a turn for one to open; its wait is a layout choice, not pipeline
  // latency, so it is reported (event) but kept out of the frame-to-KV statistics.
  void append_image(const VideoItem& v, TimePoint dequeued, bool held = false) {
    flush_audio();
    FrameTiming t;
    t.captured = v.captured;
    t.arrived = v.arrived;
    t.dequeued = dequeued;
    close_segment();  // an image closes the audio segment; the next speech frame reopens one
    const ResizePlan plan = plan_resize(v.image.width, v.image.height, cfg.image_budget);
    const ImageRGB img = preprocess_image(v.image, cfg.image_budget);
    t.preprocessed = SessionClock::now();
    const int n = plan.n_tokens(), D = model.config().text.hidden_size;
    extract_all_patches(img, patches, patch_x, patch_y);
    embed_buf.resize(size_t(n) * D);
    if (encoder) {  // cost only; output discarded
      const TimePoint start = SessionClock::now();
      encoder->encode_image(img.rgb.data(), img.width, img.height);
      t.encoder_ms = ms_between(start, SessionClock::now());
      video_encoder_ms.add(t.encoder_ms);
    }
    ctx.embed_image_patches(patches.data(), patch_x.data(), patch_y.data(), n, embed_buf.data());
    t.embedded = SessionClock::now();
    append_ids({model.config().tokens.boi}, false);
    ensure_room(n + 1);
    const std::vector<int32_t> ids(static_cast<size_t>(n), model.config().tokens.image);
    const std::vector<uint8_t> is_emb(static_cast<size_t>(n), 1), want(static_cast<size_t>(n), 0);
    const std::vector<int32_t> block(static_cast<size_t>(n), image_blocks);
    DecodeBatch b;
    b.n = n;
    b.tokens = ids.data();
    b.embeddings = embed_buf.data();
    b.is_embedding = is_emb.data();
    b.image_block = block.data();
    b.want_logits = want.data();
    ctx.decode(b, nullptr);
    note_positions();
    record_rows(ids.data(), n, embed_buf.data(), image_blocks);
    ++image_blocks;
    append_ids({model.config().tokens.eoi}, false);
    turn_showed_image = true;
    t.in_kv = SessionClock::now();
    ++video_sampled;
    if (!held) video_kv_ms.add(ms_between(t.latency_origin(), t.in_kv));
    SessionEvent e{SessionEvent::Kind::VideoFrameInKv, turn, -1, "", v.captured, n, {}};
    e.frame = t;
    emit(e);
    emit({SessionEvent::Kind::ImageAdded, turn, -1, "", v.captured, n, {}});
  }

  // ------------------------------------------------------------------ turns and answers
  void end_turn(TurnTrigger trigger, TimePoint detected, const std::string& typed) {
    TurnTiming timing;
    timing.trigger = trigger;
    timing.trigger_time = detected;
    open_turn();
    close_segment();
    if (!typed.empty()) append_text(chat_trim(typed), false);
    // Shown again, not captured again: kept out of the frame-to-KV statistics like a held frame.
    if (cfg.image_at_turn_end && turn_showed_image && newest_sampled) append_image(*newest_sampled, SessionClock::now(), true);
    append_text(chat_turn_end() + chat_generation_prompt(cfg.thinking), true);
    turn_open = false;
    timing.turn_closed = SessionClock::now();
    answer(timing);
  }

  void answer(TurnTiming timing) {
    answering = true;
    publish();
    emit({SessionEvent::Kind::AnswerStarted, turn, -1, "", timing.turn_closed, 0, {}});
    std::vector<int32_t>& tokens = self.answers_.emplace_back();
    tokens.reserve(size_t(cfg.max_answer_tokens));
    std::string text, thought;  // the answer, and the thought before it (thinking on)
    text.reserve(size_t(cfg.max_answer_tokens) * 8);  // typical pieces are a few bytes
    thought.reserve(size_t(cfg.max_answer_tokens) * 8);
    bool in_thought = false;
    detok.reset();
    self.answer_starts_.push_back(int64_t(self.rows_.size()));
    TimePoint last = SessionClock::now();
    for (int i = 0; i < cfg.max_answer_tokens; ++i) {
      const int32_t id = sampler.sample(logits.data());
      if (sampler.is_stop(id)) break;
      const TimePoint now = SessionClock::now();
      if (i == 0) {
        timing.first_token = now;
        first_token_ms.add(ms_between(timing.trigger_time, now));
      } else {
        token_ms.add(ms_between(last, now));
      }
      last = now;
      tokens.push_back(id);
      // The channel markers switch between thought and answer; their own text is not shown.
      const bool marker = id == channel_open || id == channel_close;
      const bool thought_token = in_thought || marker;
      std::string piece;
      if (marker) {
        thought += detok.flush();
        in_thought = id == channel_open;
      } else {
        piece = detok.push(id);
        if (!thought_token && timing.answer_start == TimePoint{}) {
          timing.answer_start = now;
          answer_ms.add(ms_between(timing.trigger_time, now));
        }
        (thought_token ? thought : text) += piece;
      }
      {
        std::lock_guard<std::mutex> lock(snap_mu);
        snap.answer = text;
        snap.thought = thought;
      }
      SessionEvent token_event{SessionEvent::Kind::Token, turn, id, piece, now, 0, {}};
      token_event.in_thought = thought_token;
      emit(token_event);
      append_answer_token(id);
      if (poll_during_answer()) {
        timing.interrupted = true;
        break;
      }
    }
    (in_thought ? thought : text) += detok.flush();  // an answer cut off inside its thought
    append_text(chat_turn_end(), false);
    const int64_t begin = turn_start, end = ctx.n_past();
    turns.emplace_back(begin, end);
    timing.last_token = SessionClock::now();
    timing.n_tokens = int(tokens.size());
    answering = false;
    SessionEvent done{SessionEvent::Kind::AnswerDone, turn, -1, text, timing.last_token, int64_t(tokens.size()), timing};
    done.thought = thought_without_channel_name(thought);
    emit(done);
    publish();
  }

  // Between answer tokens: classify newly arrived audio (for barge-in) without appending it.
  // Returns true when the answer must stop.
  bool poll_during_answer() {
    if (cancel.exchange(false) || abandoned) return true;
    bool barge = false;
    // Classified-but-unconsumed frames are bounded like the queue itself: past that, audio waits in the
    // queue (the producer feels the backpressure) instead of piling up here.
    while (ready_frames.size() < audio_queue.capacity()) {
      auto piece = audio_queue.try_pop();
      if (!piece) break;
      note_consumed();
      frame_piece(*piece, [&](AudioFrame& f) {
        if (f.event == VadEvent::SpeechStarted && cfg.barge_in) barge = true;
      });
    }
    return barge;
  }

  // ------------------------------------------------------------------ audio framing and VAD
  template <class OnFrame>
  void frame_piece(const AudioPiece& p, OnFrame&& on_frame) {
    if (!audio_clock_started) {
      audio_clock_started = true;
      audio_t0 = p.captured;
    }
    const TimePoint dequeued = SessionClock::now();
    size_t at = 0;
    while (at < p.samples.size()) {
      if (building_fill == 0) {
        building.input_time = audio_t0 + std::chrono::duration_cast<SessionClock::duration>(
                                             std::chrono::duration<double>(double(samples_framed) / kSampleRate));
        building.timing = FrameTiming{};
        // Wall-clock capture time of the frame's first sample: the piece's time plus the offset in it.
        building.timing.captured = p.captured + std::chrono::duration_cast<SessionClock::duration>(
                                                    std::chrono::duration<double>(double(at) / kSampleRate));
        building.timing.arrived = p.arrived;
      }
      const size_t take = std::min(p.samples.size() - at, size_t(kFrameSamples - building_fill));
      std::copy_n(p.samples.data() + at, take, building.samples.data() + building_fill);
      building_fill += int(take);
      at += take;
      samples_framed += int64_t(take);
      if (building_fill == kFrameSamples) {
        building.timing.dequeued = dequeued;
        bool raw = false;
        building.event = vad.push_frame(building.samples.data(), &raw);
        building.in_speech = vad.in_speech();
        building.preroll = building.event == VadEvent::SpeechStarted ? vad.preroll_frames() : 0;
        if (cfg.recorder) cfg.recorder->on_audio_frame(building.samples.data(), kFrameSamples, building.input_time);
        building.timing.preprocessed = SessionClock::now();
        ready_frames.push_back(building);
        ++audio_frames_in;
        building_fill = 0;
        on_frame(ready_frames.back());
      }
    }
  }

  void remember_for_preroll(const AudioFrame& f) {
    preroll_ring[preroll_head] = f;
    preroll_head = (preroll_head + 1) % preroll_ring.size();
    preroll_count = std::min(preroll_count + 1, preroll_ring.size());
  }

  // The turn logic for one classified frame.
  void consume_frame(AudioFrame& f) {
    {
      std::lock_guard<std::mutex> lock(snap_mu);
      snap.level_db = vad.level_db();
      snap.in_speech = f.in_speech;
    }
    if (f.event == VadEvent::SpeechStarted) emit({SessionEvent::Kind::SpeechStarted, turn, -1, "", f.input_time, 0, {}});
    const bool vad_on = cfg.vad.enabled;
    if (ptt_down || !vad_on) {
      append_audio_frame(f);
    } else if (f.event == VadEvent::SpeechStarted) {
      // The utterance began `preroll` frames ago: send those (oldest first), then this one.
      const size_t n = std::min(size_t(f.preroll), preroll_count);
      open_turn();
      for (size_t i = n; i > 0; --i) append_audio_frame(preroll_ring[(preroll_head + preroll_ring.size() - i) % preroll_ring.size()]);
      preroll_count = 0;
      append_audio_frame(f);
    } else if (f.event == VadEvent::SpeechEnded) {
      append_audio_frame(f);  // the VAD contract: the ending frame is the utterance's last (hangover) frame
      emit({SessionEvent::Kind::SpeechEnded, turn, -1, "", f.input_time + kFrameDuration, 0, {}});
      end_turn(TurnTrigger::EndOfSpeech, f.timing.dequeued, "");
    } else if (f.in_speech) {
      append_audio_frame(f);
    } else {
      remember_for_preroll(f);
    }
    if (cfg.commentary_interval_s > 0) {
      if (!last_commentary) last_commentary = f.input_time;
      if (std::chrono::duration<double>(f.input_time - *last_commentary).count() >= cfg.commentary_interval_s &&
          !f.in_speech && !ptt_down) {
        last_commentary = f.input_time;
        end_turn(TurnTrigger::Commentary, SessionClock::now(), "");
      }
    }
  }

  void consume_video(VideoItem& v, TimePoint dequeued) {
    const double period = cfg.video_fps > 0 ? 1.0 / cfg.video_fps : 0;
    if (next_video_due && v.captured < *next_video_due) return;  // sampled out by the frame rate
    next_video_due = v.captured + std::chrono::duration_cast<SessionClock::duration>(std::chrono::duration<double>(period));
    if (cfg.recorder) cfg.recorder->on_video_frame(v.image, v.captured);
    if (cfg.on_frame_sampled) cfg.on_frame_sampled(v.image, v.captured);
    if (cfg.image_at_turn_end) {  // a copy into the same buffer: no allocation once the size is steady
      if (!newest_sampled) newest_sampled.emplace();
      newest_sampled->image = v.image;
      newest_sampled->captured = v.captured;
      newest_sampled->arrived = v.arrived;
    }
    if (turn_open) append_image(v, dequeued);
    else held_frame = std::move(v);
  }

  // Checks and applies a live settings update; refused updates leave everything as it was.
  void apply_settings(const LiveSettings& next, TimePoint when) {
    std::string problem;
    if (!is_supported_budget(next.image_budget))
      problem = "image budget " + std::to_string(next.image_budget) + " is not from 1 to " + std::to_string(kMaxImageBudget);
    else if (next.image_budget > rc.max_chunk)
      problem = "image budget " + std::to_string(next.image_budget) + " exceeds this session's max_chunk " + std::to_string(rc.max_chunk);
    else if (!(next.video_fps > 0)) problem = "video fps must be positive";
    else if (next.max_answer_tokens < 1) problem = "max answer tokens must be at least 1";
    else if (next.commentary_interval_s < 0) problem = "commentary interval must not be negative";
    std::optional<VoiceActivityDetector> new_vad;
    if (problem.empty()) {
      try {
        if (next.vad != cfg.vad) new_vad.emplace(next.vad);
      } catch (const std::exception& e) {
        problem = std::string("VAD settings: ") + e.what();
      }
    }
    if (!problem.empty()) {
      emit({SessionEvent::Kind::Error, turn, -1, "settings refused: " + problem, when, 0, {}});
      return;
    }
    if (next.encoder_baseline && !encoder) {
      // Built here, on the session thread: the stall (about 2 s for 0.93 GB of weights) shows in the
      // latencies like any other cost of the baseline.
      try {
        encoder = make_encoder(next.image_budget);
      } catch (const std::exception& e) {
        emit({SessionEvent::Kind::Error, turn, -1, std::string("settings refused: encoder baseline: ") + e.what(), when, 0, {}});
        return;
      }
    } else if (!next.encoder_baseline) {
      encoder.reset();
    }
    if (cfg.recorder) cfg.recorder->on_settings(live_settings_to_json(next), when);
    apply_live_settings(next, cfg);
    if (new_vad) {
      vad = std::move(*new_vad);
      preroll_ring.assign(size_t(vad.max_preroll_frames() + 1), AudioFrame{});
      preroll_head = preroll_count = 0;
      // Frames already cut from the queue but not yet consumed were classified by the old detector at
      // whatever moment they arrived; classify them again with the new one, so that the decision for
      // every frame after the update depends on the inputs only (as in a replay).
      for (AudioFrame& f : ready_frames) {
        f.event = vad.push_frame(f.samples.data());
        f.in_speech = vad.in_speech();
        f.preroll = f.event == VadEvent::SpeechStarted ? vad.preroll_frames() : 0;
      }
    }
    std::lock_guard<std::mutex> lock(snap_mu);
    snap.settings = next;
  }

  void consume_control(ControlItem& c) {
    if (c.kind == ControlItem::Kind::Settings) {
      apply_settings(c.settings, c.when);
      return;
    }
    if (c.kind == ControlItem::Kind::UserText) {
      open_turn();
      close_segment();
      append_text(chat_trim(c.text), false);
      return;
    }
    if (c.kind == ControlItem::Kind::Request) {
      end_turn(TurnTrigger::Request, SessionClock::now(), "");
      return;
    }
    if (cfg.recorder) {
      if (c.kind == ControlItem::Kind::Text) cfg.recorder->on_text(c.text, c.when);
      else cfg.recorder->on_push_to_talk(c.kind == ControlItem::Kind::PushToTalkDown, c.when);
    }
    switch (c.kind) {
      case ControlItem::Kind::Settings:
      case ControlItem::Kind::UserText:
      case ControlItem::Kind::Request: break;  // handled above
      case ControlItem::Kind::Text: end_turn(TurnTrigger::TypedText, SessionClock::now(), c.text); break;
      case ControlItem::Kind::PushToTalkDown: ptt_down = true; break;
      case ControlItem::Kind::PushToTalkUp:
        if (ptt_down) {
          ptt_down = false;
          end_turn(TurnTrigger::PushToTalkRelease, SessionClock::now(), "");
        }
        break;
    }
  }

  // ------------------------------------------------------------------ the loop
  void note_consumed() {
    std::lock_guard<std::mutex> lock(wake_mu);
    ++consumed;
  }

  // Next audio frame time, or nullopt when no frame is ready.
  std::optional<TimePoint> next_audio_time() {
    while (ready_frames.empty()) {
      auto piece = audio_queue.try_pop();
      if (!piece) break;
      note_consumed();
      frame_piece(*piece, [](AudioFrame&) {});
    }
    if (ready_frames.empty()) return std::nullopt;
    return ready_frames.front().input_time;
  }

  // Processes inputs in timestamp order until nothing is ready. Returns true if anything happened.
  bool process_ready(std::optional<VideoItem>& video_head, std::optional<ControlItem>& control_head,
                     TimePoint& waiting_since) {
    bool progressed = false;
    for (;;) {
      if (abandoned) return progressed;
      if (!video_head) {
        if (auto v = video_queue.try_pop()) {
          note_consumed();
          ++video_frames_in;
          video_head = std::move(v);
        }
      }
      if (!control_head) {
        if (auto c = control_queue.try_pop()) {
          note_consumed();
          control_head = std::move(c);
        }
      }
      const auto audio_t = next_audio_time();
      // The earliest of the other streams.
      std::optional<TimePoint> other_t;
      if (video_head) other_t = video_head->captured;
      if (control_head && (!other_t || control_head->when < *other_t)) other_t = control_head->when;
      // An audio frame goes before another stream's item when it ENDS by the item's time: a frame that
      // contains the item's time is taken after it. (Comparing frame starts would make the order
      // depend on whether the frame happened to be complete when the item arrived.)
      if (audio_t && (!other_t || *audio_t + kFrameDuration <= *other_t)) {
        AudioFrame f = std::move(ready_frames.front());
        ready_frames.pop_front();
        consume_frame(f);
        progressed = true;
        continue;
      }
      if (!other_t) {
        flush_audio();  // nothing else is ready: the batch goes in now
        break;
      }
      // Another stream's item is next. If audio is flowing but has not reached its timestamp yet, wait
      // briefly for it so that the order stays the timestamp order.
      const TimePoint audio_reached = audio_t0 + std::chrono::duration_cast<SessionClock::duration>(
                                                     std::chrono::duration<double>(double(samples_framed) / kSampleRate));
      const bool audio_behind = !cfg.inputs_in_order && audio_clock_started && audio_reached < *other_t;
      if (audio_behind && !stopping_now()) {
        if (waiting_since == TimePoint{}) waiting_since = SessionClock::now();
        if (SessionClock::now() - waiting_since < kAudioOrderingWait) {
          flush_audio();
          break;
        }
      }
      waiting_since = TimePoint{};
      if (video_head && (!control_head || video_head->captured <= control_head->when)) {
        VideoItem v = std::move(*video_head);
        video_head.reset();
        consume_video(v, SessionClock::now());
      } else {
        ControlItem c = std::move(*control_head);
        control_head.reset();
        consume_control(c);
      }
      progressed = true;
    }
    return progressed;
  }

  bool stopping_now() {
    std::lock_guard<std::mutex> lock(wake_mu);
    return stopping;
  }

  void run() {
    started_at = SessionClock::now();
    if (cfg.recorder) cfg.recorder->on_start(session_settings_json(model, rc, cfg), started_at);
    const std::string bos = tok.bos_id() >= 0 ? tok.piece(tok.bos_id()) : "";
    std::string prefix = bos;
    if (!cfg.system_prompt.empty() || cfg.thinking) prefix += chat_system_turn(cfg.system_prompt, cfg.thinking);
    if (!prefix.empty()) append_text(prefix, false);
    std::optional<VideoItem> video_head;
    std::optional<ControlItem> control_head;
    TimePoint waiting_since{};
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(wake_mu);
        busy = true;
      }
      bool progressed;
      try {
        progressed = process_ready(video_head, control_head, waiting_since);
      } catch (const std::exception& e) {
        emit({SessionEvent::Kind::Error, turn, -1, e.what(), SessionClock::now(), 0, {}});
        progressed = false;
      }
      publish();
      std::unique_lock<std::mutex> lock(wake_mu);
      busy = false;
      drained = consumed == pushed && !video_head && !control_head && ready_frames.empty();
      if (drained) idle_cv.notify_all();
      if (abandoned) {
        drained = true;
        idle_cv.notify_all();
        if (cfg.recorder) cfg.recorder->on_stop();
        return;
      }
      if (stopping && drained) {
        if (cfg.recorder) cfg.recorder->on_stop();
        return;
      }
      if (!progressed) {
        const uint64_t seen = pushed;
        wake_cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return pushed != seen || stopping; });
      }
    }
  }

  void publish() {
    std::lock_guard<std::mutex> lock(snap_mu);
    snap.answering = answering;
    snap.turn = turn;
    snap.positions = ctx.n_past();
    snap.max_positions = max_positions;
    snap.evicted_positions = evicted_total;
    snap.audio_frames_in = audio_frames_in;
    snap.video_frames_in = video_frames_in;
    snap.audio_queue_high_water = audio_queue.high_water();
    snap.video_queue_high_water = video_queue.high_water();
    snap.audio_frames = audio_frames_consumed;
    snap.video_frames_sampled = video_sampled;
    snap.video_frames_dropped = video_queue.dropped();
    snap.audio_queue_samples = audio_queue.size() * kFrameSamples;
    snap.video_queue_frames = video_queue.size();
    const double wall = std::chrono::duration<double>(SessionClock::now() - started_at).count();
    snap.realtime_factor = wall > 0 ? double(samples_framed) / kSampleRate / wall : 0;
    snap.audio_frame_to_kv_ms = audio_kv_ms.percentiles();
    snap.audio_encoder_ms = audio_encoder_ms.percentiles();
    snap.video_encoder_ms = video_encoder_ms.percentiles();
    snap.video_frame_to_kv_ms = video_kv_ms.percentiles();
    snap.turn_end_to_first_token_ms = first_token_ms.percentiles();
    snap.turn_end_to_answer_ms = answer_ms.percentiles();
    snap.decode_token_ms = token_ms.percentiles();
  }
};

std::string thought_without_channel_name(const std::string& raw_thought) {
  const size_t newline = raw_thought.find('\n');
  return newline == std::string::npos ? std::string() : raw_thought.substr(newline + 1);
}

std::string AnswerStreamText::push(const SessionEvent& token) {
  if (!token.in_thought) {
    const bool closing = state_ != State::Answer;
    state_ = State::Answer;
    return closing ? ") " + token.text : token.text;
  }
  switch (state_) {
    case State::Answer:  // the channel's opening marker (no text of its own)
      state_ = State::ChannelName;
      return "(thinking: ";
    case State::ChannelName: {
      const size_t newline = token.text.find('\n');
      if (newline == std::string::npos) return "";
      state_ = State::Thought;
      return token.text.substr(newline + 1);
    }
    case State::Thought: return token.text;
  }
  return "";
}

std::string AnswerStreamText::on_event(const SessionEvent& e) {
  if (e.kind == SessionEvent::Kind::AnswerStarted) {
    reset();
    return "[conflux] ";
  }
  return e.kind == SessionEvent::Kind::Token ? push(e) : std::string();
}

Session::Session(const Model& model, const Tokenizer& tokenizer, const RuntimeConfig& runtime, const SessionConfig& config)
    : impl_(std::make_unique<Impl>(*this, model, tokenizer, runtime, config)) {}

Session::~Session() { stop(); }

void Session::subscribe(Subscriber s) { impl_->subscribers.push_back(std::move(s)); }

void Session::start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([this] { impl_->run(); });
}

void Session::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(impl_->wake_mu);
    impl_->stopping = true;
  }
  impl_->wake_cv.notify_all();
  impl_->thread.join();
  impl_->audio_queue.close();
  impl_->video_queue.close();
  impl_->control_queue.close();
}

void Session::close_inputs() {
  impl_->audio_queue.close();
  impl_->video_queue.close();
  impl_->control_queue.close();
}

void Session::push_audio(const float* samples, size_t n, TimePoint captured) {
  const TimePoint arrived = SessionClock::now();
  // Pieces of at most one frame keep the queue's capacity a bound in samples.
  for (size_t off = 0; off < n; off += kFrameSamples) {
    const size_t m = std::min(n - off, size_t(kFrameSamples));
    AudioPiece p{std::vector<float>(samples + off, samples + off + m),
                 captured + std::chrono::duration_cast<SessionClock::duration>(std::chrono::duration<double>(double(off) / kSampleRate)),
                 arrived};
    if (!impl_->audio_queue.push(std::move(p))) return;
    impl_->notify_pushed();
  }
}

void Session::push_video(ImageRGB frame, TimePoint captured) {
  const uint64_t before = impl_->video_queue.dropped();
  if (!impl_->video_queue.push(VideoItem{std::move(frame), captured, SessionClock::now()})) return;
  impl_->notify_pushed();
  if (impl_->video_queue.dropped() != before) {
    // The dropped frame was pushed but will never be consumed: count it as consumed for idleness.
    std::lock_guard<std::mutex> lock(impl_->wake_mu);
    ++impl_->consumed;
  }
}

void Session::push_text(std::string text, TimePoint when) {
  if (impl_->control_queue.push(ControlItem{ControlItem::Kind::Text, std::move(text), when})) impl_->notify_pushed();
}

void Session::push_to_talk(bool pressed, TimePoint when) {
  const auto kind = pressed ? ControlItem::Kind::PushToTalkDown : ControlItem::Kind::PushToTalkUp;
  if (impl_->control_queue.push(ControlItem{kind, "", when})) impl_->notify_pushed();
}

void Session::push_user_text(std::string text, TimePoint when) {
  if (impl_->control_queue.push(ControlItem{ControlItem::Kind::UserText, std::move(text), when})) impl_->notify_pushed();
}

void Session::request_answer(TimePoint when) {
  if (impl_->control_queue.push(ControlItem{ControlItem::Kind::Request, "", when})) impl_->notify_pushed();
}

void Session::cancel_answer() { impl_->cancel = true; }

void Session::abandon() {
  impl_->abandoned = true;
  close_inputs();
  {
    std::lock_guard<std::mutex> lock(impl_->wake_mu);
    impl_->stopping = true;
  }
  impl_->wake_cv.notify_all();
}

void Session::update_settings(const LiveSettings& settings, TimePoint when) {
  ControlItem item{ControlItem::Kind::Settings, "", when};
  item.settings = settings;
  if (impl_->control_queue.push(std::move(item))) impl_->notify_pushed();
}

void Session::wait_idle() {
  std::unique_lock<std::mutex> lock(impl_->wake_mu);
  impl_->wake_cv.notify_all();
  impl_->idle_cv.wait(lock, [&] {
    return !impl_->busy && impl_->drained && impl_->consumed == impl_->pushed;
  });
}

SessionSnapshot Session::snapshot() const {
  std::lock_guard<std::mutex> lock(impl_->snap_mu);
  return impl_->snap;
}

}  // namespace conflux
