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
