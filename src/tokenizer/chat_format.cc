#include "tokenizer/chat_format.h"

#include "tqlm/error.h"

namespace tqlm::tokenizer {

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

std::unique_ptr<ChatFormatter> MakeChatFormatter(std::string_view chat_template) {
  if (chat_template.empty() || chat_template.find("<|im_start|>") != std::string_view::npos) {
    return std::make_unique<ChatMlFormatter>(ChatMlDefaultSystem(chat_template));
  }
  throw Error("unsupported chat template (only ChatML templates are supported so far)");
}

}  // namespace tqlm::tokenizer
