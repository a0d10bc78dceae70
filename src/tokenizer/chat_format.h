// Chat prompts: turning a conversation into the text a chat model was trained on.
//
// For now one format, ChatML (SmolLM2, Qwen2):
//   <|im_start|>system\nYou are ...<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n
//   <|im_start|>assistant\n            <- the generation prompt
// A Jinja template engine (a later issue) will implement ChatFormatter from the GGUF's
// `tokenizer.chat_template` itself; callers only see this interface.
//
// Formatting is prefix-stable: the text for messages[0..k] (without a generation prompt) is a
// prefix of the text for messages[0..k+1], so a chat loop can keep its KV cache and feed only
// the new suffix each turn. Encode the result with parse_special = true.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tqlm::tokenizer {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (any role string is passed through)
  std::string content;
};

class ChatFormatter {
 public:
  virtual ~ChatFormatter() = default;
  // The prompt text for `messages`; with add_generation_prompt, followed by the opening of the
  // assistant's turn so that the model continues as the assistant.
  virtual std::string Format(std::span<const ChatMessage> messages,
                             bool add_generation_prompt) const = 0;
  // Text that ends an assistant turn (to stop on, and to append to the history).
  virtual std::string EndOfTurn() const = 0;
  virtual std::string name() const = 0;
};

class ChatMlFormatter : public ChatFormatter {
 public:
  // default_system: inserted as the first message when the conversation has no system message
  // (SmolLM2's and Qwen2's templates do this); empty for none.
  explicit ChatMlFormatter(std::string default_system = "")
      : default_system_(std::move(default_system)) {}

  std::string Format(std::span<const ChatMessage> messages,
                     bool add_generation_prompt) const override;
  std::string EndOfTurn() const override { return "<|im_end|>"; }
  std::string name() const override { return "chatml"; }
  const std::string& default_system() const { return default_system_; }

 private:
  std::string default_system_;
};

// The default system prompt a ChatML Jinja template inserts when the conversation has none
// (the literal text between "<|im_start|>system\n" and "<|im_end|>"), or "".
std::string ChatMlDefaultSystem(std::string_view chat_template);

// A formatter for a model's `tokenizer.chat_template`. ChatML templates (and an empty
// template) give a ChatMlFormatter; others throw tqlm::Error until the template engine lands.
std::unique_ptr<ChatFormatter> MakeChatFormatter(std::string_view chat_template);

}  // namespace tqlm::tokenizer
