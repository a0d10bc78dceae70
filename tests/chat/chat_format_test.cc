// ChatML formatting and default-system extraction from Jinja template sources.
#include <gtest/gtest.h>

#include <vector>

#include "chat/chat_format.h"
#include "tqlm/error.h"

namespace tqlm::chat {
namespace {

TEST(ChatMl, FormatsTurnsAndGenerationPrompt) {
  ChatMlFormatter f;
  std::vector<ChatMessage> msgs = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};
  EXPECT_EQ(f.Format(msgs, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(f.Format({}, true), "<|im_start|>assistant\n");
  EXPECT_EQ(f.EndOfTurn(), "<|im_end|>");
}

TEST(ChatMl, DefaultSystemOnlyWhenNoneGiven) {
  ChatMlFormatter f("Be brief.");
  std::vector<ChatMessage> user = {{"user", "Hi"}};
  EXPECT_EQ(f.Format(user, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  std::vector<ChatMessage> sys = {{"system", "Be long."}, {"user", "Hi"}};
  EXPECT_EQ(f.Format(sys, false),
            "<|im_start|>system\nBe long.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatMl, PrefixStableAcrossTurns) {
  ChatMlFormatter f("S");
  std::vector<ChatMessage> msgs = {{"user", "a"}};
  const std::string one = f.Format(msgs, false);
  msgs.push_back({"assistant", "b"});
  msgs.push_back({"user", "c"});
  const std::string three = f.Format(msgs, true);
  EXPECT_EQ(three.substr(0, one.size()), one);
}

TEST(ChatMl, DefaultSystemFromTemplates) {
  // Shaped like SmolLM2's template (literal newline inside the Jinja string).
  const std::string smol =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
      "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
  EXPECT_EQ(ChatMlDefaultSystem(smol),
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  // Shaped like Qwen2.5's: escaped newlines, an empty "system\n' }}" opening first.
  const std::string qwen =
      "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- else %}{%- if messages[0]['role'] == "
      "'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
      "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
      "helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- endif %}";
  EXPECT_EQ(ChatMlDefaultSystem(qwen),
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(ChatMlDefaultSystem("<|im_start|>{{ role }}"), "");
  auto f = MakeChatFormatter(smol);
  EXPECT_EQ(f->name(), "jinja");  // a model's own template is rendered, not imitated
  EXPECT_THROW(MakeChatFormatter("{% if %}"), Error);
}

}  // namespace
}  // namespace tqlm::chat
