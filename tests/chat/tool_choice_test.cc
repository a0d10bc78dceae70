// Forced tool calls (src/chat/tool_choice.h): in every convention, the forced start
// followed by what a model writes next parses as a call to the named function (or, for
// "required", to the function the model names); the name is JSON-escaped.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "chat/tool_choice.h"

namespace tqlm::chat {
namespace {


struct Case {
  ToolCallFormat format;
  const char* chat_template;
  const char* named_rest;     // what the model writes after the start for get_weather
  const char* required_rest;  // after the start for "required"
};

TEST(ToolChoice, ForcedStartParsesAsTheCall) {
  const Case cases[] = {
      {ToolCallFormat::kHermes, "<tool_call>", R"( {"city": "Paris"}}
</tool_call>)",
       R"(get_weather", "arguments": {"city": "Paris"}}
</tool_call>)"},
      {ToolCallFormat::kLlama3Json, "<|python_tag|>", R"( {"city": "Paris"}})",
       R"(get_weather", "parameters": {"city": "Paris"}})"},
      {ToolCallFormat::kMistral, "[TOOL_CALLS] [", R"( {"city": "Paris"}}])",
       R"(get_weather", "arguments": {"city": "Paris"}}])"},
      {ToolCallFormat::kMistral, "[TOOL_CALLS]{{name}}[ARGS]", R"({"city": "Paris"})",
       R"(get_weather[ARGS]{"city": "Paris"})"},
      {ToolCallFormat::kGemma, "", R"(city="Paris")
```)",
       R"(get_weather(city="Paris")
```)"},
      {ToolCallFormat::kGenericJson, "", R"( {"city": "Paris"}})",
       R"(get_weather", "arguments": {"city": "Paris"}})"},
  };
  for (const Case& c : cases) {
    const std::string fmt(chat::ToolCallFormatName(c.format));
    for (bool named : {true, false}) {
      const std::string start =
          ForcedToolCallStart(c.format, named ? "get_weather" : "", c.chat_template);
      const std::string text = start + (named ? c.named_rest : c.required_rest);
      const chat::ToolCallParseResult r = chat::ParseToolCalls(c.format, text);
      ASSERT_EQ(r.calls.size(), 1u) << fmt << ": " << text;
      EXPECT_EQ(r.calls[0].name, "get_weather") << fmt;
      EXPECT_EQ(nlohmann::json::parse(r.calls[0].arguments), nlohmann::json({{"city", "Paris"}}))
          << fmt;
      EXPECT_EQ(r.content, "") << fmt;
      // The start alone is not a call yet (nothing is released before the model completes it).
      EXPECT_TRUE(chat::ParseToolCalls(c.format, start).calls.empty()) << fmt;
    }
  }
}

TEST(ToolChoice, HermesStartIsQwensConventionAndEscapesTheName) {
  EXPECT_EQ(ForcedToolCallStart(ToolCallFormat::kHermes, "get_weather", ""),
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\":");
  EXPECT_EQ(ForcedToolCallStart(ToolCallFormat::kHermes, "", ""), "<tool_call>\n{\"name\": \"");
  const std::string odd = ForcedToolCallStart(ToolCallFormat::kHermes, "a\"b", "");
  EXPECT_NE(odd.find(R"("a\"b")"), std::string::npos) << odd;
  const chat::ToolCallParseResult r =
      chat::ParseToolCalls(ToolCallFormat::kHermes, odd + " {}}\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "a\"b");
}

}  // namespace
}  // namespace tqlm::chat
