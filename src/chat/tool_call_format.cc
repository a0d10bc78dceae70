// Which tool-call convention a model uses, and the ids its calls get.
#include <cstdint>
#include <string>

#include "chat/tool_call_ids.h"
#include "chat/tool_calls.h"

namespace tqlm::chat {

std::string_view ToolCallFormatName(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::kHermes: return "hermes";
    case ToolCallFormat::kLlama3Json: return "llama3_json";
    case ToolCallFormat::kMistral: return "mistral";
    case ToolCallFormat::kGemma: return "gemma";
    case ToolCallFormat::kGenericJson: return "generic_json";
  }
  return "unknown";
}

ToolCallFormat DetectToolCallFormat(std::string_view chat_template, std::string_view arch) {
  auto has = [&](std::string_view s) { return chat_template.find(s) != std::string_view::npos; };
  // The template shows the model how its calls look (it renders earlier calls that way), so
  // its markers are the surest sign; the architecture only decides for templates without any.
  if (has("<tool_call>")) return ToolCallFormat::kHermes;
  if (has("[TOOL_CALLS]")) return ToolCallFormat::kMistral;
  if (has("<|python_tag|>") || has("ipython")) return ToolCallFormat::kLlama3Json;
  if (has("tool_code") || arch.starts_with("gemma")) return ToolCallFormat::kGemma;
  return ToolCallFormat::kGenericJson;
}

namespace tool_call_internal {

std::string MakeCallId(ToolCallFormat format, size_t index, const ChatToolCall& call) {
  // FNV-1a over index, name and arguments: the same call in the same place of a message gets
  // the same id on every run and however the output was streamed.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
    h ^= 0xff;  // separator, so that ("ab","c") and ("a","bc") differ
    h *= 0x100000001b3ull;
  };
  mix(std::to_string(index));
  mix(call.name);
  mix(call.arguments);
  if (format == ToolCallFormat::kMistral) {
    // Mistral's templates reject any id that is not exactly 9 alphanumerics.
    constexpr std::string_view kAlnum =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string id;
    for (int i = 0; i < 9; ++i) {
      id += kAlnum[h % kAlnum.size()];
      h /= kAlnum.size();
    }
    return id;
  }
  constexpr std::string_view kHex = "0123456789abcdef";
  std::string id = "call_";
  for (int shift = 60; shift >= 0; shift -= 4) id += kHex[(h >> shift) & 0xf];
  return id;
}

}  // namespace tool_call_internal
}  // namespace tqlm::chat
