#include "chat/chat_format.h"

#include "chat/chat_builtin.h"
#include "jinja/template.h"
#include "tqlm/error.h"

namespace tqlm::chat {

std::string ChatMlFormatter::Format(std::span<const ChatMessage> messages,
                                    bool add_generation_prompt) const {
  std::string out;
  auto turn = [&out](std::string_view role, std::string_view content) {
    out += "<|im_start|>";
    out += role;
    out += '\n';
    out += content;
    out += "<|im_end|>\n";
  };
  if (!default_system_.empty() && (messages.empty() || messages.front().role != "system")) {
    turn("system", default_system_);
  }
  for (const ChatMessage& m : messages) turn(m.role, m.content);
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string ChatMlDefaultSystem(std::string_view tmpl) {
  constexpr std::string_view kOpen = "<|im_start|>system";
  constexpr std::string_view kClose = "<|im_end|>";
  for (size_t at = tmpl.find(kOpen); at != std::string_view::npos;
       at = tmpl.find(kOpen, at + 1)) {
    size_t begin = at + kOpen.size();
    // Jinja source holds the newline either literally or as the escape "\n".
    if (tmpl.substr(begin, 1) == "\n") {
      begin += 1;
    } else if (tmpl.substr(begin, 2) == "\\n") {
      begin += 2;
    } else {
      continue;
    }
    const size_t end = tmpl.find(kClose, begin);
    if (end == std::string_view::npos) break;
    const std::string_view text = tmpl.substr(begin, end - begin);
    // A literal prompt, not a template expression or the end of a quoted string.
    if (text.empty() || text.find_first_of("'\"{}") != std::string_view::npos) continue;
    return std::string(text);
  }
  return "";
}

nlohmann::ordered_json ChatMessagesToJson(std::span<const ChatMessage> messages) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) {
    nlohmann::ordered_json j;
    j["role"] = m.role;
    j["content"] = m.content;
    if (!m.tool_calls.empty()) {
      nlohmann::ordered_json calls = nlohmann::ordered_json::array();
      for (const ChatToolCall& c : m.tool_calls) {
        nlohmann::ordered_json call;
        if (!c.id.empty()) call["id"] = c.id;
        call["type"] = "function";
        nlohmann::ordered_json args =
            nlohmann::ordered_json::parse(c.arguments, nullptr, /*allow_exceptions=*/false);
        if (!args.is_object()) args = c.arguments;  // not an object: the text as it is
        call["function"] = {{"name", c.name}, {"arguments", std::move(args)}};
        calls.push_back(std::move(call));
      }
      j["tool_calls"] = std::move(calls);
    }
    if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
    if (!m.name.empty()) j["name"] = m.name;
    list.push_back(std::move(j));
  }
  return list;
}

namespace {

// The end-of-turn marker a template uses, found by the well-known ones it contains.
std::string DetectEndOfTurn(std::string_view tmpl, const ChatTemplateTokens& tokens) {
  for (const char* marker : {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>",
                             "<|END_OF_TURN_TOKEN|>"}) {
    if (tmpl.find(marker) != std::string_view::npos) return marker;
  }
  return tokens.eos;
}

}  // namespace

JinjaChatFormatter::JinjaChatFormatter(std::string_view chat_template, ChatTemplateTokens tokens,
                                       nlohmann::ordered_json extra_context)
    : template_(std::make_unique<jinja::Template>(chat_template)),
      tokens_(std::move(tokens)),
      extra_(std::move(extra_context)),
      end_of_turn_(DetectEndOfTurn(chat_template, tokens_)) {
  if (!extra_.is_object()) throw Error("chat template: extra context must be a JSON object");
}

JinjaChatFormatter::~JinjaChatFormatter() = default;

std::string JinjaChatFormatter::Format(std::span<const ChatMessage> messages,
                                       bool add_generation_prompt) const {
  return FormatWithTools(messages, nullptr, add_generation_prompt);
}

std::string JinjaChatFormatter::FormatWithTools(std::span<const ChatMessage> messages,
                                                const nlohmann::ordered_json& tools,
                                                bool add_generation_prompt) const {
  // The variables HF transformers' apply_chat_template passes, in its order.
  nlohmann::ordered_json ctx;
  ctx["messages"] = ChatMessagesToJson(messages);
  ctx["tools"] = tools.is_array() && !tools.empty() ? tools : nlohmann::ordered_json(nullptr);
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = tokens_.bos;
  ctx["eos_token"] = tokens_.eos;
  for (const auto& [k, v] : extra_.items()) ctx[k] = v;
  return Render(ctx);
}

std::string JinjaChatFormatter::Render(const nlohmann::ordered_json& context) const {
  jinja::RenderOptions options;
  options.now = now_;
  return template_->Render(context, options);
}

std::unique_ptr<ChatFormatter> MakeChatFormatter(std::string_view chat_template,
                                                 const ChatTemplateTokens& tokens) {
  if (chat_template.empty()) return std::make_unique<ChatMlFormatter>();
  return std::make_unique<JinjaChatFormatter>(chat_template, tokens);
}

std::unique_ptr<ChatFormatter> MakeChatFormatter(const tokenizer::VocabData& vocab) {
  ChatTemplateTokens tokens;
  auto text = [&](tokenizer::TokenId id) {
    return id >= 0 && size_t(id) < vocab.tokens.size() ? vocab.tokens[size_t(id)] : std::string();
  };
  tokens.bos = text(vocab.bos_id);
  tokens.eos = text(vocab.eos_id);
  // No template in the file: the family's built-in one if the vocabulary has its tokens.
  if (vocab.chat_template.empty()) return MakeChatFormatter(BuiltinChatTemplate(vocab), tokens);
  return MakeChatFormatter(vocab.chat_template, tokens);
}

}  // namespace tqlm::chat
