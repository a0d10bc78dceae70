// Python call syntax in tool calls (internal to tool_call*.cc): Gemma's ```tool_code blocks and
// Llama 3's built-in tools write calls as code, e.g.
//   get_weather(city="Paris", days=3, metric=True)      -> {"city":"Paris","days":3,"metric":true}
//   [get_weather(city="Paris"), get_time(zone='CET')]    (a list of calls)
//   print(get_weather(city="Paris"))                     (print() around one call)
//   brave_search.call(query="x")                         -> name "brave_search"
// Values: strings ('..' or ".." with the usual escapes), ints, floats, True/False/None, lists,
// tuples and dicts of these. Only keyword arguments (a positional value has no name to go
// under). A dotted name keeps its last part ("default_api.get_weather" -> "get_weather") after
// dropping a trailing ".call".
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "chat/chat_format.h"

namespace tqlm::chat::tool_call_internal {

// All of `text` (calls separated by whitespace, newlines, ';' or ','), or nullopt when any
// part of it is not a call in this syntax.
std::optional<std::vector<ChatToolCall>> CallsFromPython(std::string_view text);

}  // namespace tqlm::chat::tool_call_internal
