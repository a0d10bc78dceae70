#include "server/openai_json.h"

namespace tqlm::server {

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string ErrorBody(const ApiError& e) {
  Json err = {{"message", e.what()}, {"type", e.type()}};
  err["param"] = e.param().empty() ? Json(nullptr) : Json(e.param());
  err["code"] = e.code().empty() ? Json(nullptr) : Json(e.code());
  return Dump(Json{{"error", err}});
}

Json UsageJson(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

namespace {
// Sets j["usage"] and, when the request's figures are known, j["tqlm"].
void PutUsage(Json& j, const Usage& u) {
  j["usage"] = UsageJson(u);
  if (u.kv_bytes_f16 > 0) {
    j["tqlm"] = {{"kv_cache_bytes", u.kv_bytes},
                 {"kv_cache_bytes_f16", u.kv_bytes_f16},
                 {"decode_tokens_per_s", u.decode_tokens_per_s}};
    if (u.spec_proposed > 0)
      j["tqlm"]["speculation"] = {
          {"proposed", u.spec_proposed},
          {"accepted", u.spec_accepted},
          {"acceptance_rate", double(u.spec_accepted) / double(u.spec_proposed)}};
  }
}

Json Header(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
}
}  // namespace

Json ChatCompletion(const ResponseMeta& meta, const std::string& content,
                    const std::vector<chat::ChatToolCall>& tool_calls,
                    const std::string& finish_reason, const Usage& usage) {
  Json message = {{"role", "assistant"}};
  message["content"] = tool_calls.empty() || !content.empty() ? Json(content) : Json(nullptr);
  if (!tool_calls.empty()) {
    Json calls = Json::array();
    for (const auto& c : tool_calls)
      calls.push_back({{"id", c.id},
                       {"type", "function"},
                       {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    message["tool_calls"] = std::move(calls);
  }
  Json j = Header(meta, "chat.completion");
  j["choices"] = Json::array(
      {{{"index", 0}, {"message", std::move(message)}, {"logprobs", nullptr},
        {"finish_reason", finish_reason}}});
  PutUsage(j, usage);
  return j;
}

Json ChatChunk(const ResponseMeta& meta, const Json& delta,
               const std::optional<std::string>& finish_reason) {
  Json j = Header(meta, "chat.completion.chunk");
  j["choices"] = Json::array({{{"index", 0},
                               {"delta", delta},
                               {"logprobs", nullptr},
                               {"finish_reason", finish_reason ? Json(*finish_reason) : Json(nullptr)}}});
  return j;
}

Json ToolCallDelta(int index, const std::string& id, const std::string& name,
                   const std::string& arguments) {
  Json call = {{"index", index}};
  if (!id.empty()) call["id"] = id;
  if (!name.empty()) {
    call["type"] = "function";
    call["function"] = {{"name", name}, {"arguments", arguments}};
  } else {
    call["function"] = {{"arguments", arguments}};
  }
  return {{"tool_calls", Json::array({call})}};
}

Json ChatUsageChunk(const ResponseMeta& meta, const Usage& usage) {
  Json j = Header(meta, "chat.completion.chunk");
  j["choices"] = Json::array();
  PutUsage(j, usage);
  return j;
}

Json TextCompletion(const ResponseMeta& meta, const std::string& text,
                    const std::string& finish_reason, const Usage& usage) {
  Json j = Header(meta, "text_completion");
  j["choices"] = Json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr},
                               {"finish_reason", finish_reason}}});
  PutUsage(j, usage);
  return j;
}

Json TextChunk(const ResponseMeta& meta, const std::string& text,
               const std::optional<std::string>& finish_reason) {
  Json j = Header(meta, "text_completion");
  j["choices"] = Json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr},
                               {"finish_reason", finish_reason ? Json(*finish_reason) : Json(nullptr)}}});
  return j;
}

Json TextUsageChunk(const ResponseMeta& meta, const Usage& usage) {
  Json j = Header(meta, "text_completion");
  j["choices"] = Json::array();
  PutUsage(j, usage);
  return j;
}

Json ModelList(const std::vector<std::string>& ids, int64_t created) {
  Json data = Json::array();
  for (const auto& id : ids)
    data.push_back({{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "tqlm"}});
  return {{"object", "list"}, {"data", std::move(data)}};
}

std::string SseData(const Json& j) { return "data: " + Dump(j) + "\n\n"; }
std::string SseDone() { return "data: [DONE]\n\n"; }

namespace {
Json Bytes(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}
}  // namespace

Json ChatLogprobs(const std::vector<LogprobToken>& tokens) {
  Json content = Json::array();
  for (const LogprobToken& t : tokens) {
    Json top = Json::array();
    for (const auto& [tok, lp] : t.top)
      top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", Bytes(tok)}});
    content.push_back({{"token", t.token},
                       {"logprob", t.logprob},
                       {"bytes", Bytes(t.token)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

Json TextLogprobs(const std::vector<LogprobToken>& tokens, size_t offset) {
  Json toks = Json::array(), lps = Json::array(), tops = Json::array(), offsets = Json::array();
  for (const LogprobToken& t : tokens) {
    toks.push_back(t.token);
    lps.push_back(t.logprob);
    Json top = Json::object();
    for (const auto& [tok, lp] : t.top) top[tok] = lp;
    tops.push_back(std::move(top));
    offsets.push_back(offset);
    offset += t.token.size();
  }
  return {{"tokens", std::move(toks)},
          {"token_logprobs", std::move(lps)},
          {"top_logprobs", std::move(tops)},
          {"text_offset", std::move(offsets)}};
}

}  // namespace tqlm::server
