// Tests for engine/chat_template: the 7 golden prompts rendered by HF's apply_chat_template with Google's
// Gemma 4 -it template (shared/reference/chat/gemma4-template.jsonl, read in place), plus rules of the
// template that the golden cases do not exercise.
#include "engine/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace conflux {
namespace {

const std::string kGoldenPath = std::string(CONFLUX_SHARED_DIR) + "/reference/chat/gemma4-template.jsonl";

// One OpenAI/HF-shaped message ({"role", "content": string | [{"type": "text"|"image"|"audio", ...}]}).
ChatMessage message_from_json(const nlohmann::json& json) {
  ChatMessage message;
  message.role = json.at("role").get<std::string>();
  const nlohmann::json& content = json.at("content");
  if (content.is_string()) {
    message.parts.push_back({ChatPart::Kind::Text, content.get<std::string>()});
    return message;
  }
  for (const nlohmann::json& item : content) {
    const std::string type = item.at("type").get<std::string>();
    if (type == "text") message.parts.push_back({ChatPart::Kind::Text, item.at("text").get<std::string>()});
    else if (type == "image") message.parts.push_back({ChatPart::Kind::Image, ""});
    else if (type == "audio") message.parts.push_back({ChatPart::Kind::Audio, ""});
    else throw std::runtime_error("unsupported content type in golden file: " + type);
  }
  return message;
}

ChatMessage text_message(const std::string& role, const std::string& text) {
  return ChatMessage{role, {{ChatPart::Kind::Text, text}}};
}

TEST(ChatTemplate, MatchesAllGoldenPrompts) {
  std::ifstream file(kGoldenPath);
  ASSERT_TRUE(file) << "cannot open " << kGoldenPath;
  int cases = 0;
  for (std::string line; std::getline(file, line);) {
    if (line.empty()) continue;
    const nlohmann::json golden = nlohmann::json::parse(line);
    const std::string name = golden.value("name", "case " + std::to_string(cases));
    std::vector<ChatMessage> messages;
    for (const nlohmann::json& m : golden.at("messages")) messages.push_back(message_from_json(m));
    ChatTemplateOptions options;
    options.add_generation_prompt = golden.value("add_generation_prompt", false);
    options.enable_thinking = golden.value("enable_thinking", false);
    EXPECT_EQ(render_chat(messages, options), golden.at("rendered").get<std::string>()) << name;
    ++cases;
  }
  EXPECT_EQ(cases, 7) << "the reference README lists 7 conversations";
}

TEST(ChatTemplate, WithoutGenerationPromptEndsAfterLastTurn) {
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  const std::vector<ChatMessage> messages = {text_message("user", "Hi"), text_message("assistant", "Hello.")};
  EXPECT_EQ(render_chat(messages, options), "<bos><|turn>user\nHi<turn|>\n<|turn>model\nHello.<turn|>\n");
}

TEST(ChatTemplate, ThinkingWithSystemPromptPutsThinkFirst) {
  ChatTemplateOptions options;
  options.enable_thinking = true;
  const std::vector<ChatMessage> messages = {text_message("system", " Be brief.\n"), text_message("user", "Why?")};
  EXPECT_EQ(render_chat(messages, options),
            "<bos><|turn>system\n<|think|>\nBe brief.<turn|>\n<|turn>user\nWhy?<turn|>\n<|turn>model\n");
}

TEST(ChatTemplate, TextPartsAreTrimmedSeparatelyAndJoinedWithoutSeparator) {
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  ChatMessage user{"user",
                   {{ChatPart::Kind::Text, "  First. "},
                    {ChatPart::Kind::Image, ""},
                    {ChatPart::Kind::Text, "\n Second.\t"},
                    {ChatPart::Kind::Text, " Third."}}};
  EXPECT_EQ(render_chat({user}, options), "<bos><|turn>user\nFirst.<|image|>Second.Third.<turn|>\n");
}

TEST(ChatTemplate, TrimRemovesUnicodeWhitespaceLikePythonStrip) {
  // U+00A0 (no-break space) and U+3000 (ideographic space) are str.isspace() in Python, so Jinja's trim
  // removes them; U+00E9 (é) at the edge must stay.
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  const std::vector<ChatMessage> messages = {text_message("user", "\xC2\xA0\xE3\x80\x80" "caf\xC3\xA9\xC2\xA0")};
  EXPECT_EQ(render_chat(messages, options), "<bos><|turn>user\ncaf\xC3\xA9<turn|>\n");
}

TEST(ChatTemplate, ThinkingIsStrippedOnlyFromModelTurns) {
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  const std::string with_channels = "A<|channel>thought\nx<channel|> B <|channel>more<channel|>";
  const std::vector<ChatMessage> messages = {text_message("user", with_channels),
                                             text_message("assistant", with_channels)};
  EXPECT_EQ(render_chat(messages, options),
            "<bos><|turn>user\n" + with_channels + "<turn|>\n<|turn>model\nA B<turn|>\n");
}

TEST(ChatTemplate, ConsecutiveAssistantMessagesShareOneModelHeader) {
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  const std::vector<ChatMessage> messages = {text_message("user", "Q"), text_message("assistant", "A1"),
                                             text_message("assistant", "A2")};
  EXPECT_EQ(render_chat(messages, options),
            "<bos><|turn>user\nQ<turn|>\n<|turn>model\nA1<turn|>\nA2<turn|>\n");
}

TEST(ChatTemplate, CustomBosToken) {
  ChatTemplateOptions options;
  options.bos_token = "";
  EXPECT_EQ(render_chat({text_message("user", "x")}, options),
            "<|turn>user\nx<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// A conversation laid out piece by piece (as the streaming session does) equals the rendered one.
TEST(ChatPieces, IncrementalLayoutEqualsRenderChat) {
  const std::vector<ChatMessage> messages = {
      {"system", {{ChatPart::Kind::Text, " Be brief. "}}},
      {"user", {{ChatPart::Kind::Image, ""}, {ChatPart::Kind::Text, " What is this? "}}},
      {"assistant", {{ChatPart::Kind::Text, "A cat."}}},
  };
  const std::string pieces = "<bos>" + chat_system_turn(" Be brief. ", false) + chat_turn_header("user") + "<|image|>" +
                             chat_trim(" What is this? ") + chat_turn_end() + chat_turn_header("assistant") + "A cat." +
                             chat_turn_end() + chat_generation_prompt(false);
  EXPECT_EQ(pieces, render_chat(messages, ChatTemplateOptions{true, false, "<bos>"}));
}

// The same with thinking on: the system turn opens with <|think|>, and the generation prompt leaves the
// thought channel to the model (no system turn of its own, no empty thought).
TEST(ChatPieces, IncrementalThinkingLayoutEqualsRenderChat) {
  const std::vector<ChatMessage> messages = {{"user", {{ChatPart::Kind::Image, ""}, {ChatPart::Kind::Text, "What is this?"}}}};
  const std::string pieces = "<bos>" + chat_system_turn("", true) + chat_turn_header("user") + "<|image|>" +
                             chat_trim("What is this?") + chat_turn_end() + chat_generation_prompt(true);
  EXPECT_EQ(pieces, render_chat(messages, ChatTemplateOptions{true, true, "<bos>"}));
  EXPECT_EQ(chat_generation_prompt(true), "<|turn>model\n");
  EXPECT_EQ(chat_strip_thinking("<|channel>thought\na red circle<channel|>red"), "red");
}

}  // namespace
}  // namespace conflux
