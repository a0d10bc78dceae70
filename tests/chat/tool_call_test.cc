// Tool-call parsing: model outputs in every convention (tests/data/tool_calls/*.txt, each with
// the expected result in *.json), malformed blocks, and streaming: however the text is split
// into pieces, the deltas add up to the one-shot result.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "chat/tool_call_schema.h"
#include "chat/tool_calls.h"
#include "tokenizer/utf8.h"
#include "tqlm/error.h"

namespace tqlm::chat {
using namespace ::tqlm::tokenizer;
namespace {

using Json = nlohmann::ordered_json;

const std::filesystem::path kDataDir = std::filesystem::path(TQLM_SOURCE_DIR) / "tests/data/tool_calls";

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ToolCallFormat FormatByName(const std::string& name) {
  for (ToolCallFormat f : {ToolCallFormat::kHermes, ToolCallFormat::kLlama3Json,
                           ToolCallFormat::kMistral, ToolCallFormat::kGemma,
                           ToolCallFormat::kGenericJson}) {
    if (ToolCallFormatName(f) == name) return f;
  }
  ADD_FAILURE() << "unknown format " << name;
  return ToolCallFormat::kGenericJson;
}

struct Case {
  std::string name;
  std::string text;
  Json expected;
  ToolCallFormat format;
};

std::vector<Case> LoadCases() {
  std::vector<Case> cases;
  for (const auto& entry : std::filesystem::directory_iterator(kDataDir)) {
    if (entry.path().extension() != ".txt") continue;
    Case c;
    c.name = entry.path().stem().string();
    c.text = ReadFile(entry.path());
    std::filesystem::path json = entry.path();
    json.replace_extension(".json");
    c.expected = Json::parse(ReadFile(json));
    c.format = FormatByName(c.expected.at("format").get<std::string>());
    cases.push_back(std::move(c));
  }
  std::sort(cases.begin(), cases.end(), [](const Case& a, const Case& b) { return a.name < b.name; });
  return cases;
}

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

void ExpectIdShape(ToolCallFormat format, const std::string& id) {
  if (format == ToolCallFormat::kMistral) {
    EXPECT_EQ(id.size(), 9u) << id;
    EXPECT_TRUE(std::all_of(id.begin(), id.end(), IsAlnum)) << id;
  } else {
    ASSERT_EQ(id.size(), 21u) << id;
    EXPECT_EQ(id.substr(0, 5), "call_");
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 5), std::string::npos) << id;
  }
}

TEST(ToolCalls, RecordedOutputsParseAsExpected) {
  const std::vector<Case> cases = LoadCases();
  ASSERT_GE(cases.size(), 30u);
  std::set<ToolCallFormat> formats_seen;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    formats_seen.insert(c.format);
    const ToolCallParseResult r = ParseToolCalls(c.format, c.text);
    EXPECT_EQ(r.content, c.expected.at("content").get<std::string>());
    const Json& calls = c.expected.at("calls");
    ASSERT_EQ(r.calls.size(), calls.size());
    std::set<std::string> ids;
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_EQ(r.calls[i].name, calls[i].at("name").get<std::string>());
      EXPECT_EQ(Json::parse(r.calls[i].arguments), calls[i].at("arguments"));
      // Arguments are compact JSON text.
      EXPECT_EQ(r.calls[i].arguments, calls[i].at("arguments").dump(-1, ' ', false));
      if (calls[i].contains("id")) {
        EXPECT_EQ(r.calls[i].id, calls[i].at("id").get<std::string>());
      } else {
        ExpectIdShape(c.format, r.calls[i].id);
      }
      ids.insert(r.calls[i].id);
    }
    EXPECT_EQ(ids.size(), calls.size()) << "call ids must be distinct";
    EXPECT_EQ(r.malformed, c.expected.at("malformed").get<std::vector<std::string>>());
    // A malformed block's text is never lost: it stays in the content.
    for (const std::string& m : r.malformed) EXPECT_NE(r.content.find(m), std::string::npos);
  }
  EXPECT_EQ(formats_seen.size(), 5u) << "every convention has recorded outputs";
}

