#include "chat/tool_call_json.h"

namespace tqlm::chat::tool_call_internal {

using Json = nlohmann::ordered_json;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool AllSpace(std::string_view s) { return Trim(s).empty(); }

JsonScan ScanJsonValue(std::string_view text) {
  if (text.empty() || (text[0] != '{' && text[0] != '[')) return {JsonState::kInvalid, 0};
  char stack[kMaxJsonDepth];
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        return {JsonState::kInvalid, 0};  // raw control characters are never valid in strings
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '{':
      case '[':
        if (depth == kMaxJsonDepth) return {JsonState::kInvalid, 0};
        stack[depth++] = c;
        break;
      case '}':
      case ']':
        if (depth == 0 || stack[depth - 1] != (c == '}' ? '{' : '[')) {
          return {JsonState::kInvalid, 0};
        }
        if (--depth == 0) return {JsonState::kComplete, i + 1};
        break;
      default:
        // Outside strings JSON has only punctuation, numbers and true/false/null.
        if (IsSpace(c) || (c >= '0' && c <= '9') ||
            std::string_view(":,-+.eEtrufalsn").find(c) != std::string_view::npos) {
          break;
        }
        return {JsonState::kInvalid, 0};
    }
  }
  return {JsonState::kIncomplete, 0};
}

namespace {

// Consumes `token` after optional whitespace.
bool Eat(std::string_view& s, std::string_view token) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  if (s.substr(0, token.size()) != token) return false;
  s.remove_prefix(token.size());
  return true;
}

}  // namespace

bool LooksLikeJsonCall(std::string_view s) {
  std::string_view rest = s;
  if (Eat(rest, "[")) s = rest;
  if (!Eat(s, "{")) return false;
  // Qwen2.5's template shows calls as {{"name": ...}} (a brace-escaping slip that its models
  // copy): still an attempt at a call, so reported as malformed rather than left as prose.
  for (rest = s; Eat(rest, "{"); rest = s) s = rest;
  rest = s;
  if (Eat(rest, "\"type\"") && Eat(rest, ":") && Eat(rest, "\"function\"") && Eat(rest, ",")) {
    s = rest;
  }
  rest = s;
  if (Eat(rest, "\"name\"")) return true;
  rest = s;
  return Eat(rest, "\"function\"");
}

std::optional<std::string> ArgumentsText(const Json& args) {
  if (!args.is_object()) return std::nullopt;
  return args.dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace {

std::optional<ChatToolCall> CallFromObject(const Json& object) {
  if (!object.is_object()) return std::nullopt;
  const Json* fn = &object;
  // OpenAI's own shape: {"type": "function", "function": {"name": .., "arguments": ..}}.
  if (!object.contains("name")) {
    const auto it = object.find("function");
    if (it == object.end() || !it->is_object()) return std::nullopt;
    fn = &*it;
  }
  ChatToolCall call;
  const auto name = fn->find("name");
  if (name == fn->end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    return std::nullopt;
  }
  call.name = name->get<std::string>();
  auto args = fn->find("arguments");
  if (args == fn->end()) args = fn->find("parameters");
  if (args == fn->end() || args->is_null()) {
    call.arguments = "{}";
  } else if (args->is_string()) {
    // Arguments sent as a JSON string (OpenAI's wire form): it must hold an object.
    const std::string& text = args->get_ref<const std::string&>();
    const JsonScan scan = ScanJsonValue(Trim(text));
    if (scan.state != JsonState::kComplete || scan.end != Trim(text).size()) return std::nullopt;
    const Json inner = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    std::optional<std::string> dumped = ArgumentsText(inner);
    if (!dumped) return std::nullopt;
    call.arguments = std::move(*dumped);
  } else {
    std::optional<std::string> dumped = ArgumentsText(*args);
    if (!dumped) return std::nullopt;
    call.arguments = std::move(*dumped);
  }
  const auto id = object.find("id");
  if (id != object.end() && id->is_string()) call.id = id->get<std::string>();
  return call;
}

}  // namespace

std::optional<std::vector<ChatToolCall>> CallsFromJson(const Json& value) {
  std::vector<ChatToolCall> calls;
  if (value.is_array()) {
    if (value.empty()) return std::nullopt;
    for (const Json& element : value) {
      std::optional<ChatToolCall> call = CallFromObject(element);
      if (!call) return std::nullopt;
      calls.push_back(std::move(*call));
    }
    return calls;
  }
  std::optional<ChatToolCall> call = CallFromObject(value);
  if (!call) return std::nullopt;
  calls.push_back(std::move(*call));
  return calls;
}

std::optional<std::vector<ChatToolCall>> CallsFromJsonText(std::string_view text) {
  const JsonScan scan = ScanJsonValue(text);
  if (scan.state != JsonState::kComplete || scan.end != text.size()) return std::nullopt;
  const Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return CallsFromJson(value);
}

}  // namespace tqlm::chat::tool_call_internal
