// Chat prompts: turning a conversation into the text a chat model was trained on.
//
// MakeChatFormatter renders the model's own `tokenizer.chat_template` (Jinja) with the
// sandboxed interpreter of tokenizer/jinja_template.h, exactly as HF transformers renders it
// with Python's jinja2. A GGUF without a template falls back to the built-in ChatML format:
//   <|im_start|>system\nYou are ...<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n
//   <|im_start|>assistant\n            <- the generation prompt
//
// Prefix stability: ChatML is prefix-stable (the text for messages[0..k] without a generation
// prompt is a prefix of the text for messages[0..k+1]), but a model's template need not be:
// Llama 3.1 puts the current date and the tools into the first turns, some templates drop
// reasoning from earlier assistant turns or render the last user turn differently. So a chat
// loop must not assume it: render the whole conversation every turn, encode it, and reuse the
// KV cache only for the longest common token prefix with what is cached (as `tqlm chat` does).
// Encode the result with parse_special = true.
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/vocab.h"

namespace tqlm::jinja {
class Template;
}  // namespace tqlm::jinja

namespace tqlm::chat {

// A tool call made by the assistant (OpenAI format). `arguments` is the JSON text of the
// arguments; templates see it as an object when it parses as one (HF's convention).
struct ChatToolCall {
  std::string name;
  std::string arguments = "{}";
  std::string id = {};
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool" (any role string is passed through)
  std::string content;
  std::vector<ChatToolCall> tool_calls = {};  // assistant messages
  std::string tool_call_id = {};              // tool results
  std::string name = {};                      // tool results: the tool's name
};

// The `messages` list a chat template sees, in HF's message format.
nlohmann::ordered_json ChatMessagesToJson(std::span<const ChatMessage> messages);

class ChatFormatter {
 public:
  virtual ~ChatFormatter() = default;
  // The prompt text for `messages`; with add_generation_prompt, followed by the opening of the
  // assistant's turn so that the model continues as the assistant.
  virtual std::string Format(std::span<const ChatMessage> messages,
                             bool add_generation_prompt) const = 0;
  // Same, with tool definitions (a JSON array of OpenAI function schemas, or null). Formats
  // that cannot show tools ignore them.
  virtual std::string FormatWithTools(std::span<const ChatMessage> messages,
                                      const nlohmann::ordered_json& tools,
                                      bool add_generation_prompt) const {
    (void)tools;
    return Format(messages, add_generation_prompt);
  }
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

// Special-token texts a template may refer to (bos_token, eos_token).
struct ChatTemplateTokens {
  std::string bos;
  std::string eos;
};

// Renders a model's Jinja chat template with the context HF transformers gives it:
// messages, tools (null when none), documents (null), add_generation_prompt, bos_token,
// eos_token, and any extra variables (e.g. Llama 3.1's date_string, tools_in_user_message).
class JinjaChatFormatter : public ChatFormatter {
 public:
  // Throws tqlm::Error when the template does not parse.
  JinjaChatFormatter(std::string_view chat_template, ChatTemplateTokens tokens,
                     nlohmann::ordered_json extra_context = nlohmann::ordered_json::object());
  ~JinjaChatFormatter() override;

  std::string Format(std::span<const ChatMessage> messages,
                     bool add_generation_prompt) const override;
  std::string FormatWithTools(std::span<const ChatMessage> messages,
                              const nlohmann::ordered_json& tools,
                              bool add_generation_prompt) const override;
  std::string EndOfTurn() const override { return end_of_turn_; }
  std::string name() const override { return "jinja"; }

  // Renders with a complete context (its top-level variables), as the golden tests do.
  std::string Render(const nlohmann::ordered_json& context) const;
  // Fixes strftime_now()'s clock (for reproducible prompts and tests).
  void set_now(std::time_t now) { now_ = now; }

 private:
  std::unique_ptr<jinja::Template> template_;
  ChatTemplateTokens tokens_;
  nlohmann::ordered_json extra_;
  std::string end_of_turn_;
  std::optional<std::time_t> now_;
};

// A formatter for a model's `tokenizer.chat_template`: the template itself through the Jinja
// interpreter, or ChatML when the template is empty. Throws tqlm::Error when the template does
// not parse (callers may then fall back to ChatMlFormatter).
std::unique_ptr<ChatFormatter> MakeChatFormatter(std::string_view chat_template,
                                                 const ChatTemplateTokens& tokens = {});
// Same, with bos/eos texts taken from the vocabulary; a vocabulary without a template gets its
// family's built-in one (tokenizer/chat_builtin.h) before ChatML.
std::unique_ptr<ChatFormatter> MakeChatFormatter(const tokenizer::VocabData& vocab);

}  // namespace tqlm::chat
