// The prompt of the tool-calling experiment (`tqlm eval tools`): a system prompt defining two
// tools in the model's own template (get_weather(city), search_flights(origin, destination,
// date)), then a user turn holding F tokens of unrelated corpus text before a request that
// needs exactly one call: get_weather with city Reykjavik. With a compressed KV cache whose
// full-precision recent buffer is a fraction of the prompt, the tool definitions at the start
// are what the buffer stops covering first.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "eval/tools_grade.h"
#include "chat/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::eval {

// The OpenAI tools array of the experiment.
const nlohmann::ordered_json& ExperimentTools();
// The call the request needs.
const ExpectedToolCall& ExperimentExpectedCall();
// The request text (last words of the user turn).
const std::string& ExperimentRequest();

struct ToolsPrompt {
  std::vector<int> tokens;  // the whole chat prompt (generation prompt included), ready to feed
  int filler_tokens = 0;    // corpus tokens in the user turn
  int head_tokens = 0;      // tokens before the filler: system prompt with the tool definitions
  // The head as the runtime measures it for its tools-head sinks (tokenizer/prompt_head.h):
  // up to the user turn's text, so a little shorter than head_tokens.
  int tools_head_tokens = 0;
};

// Builds a prompt of about `length` tokens; the filler is a run of `corpus` tokens from an
// offset drawn from `seed`. Throws tqlm::Error when `length` leaves fewer than 16 filler tokens
// or the corpus is too short.
ToolsPrompt BuildToolsPrompt(const tokenizer::Tokenizer& tok, const chat::ChatFormatter& chat,
                             std::span<const int> corpus, int length, uint64_t seed);

}  // namespace tqlm::eval
