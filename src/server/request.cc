#include "server/request.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "runtime/sampling_limits.h"

namespace tqlm::server {
namespace {

using Json = nlohmann::ordered_json;

Json ParseBody(std::string_view body, const RequestLimits& limits) {
  // Deeply nested input is refused while parsing, before anything (the Jinja renderer, the
  // JSON destructor) would recurse over it.
  const int max_depth = limits.max_json_depth;
  auto guard = [max_depth](int depth, Json::parse_event_t, Json&) {
    if (depth > max_depth)
      throw BadRequest(fmt::format("JSON nested deeper than {} levels", max_depth));
    return true;
  };
  Json j;
  try {
    j = Json::parse(body.begin(), body.end(), guard);
  } catch (const Json::exception& e) {
    // parse_error, and out_of_range for numbers beyond double (e.g. 1e999): both bad input.
    throw BadRequest(fmt::format("malformed JSON in the request body: {}", e.what()));
  }
  if (!j.is_object()) throw BadRequest("the request body must be a JSON object");
  return j;
}

// The field, or nullptr when absent or null (clients send null for "not given").
const Json* Field(const Json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

const char* TypeName(const Json& v) { return v.type_name(); }

ApiError WrongType(const std::string& param, const char* want, const Json& got) {
  return BadRequest(fmt::format("'{}' must be {}, not {}", param, want, TypeName(got)), param);
}

std::optional<std::string> GetString(const Json& obj, const char* name, const std::string& param) {
  const Json* v = Field(obj, name);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw WrongType(param, "a string", *v);
  return v->get<std::string>();
}

std::optional<bool> GetBool(const Json& obj, const char* name) {
  const Json* v = Field(obj, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw WrongType(name, "a boolean", *v);
  return v->get<bool>();
}

std::optional<float> GetNumber(const Json& obj, const char* name, double lo, double hi) {
  const Json* v = Field(obj, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw WrongType(name, "a number", *v);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    throw BadRequest(fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x), name);
  return float(x);
}

std::optional<int64_t> GetInt(const Json& obj, const char* name, int64_t lo, int64_t hi) {
  const Json* v = Field(obj, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) throw WrongType(name, "an integer", *v);
  int64_t x;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    x = u > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                           : int64_t(u);
  } else {
    x = v->get<int64_t>();
  }
  if (x < lo || x > hi)
    throw BadRequest(fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x), name);
  return x;
}

void ParseStop(const Json& obj, const RequestLimits& limits, std::vector<std::string>& out) {
  const Json* v = Field(obj, "stop");
  if (!v) return;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > limits.max_stop)
      throw BadRequest(fmt::format("at most {} stop sequences are allowed, got {}",
                                   limits.max_stop, v->size()), "stop");
    for (const Json& s : *v) {
      if (!s.is_string()) throw WrongType("stop", "a string or an array of strings", s);
      out.push_back(s.get<std::string>());
    }
  } else {
    throw WrongType("stop", "a string or an array of strings", *v);
  }
  std::erase_if(out, [](const std::string& s) { return s.empty(); });
}

// The fields both endpoints share.
void ParseCommon(const Json& j, const RequestLimits& limits, std::string& model, bool& stream,
                 bool& include_usage, SamplingFields& s) {
  model = GetString(j, "model", "model").value_or("");
  stream = GetBool(j, "stream").value_or(false);
  if (const Json* so = Field(j, "stream_options")) {
    if (!so->is_object()) throw WrongType("stream_options", "an object", *so);
    include_usage = GetBool(*so, "include_usage").value_or(false);
  }
  namespace lim = runtime::sampling_limits;
  auto number = [&](const char* name, lim::Range r) { return GetNumber(j, name, r.lo, r.hi); };
  s.temperature = number("temperature", lim::kTemperature);
  s.top_p = number("top_p", lim::kTopP);
  s.min_p = number("min_p", lim::kMinP);
  s.presence_penalty = number("presence_penalty", lim::kPresencePenalty);
  s.frequency_penalty = number("frequency_penalty", lim::kFrequencyPenalty);
  s.repeat_penalty = number("repeat_penalty", lim::kRepeatPenalty);
  if (auto k = GetInt(j, "top_k", int64_t(lim::kTopK.lo), int64_t(lim::kTopK.hi))) s.top_k = int(*k);
  if (auto seed = GetInt(j, "seed", std::numeric_limits<int64_t>::min(),
                         std::numeric_limits<int64_t>::max()))
    s.seed = uint64_t(*seed);
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (auto m = GetInt(j, name, 1, std::numeric_limits<int64_t>::max())) {
      if (*m > limits.max_tokens)
        throw BadRequest(fmt::format("'{}' is {}, more than this server allows ({})", name, *m,
                                     limits.max_tokens), name);
      s.max_tokens = int(*m);
    }
  }
  ParseStop(j, limits, s.stop);
  if (auto n = GetInt(j, "n", std::numeric_limits<int64_t>::min(),
                      std::numeric_limits<int64_t>::max());
      n && *n != 1)
    throw BadRequest("only n = 1 is supported", "n");
  if (const Json* rf = Field(j, "response_format")) {
    if (!rf->is_object()) throw WrongType("response_format", "an object", *rf);
    const std::string type = GetString(*rf, "type", "response_format.type").value_or("text");
    if (type != "text")
      throw BadRequest(fmt::format("response_format '{}' is not supported (only 'text')", type),
                       "response_format");
  }
  GetString(j, "user", "user");  // accepted, type-checked, unused
  GetBool(j, "parallel_tool_calls");
}

