// libFuzzer target for the server's request parser/validator (src/server/request.h): any bytes
// as a chat or completion body must either parse into a request that satisfies the limits or
// be refused with an ApiError of status 400 — never another exception, a crash or a hang. Parsed
// chats are also rendered with the ChatML formatter and their answer encoded, as a handler does.
//
//   build-fuzz/fuzz_server_request -max_total_time=60 fuzz/corpus/server_request
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/openai_json.h"
#include "server/request.h"
#include "chat/chat_format.h"

namespace {

using namespace tqlm::server;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckSampling(const SamplingFields& s, const RequestLimits& limits) {
  Check(!s.max_tokens || (*s.max_tokens >= 1 && *s.max_tokens <= limits.max_tokens));
  Check(s.stop.size() <= limits.max_stop);
  for (const auto& stop : s.stop) Check(!stop.empty());
  Check(!s.temperature || (*s.temperature >= 0 && *s.temperature <= 2));
  Check(!s.top_p || (*s.top_p >= 0 && *s.top_p <= 1));
  const auto p = ToGenerateParams(s, {}, 16, 1);
  Check(p.max_tokens >= 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  RequestLimits limits;
  limits.max_tokens = 512;
  static const tqlm::chat::ChatMlFormatter chatml("You are a helpful assistant.");
  try {
    const ChatRequest r = ParseChatRequest(body, limits);
    Check(!r.messages.empty() && r.messages.size() <= limits.max_messages);
    Check(r.tools.is_null() || r.tools.is_array());
    CheckSampling(r.sampling, limits);
    const std::string prompt = chatml.Format(r.messages, true);
    Check(!prompt.empty());
    const ResponseMeta meta{"chatcmpl-x", 0, r.model};
    (void)SseData(ChatChunk(meta, {{"content", r.messages.back().content}}));
  } catch (const ApiError& e) {
    Check(e.status() == 400);
  }
  try {
    const CompletionRequest r = ParseCompletionRequest(body, limits);
    CheckSampling(r.sampling, limits);
    (void)Dump(TextCompletion({"cmpl-x", 0, r.model}, r.prompt, "stop", {}));
  } catch (const ApiError& e) {
    Check(e.status() == 400);
  }
  return 0;
}
