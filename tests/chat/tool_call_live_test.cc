// Live tool call: Qwen2.5-Coder-1.5B-Instruct, given a get_weather tool through its own chat
// template and asked about the weather in Paris, must call get_weather for Paris with greedy
// decoding. Runs the whole path a user takes: template with tools, tokenizer, generation,
// streaming tool-call parsing (checked against the one-shot parse of the same text).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "model/model.h"
#include "runtime/generate.h"
#include "chat/chat_format.h"
#include "chat/tool_call_schema.h"
#include "chat/tool_calls.h"
#include "test_cache_path.h"

namespace tqlm {
namespace {

using testing::CachePath;

TEST(ToolCallsLive, Qwen25CoderCallsGetWeatherForParis) {
#if defined(TQLM_SANITIZED)
  GTEST_SKIP() << "1.5B-parameter generation is too slow under sanitizers";
#endif
  const std::string path = CachePath("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
  const auto t0 = std::chrono::steady_clock::now();
  auto model = model::Model::Load(path);
  auto tok = tokenizer::Tokenizer::FromGguf(model->file());
  auto chat = chat::MakeChatFormatter(tok->vocab());
  const chat::ToolCallFormat format =
      chat::DetectToolCallFormat(tok->vocab().chat_template, model->info().arch);
  EXPECT_EQ(format, chat::ToolCallFormat::kHermes);

  const nlohmann::ordered_json tools = chat::ParseToolsJson(R"([{"type": "function",
      "function": {"name": "get_weather", "description": "Get the current weather in a given city",
      "parameters": {"type": "object", "properties": {"city": {"type": "string",
      "description": "The city name"}}, "required": ["city"]}}}])");
  const std::vector<chat::ChatMessage> messages = {{"user", "What's the weather in Paris?"}};
  const std::vector<int> prompt = tok->EncodeChat(chat->FormatWithTools(messages, tools, true));

  runtime::SessionOptions options;
  options.n_ctx = 1024;
  runtime::Session session(*model, options);
  runtime::GenerateParams params;
  params.max_tokens = 64;
  params.sampler.temperature = 0;  // greedy
  chat::ToolCallStreamParser parser(format);
  std::vector<chat::ToolCallDelta> deltas;
  runtime::GenerateCallbacks callbacks;
  callbacks.on_text = [&](const std::string& piece) {
    for (auto& d : parser.Push(piece)) deltas.push_back(std::move(d));
  };
  const runtime::GenerateResult r = runtime::Generate(session, *tok, prompt, params, callbacks);
  for (auto& d : parser.Finish()) deltas.push_back(std::move(d));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("seconds", std::to_string(seconds));
  RecordProperty("output", r.text);

  const chat::ToolCallParseResult& result = parser.result();
  ASSERT_EQ(result.calls.size(), 1u) << "model output: " << r.text;
  EXPECT_EQ(result.calls[0].name, "get_weather");
  const nlohmann::json args = nlohmann::json::parse(result.calls[0].arguments);
  ASSERT_TRUE(args.contains("city")) << result.calls[0].arguments;
  EXPECT_NE(args["city"].get<std::string>().find("Paris"), std::string::npos);
  EXPECT_TRUE(result.malformed.empty());
  EXPECT_EQ(r.finish_reason, "stop");  // the model ended its turn after the call

  // Streaming saw the same as a one-shot parse of the final text.
  const chat::ToolCallParseResult whole = chat::ParseToolCalls(format, r.text);
  EXPECT_EQ(whole.content, result.content);
  ASSERT_EQ(whole.calls.size(), 1u);
  EXPECT_EQ(whole.calls[0].arguments, result.calls[0].arguments);
  EXPECT_EQ(whole.calls[0].id, result.calls[0].id);
  int headers = 0;
  for (const auto& d : deltas) headers += !d.name.empty();
  EXPECT_EQ(headers, 1);
}

}  // namespace
}  // namespace tqlm
