// Tool-call ids (internal to tool_call*.cc): deterministic, so that a conversation renders the
// same prompt on every run.
#pragma once

#include <string>

#include "chat/tool_calls.h"

namespace tqlm::chat::tool_call_internal {

// "call_" + 16 hex digits of a hash of (index, name, arguments); for kMistral 9 alphanumerics.
std::string MakeCallId(ToolCallFormat format, size_t index, const ChatToolCall& call);

}  // namespace tqlm::chat::tool_call_internal
