// The tool-call parser: one incremental engine; the one-shot ParseToolCalls is a single Push
// followed by Finish, so streaming and one-shot parsing agree by construction wherever the
// engine only commits what no continuation of the text could change.
#include <algorithm>
#include <utility>

#include "chat/tool_call_blocks.h"
#include "chat/tool_call_ids.h"
#include "chat/tool_call_json.h"
#include "chat/tool_calls.h"
#include "tokenizer/utf8.h"
#include "tqlm/error.h"

namespace tqlm::chat {

using namespace tool_call_internal;

namespace {

// Length of the longest proper prefix of `marker` that `text` ends with: text that may become
// the marker once more arrives.
size_t PartialMarkerSuffix(std::string_view text, std::string_view marker) {
  for (size_t k = std::min(text.size(), marker.size() - 1); k > 0; --k) {
    if (text.ends_with(marker.substr(0, k))) return k;
  }
  return 0;
}

bool IsMistralId(std::string_view id) {
  if (id.size() != 9) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::vector<ToolCallDelta> ToolCallStreamParser::Push(std::string_view piece) {
  if (finished_) throw Error("tool-call parser: text pushed after the end of the message");
  buffer_.append(piece);
  Drain(false);
  return std::exchange(out_, {});
}

std::vector<ToolCallDelta> ToolCallStreamParser::Finish() {
  if (finished_) return {};
  Drain(true);
  finished_ = true;
  pending_space_.clear();  // trailing whitespace is not content
  if (!pending_utf8_.empty()) {
    // Bytes that never became a character are passed on as they are, not lost.
    ReleaseContent(std::exchange(pending_utf8_, {}));
  }
  return std::exchange(out_, {});
}

void ToolCallStreamParser::Drain(bool final) {
  for (;;) {
    if (whole_message_) {
      Block b = ParseWholeMessage(buffer_, final);
      if (b.kind == Block::kWait) return;
      if (b.kind == Block::kCalls || b.kind == Block::kMalformed) {
        if (b.kind == Block::kCalls) {
          CommitCalls(std::move(b.calls));
        } else {
          CommitMalformed(buffer_);
        }
        buffer_.clear();
        whole_message_ = false;
        return;
      }
      whole_message_ = false;  // ordinary text: look for marked blocks in it
    }
    const std::string_view marker = BlockMarker(format_);
    const size_t at = marker.empty() ? std::string::npos : buffer_.find(marker);
    if (at == std::string::npos) {
      const size_t keep = final || marker.empty() ? 0 : PartialMarkerSuffix(buffer_, marker);
      CommitContent(std::string_view(buffer_).substr(0, buffer_.size() - keep));
      buffer_.erase(0, buffer_.size() - keep);
      return;
    }
    CommitContent(std::string_view(buffer_).substr(0, at));
    buffer_.erase(0, at);
    Block b = ParseBlock(format_, buffer_, final);
    const std::string_view block = std::string_view(buffer_).substr(0, b.end);
    switch (b.kind) {
      case Block::kWait: return;
      case Block::kCalls: CommitCalls(std::move(b.calls)); break;
      case Block::kMalformed: CommitMalformed(block); break;
      case Block::kNotCall: CommitContent(block); break;
    }
    buffer_.erase(0, b.end);
  }
}

void ToolCallStreamParser::CommitContent(std::string_view text) {
  if (!content_started_) {
    while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  }
  if (text.empty()) return;
  size_t body = text.size();
  while (body > 0 && IsSpace(text[body - 1])) --body;
  if (body == 0) {
    pending_space_ += text;  // content only if more content follows
    return;
  }
  std::string out = std::exchange(pending_space_, std::string(text.substr(body)));
  out += text.substr(0, body);
  content_started_ = true;
  EmitContent(std::move(out));
}

void ToolCallStreamParser::EmitContent(std::string text) {
  // Deltas end on character boundaries (a server sends each as a JSON string).
  text.insert(0, std::exchange(pending_utf8_, {}));
  const size_t hold = tokenizer::IncompleteUtf8Tail(text);
  pending_utf8_ = text.substr(text.size() - hold);
  text.resize(text.size() - hold);
  ReleaseContent(std::move(text));
}

void ToolCallStreamParser::ReleaseContent(std::string text) {
  if (text.empty()) return;
  result_.content += text;
  if (!out_.empty() && out_.back().index == -1) {
    out_.back().content += text;  // one content delta per Push
  } else {
    ToolCallDelta delta;
    delta.content = std::move(text);
    out_.push_back(std::move(delta));
  }
}

void ToolCallStreamParser::CommitCalls(std::vector<ChatToolCall> calls) {
  for (ChatToolCall& call : calls) {
    const int index = int(result_.calls.size());
    if (call.id.empty() || (format_ == ToolCallFormat::kMistral && !IsMistralId(call.id))) {
      call.id = MakeCallId(format_, size_t(index), call);
    }
    ToolCallDelta header;
    header.index = index;
    header.id = call.id;
    header.name = call.name;
    out_.push_back(std::move(header));
    ToolCallDelta args;
    args.index = index;
    args.arguments = call.arguments;
    out_.push_back(std::move(args));
    result_.calls.push_back(std::move(call));
  }
}

void ToolCallStreamParser::CommitMalformed(std::string_view text) {
  result_.malformed.emplace_back(Trim(text));
  CommitContent(text);
}

ToolCallParseResult ParseToolCalls(ToolCallFormat format, std::string_view text) {
  ToolCallStreamParser parser(format);
  parser.Push(text);
  parser.Finish();
  return parser.result();
}

}  // namespace tqlm::chat
