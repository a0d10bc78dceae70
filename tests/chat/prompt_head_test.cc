// The tool-defining head of a chat prompt (tokenizer/prompt_head.h): what it covers on a toy
// template and vocabulary, when it is empty, and on Qwen2.5-Coder's own template that the full
// prompt's tokens start with the head's.
#include "chat/prompt_head.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "model/model.h"
#include "test_cache_path.h"
#include "tokenizer_test_util.h"

namespace tqlm::chat {
using namespace ::tqlm::tokenizer;  // the tokenizer the chat formats work with
namespace {

// ChatML that lists the tools' names in the system turn, like the real templates do.
constexpr const char* kTemplate =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% if m.role == 'system' and tools %} TOOLS:{% for t in tools %}{{ t.function.name }};"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const nlohmann::ordered_json& Tools() {
  static const nlohmann::ordered_json t = nlohmann::ordered_json::parse(
      R"([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])");
  return t;
}

Tokenizer ToyTokenizer() {
  return Tokenizer(::tqlm::tokenizer::testing::ToyVocab(
      {}, {}, {{"<|im_start|>", TokenType::kControl}, {"<|im_end|>", TokenType::kControl}}));
}

TEST(ToolsHead, CoversTheTurnsBeforeTheFirstUserText) {
  const Tokenizer tok = ToyTokenizer();
  const auto chat = MakeChatFormatter(kTemplate);
  const std::vector<ChatMessage> messages = {
      {"system", "Be brief."}, {"user", "Weather in Oslo?"}, {"assistant", "Sunny."}};
  const int head = ToolsHeadTokens(tok, *chat, messages, Tools());
  const std::string want = "<|im_start|>system\nBe brief. TOOLS:get_weather;<|im_end|>\n"
                           "<|im_start|>user\n";
  EXPECT_EQ(head, int(tok.EncodeChat(want).size()));
  // The full prompt starts with exactly those tokens.
  const std::vector<TokenId> full = tok.EncodeChat(chat->FormatWithTools(messages, Tools(), true));
  ASSERT_GT(int(full.size()), head);
  EXPECT_EQ(std::vector<TokenId>(full.begin(), full.begin() + head), tok.EncodeChat(want));
  // Without a system message the head is the user turn's opening.
  const std::vector<ChatMessage> user_only = {{"user", "Weather in Oslo?"}};
  EXPECT_EQ(ToolsHeadTokens(tok, *chat, user_only, Tools()),
            int(tok.EncodeChat("<|im_start|>user\n").size()));
}

TEST(ToolsHead, EmptyWithoutToolsOrUserText) {
  const Tokenizer tok = ToyTokenizer();
  const auto chat = MakeChatFormatter(kTemplate);
  const std::vector<ChatMessage> messages = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(ToolsHeadTokens(tok, *chat, messages, nlohmann::ordered_json()), 0);
  EXPECT_EQ(ToolsHeadTokens(tok, *chat, messages, nlohmann::ordered_json::array()), 0);
  const std::vector<ChatMessage> system_only = {{"system", "Be brief."}};
  EXPECT_EQ(ToolsHeadTokens(tok, *chat, system_only, Tools()), 0);
  // A template that does not show the user's text verbatim gives no head.
  const auto hides = MakeChatFormatter(
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | lower }}<|im_end|>\n"
      "{% endfor %}");
  EXPECT_EQ(ToolsHeadTokens(tok, *hides, messages, Tools()), 0);
}

TEST(ToolsHead, QwenTemplatePromptStartsWithTheHead) {
  const std::string path =
      ::tqlm::testing::CachePath("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
  const auto file = model::GgufFile::Open(path);
  const auto tok = Tokenizer::FromGguf(*file);
  const auto chat = MakeChatFormatter(tok->vocab());
  const std::vector<ChatMessage> messages = {{"system", "You are a helpful assistant."},
                                             {"user", "What's the weather in Paris?"}};
  const int head = ToolsHeadTokens(*tok, *chat, messages, Tools());
  const std::vector<TokenId> full = tok->EncodeChat(chat->FormatWithTools(messages, Tools(), true));
  const std::vector<TokenId> no_tools = tok->EncodeChat(chat->Format(messages, true));
  // The head holds the tool definitions: longer than the whole prompt without them.
  EXPECT_GT(head, int(no_tools.size()) / 2);
  ASSERT_LT(head, int(full.size()));
  const std::string head_text = tok->Decode(std::span<const TokenId>(full).first(size_t(head)));
  EXPECT_NE(head_text.find("get_weather"), std::string::npos) << head_text;
  EXPECT_EQ(head_text.find("Paris"), std::string::npos) << head_text;
  EXPECT_NE(tok->Decode(std::span<const TokenId>(full).subspan(size_t(head))).find("What's"),
            std::string::npos);
}

}  // namespace
}  // namespace tqlm::chat
