#include "chat/tool_call_blocks.h"

#include <optional>

#include <nlohmann/json.hpp>

#include "chat/tool_call_json.h"
#include "chat/tool_call_python.h"

namespace tqlm::chat::tool_call_internal {
namespace {

using Json = nlohmann::ordered_json;
using Calls = std::vector<ChatToolCall>;

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralTag = "[TOOL_CALLS]";
constexpr std::string_view kMistralArgs = "[ARGS]";
constexpr std::string_view kMistralCallId = "[CALL_ID]";
constexpr std::string_view kFence = "```";
constexpr std::string_view kGemmaFence = "```tool";

Block Resolved(std::optional<Calls> calls, size_t end) {
  if (!calls) return {Block::kMalformed, end};
  return {Block::kCalls, end, std::move(*calls)};
}

std::string_view SkipSpace(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  return s;
}

// JSON call values one after another, separated by whitespace or ';' (Llama 3 writes
// several calls that way).
std::optional<Calls> JsonSequence(std::string_view s) {
  Calls calls;
  for (;;) {
    while (!s.empty() && (IsSpace(s.front()) || s.front() == ';')) s.remove_prefix(1);
    if (s.empty()) break;
    const JsonScan scan = ScanJsonValue(s);
    if (scan.state != JsonState::kComplete) return std::nullopt;
    std::optional<Calls> some = CallsFromJsonText(s.substr(0, scan.end));
    if (!some) return std::nullopt;
    for (ChatToolCall& c : *some) calls.push_back(std::move(c));
    s.remove_prefix(scan.end);
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.';
}

bool AllOf(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}

// After [TOOL_CALLS]: a JSON array/object of calls, or name[CALL_ID]id[ARGS]{...}; either form
// may repeat, each repetition optionally preceded by another [TOOL_CALLS].
std::optional<Calls> MistralBody(std::string_view s) {
  Calls calls;
  for (;;) {
    s = SkipSpace(s);
    if (s.empty()) break;
    if (s.starts_with(kMistralTag)) {
      s.remove_prefix(kMistralTag.size());
      continue;
    }
    if (s.front() == '[' || s.front() == '{') {
      const JsonScan scan = ScanJsonValue(s);
      if (scan.state != JsonState::kComplete) return std::nullopt;
      std::optional<Calls> some = CallsFromJsonText(s.substr(0, scan.end));
      if (!some) return std::nullopt;
      for (ChatToolCall& c : *some) calls.push_back(std::move(c));
      s.remove_prefix(scan.end);
      continue;
    }
    const size_t args_at = s.find(kMistralArgs);
    if (args_at == std::string_view::npos) return std::nullopt;
    ChatToolCall call;
    std::string_view head = s.substr(0, args_at);
    const size_t id_at = head.find(kMistralCallId);
    if (id_at != std::string_view::npos) {
      const std::string_view id = head.substr(id_at + kMistralCallId.size());
      if (!AllOf(id, [](char c) { return IsNameChar(c) && c != '.' && c != '-'; })) {
        return std::nullopt;
      }
      call.id = std::string(id);
      head = head.substr(0, id_at);
    }
    if (!AllOf(head, IsNameChar)) return std::nullopt;
    call.name = std::string(head);
    s = SkipSpace(s.substr(args_at + kMistralArgs.size()));
    const JsonScan scan = ScanJsonValue(s);
    if (scan.state != JsonState::kComplete) return std::nullopt;
    const Json args = Json::parse(s.substr(0, scan.end), nullptr, /*allow_exceptions=*/false);
    std::optional<std::string> text = ArgumentsText(args);
    if (!text) return std::nullopt;
    call.arguments = std::move(*text);
    calls.push_back(std::move(call));
    s.remove_prefix(scan.end);
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

// The inside of a Gemma tool fence: python calls, or JSON.
std::optional<Calls> GemmaBody(std::string_view body) {
  body = Trim(body);
  if (!body.empty() && (body.front() == '{' || body.front() == '[')) {
    if (std::optional<Calls> calls = JsonSequence(body)) return calls;
  }
  return CallsFromPython(body);
}

Block HermesBlock(std::string_view text, bool final) {
  const size_t close = text.find(kHermesClose, kHermesOpen.size());
  if (close == std::string_view::npos) {
    if (!final) return {};
    // No closing tag: a call only if the rest is one complete call (the model stopped there).
    return Resolved(CallsFromJsonText(Trim(text.substr(kHermesOpen.size()))), text.size());
  }
  const std::string_view body = text.substr(kHermesOpen.size(), close - kHermesOpen.size());
  return Resolved(CallsFromJsonText(Trim(body)), close + kHermesClose.size());
}

// <|python_tag|> makes the rest of the message code for the tool environment.
Block Llama3Block(std::string_view text, bool final) {
  if (!final) return {};
  const std::string_view body = Trim(text.substr(kPythonTag.size()));
  std::optional<Calls> calls = JsonSequence(body);
  if (!calls) calls = CallsFromPython(body);
  return Resolved(std::move(calls), text.size());
}

// [TOOL_CALLS] also runs to the end of the message.
Block MistralBlock(std::string_view text, bool final) {
  if (!final) return {};
  return Resolved(MistralBody(text.substr(kMistralTag.size())), text.size());
}

Block GemmaBlock(std::string_view text, bool final) {
  size_t word_end = kFence.size();
  while (word_end < text.size() && (IsNameChar(text[word_end]) && text[word_end] != '.')) {
    ++word_end;
  }
  if (word_end == text.size() && !final) return {};  // the fence's language may go on
  const std::string_view lang = text.substr(kFence.size(), word_end - kFence.size());
  if (lang != "tool_code" && lang != "tool_call" && lang != "tool") {
    return {Block::kNotCall, word_end};  // another code block: content
  }
  const size_t close = text.find(kFence, word_end);
  if (close == std::string_view::npos) {
    if (!final) return {};
    return Resolved(GemmaBody(text.substr(word_end)), text.size());
  }
  return Resolved(GemmaBody(text.substr(word_end, close - word_end)), close + kFence.size());
}

// `text` (after leading whitespace) as a complete bare call, or a broken attempt at one.
Block ResolveWhole(std::string_view json, bool looks_like_call, size_t end) {
  std::optional<Calls> calls = CallsFromJsonText(Trim(json));
  if (calls) return {Block::kCalls, end, std::move(*calls)};
  return {looks_like_call ? Block::kMalformed : Block::kNotCall, end};
}

}  // namespace

std::string_view BlockMarker(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::kHermes: return kHermesOpen;
    case ToolCallFormat::kLlama3Json: return kPythonTag;
    case ToolCallFormat::kMistral: return kMistralTag;
    case ToolCallFormat::kGemma: return kGemmaFence;
    case ToolCallFormat::kGenericJson: return "";
  }
  return "";
}

Block ParseBlock(ToolCallFormat format, std::string_view text, bool final) {
  switch (format) {
    case ToolCallFormat::kHermes: return HermesBlock(text, final);
    case ToolCallFormat::kLlama3Json: return Llama3Block(text, final);
    case ToolCallFormat::kMistral: return MistralBlock(text, final);
    case ToolCallFormat::kGemma: return GemmaBlock(text, final);
    case ToolCallFormat::kGenericJson: break;
  }
  return {Block::kNotCall, text.size()};
}

Block ParseWholeMessage(std::string_view text, bool final) {
  const std::string_view rest = SkipSpace(text);
  if (rest.empty()) return final ? Block{Block::kNotCall} : Block{};
  constexpr std::string_view kJsonFence = "```json";
  if (rest.front() == '`') {
    if (rest.size() < kJsonFence.size() + 1) {
      // "```jso" may still become a ```json fence.
      const bool prefix = kJsonFence.starts_with(rest);
      return prefix && !final ? Block{} : Block{Block::kNotCall};
    }
    if (!rest.starts_with(kJsonFence) || !IsSpace(rest[kJsonFence.size()])) {
      return {Block::kNotCall};
    }
    const std::string_view after = rest.substr(kJsonFence.size());
    const size_t close = after.find(kFence);
    if (close != std::string_view::npos && !AllSpace(after.substr(close + kFence.size()))) {
      return {Block::kNotCall};  // text after the fence: not a bare call message
    }
    if (!final) return {};
    const std::string_view body = close == std::string_view::npos ? after : after.substr(0, close);
    // Without a closing fence a complete call still counts, as for the marked blocks.
    return ResolveWhole(body, LooksLikeJsonCall(body), text.size());
  }
  if (rest.front() != '{' && rest.front() != '[') return {Block::kNotCall};
  const JsonScan scan = ScanJsonValue(rest);
  if (scan.state == JsonState::kInvalid) return {Block::kNotCall};
  if (scan.state == JsonState::kComplete && !AllSpace(rest.substr(scan.end))) {
    return {Block::kNotCall};
  }
  if (!final) return {};
  return ResolveWhole(rest, LooksLikeJsonCall(rest), text.size());
}

}  // namespace tqlm::chat::tool_call_internal
