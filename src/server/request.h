// Request bodies of the OpenAI API, parsed and validated into typed requests. Everything a
// client can get wrong (malformed JSON, a known field of the wrong type or out of range, an
// unsupported option) is an ApiError (400) naming the field; unknown fields are ignored, as
// OpenAI-compatible servers do. No HTTP types here, so the fuzzer drives it directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/generate.h"
#include "server/api_error.h"
#include "chat/chat_format.h"

namespace tqlm::server {

// Sampling and length fields common to both endpoints; unset ones take the server's defaults.
struct SamplingFields {
  std::optional<float> temperature, top_p, min_p, presence_penalty, frequency_penalty,
      repeat_penalty;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  std::optional<int> max_tokens;  // max_tokens or max_completion_tokens
  std::vector<std::string> stop;
  // Log-probabilities wanted: the sampled token's and this many alternatives' (chat: logprobs
  // true with top_logprobs 0-20; completions: logprobs 0-5).
  std::optional<int> top_logprobs;
};

// tool_choice: kNone shows the model no tools and parses nothing; kAuto lets it choose;
// kRequired and kFunction make it call one (see chat/tool_choice.h).
enum class ToolChoice { kNone, kAuto, kRequired, kFunction };

struct ChatRequest {
  std::string model;  // "" when not given
  std::vector<chat::ChatMessage> messages;
  nlohmann::ordered_json tools;  // array of {"type":"function","function":{...}}, or null
  ToolChoice tool_choice = ToolChoice::kAuto;  // kAuto when no tools are given
  std::string tool_choice_name;                // kFunction: the function to call (among `tools`)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  SamplingFields sampling;
};

struct CompletionRequest {
  std::string model;
  std::string prompt;
  bool stream = false;
  bool include_usage = false;
  SamplingFields sampling;
};

struct RequestLimits {
  int max_tokens = 4096;      // largest max_tokens a request may ask for
  size_t max_messages = 1024;
  size_t max_stop = 4;        // OpenAI's limit on stop sequences
  int max_json_depth = 64;
};

ChatRequest ParseChatRequest(std::string_view body, const RequestLimits& limits);
CompletionRequest ParseCompletionRequest(std::string_view body, const RequestLimits& limits);

// The generation parameters for a request: its fields over the server's defaults. Without a
// seed in the request, `fallback_seed` is used (so repeated requests differ).
runtime::GenerateParams ToGenerateParams(const SamplingFields& fields,
                                         const runtime::SamplerParams& defaults,
                                         int default_max_tokens, uint64_t fallback_seed);

}  // namespace tqlm::server