// Feeds `pieces` to a stream parser and rebuilds a parse result from the deltas alone,
// checking the delta protocol on the way.
ToolCallParseResult FromDeltas(ToolCallFormat format, const std::vector<std::string>& pieces,
                               bool input_valid_utf8) {
  ToolCallStreamParser parser(format);
  ToolCallParseResult rebuilt;
  auto apply = [&](const std::vector<ToolCallDelta>& deltas) {
    for (const ToolCallDelta& d : deltas) {
      if (d.index < 0) {
        EXPECT_FALSE(d.content.empty());
        if (input_valid_utf8) {
          EXPECT_TRUE(IsValidUtf8(d.content)) << "delta splits a character";
        }
        rebuilt.content += d.content;
        continue;
      }
      EXPECT_TRUE(d.content.empty());
      if (!d.name.empty()) {
        // A call's header: the next index, with its id.
        EXPECT_EQ(d.index, int(rebuilt.calls.size()));
        EXPECT_FALSE(d.id.empty());
        rebuilt.calls.push_back({d.name, "", d.id});
      } else {
        EXPECT_EQ(d.index, int(rebuilt.calls.size()) - 1) << "arguments for a call without header";
        if (!rebuilt.calls.empty()) rebuilt.calls.back().arguments += d.arguments;
      }
    }
  };
  for (const std::string& p : pieces) apply(parser.Push(p));
  apply(parser.Finish());
  rebuilt.malformed = parser.result().malformed;
  // result() holds exactly what the deltas said.
  EXPECT_EQ(parser.result().content, rebuilt.content);
  EXPECT_EQ(parser.result().calls.size(), rebuilt.calls.size());
  return rebuilt;
}

void ExpectSameResult(const ToolCallParseResult& a, const ToolCallParseResult& b) {
  EXPECT_EQ(a.content, b.content);
  ASSERT_EQ(a.calls.size(), b.calls.size());
  for (size_t i = 0; i < a.calls.size(); ++i) {
    EXPECT_EQ(a.calls[i].name, b.calls[i].name);
    EXPECT_EQ(a.calls[i].arguments, b.calls[i].arguments);
    EXPECT_EQ(a.calls[i].id, b.calls[i].id);
  }
  EXPECT_EQ(a.malformed, b.malformed);
}

std::vector<std::string> RandomSplit(const std::string& text, std::mt19937& rng) {
  std::vector<std::string> pieces;
  std::uniform_int_distribution<size_t> len(0, 8);
  for (size_t at = 0; at < text.size();) {
    const size_t n = std::min(len(rng), text.size() - at);
    pieces.push_back(text.substr(at, n));  // empty pieces too
    at += n;
  }
  return pieces;
}

TEST(ToolCalls, StreamingEqualsOneShotAtEverySplit) {
  std::mt19937 rng(1234);
  for (const Case& c : LoadCases()) {
    SCOPED_TRACE(c.name);
    const ToolCallParseResult whole = ParseToolCalls(c.format, c.text);
    const bool utf8 = IsValidUtf8(c.text);
    for (size_t k = 0; k <= c.text.size(); ++k) {
      SCOPED_TRACE("split at " + std::to_string(k));
      ExpectSameResult(FromDeltas(c.format, {c.text.substr(0, k), c.text.substr(k)}, utf8), whole);
      if (HasFailure()) return;
    }
    std::vector<std::string> bytes;
    for (char ch : c.text) bytes.emplace_back(1, ch);
    ExpectSameResult(FromDeltas(c.format, bytes, utf8), whole);
    for (int trial = 0; trial < 20; ++trial) {
      ExpectSameResult(FromDeltas(c.format, RandomSplit(c.text, rng), utf8), whole);
    }
  }
}

