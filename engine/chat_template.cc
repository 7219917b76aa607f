// Native rendering of Google's Gemma 4 -it chat template (architecture doc §6.2) for conversations without
// tools. Every rule below mirrors one branch of the Jinja template so that the output is byte-identical to
// HF's apply_chat_template; the golden prompts in shared/reference/chat check it.
//
//   <bos>
//   <|turn>system\n[<|think|>\n][system text]<turn|>\n   only if thinking is on or messages[0] is system/developer
//   <|turn>{role}\n{content}<turn|>\n                        per message; "assistant" is rendered as "model"
//   <|turn>model\n[<|channel>thought\n<channel|>]            generation prompt; the empty thought channel
//                                                             is pre-filled only when thinking is off
#include "engine/chat_template.h"

#include <cstdint>
#include <string_view>

namespace conflux {

namespace {

constexpr std::string_view kTurnOpen = "<|turn>";
constexpr std::string_view kTurnClose = "<turn|>\n";
constexpr std::string_view kThinkToken = "<|think|>\n";
constexpr std::string_view kChannelOpen = "<|channel>";
constexpr std::string_view kChannelClose = "<channel|>";
constexpr std::string_view kEmptyThought = "<|channel>thought\n<channel|>";
constexpr std::string_view kImagePlaceholder = "<|image|>";
constexpr std::string_view kAudioPlaceholder = "<|audio|>";

// Python's str.isspace() set, which Jinja's `trim` filter (str.strip()) removes: ASCII \t..\r, the
// information separators 0x1C..0x1F, space, and the Unicode White_Space / bidi-whitespace code points.
bool is_python_whitespace(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20)) return true;
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

// Decodes the UTF-8 code point starting at `pos`; sets `length` to its byte count. Malformed bytes decode as
// a non-whitespace code point of length 1, so they are never trimmed.
uint32_t decode_at(std::string_view text, size_t pos, size_t& length) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  length = 1;
  size_t continuation = 0;
  uint32_t cp = lead;
  if (lead >= 0xC0 && lead < 0xE0) { continuation = 1; cp = lead & 0x1F; }
  else if (lead >= 0xE0 && lead < 0xF0) { continuation = 2; cp = lead & 0x0F; }
  else if (lead >= 0xF0 && lead < 0xF8) { continuation = 3; cp = lead & 0x07; }
  else if (lead >= 0x80) return 0xFFFD;  // stray continuation byte
  if (pos + continuation >= text.size()) return 0xFFFD;  // truncated sequence
  for (size_t i = 1; i <= continuation; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  length = continuation + 1;
  return cp;
}

// Jinja's `trim` (Python str.strip()) on UTF-8 text.
std::string_view trim(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    size_t length = 0;
    if (!is_python_whitespace(decode_at(text, begin, length))) break;
    begin += length;
  }
  // Walk forward to find the end of the last non-whitespace code point (UTF-8 cannot be decoded backwards
  // without resynchronising, and the strings here are short).
  size_t end = begin;
  for (size_t pos = begin; pos < text.size();) {
    size_t length = 0;
    const bool space = is_python_whitespace(decode_at(text, pos, length));
    pos += length;
    if (!space) end = pos;
  }
  return text.substr(begin, end - begin);
}

// The template's strip_thinking macro for earlier model answers: split on <channel|>; in each piece, drop
// everything from the first <|channel> on; concatenate and trim. So "<|channel>thought\n...<channel|>Answer"
// becomes "Answer", and a <channel|> without an opener is simply removed.
std::string strip_thinking(std::string_view text) {
  std::string kept;
  size_t piece_begin = 0;
  while (true) {
    const size_t close = text.find(kChannelClose, piece_begin);
    const std::string_view piece =
        text.substr(piece_begin, close == std::string_view::npos ? std::string_view::npos : close - piece_begin);
    kept += piece.substr(0, piece.find(kChannelOpen));  // npos keeps the whole piece
    if (close == std::string_view::npos) break;
    piece_begin = close + kChannelClose.size();
  }
  return std::string(trim(kept));
}

// Content of one turn: each text part trimmed on its own (model text also loses its thinking), media parts
// as one placeholder each, all concatenated with nothing in between.
void append_content(std::string& out, const std::vector<ChatPart>& parts, bool is_model_turn) {
  for (const ChatPart& part : parts) {
    switch (part.kind) {
      case ChatPart::Kind::Text:
        if (is_model_turn) out += strip_thinking(part.text);
        else out += trim(part.text);
        break;
      case ChatPart::Kind::Image:
        out += kImagePlaceholder;
        break;
      case ChatPart::Kind::Audio:
        out += kAudioPlaceholder;
        break;
    }
  }
}

bool is_system_role(const std::string& role) { return role == "system" || role == "developer"; }

}  // namespace

std::string render_chat(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& options) {
  std::string out = options.bos_token;

  // The system turn exists only for thinking or a leading system message; it is then consumed here.
  const bool leading_system = !messages.empty() && is_system_role(messages.front().role);
  if (options.enable_thinking || leading_system) {
    out += kTurnOpen;
    out += "system\n";
    if (options.enable_thinking) out += kThinkToken;
    // The template trims a string system prompt as a whole; a list of parts is rendered like a user turn
    // (each text part trimmed), which is identical for the single-text-part case.
    if (leading_system) append_content(out, messages.front().parts, /*is_model_turn=*/false);
    out += kTurnClose;
  }

  const std::string* previous_role = nullptr;  // previous non-tool message's role, as given
  for (size_t i = leading_system ? 1 : 0; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    // Without tool calls the template renders nothing for tool messages (their results are only emitted
    // after the assistant message that called the tool).
    if (message.role == "tool") continue;
    const std::string role = message.role == "assistant" ? "model" : message.role;
    const bool is_model_turn = role == "model";
    // Consecutive assistant messages continue one model turn: the header is not repeated.
    const bool continues_model_turn = is_model_turn && previous_role != nullptr && *previous_role == "assistant";
    if (!continues_model_turn) {
      out += kTurnOpen;
      out += role;
      out += '\n';
    }
    append_content(out, message.parts, is_model_turn);
    out += kTurnClose;
    previous_role = &message.role;
  }

  if (options.add_generation_prompt) {
    out += kTurnOpen;
    out += "model\n";
    // With thinking off, an already-closed empty thought tells the model to answer directly.
    if (!options.enable_thinking) out += kEmptyThought;
  }
  return out;
}

}  // namespace conflux

namespace conflux {

std::string chat_turn_header(const std::string& role) {
  return std::string(kTurnOpen) + (role == "assistant" ? "model" : role) + "\n";
}

std::string chat_turn_end() { return std::string(kTurnClose); }

std::string chat_generation_prompt(bool enable_thinking) {
  // Rendered without thinking (which would also emit the system turn) and with the empty thought cut off
  // when thinking is on: the model opens its own thought channel.
  const std::string prompt = render_chat({}, ChatTemplateOptions{true, false, ""});
  return enable_thinking ? prompt.substr(0, prompt.size() - kEmptyThought.size()) : prompt;
}

std::string chat_system_turn(const std::string& system_text, bool enable_thinking) {
  return render_chat({{"system", {{ChatPart::Kind::Text, system_text}}}}, ChatTemplateOptions{false, enable_thinking, ""});
}

std::string chat_trim(const std::string& text) { return std::string(trim(text)); }

std::string chat_strip_thinking(const std::string& text) { return strip_thinking(text); }

}  // namespace conflux
