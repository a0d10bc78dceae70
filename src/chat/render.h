// The one way a conversation becomes a prompt, for every front end (serve, chat, eval): the
// model's chat template over the messages (and tools), the start of a forced tool call when
// tool_choice asks for one, the tokens, and the length of the tool-defining head that the
// default KV policy keeps full precision.
#pragma once

#include <nlohmann/json.hpp>

#include <span>
#include <string>
#include <vector>

#include "chat/chat_format.h"
#include "chat/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::chat {

struct ChatPrompt {
  std::vector<tokenizer::TokenId> tokens;  // what to feed
  std::string text;                        // the rendered template, forced start included
  std::string forced;  // the forced tool-call start (also the start of the answer), or ""
  int tools_head_tokens = 0;  // the tool-defining head (ToolsHeadTokens); 0 without tools
};

// Forcing a tool call: none; any of the tools ("required"); or the one named, written in the
// model family's convention.
struct ForcedCall {
  bool force = false;
  std::string function;  // empty with force: "required" (with a single tool, that one)
  ToolCallFormat format = ToolCallFormat::kHermes;
};

// Renders `messages` (with `tools` when it is a non-empty array) with add_generation_prompt.
// Throws tqlm::Error when the template fails on them.
ChatPrompt RenderChat(const tokenizer::Tokenizer& tok, const ChatFormatter& formatter,
                      std::span<const ChatMessage> messages,
                      const nlohmann::ordered_json& tools = nullptr, const ForcedCall& forced = {});

}  // namespace tqlm::chat