// Message content: a string, null, or an array of text parts.
std::string ParseContent(const Json& msg, const std::string& param, bool allow_null) {
  const Json* c = Field(msg, "content");
  if (!c) {
    if (allow_null) return "";
    throw BadRequest(fmt::format("'{}' is required", param), param);
  }
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) throw WrongType(param, "a string or an array of content parts", *c);
  std::string text;
  for (size_t i = 0; i < c->size(); ++i) {
    const Json& part = (*c)[i];
    const std::string pp = fmt::format("{}[{}]", param, i);
    if (!part.is_object()) throw WrongType(pp, "an object", part);
    const std::string type = GetString(part, "type", pp + ".type").value_or("");
    if (type != "text")
      throw BadRequest(fmt::format("content part type '{}' is not supported (only 'text')", type), pp);
    text += GetString(part, "text", pp + ".text").value_or("");
  }
  return text;
}

chat::ChatMessage ParseMessage(const Json& m, size_t index) {
  const std::string param = fmt::format("messages[{}]", index);
  if (!m.is_object()) throw WrongType(param, "an object", m);
  chat::ChatMessage msg;
  const auto role = GetString(m, "role", param + ".role");
  if (!role) throw BadRequest(fmt::format("'{}.role' is required", param), param + ".role");
  msg.role = *role == "developer" ? "system" : *role;
  if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
    throw BadRequest(fmt::format("'{}.role' must be system, developer, user, assistant or tool, "
                                 "not '{}'", param, *role), param + ".role");
  msg.content = ParseContent(m, param + ".content", msg.role == "assistant");
  msg.name = GetString(m, "name", param + ".name").value_or("");
  if (msg.role == "tool")
    msg.tool_call_id = GetString(m, "tool_call_id", param + ".tool_call_id").value_or("");
  if (const Json* calls = Field(m, "tool_calls")) {
    if (msg.role != "assistant")
      throw BadRequest("only assistant messages carry tool_calls", param + ".tool_calls");
    if (!calls->is_array()) throw WrongType(param + ".tool_calls", "an array", *calls);
    for (size_t i = 0; i < calls->size(); ++i) {
      const Json& c = (*calls)[i];
      const std::string cp = fmt::format("{}.tool_calls[{}]", param, i);
      if (!c.is_object()) throw WrongType(cp, "an object", c);
      const Json* fn = Field(c, "function");
      if (!fn || !fn->is_object())
        throw BadRequest(fmt::format("'{}.function' must be an object", cp), cp + ".function");
      chat::ChatToolCall call;
      call.id = GetString(c, "id", cp + ".id").value_or("");
      call.name = GetString(*fn, "name", cp + ".function.name").value_or("");
      if (call.name.empty())
        throw BadRequest(fmt::format("'{}.function.name' is required", cp), cp + ".function.name");
      call.arguments = GetString(*fn, "arguments", cp + ".function.arguments").value_or("{}");
      msg.tool_calls.push_back(std::move(call));
    }
  }
  return msg;
}

Json ParseTools(const Json& j) {
  const Json* tools = Field(j, "tools");
  if (!tools) return nullptr;
  if (!tools->is_array()) throw WrongType("tools", "an array", *tools);
  for (size_t i = 0; i < tools->size(); ++i) {
    const Json& t = (*tools)[i];
    const std::string p = fmt::format("tools[{}]", i);
    if (!t.is_object()) throw WrongType(p, "an object", t);
    const std::string type = GetString(t, "type", p + ".type").value_or("function");
    if (type != "function")
      throw BadRequest(fmt::format("tool type '{}' is not supported (only 'function')", type), p + ".type");
    const Json* fn = Field(t, "function");
    if (!fn || !fn->is_object())
      throw BadRequest(fmt::format("'{}.function' must be an object", p), p + ".function");
    const auto name = GetString(*fn, "name", p + ".function.name");
    if (!name || name->empty())
      throw BadRequest(fmt::format("'{}.function.name' is required", p), p + ".function.name");
    GetString(*fn, "description", p + ".function.description");
    if (const Json* params = Field(*fn, "parameters"); params && !params->is_object())
      throw WrongType(p + ".function.parameters", "an object", *params);
  }
  return tools->empty() ? Json(nullptr) : *tools;
}

