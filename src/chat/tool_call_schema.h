// Tool definitions a user or client hands in (OpenAI's function-tool format), checked before a
// chat template sees them:
//   [{"type": "function", "function": {"name": "get_weather", "description": "...",
//     "parameters": {"type": "object", "properties": {...}, "required": [...]}}}, ...]
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace tqlm::chat {

// Parses and validates a tools array; throws tqlm::Error naming what is wrong (not JSON, not a
// non-empty array, an entry without type "function", a missing or empty function name, a
// duplicate name, parameters that are not an object).
nlohmann::ordered_json ParseToolsJson(std::string_view text);

// The same checks on an already parsed value.
void ValidateTools(const nlohmann::ordered_json& tools);

}  // namespace tqlm::chat
