#include "eval/tools_grade.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <unordered_map>

#include "tokenizer/utf8.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

using chat::ToolCallFormat;

constexpr std::array kVerdictNames = {"PASS",     "WRONG_ARGS",    "ALT_FORMAT", "LOST_FORMAT",
                                      "COLLAPSE", "HALLUCINATION", "NO_CALL"};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The function object of the tool called `name` in an OpenAI tools array, or nullptr.
const nlohmann::ordered_json* FindTool(const nlohmann::ordered_json& tools,
                                       const std::string& name) {
  if (!tools.is_array()) return nullptr;
  for (const auto& t : tools) {
    if (!t.is_object() || !t.contains("function")) continue;
    const auto& f = t["function"];
    if (f.is_object() && f.contains("name") && f["name"].is_string() && f["name"] == name)
      return &f;
  }
  return nullptr;
}

bool HasJsonType(const nlohmann::ordered_json& v, const std::string& type) {
  if (type == "string") return v.is_string();
  if (type == "number") return v.is_number();
  if (type == "integer")
    return v.is_number_integer() ||
           (v.is_number_float() && v.get<double>() == double(int64_t(v.get<double>())));
  if (type == "boolean") return v.is_boolean();
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "null") return v.is_null();
  return true;  // a type this check does not know: not held against the model
}

// Why `args` does not fit the function's parameter schema, or "".
std::string SchemaProblem(const nlohmann::ordered_json& function,
                          const nlohmann::ordered_json& args) {
  if (!args.is_object()) return "arguments are not an object";
  const nlohmann::ordered_json params =
      function.contains("parameters") ? function["parameters"] : nlohmann::ordered_json::object();
  if (params.contains("required") && params["required"].is_array())
    for (const auto& key : params["required"])
      if (key.is_string() && !args.contains(key.get<std::string>()))
        return fmt::format("missing required '{}'", key.get<std::string>());
  const bool closed =
      params.contains("additionalProperties") && params["additionalProperties"] == false;
  const nlohmann::ordered_json props =
      params.contains("properties") && params["properties"].is_object()
          ? params["properties"]
          : nlohmann::ordered_json::object();
  for (const auto& [key, value] : args.items()) {
    if (!props.contains(key)) {
      if (closed) return fmt::format("unknown argument '{}'", key);
      continue;
    }
    const auto& prop = props[key];
    if (!prop.is_object() || !prop.contains("type")) continue;
    const auto& type = prop["type"];
    bool ok = true;
    if (type.is_string()) {
      ok = HasJsonType(value, type.get<std::string>());
    } else if (type.is_array()) {
      // A structured binding cannot be captured by clang 14's lambdas: name it first.
      const auto& arg = value;
      ok = std::any_of(type.begin(), type.end(), [&arg](const nlohmann::ordered_json& t) {
        return t.is_string() && HasJsonType(arg, t.get<std::string>());
      });
    }
    if (!ok) return fmt::format("'{}' is not of type {}", key, type.dump());
    if (prop.contains("enum") && prop["enum"].is_array() &&
        std::find(prop["enum"].begin(), prop["enum"].end(), value) == prop["enum"].end())
      return fmt::format("'{}' is not one of {}", key, prop["enum"].dump());
  }
  return "";
}

// Why the single call is not the expected one, or "".
std::string CallProblem(const chat::ChatToolCall& call, const nlohmann::ordered_json& tools,
                        const ExpectedToolCall& expected) {
  if (call.name != expected.name)
    return fmt::format("called {} instead of {}", call.name, expected.name);
  const nlohmann::ordered_json args = nlohmann::ordered_json::parse(call.arguments, nullptr, false);
  if (args.is_discarded()) return "arguments are not JSON";
  if (std::string p = SchemaProblem(*FindTool(tools, call.name), args); !p.empty()) return p;
  for (const auto& [key, accepted] : expected.values) {
    if (!args.contains(key)) return fmt::format("no '{}'", key);
    const std::string got =
        Lower(args[key].is_string() ? args[key].get<std::string>() : args[key].dump());
    const bool found = std::any_of(accepted.begin(), accepted.end(), [&](const std::string& a) {
      return got.find(Lower(a)) != std::string::npos;
    });
    if (!found) return fmt::format("'{}' is {}, not {}", key, args[key].dump(), accepted.front());
  }
  return "";
}

