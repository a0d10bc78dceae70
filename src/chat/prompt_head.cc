#include "chat/prompt_head.h"

#include <vector>

namespace tqlm::chat {
namespace {

// Stands in for the first user message's text while the head is measured; control characters
// keep it out of real text.
constexpr const char* kHeadMarker = "\x01TQLM_HEAD_END\x01";

}  // namespace

int ToolsHeadTokens(const tokenizer::Tokenizer& tok, const ChatFormatter& chat,
                    std::span<const ChatMessage> messages, const nlohmann::ordered_json& tools) {
  if (!tools.is_array() || tools.empty()) return 0;
  std::vector<ChatMessage> marked(messages.begin(), messages.end());
  size_t first = 0;
  while (first < marked.size() && marked[first].role == "system") ++first;
  if (first == marked.size()) return 0;
  marked[first].content = kHeadMarker;
  const std::string text = chat.FormatWithTools(marked, tools, true);
  const size_t at = text.find(kHeadMarker);
  if (at == std::string::npos) return 0;
  return int(tok.EncodeChat(std::string_view(text).substr(0, at)).size());
}

}  // namespace tqlm::chat
