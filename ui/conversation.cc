// The conversation model: session events in, entries and a plain-text transcript out.
#include "ui/conversation.h"

#include <algorithm>
#include <cstdio>

namespace conflux::ui {

namespace {

double ms_between(TimePoint a, TimePoint b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

}  // namespace

ConversationEntry& Conversation::add(ConversationEntry e) {
  if (entries_.size() >= kMaxEntries) entries_.pop_front();
  entries_.push_back(std::move(e));
  ++version_;
  return entries_.back();
}

ConversationEntry* Conversation::last_of(ConversationEntry::Kind kind) {
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it)
    if (it->kind == kind) return &*it;
  return nullptr;
}

bool Conversation::answering() const {
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it)
    if (it->kind == ConversationEntry::Kind::Answer) return it->streaming;
  return false;
}

int Conversation::on_event(const SessionEvent& e) {
  using Kind = ConversationEntry::Kind;
  switch (e.kind) {
    case SessionEvent::Kind::SpeechStarted: {
      ConversationEntry s;
      s.kind = Kind::Speech;
      s.turn = e.turn;
      s.start = e.time;
      add(std::move(s));
      return -1;
    }
    case SessionEvent::Kind::SpeechEnded:
      if (ConversationEntry* s = last_of(Kind::Speech); s && s->ongoing()) {
        s->end = e.time;
        ++version_;
      }
      return -1;
    case SessionEvent::Kind::ImageAdded: {
      ConversationEntry img;
      img.kind = Kind::Image;
      img.turn = e.turn;
      img.image_id = next_image_id_++;
      img.image_tokens = e.count;
      return add(std::move(img)).image_id;
    }
    case SessionEvent::Kind::AnswerStarted: {
      ConversationEntry a;
      a.kind = Kind::Answer;
      a.turn = e.turn;
      a.streaming = true;
      add(std::move(a));
      raw_thought_.clear();
      return -1;
    }
    case SessionEvent::Kind::Token:
      if (ConversationEntry* a = last_of(Kind::Answer); a && a->streaming && !e.text.empty()) {
        if (e.in_thought) {
          raw_thought_ += e.text;
          a->thought = thought_without_channel_name(raw_thought_);
        } else {
          a->text += e.text;
        }
        ++version_;
      }
      return -1;
    case SessionEvent::Kind::AnswerDone: {
      ConversationEntry* a = last_of(Kind::Answer);
      if (!a || !a->streaming) {  // an answer whose start was not seen: show it anyway
        ConversationEntry fresh;
        fresh.kind = Kind::Answer;
        fresh.turn = e.turn;
        a = &add(std::move(fresh));
      }
      a->text = e.text;  // the session's whole answer is authoritative over the streamed pieces
      a->thought = e.thought;
      raw_thought_.clear();
      a->streaming = false;
      a->footer = answer_footer(e.timing);
      ++version_;
      return -1;
    }
    case SessionEvent::Kind::Evicted:
      add_notice(std::to_string(e.count) + " positions of the oldest turns evicted from the KV cache");
      return -1;
    case SessionEvent::Kind::Error:
      add_notice("session error: " + e.text);
      return -1;
    default: return -1;
  }
}

void Conversation::add_typed(std::string text, int turn) {
  ConversationEntry t;
  t.kind = ConversationEntry::Kind::Typed;
  t.turn = turn;
  t.text = std::move(text);
  add(std::move(t));
}

void Conversation::push_to_talk(bool pressed, TimePoint when, int turn) {
  if (pressed) {
    // While the button is held the session ignores the VAD's end of speech, so an utterance in
    // progress is reported no further: its entry ends here and push-to-talk carries the turn.
    if (ConversationEntry* s = last_of(ConversationEntry::Kind::Speech); s && s->ongoing()) s->end = when;
    ConversationEntry p;
    p.kind = ConversationEntry::Kind::PushToTalk;
    p.turn = turn;
    p.start = when;
    add(std::move(p));
  } else if (ConversationEntry* p = last_of(ConversationEntry::Kind::PushToTalk); p && p->ongoing()) {
    p->end = when;
    ++version_;
  }
}

void Conversation::add_notice(std::string text) {
  ConversationEntry n;
  n.kind = ConversationEntry::Kind::Notice;
  n.text = std::move(text);
  add(std::move(n));
}

std::string Conversation::answer_footer(const TurnTiming& t) {
  char buf[160];
  const double first_ms = t.n_tokens ? std::max(0.0, ms_between(t.trigger_time, t.first_token)) : 0;
  const double decode_s = ms_between(t.first_token, t.last_token) / 1000.0;
  // The first token's time is the prefill's; the rate counts the tokens decoded after it.
  const double rate = t.n_tokens > 1 && decode_s > 0 ? (t.n_tokens - 1) / decode_s : 0;
  std::snprintf(buf, sizeof buf, "(%d tokens, first token %.0f ms after the end of the turn, %.1f tokens/s%s)", t.n_tokens,
                first_ms, rate, t.interrupted ? ", interrupted" : "");
  return buf;
}

std::string Conversation::line(const ConversationEntry& e) {
  char buf[64];
  switch (e.kind) {
    case ConversationEntry::Kind::Speech:
      if (e.ongoing()) return "[you] speech ...";
      std::snprintf(buf, sizeof buf, "[you] speech %.1f s", e.seconds());
      return buf;
    case ConversationEntry::Kind::PushToTalk:
      if (e.ongoing()) return "[you] push-to-talk ...";
      std::snprintf(buf, sizeof buf, "[you] push-to-talk %.1f s", e.seconds());
      return buf;
    case ConversationEntry::Kind::Image: return "[you] image (" + std::to_string(e.image_tokens) + " tokens)";
    case ConversationEntry::Kind::Typed: return "[you] " + e.text;
    case ConversationEntry::Kind::Answer:
      return (e.thought.empty() ? "" : "[thinking] " + e.thought + "\n") + "[conflux] " + e.text +
             (e.footer.empty() ? "" : "\n          " + e.footer);
    case ConversationEntry::Kind::Notice: return "[note] " + e.text;
  }
  return "";
}

std::string Conversation::transcript() const {
  std::string out;
  for (const auto& e : entries_) out += line(e) + '\n';
  return out;
}

}  // namespace conflux::ui
