// OpenAI's response objects and server-sent events, built from plain values: chat completions
// and their stream chunks (content and tool-call deltas, a usage chunk), text completions, the
// model list, and the error body. Generated text may hold bytes that are not valid UTF-8 (a
// model can emit half a character before stopping); they are replaced, never an exception.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "chat/chat_format.h"

namespace tqlm::server {

using Json = nlohmann::ordered_json;

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;  // prompt tokens served from the prompt cache
  // tqlm's own figures, as "tqlm": {...} beside "usage" (clients ignore unknown fields): the
  // request's KV cache at its end against the same tokens in f16, and its decode rate.
  size_t kv_bytes = 0, kv_bytes_f16 = 0;
  double decode_tokens_per_s = 0;
  int64_t spec_proposed = 0, spec_accepted = 0;  // speculation (serve --spec ngram)
};

// Identifies one response: all chunks of a stream share it.
struct ResponseMeta {
  std::string id;       // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// JSON text; invalid UTF-8 in strings becomes U+FFFD.
std::string Dump(const Json& j);

// {"error": {...}} for `e`.
std::string ErrorBody(const ApiError& e);

Json UsageJson(const Usage& u);

// A complete chat answer. `tool_calls` non-empty: the message carries them (content may be
// empty, then null) and finish_reason should be "tool_calls".
Json ChatCompletion(const ResponseMeta& meta, const std::string& content,
                    const std::vector<chat::ChatToolCall>& tool_calls,
                    const std::string& finish_reason, const Usage& usage);

// One chat stream chunk with `delta` (e.g. {"role":"assistant","content":""} first, then
// {"content": piece}); finish_reason set on the last one.
Json ChatChunk(const ResponseMeta& meta, const Json& delta,
               const std::optional<std::string>& finish_reason = std::nullopt);
// The delta of one streamed tool call: its first delta carries index, id, type and name,
// later ones only index and a piece of the arguments.
Json ToolCallDelta(int index, const std::string& id, const std::string& name,
                   const std::string& arguments);
// The final chunk with empty choices and the usage (stream_options.include_usage).
Json ChatUsageChunk(const ResponseMeta& meta, const Usage& usage);

Json TextCompletion(const ResponseMeta& meta, const std::string& text,
                    const std::string& finish_reason, const Usage& usage);
Json TextChunk(const ResponseMeta& meta, const std::string& text,
               const std::optional<std::string>& finish_reason = std::nullopt);
Json TextUsageChunk(const ResponseMeta& meta, const Usage& usage);

// One sampled token's log-probability with the most likely alternatives, tokens as text.
struct LogprobToken {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};
// Chat's choice.logprobs: {"content": [{token, logprob, bytes, top_logprobs}, ...]}.
Json ChatLogprobs(const std::vector<LogprobToken>& tokens);
// Completions' (legacy) choice.logprobs: tokens, token_logprobs, top_logprobs (one object per
// token, alternative -> logprob), text_offset (from `offset`, bytes into the output).
Json TextLogprobs(const std::vector<LogprobToken>& tokens, size_t offset);

Json ModelList(const std::vector<std::string>& ids, int64_t created);

// "data: <json>\n\n" and the terminating "data: [DONE]\n\n".
std::string SseData(const Json& j);
std::string SseDone();

}  // namespace tqlm::server
