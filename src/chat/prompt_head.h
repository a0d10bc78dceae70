// The head of a chat prompt that defines tools: the tokens before the first user message's
// text (the rendered system message with the tool definitions, and the turn markers up to that
// text). The runtime keeps it full precision in a compressed KV cache (runtime::KvPolicy::
// tools_head_max), because the model must read tool names and schemas exactly at the end of a
// long prompt.
#pragma once

#include <span>

#include <nlohmann/json.hpp>

#include "chat/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::chat {

// Tokens of the head of FormatWithTools(messages, tools, ...) as EncodeChat encodes it; 0 when
// `tools` is null or empty, when no message follows the system turns, or when the template
// does not show the first user message's text verbatim.
int ToolsHeadTokens(const tokenizer::Tokenizer& tok, const ChatFormatter& chat,
                    std::span<const ChatMessage> messages, const nlohmann::ordered_json& tools);

}  // namespace tqlm::chat
