// Gemma 4 chat format (architecture doc §6.2), built natively without Jinja: system turn, user turns
// with text / <|image|> / <|audio|> placeholders in order, model turns, generation prompt.
#pragma once
#include <string>
#include <vector>

namespace conflux {

struct ChatPart {
  enum class Kind { Text, Image, Audio };
  Kind kind = Kind::Text;
  std::string text;  // for Text
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (rendered as "model")
  std::vector<ChatPart> parts;
};

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  bool enable_thinking = false;
  std::string bos_token = "<bos>";
};

// Renders exactly what HF's apply_chat_template renders with Google's Gemma 4 -it template.
std::string render_chat(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& options);

}  // namespace conflux

namespace conflux {

// Pieces of the same format for a session that lays a conversation out incrementally, so that turns
// built piece by piece equal what render_chat produces for the finished conversation.
std::string chat_turn_header(const std::string& role);    // "<|turn>user\n" ("assistant" -> "model")
std::string chat_turn_end();                              // "<turn|>\n"
std::string chat_generation_prompt(bool enable_thinking); // "<|turn>model\n" [+ empty thought channel]
std::string chat_system_turn(const std::string& system_text, bool enable_thinking);
std::string chat_trim(const std::string& text);           // the template's trim of text content
std::string chat_strip_thinking(const std::string& text); // "<|channel>thought\n...<channel|>Answer" -> "Answer"

}  // namespace conflux
