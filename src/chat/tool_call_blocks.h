// Marker-delimited call blocks of each convention (internal to tool_call*.cc). The stream
// parser finds a block's marker; the functions here decide, from the text that starts at the
// marker, whether the block is complete yet and what it holds.
#pragma once

#include <string_view>
#include <vector>

#include "chat/chat_format.h"
#include "chat/tool_calls.h"

namespace tqlm::chat::tool_call_internal {

// The text that opens a call block in `format` ("" for none: generic JSON has no marker).
std::string_view BlockMarker(ToolCallFormat format);

struct Block {
  enum Kind {
    kWait,       // cannot tell yet: more text (or the end of the message) is needed
    kCalls,      // text[0, end) is a valid block holding `calls`
    kMalformed,  // text[0, end) was meant as a call block but does not parse
    kNotCall,    // text[0, end) only looked like a marker; it is content
  };
  Kind kind = kWait;
  size_t end = 0;
  std::vector<ChatToolCall> calls = {};
};

// `text` starts with BlockMarker(format). With `final`, `text` runs to the end of the message
// and the answer is never kWait. Whatever text follows (it may grow while streaming) a kind
// other than kWait is final: the answer for a longer text is the same.
Block ParseBlock(ToolCallFormat format, std::string_view text, bool final);

// The whole-message form: `text` is everything the model wrote (`final`), or its beginning so
// far. kCalls/kMalformed (end == text.size()) when the message is one bare JSON call (or a
// ```json fence holding one) or a broken attempt at it; kWait while it still could be;
// kNotCall as soon as it cannot (the text is then scanned for marked blocks).
Block ParseWholeMessage(std::string_view text, bool final);

}  // namespace tqlm::chat::tool_call_internal