// The JSON objects that appear in `text` (each '{' that starts a complete, parseable object;
// nested objects of a found one are not reported separately).
std::vector<nlohmann::ordered_json> JsonObjectsIn(std::string_view text) {
  std::vector<nlohmann::ordered_json> out;
  size_t i = 0;
  while ((i = text.find('{', i)) != std::string_view::npos) {
    // Find the matching brace, honouring strings and escapes.
    int depth = 0;
    bool in_string = false, escaped = false;
    size_t end = std::string_view::npos;
    for (size_t j = i; j < text.size(); ++j) {
      const char c = text[j];
      if (in_string) {
        if (escaped)
          escaped = false;
        else if (c == '\\')
          escaped = true;
        else if (c == '"')
          in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{') {
        if (++depth > 64) break;  // not a call; keeps the parser's recursion shallow
      } else if (c == '}' && --depth == 0) {
        end = j + 1;
        break;
      }
    }
    if (end == std::string_view::npos) {
      ++i;
      continue;
    }
    auto v = nlohmann::ordered_json::parse(text.substr(i, end - i), nullptr, false);
    if (!v.is_discarded() && v.is_object()) {
      out.push_back(std::move(v));
      i = end;
    } else {
      ++i;
    }
  }
  return out;
}

// A JSON object shaped like a call of a defined tool: {"name": <tool>, ...} or
// {"function": {"name": <tool>}, ...}.
bool IsCallOfDefinedTool(const nlohmann::ordered_json& obj, const nlohmann::ordered_json& tools) {
  const nlohmann::ordered_json* o = &obj;
  if (obj.contains("function") && obj["function"].is_object()) o = &obj["function"];
  return o->contains("name") && (*o)["name"].is_string() &&
         FindTool(tools, (*o)["name"].get<std::string>()) != nullptr;
}

// Words stating what a weather tool would report (whole words; the request's own words and
// ones a refusal uses, such as "temperature" or "forecast", are not among them).
constexpr std::array kFactWords = {
    "sun",     "sunny",    "cloud",    "clouds",   "cloudy",       "rain",     "rainy",
    "raining", "rainfall", "snow",     "snowy",    "snowing",      "overcast", "wind",
    "winds",   "windy",    "fog",      "foggy",    "drizzle",      "storm",    "storms",
    "stormy",  "humid",    "humidity", "celsius",  "fahrenheit",   "degree",   "degrees",
    "breeze",  "breezy",   "showers",  "hot",      "cold",         "warm",     "chilly",
    "dry",     "freezing", "mild",     "sunshine", "thunderstorms"};

bool AssertsFacts(std::string_view text) {
  if (std::any_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return true;
  if (text.find("\xC2\xB0") != std::string_view::npos) return true;  // °
  const std::string low = Lower(text);
  if (low.find("clear sk") != std::string::npos) return true;
  for (size_t i = 0; i < low.size();) {
    while (i < low.size() && !std::isalpha(static_cast<unsigned char>(low[i]))) ++i;
    const size_t start = i;
    while (i < low.size() && std::isalpha(static_cast<unsigned char>(low[i]))) ++i;
    const std::string_view word = std::string_view(low).substr(start, i - start);
    if (!word.empty() && std::find(kFactWords.begin(), kFactWords.end(), word) != kFactWords.end())
      return true;
  }
  return false;
}

// The largest share of `units` covered by one n-gram (n = 1..8) repeated at least 4 times.
double RepeatedCoverage(const std::vector<std::string>& units) {
  double best = 0;
  const size_t n_units = units.size();
  for (size_t n = 1; n <= 8 && n * 4 <= n_units; ++n) {
    std::unordered_map<std::string, int> count;
    for (size_t i = 0; i + n <= n_units; ++i) {
      std::string key;
      for (size_t k = 0; k < n; ++k) key += units[i + k] + '\x1f';
      ++count[key];
    }
    for (const auto& [key, c] : count)
      if (c >= 4) best = std::max(best, double(c) * double(n) / double(n_units));
  }
  return best;
}

}  // namespace

std::string_view ToolVerdictName(ToolVerdict v) { return kVerdictNames[size_t(v)]; }

ToolVerdict ParseToolVerdict(std::string_view name) {
  for (size_t i = 0; i < kVerdictNames.size(); ++i)
    if (name == kVerdictNames[i]) return ToolVerdict(i);
  throw Error(fmt::format("unknown tool-calling verdict '{}'", name));
}

bool LooksCollapsed(std::string_view text) {
  // Mostly non-text: control characters, U+FFFD and bytes that are not UTF-8.
  size_t chars = 0, junk = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t len = tokenizer::Utf8ValidCharLength(text.substr(i));
    const bool valid = len > 0;
    const std::string_view ch = text.substr(i, valid ? len : 1);
    const unsigned char c0 = static_cast<unsigned char>(ch[0]);
    if (!valid || ch == "\xEF\xBF\xBD" || (c0 < 0x20 && c0 != '\n' && c0 != '\t' && c0 != '\r'))
      ++junk;
    if (!(c0 == ' ' || c0 == '\n' || c0 == '\t' || c0 == '\r')) ++chars;
    i += ch.size();
  }
  if (chars >= 8 && junk * 2 > chars) return true;
  // A repetition loop: over words, or over characters when there are few words (e.g. "!!!!").
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) words.emplace_back(text.substr(start, i - start));
  }
  if (words.size() >= 12) return RepeatedCoverage(words) >= 0.6;
  std::vector<std::string> letters;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) letters.emplace_back(1, c);
  return letters.size() >= 16 && RepeatedCoverage(letters) >= 0.8;
}

