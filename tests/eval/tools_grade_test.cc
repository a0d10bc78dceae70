// The tool-calling grader on hand-written answers: one or more per verdict, and the near
// misses that must not get it.
#include "eval/tools_grade.h"

#include <gtest/gtest.h>

#include "eval/tools_prompt.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

using chat::ToolCallFormat;

ToolVerdict Grade(const std::string& text, ToolCallFormat native = ToolCallFormat::kHermes) {
  return GradeToolOutput(text, native, ExperimentTools(), ExperimentExpectedCall()).verdict;
}

TEST(ToolsGrade, PassInTheNativeConvention) {
  EXPECT_EQ(Grade("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                  "\"Reykjavik\"}}\n</tool_call>"),
            ToolVerdict::kPass);
  // Case-insensitive value, a country after it, the accented spelling, no closing tag at the end.
  EXPECT_EQ(Grade("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"reykjavik, "
                  "Iceland\"}}"),
            ToolVerdict::kPass);
  EXPECT_EQ(Grade("<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                  "\"Reykjav\xC3\xADk\"}}</tool_call>"),
            ToolVerdict::kPass);
  // A bare JSON call object is a call in every convention.
  EXPECT_EQ(Grade("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Reykjavik\"}}"),
            ToolVerdict::kPass);
  // Gemma's python-call convention when that is the model's own.
  EXPECT_EQ(Grade("```tool_code\nget_weather(city=\"Reykjavik\")\n```", ToolCallFormat::kGemma),
            ToolVerdict::kPass);
}

TEST(ToolsGrade, WrongArgs) {
  const char* cases[] = {
      // wrong value
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>",
      // missing required key
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"town\": "
      "\"Reykjavik\"}}\n</tool_call>",
      // wrong type
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": 42}}\n</tool_call>",
      // the other defined tool
      "<tool_call>\n{\"name\": \"search_flights\", \"arguments\": {\"origin\": \"KEF\", "
      "\"destination\": "
      "\"Reykjavik\", \"date\": \"2024-01-01\"}}\n</tool_call>",
      // two calls
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Reykjavik\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
  };
  for (const char* c : cases) EXPECT_EQ(Grade(c), ToolVerdict::kWrongArgs) << c;
}

TEST(ToolsGrade, AltFormat) {
  // Gemma's convention from a Hermes model, Mistral's, and call JSON inside prose.
  EXPECT_EQ(Grade("```tool_code\nget_weather(city=\"Reykjavik\")\n```"), ToolVerdict::kAltFormat);
  EXPECT_EQ(
      Grade("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Reykjavik\"}}]"),
      ToolVerdict::kAltFormat);
  EXPECT_EQ(Grade("Sure, I will call {\"name\": \"get_weather\", \"arguments\": {\"city\": "
                  "\"Reykjavik\"}} now."),
            ToolVerdict::kAltFormat);
}

TEST(ToolsGrade, LostFormat) {
  // An undefined tool, a block that does not parse, JSON that is no call.
  EXPECT_EQ(Grade("<tool_call>\n{\"name\": \"weather_lookup\", \"arguments\": {\"city\": "
                  "\"Reykjavik\"}}\n</tool_call>"),
            ToolVerdict::kLostFormat);
  EXPECT_EQ(Grade("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                  "Reykjavik}\n</tool_call>"),
            ToolVerdict::kLostFormat);
  EXPECT_EQ(Grade("Result: {\"location\": \"Reykjavik\", \"request\": \"weather\"}"),
            ToolVerdict::kLostFormat);
}

TEST(ToolsGrade, Collapse) {
  std::string loop;
  for (int i = 0; i < 12; ++i) loop += "the weather the weather ";
  EXPECT_EQ(Grade(loop), ToolVerdict::kCollapse);
  EXPECT_EQ(Grade("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"), ToolVerdict::kCollapse);
  EXPECT_EQ(Grade(std::string(40, '\x01')), ToolVerdict::kCollapse);
  EXPECT_EQ(Grade(std::string(20, '\xFF') + "abc"), ToolVerdict::kCollapse);
  // The same call over and over until the token limit is a loop, not a set of calls.
  std::string calls;
  for (int i = 0; i < 5; ++i)
    calls +=
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
        "\"Reykjavik\"}}\n</tool_call>\n";
  EXPECT_EQ(Grade(calls), ToolVerdict::kCollapse);
  // Ordinary prose is not collapse.
  EXPECT_FALSE(
      LooksCollapsed("I am sorry, but I do not have access to the internet, so I cannot look up "
                     "what the weather is like in Reykjavik at the moment."));
  EXPECT_FALSE(LooksCollapsed("short"));
}

TEST(ToolsGrade, HallucinationAndNoCall) {
  EXPECT_EQ(Grade("The weather in Reykjavik is currently 5\xC2\xB0"
                  "C with light rain."),
            ToolVerdict::kHallucination);
  EXPECT_EQ(Grade("It is cloudy and windy in Reykjavik right now."), ToolVerdict::kHallucination);
  EXPECT_EQ(Grade("Right now it is 7 degrees."), ToolVerdict::kHallucination);
  EXPECT_EQ(Grade("The weather in Reykjavik right now is quite hot and dry."),
            ToolVerdict::kHallucination);
  EXPECT_EQ(Grade("Expect clear skies all day."), ToolVerdict::kHallucination);
  EXPECT_EQ(Grade("I'm sorry, I cannot access real-time information about Reykjavik."),
            ToolVerdict::kNoCall);
  EXPECT_EQ(Grade(""), ToolVerdict::kNoCall);
  // Whole words only: "train", "drain", "hotel", "sundial" are not weather facts; nor is a
  // refusal that names the temperature or the forecast.
  EXPECT_EQ(Grade("You could take the train to the hotel or check the drain by the sundial."),
            ToolVerdict::kNoCall);
  EXPECT_EQ(Grade("I cannot tell you the temperature or the forecast without a tool."),
            ToolVerdict::kNoCall);
}

TEST(ToolsGrade, VerdictNamesRoundTrip) {
  for (ToolVerdict v : {ToolVerdict::kPass, ToolVerdict::kWrongArgs, ToolVerdict::kAltFormat,
                        ToolVerdict::kLostFormat, ToolVerdict::kCollapse,
                        ToolVerdict::kHallucination, ToolVerdict::kNoCall})
    EXPECT_EQ(ParseToolVerdict(ToolVerdictName(v)), v);
  EXPECT_THROW(ParseToolVerdict("MAYBE"), Error);
}

}  // namespace
}  // namespace tqlm::eval