// Random texts built from marker fragments, JSON pieces and python calls: streaming and
// one-shot must agree on every one of them, for every convention.
TEST(ToolCalls, StreamingEqualsOneShotOnRandomMarkerSoup) {
  const std::vector<std::string> atoms = {
      "<tool_call>", "</tool_call>", "<tool", "_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]",
      "<|python_tag|>", "```", "```tool_code\n", "```json\n", "tool", "{", "}", "[", "]",
      "\"name\"", "\"arguments\"", "\"parameters\"", ":", ",", "\"f\"", "{\"name\": \"g\", \"arguments\": {}}",
      "f(x=1)", "print(", ")", ";", " ", "\n", "é", "🌤", "text", "\"", "\\", "1.5", "null"};
  std::mt19937 rng(42);
  std::uniform_int_distribution<size_t> pick(0, atoms.size() - 1);
  std::uniform_int_distribution<int> length(1, 14);
  int with_calls = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    std::string text;
    for (int i = length(rng); i > 0; --i) text += atoms[pick(rng)];
    for (ToolCallFormat f : {ToolCallFormat::kHermes, ToolCallFormat::kLlama3Json,
                             ToolCallFormat::kMistral, ToolCallFormat::kGemma,
                             ToolCallFormat::kGenericJson}) {
      SCOPED_TRACE(std::string(ToolCallFormatName(f)) + ": " + text);
      const ToolCallParseResult whole = ParseToolCalls(f, text);
      with_calls += !whole.calls.empty();
      ExpectSameResult(FromDeltas(f, RandomSplit(text, rng), IsValidUtf8(text)), whole);
      if (HasFailure()) return;
    }
  }
  EXPECT_GT(with_calls, 0) << "the soup should contain some valid calls";
}

std::string Content(const std::vector<ToolCallDelta>& deltas) {
  std::string s;
  for (const ToolCallDelta& d : deltas) s += d.content;
  return s;
}

TEST(ToolCalls, ContentIsReleasedAsSoonAsItCannotStartACall) {
  ToolCallStreamParser p(ToolCallFormat::kHermes);
  EXPECT_EQ(Content(p.Push("Sure, let me check")), "Sure, let me check");
  EXPECT_EQ(Content(p.Push(" the weather. <tool")), " the weather.");  // " <tool" may be a marker
  EXPECT_EQ(Content(p.Push("s are ready")), " <tools are ready");
  std::vector<ToolCallDelta> d = p.Push(".\n<tool_");
  EXPECT_EQ(Content(d), ".");
  EXPECT_TRUE(p.Push("call>\n{\"name\": \"get_weather\",").empty());
  EXPECT_TRUE(p.Push(" \"arguments\": {\"city\": \"Paris\"}}\n</tool").empty());
  d = p.Push("_call>");
  ASSERT_EQ(d.size(), 2u);  // the call, complete: header then arguments
  EXPECT_EQ(d[0].index, 0);
  EXPECT_EQ(d[0].name, "get_weather");
  EXPECT_EQ(d[1].index, 0);
  EXPECT_EQ(d[1].arguments, "{\"city\":\"Paris\"}");
  EXPECT_TRUE(p.Finish().empty());
  EXPECT_EQ(p.result().content, "Sure, let me check the weather. <tools are ready.");
  EXPECT_THROW(p.Push("more"), Error);
}

TEST(ToolCalls, BareJsonIsHeldUntilTheMessageEnds) {
  ToolCallStreamParser p(ToolCallFormat::kLlama3Json);
  EXPECT_TRUE(p.Push("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}").empty());
  const std::vector<ToolCallDelta> d = p.Finish();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].name, "get_weather");

  // JSON that turns out to be followed by prose is content, released when that is known.
  ToolCallStreamParser q(ToolCallFormat::kLlama3Json);
  EXPECT_TRUE(q.Push("{\"name\": \"x\"}").empty());
  EXPECT_EQ(Content(q.Push(" means")), "{\"name\": \"x\"} means");
  // Text that cannot be JSON is released at once.
  ToolCallStreamParser r(ToolCallFormat::kLlama3Json);
  EXPECT_EQ(Content(r.Push("[link](x)")), "[link](x)");
}

