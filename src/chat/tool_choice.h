// tool_choice "required" and {"type":"function","function":{"name":N}} enforced without a
// grammar: the start of a call, in the model's own convention, is written after the
// generation prompt, so the model's first token already continues a call (Hermes/Qwen:
// `<tool_call>\n{"name": "N", "arguments":`) and all it can sensibly do is complete it.
// The forced text counts as the start of the answer when the output is parsed for calls; it
// is not counted in completion_tokens (the model did not generate it).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "chat/tool_calls.h"

namespace tqlm::chat {

// The call start (control tokens such as Mistral's [TOOL_CALLS] as their text, which the
// prompt's tokenizer turns into the tokens and the call parser accepts) that makes the model call `function` (empty: any of its tools, i.e. tool
// choice "required"). `chat_template` tells Mistral's two call syntaxes apart.
std::string ForcedToolCallStart(ToolCallFormat format, std::string_view function,
                               std::string_view chat_template);

}  // namespace tqlm::chat
