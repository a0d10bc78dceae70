// Request parsing and validation (src/server/request.h): typed requests from valid bodies, and
// a 400 naming the field for malformed JSON, wrong types, out-of-range values and unsupported
// options.
#include <gtest/gtest.h>

#include "server/request.h"

namespace tqlm::server {
namespace {

const RequestLimits kLimits;

// The ApiError a body causes (fails the test if it parses).
ApiError ChatError(const std::string& body) {
  try {
    ParseChatRequest(body, kLimits);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "", "");
}

TEST(ServerRequest, ParsesAFullChatRequest) {
  const ChatRequest r = ParseChatRequest(R"({
    "model": "m", "stream": true, "stream_options": {"include_usage": true},
    "messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null,
       "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "temperature": 0.5, "top_p": 0.9, "top_k": 20, "min_p": 0.1, "seed": -3,
    "max_completion_tokens": 7, "stop": ["a", ""], "presence_penalty": 1, "n": 1,
    "unknown_field": {"anything": [1, 2]}})",
                                         kLimits);
  EXPECT_EQ(r.model, "m");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  ASSERT_EQ(r.messages[2].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[2].tool_calls[0].name, "f");
  EXPECT_EQ(r.messages[2].tool_calls[0].arguments, R"({"a":1})");
  EXPECT_EQ(r.messages[3].tool_call_id, "c1");
  EXPECT_TRUE(r.tools.is_array());
  EXPECT_EQ(r.tool_choice, ToolChoice::kFunction);
  EXPECT_EQ(r.tool_choice_name, "f");
  EXPECT_FLOAT_EQ(*r.sampling.temperature, 0.5f);
  EXPECT_EQ(*r.sampling.top_k, 20);
  EXPECT_EQ(*r.sampling.seed, uint64_t(int64_t(-3)));
  EXPECT_EQ(*r.sampling.max_tokens, 7);
  EXPECT_EQ(r.sampling.stop, std::vector<std::string>{"a"});  // empty stop strings dropped

  runtime::SamplerParams defaults;
  defaults.repeat_penalty = 1.3f;
  const runtime::GenerateParams p = ToGenerateParams(r.sampling, defaults, 99, 5);
  EXPECT_FLOAT_EQ(p.sampler.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.sampler.presence_penalty, 1.0f);
  EXPECT_FLOAT_EQ(p.sampler.repeat_penalty, 1.3f);  // unset: the server's default
  EXPECT_EQ(p.max_tokens, 7);
}

TEST(ServerRequest, DefaultsAndToolChoiceNone) {
  const ChatRequest r = ParseChatRequest(
      R"({"messages": [{"role": "user", "content": "x"}], "temperature": null,
          "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"})",
      kLimits);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.sampling.temperature.has_value());  // null means "not given"
  EXPECT_TRUE(r.tools.is_null());                   // tool_choice none: no tools shown
  EXPECT_EQ(r.tool_choice, ToolChoice::kNone);
  const runtime::GenerateParams p = ToGenerateParams(r.sampling, {}, 99, 5);
  EXPECT_EQ(p.max_tokens, 99);
  EXPECT_EQ(p.sampler.seed, 5u);
}

TEST(ServerRequest, ToolChoiceKinds) {
  const std::string head =
      R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function",
          "function": {"name": "required"}}, {"type": "function", "function": {"name": "g"}}])";
  EXPECT_EQ(ParseChatRequest(head + "}", kLimits).tool_choice, ToolChoice::kAuto);
  EXPECT_EQ(ParseChatRequest(head + R"(, "tool_choice": "auto"})", kLimits).tool_choice,
            ToolChoice::kAuto);
  const ChatRequest req = ParseChatRequest(head + R"(, "tool_choice": "required"})", kLimits);
  EXPECT_EQ(req.tool_choice, ToolChoice::kRequired);
  EXPECT_TRUE(req.tool_choice_name.empty());
  // A function may be called "required": the object form names it, it is not the keyword.
  const ChatRequest named = ParseChatRequest(
      head + R"(, "tool_choice": {"type": "function", "function": {"name": "required"}}})", kLimits);
  EXPECT_EQ(named.tool_choice, ToolChoice::kFunction);
  EXPECT_EQ(named.tool_choice_name, "required");
  EXPECT_EQ(ParseChatRequest(head + R"(, "tool_choice": {"function": {"name": "g"}}})", kLimits)
                .tool_choice_name,
            "g");
}

