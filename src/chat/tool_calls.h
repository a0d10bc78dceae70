// Tool calls in a model's own output: turning generated text into OpenAI-style structured calls
// in the convention of the model family, one-shot or incrementally while streaming.
//
// Conventions (what the model writes):
//   kHermes      Qwen2.5/Qwen3/Hermes/SmolLM2: <tool_call>\n{"name":..,"arguments":{..}}\n</tool_call>
//                (several blocks allowed, text around them is content)
//   kLlama3Json  Llama 3.x: <|python_tag|>{...} (rest of the message; JSON objects separated
//                by ';', or a built-in tool's python call `brave_search.call(query="x")`)
//   kMistral     [TOOL_CALLS] [{"name":..,"arguments":{..}}, ...]  or the newer
//                [TOOL_CALLS]name[ARGS]{...} (optionally name[CALL_ID]id[ARGS]{...}), repeated
//   kGemma       ```tool_code\nget_weather(city="Paris")\n``` (python call syntax: strings,
//                numbers, True/False/None, lists, dicts; keyword arguments only), also
//                ```tool / ```tool_call fences and JSON inside them
//   kGenericJson none of the above
// In every convention the WHOLE message may also be a bare JSON call object {"name":..,
// "arguments"|"parameters":{..}} (or an array of them, or either inside one ```json fence):
// Llama 3 and generic models answer that way, and our decoder drops control tokens such as
// [TOOL_CALLS] and <|python_tag|>, leaving exactly that.
//
// Rules: a call needs a non-empty string name; its arguments must be a JSON object (or a string
// holding one); missing or null arguments mean {}. A call block whose text does not meet these
// rules is reported in `malformed` and its text stays in `content`: nothing is ever guessed
// out of broken JSON. A block complete except for its closing tag/fence at the very end of the
// output is accepted (models often stop right after the JSON). `content` is the text outside
// calls with leading and trailing whitespace removed. `arguments` is compact JSON text.
// Call ids are deterministic: "call_" + a hash of (index, name, arguments); Mistral's
// templates demand 9 alphanumerics, so kMistral ids are that (or the model's own id).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "chat/chat_format.h"

namespace tqlm::chat {

enum class ToolCallFormat { kHermes, kLlama3Json, kMistral, kGemma, kGenericJson };

// "hermes", "llama3_json", "mistral", "gemma", "generic_json".
std::string_view ToolCallFormatName(ToolCallFormat format);

// The convention a model uses, from its chat template text (the markers the template writes)
// and its general.architecture.
ToolCallFormat DetectToolCallFormat(std::string_view chat_template, std::string_view arch);

struct ToolCallParseResult {
  std::string content;                  // text outside calls (malformed blocks included)
  std::vector<ChatToolCall> calls;      // in order of appearance
  std::vector<std::string> malformed;   // raw text of call blocks that did not parse
};

// Parses a complete assistant message.
ToolCallParseResult ParseToolCalls(ToolCallFormat format, std::string_view text);

// One streaming update, OpenAI style: either content text (index == -1), or for call `index`
// its header (id + name, once) or a piece of its arguments text.
struct ToolCallDelta {
  std::string content;
  int index = -1;
  std::string id;
  std::string name;
  std::string arguments;
};

// Incremental ParseToolCalls. Content is released as soon as it cannot be the start of a call
// (only a possible marker prefix, trailing whitespace, an unfinished UTF-8 character, or a
// message that may turn out to be one bare JSON call is held back). A call is released when
// its block is complete and valid - a header delta then its arguments - because a call
// already streamed could not be taken back if the block later proved malformed. The
// concatenation of all deltas of Push()es and Finish() equals ParseToolCalls() of the
// concatenated pieces, however the text is split.
class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ToolCallFormat format) : format_(format) {}

  std::vector<ToolCallDelta> Push(std::string_view piece);
  // End of the message: resolves everything held back. Push after Finish throws tqlm::Error.
  std::vector<ToolCallDelta> Finish();
  // Everything released so far (after Finish: the same as ParseToolCalls of the whole text).
  const ToolCallParseResult& result() const { return result_; }

 private:
  enum class Step { kWait, kDone, kNotCandidate };
  void Drain(bool final);
  Step WholeMessage(bool final);
  void CommitContent(std::string_view text);
  void CommitCalls(std::vector<ChatToolCall> calls);
  void CommitMalformed(std::string_view text);
  void EmitContent(std::string text);
  void ReleaseContent(std::string text);

  ToolCallFormat format_;
  std::string buffer_;              // text not yet committed
  bool whole_message_ = true;       // the message may still be one bare JSON call
  bool content_started_ = false;    // non-whitespace content committed
  bool finished_ = false;
  std::string pending_space_;       // whitespace that is content only if more content follows
  std::string pending_utf8_;        // an unfinished UTF-8 character of released content
  std::vector<ToolCallDelta> out_;
  ToolCallParseResult result_;
};

}  // namespace tqlm::chat