// Sets r.tool_choice (and its name) from the body; a named function must be among r.tools.
void ParseToolChoice(const Json& j, ChatRequest& r) {
  const Json* tc = Field(j, "tool_choice");
  if (!tc) return;
  if (tc->is_string()) {
    const std::string s = tc->get<std::string>();
    if (s == "none") r.tool_choice = ToolChoice::kNone;
    else if (s == "auto") r.tool_choice = ToolChoice::kAuto;
    else if (s == "required") r.tool_choice = ToolChoice::kRequired;
    else
      throw BadRequest(fmt::format("'tool_choice' must be none, auto, required or an object, not '{}'", s),
                       "tool_choice");
    return;
  }
  if (!tc->is_object()) throw WrongType("tool_choice", "a string or an object", *tc);
  const std::string type = GetString(*tc, "type", "tool_choice.type").value_or("function");
  if (type != "function")
    throw BadRequest(fmt::format("tool_choice type '{}' is not supported (only 'function')", type),
                     "tool_choice.type");
  const Json* fn = Field(*tc, "function");
  if (!fn || !fn->is_object())
    throw BadRequest("'tool_choice.function' must be an object", "tool_choice.function");
  const auto name = GetString(*fn, "name", "tool_choice.function.name");
  if (!name || name->empty())
    throw BadRequest("'tool_choice.function.name' is required", "tool_choice.function.name");
  bool found = false;
  if (r.tools.is_array())
    for (const Json& t : r.tools) found = found || t["function"]["name"] == *name;
  if (!found)
    throw BadRequest(fmt::format("tool_choice names '{}', which is not among the tools", *name),
                     "tool_choice");
  r.tool_choice = ToolChoice::kFunction;
  r.tool_choice_name = *name;
}

}  // namespace

ChatRequest ParseChatRequest(std::string_view body, const RequestLimits& limits) {
  const Json j = ParseBody(body, limits);
  ChatRequest r;
  ParseCommon(j, limits, r.model, r.stream, r.include_usage, r.sampling);
  const Json* messages = Field(j, "messages");
  if (!messages) throw BadRequest("'messages' is required", "messages");
  if (!messages->is_array()) throw WrongType("messages", "an array", *messages);
  if (messages->empty()) throw BadRequest("'messages' must not be empty", "messages");
  if (messages->size() > limits.max_messages)
    throw BadRequest(fmt::format("at most {} messages are allowed, got {}", limits.max_messages,
                                 messages->size()), "messages");
  for (size_t i = 0; i < messages->size(); ++i) r.messages.push_back(ParseMessage((*messages)[i], i));
  if (GetBool(j, "logprobs").value_or(false)) {
    r.sampling.top_logprobs = int(GetInt(j, "top_logprobs", 0, 20).value_or(0));
  } else if (Field(j, "top_logprobs") && !Field(j, "top_logprobs")->is_null()) {
    throw BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs");
  }
  r.tools = ParseTools(j);
  ParseToolChoice(j, r);
  if (r.tool_choice == ToolChoice::kNone) r.tools = nullptr;  // no tools shown, nothing parsed
  if (r.tool_choice == ToolChoice::kRequired && r.tools.is_null())
    throw BadRequest("tool_choice 'required' needs tools", "tool_choice");
  return r;
}

CompletionRequest ParseCompletionRequest(std::string_view body, const RequestLimits& limits) {
  const Json j = ParseBody(body, limits);
  CompletionRequest r;
  ParseCommon(j, limits, r.model, r.stream, r.include_usage, r.sampling);
  const Json* p = Field(j, "prompt");
  if (!p) throw BadRequest("'prompt' is required", "prompt");
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
  } else if (p->is_array()) {
    if (p->size() != 1 || !(*p)[0].is_string())
      throw BadRequest("'prompt' must be a string or an array of exactly one string", "prompt");
    r.prompt = (*p)[0].get<std::string>();
  } else {
    throw WrongType("prompt", "a string", *p);
  }
  if (auto lp = GetInt(j, "logprobs", 0, 5)) r.sampling.top_logprobs = int(*lp);
  if (GetBool(j, "echo").value_or(false)) throw BadRequest("echo is not supported", "echo");
  if (GetString(j, "suffix", "suffix").value_or("") != "")
    throw BadRequest("suffix is not supported", "suffix");
  return r;
}

runtime::GenerateParams ToGenerateParams(const SamplingFields& f,
                                         const runtime::SamplerParams& defaults,
                                         int default_max_tokens, uint64_t fallback_seed) {
  runtime::GenerateParams p;
  p.sampler = defaults;
  if (f.temperature) p.sampler.temperature = *f.temperature;
  if (f.top_p) p.sampler.top_p = *f.top_p;
  if (f.min_p) p.sampler.min_p = *f.min_p;
  if (f.top_k) p.sampler.top_k = *f.top_k;
  if (f.presence_penalty) p.sampler.presence_penalty = *f.presence_penalty;
  if (f.frequency_penalty) p.sampler.frequency_penalty = *f.frequency_penalty;
  if (f.repeat_penalty) p.sampler.repeat_penalty = *f.repeat_penalty;
  p.sampler.seed = f.seed.value_or(fallback_seed);
  p.max_tokens = f.max_tokens.value_or(default_max_tokens);
  p.stop = f.stop;
  p.top_logprobs = f.top_logprobs.value_or(-1);
  return p;
}

}  // namespace tqlm::server
