// JSON pieces of tool-call parsing (internal to tool_call*.cc): finding where a JSON value ends
// in text that is still arriving, and reading call objects out of parsed JSON.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/chat_format.h"

namespace tqlm::chat::tool_call_internal {

// Deeper nesting is not a tool call (and keeps recursive JSON printing off deep stacks).
inline constexpr int kMaxJsonDepth = 64;

inline bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
std::string_view Trim(std::string_view s);
bool AllSpace(std::string_view s);

enum class JsonState { kInvalid, kIncomplete, kComplete };
struct JsonScan {
  JsonState state;
  size_t end;  // kComplete: the offset just after the value
};
// Scans the object or array that `text` starts with. Lenient inside (the real parser decides
// validity later) but exact about strings and brackets, so kInvalid means no continuation of
// `text` can start with a JSON object/array, and kComplete's end is where the value ends.
JsonScan ScanJsonValue(std::string_view text);

// True when `text` begins like a JSON call object: optional '[', '{' (or several), an optional
// "type": "function" member, then the key "name" or "function". Decides whether broken JSON
// was meant as a call (malformed) or is just content.
bool LooksLikeJsonCall(std::string_view text);

// Calls in a parsed JSON value: one call object or a non-empty array of them. A call object is
// {"name": str, "arguments"|"parameters": object|str-of-object|null, "id"?: str} or the
// OpenAI shape {"type": "function", "function": {...}}. nullopt if anything does not fit.
std::optional<std::vector<ChatToolCall>> CallsFromJson(const nlohmann::ordered_json& value);
// ScanJsonValue + parse + CallsFromJson on the whole of `text` (no text around the value).
std::optional<std::vector<ChatToolCall>> CallsFromJsonText(std::string_view text);
// Arguments text for a call: compact JSON of an object, or nullopt.
std::optional<std::string> ArgumentsText(const nlohmann::ordered_json& args);

}  // namespace tqlm::chat::tool_call_internal
