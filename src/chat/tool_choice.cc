#include "chat/tool_choice.h"

#include <nlohmann/json.hpp>

namespace tqlm::chat {
namespace {

// A function name as a JSON string (names are the client's text: quotes must be escaped).
std::string Quoted(std::string_view name) { return nlohmann::json(std::string(name)).dump(); }

// `{"name": "N", "arguments":` — ends where the model's own tokens would break (before
// ` {"`), so the prompt's tokens are the ones the model would have produced itself.
// Without a name: `{"name": "`, the model picks the function.
std::string JsonStart(std::string_view function, const char* args_key) {
  if (function.empty()) return "{\"name\": \"";
  return "{\"name\": " + Quoted(function) + ", \"" + args_key + "\":";
}

}  // namespace

std::string ForcedToolCallStart(ToolCallFormat format, std::string_view function,
                                    std::string_view chat_template) {
  std::string start;
  switch (format) {
    case ToolCallFormat::kHermes:
      start = "<tool_call>\n" + JsonStart(function, "arguments");
      break;
    case ToolCallFormat::kLlama3Json:
      // Llama 3.x templates ask for {"name": ..., "parameters": ...} as the whole message.
      start = JsonStart(function, "parameters");
      break;
    case ToolCallFormat::kMistral:
      // Newer templates write calls as [TOOL_CALLS]name[ARGS]{...}, older ones as a JSON array.
      if (chat_template.find("[ARGS]") != std::string_view::npos)
        start = "[TOOL_CALLS]" + (function.empty() ? std::string() : std::string(function) + "[ARGS]");
      else
        start = "[TOOL_CALLS] [" + JsonStart(function, "arguments");
      break;
    case ToolCallFormat::kGemma:
      start = "```tool_code\n" + (function.empty() ? std::string() : std::string(function) + "(");
      break;
    case ToolCallFormat::kGenericJson:
      start = JsonStart(function, "arguments");
      break;
  }
  return start;
}

}  // namespace tqlm::chat