ToolGrade GradeToolOutput(std::string_view output, ToolCallFormat native,
                          const nlohmann::ordered_json& tools, const ExpectedToolCall& expected) {
  const chat::ToolCallParseResult parsed = chat::ParseToolCalls(native, output);
  ToolGrade g;
  g.calls = int(parsed.calls.size());
  if (parsed.calls.size() == 1 && FindTool(tools, parsed.calls[0].name)) {
    g.detail = CallProblem(parsed.calls[0], tools, expected);
    if (g.detail.empty()) {
      g.verdict = ToolVerdict::kPass;
      return g;
    }
  }
  if (LooksCollapsed(output)) {
    g.verdict = ToolVerdict::kCollapse;
    g.detail = "repetition or garbage";
    return g;
  }
  if (!parsed.calls.empty()) {
    for (const auto& c : parsed.calls) {
      if (!FindTool(tools, c.name)) {
        g.verdict = ToolVerdict::kLostFormat;
        g.detail = fmt::format("call of undefined tool '{}'", c.name);
        return g;
      }
    }
    g.verdict = ToolVerdict::kWrongArgs;
    if (parsed.calls.size() != 1) g.detail = fmt::format("{} calls", parsed.calls.size());
    return g;
  }
  if (!parsed.malformed.empty()) {
    g.verdict = ToolVerdict::kLostFormat;
    g.detail = "call block that does not parse";
    return g;
  }
  for (ToolCallFormat other : {ToolCallFormat::kHermes, ToolCallFormat::kLlama3Json,
                               ToolCallFormat::kMistral, ToolCallFormat::kGemma}) {
    if (other == native) continue;
    const chat::ToolCallParseResult alt = chat::ParseToolCalls(other, output);
    if (!alt.calls.empty()) {
      g.verdict = ToolVerdict::kAltFormat;
      g.detail =
          fmt::format("{} call of {}", chat::ToolCallFormatName(other), alt.calls[0].name);
      return g;
    }
  }
  const std::vector<nlohmann::ordered_json> objects = JsonObjectsIn(output);
  for (const auto& o : objects) {
    if (IsCallOfDefinedTool(o, tools)) {
      g.verdict = ToolVerdict::kAltFormat;
      g.detail = "call JSON inside text";
      return g;
    }
  }
  if (!objects.empty()) {
    g.verdict = ToolVerdict::kLostFormat;
    g.detail = "JSON that is not a call";
    return g;
  }
  g.verdict = AssertsFacts(output) ? ToolVerdict::kHallucination : ToolVerdict::kNoCall;
  return g;
}

}  // namespace tqlm::eval
