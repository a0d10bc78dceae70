// Grading one greedy answer of the tool-calling experiment (`tqlm eval tools`): did the model
// make exactly the one call the request needs, in its own convention, with arguments that fit
// the tool's schema - and if not, how did it fail?
//
// Verdicts, checked in this order (the first that applies):
//   PASS           exactly one call in the model's native convention, the expected tool, its
//                  arguments valid against the schema (required keys present, JSON types as
//                  declared) and each expected value found in its argument (case-insensitive)
//   COLLAPSE       repetition loop or garbage: one n-gram repeated over most of the output, or
//                  mostly characters that are not text
//   WRONG_ARGS     native calls of defined tools, but not exactly one, not the expected tool,
//                  or arguments that miss/mistype a key or the requested value
//   LOST_FORMAT    a native call of an undefined tool, a call block that did not parse, or
//                  JSON in the answer that is not a call
//   ALT_FORMAT     a call written in another convention (another parser finds it)
//   HALLUCINATION  no call, and the answer asserts the facts the tool would have supplied
//                  (digits, degrees, weather words)
//   NO_CALL        no call and no such facts (e.g. "I cannot access real-time data")
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "chat/tool_calls.h"

namespace tqlm::eval {

enum class ToolVerdict {
  kPass,
  kWrongArgs,
  kAltFormat,
  kLostFormat,
  kCollapse,
  kHallucination,
  kNoCall
};

// "PASS", "WRONG_ARGS", "ALT_FORMAT", "LOST_FORMAT", "COLLAPSE", "HALLUCINATION", "NO_CALL".
std::string_view ToolVerdictName(ToolVerdict v);
// The inverse; throws tqlm::Error for an unknown name.
ToolVerdict ParseToolVerdict(std::string_view name);

struct ExpectedToolCall {
  std::string name;
  // Argument key -> accepted spellings of the requested value (any one, case-insensitive
  // substring of the argument's string form), e.g. {"city": {"Reykjavik", "Reykjavík"}}.
  std::map<std::string, std::vector<std::string>> values;
};

struct ToolGrade {
  ToolVerdict verdict = ToolVerdict::kNoCall;
  std::string detail;  // why, in a few words (for the results row)
  int calls = 0;       // calls found in the native convention
};

// `tools` is the OpenAI tools array the prompt defined (chat::ValidateTools' format).
ToolGrade GradeToolOutput(std::string_view output, chat::ToolCallFormat native,
                          const nlohmann::ordered_json& tools, const ExpectedToolCall& expected);

// The collapse test alone (exposed for tests): true when the text is a repetition loop or
// mostly non-text.
bool LooksCollapsed(std::string_view text);

}  // namespace tqlm::eval
