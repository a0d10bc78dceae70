#include "chat/render.h"

#include "chat/prompt_head.h"
#include "chat/tool_choice.h"

namespace tqlm::chat {

ChatPrompt RenderChat(const tokenizer::Tokenizer& tok, const ChatFormatter& formatter,
                      std::span<const ChatMessage> messages, const nlohmann::ordered_json& tools,
                      const ForcedCall& forced) {
  const bool with_tools = tools.is_array() && !tools.empty();
  ChatPrompt p;
  p.text = with_tools ? formatter.FormatWithTools(messages, tools, true)
                      : formatter.Format(messages, true);
  if (with_tools) p.tools_head_tokens = ToolsHeadTokens(tok, formatter, messages, tools);
  if (with_tools && forced.force) {
    std::string function = forced.function;
    if (function.empty() && tools.size() == 1)
      function = tools[0]["function"]["name"].get<std::string>();
    p.forced = ForcedToolCallStart(forced.format, function, tok.vocab().chat_template);
    p.text += p.forced;
  }
  p.tokens = tok.EncodeChat(p.text);
  return p;
}

}  // namespace tqlm::chat
