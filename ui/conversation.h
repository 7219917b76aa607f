// The conversation as the window shows it: the user's turns (speech with its length, camera images,
// typed text, push-to-talk) and the model's answers streaming token by token, built from the session's
// events on the UI thread. Free of ImGui and OpenGL (images are referred to by an id; the window owns
// their textures), so the tests can check it without a display.
#pragma once
#include <cstdint>
#include <deque>
#include <string>

#include "engine/session/session.h"

namespace conflux::ui {

struct ConversationEntry {
  enum class Kind { Speech, Image, Typed, PushToTalk, Answer, Notice };
  Kind kind = Kind::Notice;
  int turn = 0;
  std::string text;          // Typed: the text; Answer: the answer so far; Notice: the message
  TimePoint start{}, end{};  // Speech / PushToTalk: input times; end is unset while it lasts
  int image_id = -1;         // Image: the thumbnail's id (the window keeps a bounded set of textures)
  int64_t image_tokens = 0;  // Image: soft tokens it took in the KV cache
  bool streaming = false;    // Answer: tokens are still arriving
  std::string footer;        // Answer: tokens, first-token latency, rate (once done)
  std::string thought;       // Answer: the model's thought before it (thinking on), without the channel name

  bool ongoing() const { return end == TimePoint{}; }
  double seconds() const { return std::chrono::duration<double>(end - start).count(); }
};

class Conversation {
 public:
  // Old entries go past this many, so a session of hours keeps bounded memory.
  static constexpr size_t kMaxEntries = 1000;

  // Applies one session event. Returns the id of the image entry it added (the caller uploads the
  // matching camera frame as its thumbnail), or -1.
  int on_event(const SessionEvent& e);
  // What the UI itself sends: typed text, push-to-talk press and release.
  void add_typed(std::string text, int turn);
  void push_to_talk(bool pressed, TimePoint when, int turn);
  void add_notice(std::string text);

  const std::deque<ConversationEntry>& entries() const { return entries_; }
  // Changes with every change, so views rebuild derived text only when needed.
  uint64_t version() const { return version_; }
  // Whether the last answer is still streaming.
  bool answering() const;

  // One entry as the transcript writes it, e.g. "[you] speech 2.3 s", "[conflux] Hello." + footer.
  static std::string line(const ConversationEntry& e);
  // Every entry, one line each (answers with their footer on the next line).
  std::string transcript() const;
  // "(8 tokens, first token 120 ms after the end of the turn, 35.0 tokens/s)".
  static std::string answer_footer(const TurnTiming& t);

 private:
  ConversationEntry& add(ConversationEntry e);
  ConversationEntry* last_of(ConversationEntry::Kind kind);
  std::deque<ConversationEntry> entries_;
  uint64_t version_ = 0;
  int next_image_id_ = 0;
  std::string raw_thought_;  // the streaming answer's thought, channel name included
};

}  // namespace conflux::ui