TEST(ServerRequest, RejectsMalformedJson) {
  for (const char* body : {"", "{", "[1,2]", "\"text\"", "{\"messages\": [}", "{} trailing"}) {
    const ApiError e = ChatError(body);
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.type(), "invalid_request_error");
  }
  EXPECT_NE(std::string(ChatError("{").what()).find("JSON"), std::string::npos);
}

TEST(ServerRequest, RejectsDeepNesting) {
  const std::string deep = R"({"messages": [{"role": "user", "content": "x"}], "x": )" +
                           std::string(200, '[') + std::string(200, ']') + "}";
  EXPECT_NE(std::string(ChatError(deep).what()).find("nested"), std::string::npos);
}

TEST(ServerRequest, NamesTheFieldOfAWrongType) {
  const std::string msgs = R"("messages": [{"role": "user", "content": "x"}])";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"messages": "hi"})", "messages"},
      {R"({"messages": []})", "messages"},
      {R"({"model": "m"})", "messages"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"messages": [{"role": "robot", "content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages[0].content[0]"},
      {"{" + msgs + R"(, "temperature": "hot"})", "temperature"},
      {"{" + msgs + R"(, "temperature": 3})", "temperature"},
      {"{" + msgs + R"(, "top_p": -0.1})", "top_p"},
      {"{" + msgs + R"(, "top_k": 1.5})", "top_k"},
      {"{" + msgs + R"(, "max_tokens": 0})", "max_tokens"},
      {"{" + msgs + R"(, "max_tokens": 1000000})", "max_tokens"},
      {"{" + msgs + R"(, "stream": "yes"})", "stream"},
      {"{" + msgs + R"(, "stop": 5})", "stop"},
      {"{" + msgs + R"(, "stop": ["a","b","c","d","e"]})", "stop"},
      {"{" + msgs + R"(, "n": 2})", "n"},
      {"{" + msgs + R"(, "model": 3})", "model"},
      {"{" + msgs + R"(, "logprobs": 2})", "logprobs"},
      {"{" + msgs + R"(, "top_logprobs": 3})", "top_logprobs"},
      {"{" + msgs + R"(, "logprobs": true, "top_logprobs": 21})", "top_logprobs"},
      {"{" + msgs + R"(, "response_format": {"type": "json_object"}})", "response_format"},
      {"{" + msgs + R"(, "tools": {}})", "tools"},
      {"{" + msgs + R"(, "tools": [{"type": "function"}]})", "tools[0].function"},
      {"{" + msgs + R"(, "tools": [{"function": {"name": "f", "parameters": 1}}]})",
       "tools[0].function.parameters"},
      {"{" + msgs + R"(, "tool_choice": "maybe"})", "tool_choice"},
      {"{" + msgs + R"(, "tool_choice": "required"})", "tool_choice"},
      {"{" + msgs + R"(, "tools": [{"function": {"name": "f"}}], "tool_choice": {"function": {"name": "g"}}})",
       "tool_choice"},
      {"{" + msgs + R"(, "tool_choice": {"type": "function", "function": {"name": "f"}}})", "tool_choice"},
      {"{" + msgs + R"(, "tools": [{"function": {"name": "f"}}], "tool_choice": {"type": "web", "function": {"name": "f"}}})",
       "tool_choice.type"},
      {"{" + msgs + R"(, "tools": [{"function": {"name": "f"}}], "tool_choice": {"function": {}}})",
       "tool_choice.function.name"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = ChatError(body);
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.param(), param) << body << " -> " << e.what();
  }
}

TEST(ServerRequest, Completions) {
  const CompletionRequest r =
      ParseCompletionRequest(R"({"prompt": ["Once upon"], "max_tokens": 3, "stop": "x"})", kLimits);
  EXPECT_EQ(r.prompt, "Once upon");
  EXPECT_EQ(r.sampling.stop, std::vector<std::string>{"x"});
  for (const char* body : {R"({})", R"({"prompt": 3})", R"({"prompt": ["a", "b"]})",
                           R"({"prompt": [1, 2]})", R"({"prompt": "a", "echo": true})"}) {
    EXPECT_THROW(ParseCompletionRequest(body, kLimits), ApiError) << body;
  }
}

}  // namespace
}  // namespace tqlm::server