TEST(ToolCalls, MarkerSplitAcrossPiecesInEveryConvention) {
  const std::vector<std::pair<ToolCallFormat, std::string>> outputs = {
      {ToolCallFormat::kHermes, "ok <tool_call>{\"name\":\"f\",\"arguments\":{\"a\":1}}</tool_call>"},
      {ToolCallFormat::kLlama3Json, "ok <|python_tag|>{\"name\":\"f\",\"parameters\":{\"a\":1}}"},
      {ToolCallFormat::kMistral, "ok [TOOL_CALLS]f[ARGS]{\"a\":1}"},
      {ToolCallFormat::kGemma, "ok ```tool_code\nf(a=1)\n```"},
  };
  for (const auto& [format, text] : outputs) {
    SCOPED_TRACE(text);
    for (size_t k = 3; k < text.size(); ++k) {
      ToolCallStreamParser p(format);
      std::vector<ToolCallDelta> all = p.Push(text.substr(0, k));
      for (auto& d : p.Push(text.substr(k))) all.push_back(d);
      for (auto& d : p.Finish()) all.push_back(d);
      EXPECT_EQ(Content(all), "ok");
      ASSERT_EQ(p.result().calls.size(), 1u);
      EXPECT_EQ(p.result().calls[0].name, "f");
      EXPECT_EQ(p.result().calls[0].arguments, "{\"a\":1}");
    }
  }
}

TEST(ToolCalls, Utf8CharactersSplitAcrossPiecesStayWhole) {
  const std::string text = "Zürich: 🌤 <tool_call>{\"name\":\"f\",\"arguments\":{\"c\":\"Zoë\"}}</tool_call>";
  ToolCallStreamParser p(ToolCallFormat::kHermes);
  std::vector<ToolCallDelta> all;
  for (char c : text) {
    for (auto& d : p.Push(std::string(1, c))) all.push_back(d);
  }
  for (auto& d : p.Finish()) all.push_back(d);
  for (const auto& d : all) EXPECT_TRUE(IsValidUtf8(d.content)) << d.content;
  EXPECT_EQ(p.result().content, "Zürich: 🌤");
  ASSERT_EQ(p.result().calls.size(), 1u);
  EXPECT_EQ(p.result().calls[0].arguments, "{\"c\":\"Zoë\"}");
  // Invalid bytes are kept, not dropped.
  EXPECT_EQ(ParseToolCalls(ToolCallFormat::kHermes, "a\xC3").content, "a\xC3");
}

TEST(ToolCalls, IdsAreDeterministicAndDistinct) {
  const std::string text =
      "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call><tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>";
  const ToolCallParseResult a = ParseToolCalls(ToolCallFormat::kHermes, text);
  const ToolCallParseResult b = ParseToolCalls(ToolCallFormat::kHermes, text);
  ASSERT_EQ(a.calls.size(), 2u);
  EXPECT_EQ(a.calls[0].id, b.calls[0].id);
  EXPECT_NE(a.calls[0].id, a.calls[1].id);  // same call, different place
  // A Mistral id the model wrote that the template would reject is replaced.
  const ToolCallParseResult m =
      ParseToolCalls(ToolCallFormat::kMistral, "[TOOL_CALLS] [{\"name\":\"f\",\"arguments\":{},\"id\":\"x\"}]");
  ASSERT_EQ(m.calls.size(), 1u);
  ExpectIdShape(ToolCallFormat::kMistral, m.calls[0].id);
}

TEST(ToolCalls, HostileNestingIsRejectedWithoutCrashing) {
  const std::string deep_json = std::string(100000, '[') + std::string(100000, ']');
  const ToolCallParseResult r = ParseToolCalls(ToolCallFormat::kGenericJson, deep_json);
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(r.content, deep_json);
  const std::string deep_args = "<tool_call>{\"name\":\"f\",\"arguments\":" + std::string(5000, '[') +
                                std::string(5000, ']') + "}</tool_call>";
  EXPECT_EQ(ParseToolCalls(ToolCallFormat::kHermes, deep_args).malformed.size(), 1u);
  const std::string deep_python = "```tool_code\nf(x=" + std::string(5000, '[') + std::string(5000, ']') + ")\n```";
  EXPECT_EQ(ParseToolCalls(ToolCallFormat::kGemma, deep_python).malformed.size(), 1u);
  // Moderate nesting is fine.
  const ToolCallParseResult ok = ParseToolCalls(
      ToolCallFormat::kGemma, "```tool_code\nf(x=" + std::string(20, '[') + std::string(20, ']') + ")\n```");
  EXPECT_EQ(ok.calls.size(), 1u);
}

TEST(ToolCalls, PythonValues) {
  auto args = [](const std::string& call) {
    const ToolCallParseResult r = ParseToolCalls(ToolCallFormat::kGemma, "```tool_code\n" + call + "\n```");
    EXPECT_EQ(r.calls.size(), 1u) << call;
    return r.calls.empty() ? std::string() : r.calls[0].arguments;
  };
  EXPECT_EQ(args("f()"), "{}");
  EXPECT_EQ(args("f(a=1, b=-2.5e3, c=+7, d=.5,)"), "{\"a\":1,\"b\":-2500.0,\"c\":7,\"d\":0.5}");
  EXPECT_EQ(args("f(t=(1, 'x'), d={\"k\": [True, None]})"), "{\"t\":[1,\"x\"],\"d\":{\"k\":[true,null]}}");
  EXPECT_EQ(args("default_api.get_weather(city = 'Paris')"), "{\"city\":\"Paris\"}");
  EXPECT_EQ(args("print(text='hi')"), "{\"text\":\"hi\"}");  // a tool called print
  for (const char* bad : {"f(a=1, a=2)", "f(a=b)", "f(a==1)", "f(a=1", "f(a='x)", "f(a=1e999)",
                          "f(a=\"\\ud800\")", "f(1)", "1+1", "f(a=1) garbage("}) {
    const ToolCallParseResult r =
        ParseToolCalls(ToolCallFormat::kGemma, std::string("```tool_code\n") + bad + "\n```");
    EXPECT_TRUE(r.calls.empty()) << bad;
    EXPECT_EQ(r.malformed.size(), 1u) << bad;
  }
}

TEST(ToolCalls, DetectsTheConventionFromTheTemplate) {
  const std::filesystem::path templates = std::filesystem::path(TQLM_SOURCE_DIR) / "tests/data/jinja/templates";
  EXPECT_EQ(DetectToolCallFormat(ReadFile(templates / "llama3.1_tools.jinja"), "llama"),
            ToolCallFormat::kLlama3Json);
  EXPECT_EQ(DetectToolCallFormat(ReadFile(templates / "mistral_tools.jinja"), "llama"),
            ToolCallFormat::kMistral);
  EXPECT_EQ(DetectToolCallFormat(ReadFile(templates / "gemma3_style.jinja"), "gemma3"),
            ToolCallFormat::kGemma);
  EXPECT_EQ(DetectToolCallFormat(ReadFile(templates / "features.jinja"), "llama"),
            ToolCallFormat::kGenericJson);
  EXPECT_EQ(DetectToolCallFormat("{{- '<tool_call>\\n' + tool_call | tojson }}", "qwen2"),
            ToolCallFormat::kHermes);
  EXPECT_EQ(DetectToolCallFormat("", "qwen2"), ToolCallFormat::kGenericJson);
  EXPECT_EQ(ToolCallFormatName(ToolCallFormat::kLlama3Json), "llama3_json");
}

TEST(ToolCalls, ToolDefinitionsAreValidated) {
  const Json ok = ParseToolsJson(
      R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}])");
  EXPECT_EQ(ok.size(), 1u);
  auto error_of = [](std::string_view text) {
    try {
      ParseToolsJson(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("[{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("{}").find("array"), std::string::npos);
  EXPECT_NE(error_of("[]").find("empty"), std::string::npos);
  EXPECT_NE(error_of(R"([{"type":"web","function":{"name":"f"}}])").find("tools[0]"), std::string::npos);
  EXPECT_NE(error_of(R"([{"type":"function","function":{"name":""}}])").find("name"), std::string::npos);
  EXPECT_NE(error_of(R"([{"type":"function","function":{"name":"f","parameters":[]}}])").find("parameters"),
            std::string::npos);
  EXPECT_NE(error_of(R"([{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}])")
                .find("duplicate"),
            std::string::npos);
}

}  // namespace
}  // namespace tqlm::chat
