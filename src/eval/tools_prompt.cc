#include "eval/tools_prompt.h"

#include <fmt/format.h>

#include <random>

#include "chat/render.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

const char* kSystem =
    "You are a helpful assistant. When a question needs live data, call the matching tool.";
const char* kFillerIntro =
    "Here is a passage I was reading earlier; it has nothing to do with my question.\n\n";
// Marks where the filler goes while the head of the prompt is measured; never in real text.
const char* kMarker = "\x01TQLM_FILLER\x01";

std::string UserText(const std::string& filler) {
  return std::string(kFillerIntro) + filler + "\n\n" + ExperimentRequest();
}

std::vector<chat::ChatMessage> Messages(const std::string& filler) {
  return {{"system", kSystem}, {"user", UserText(filler)}};
}

std::string Render(const chat::ChatFormatter& chat, const std::string& filler) {
  return chat.FormatWithTools(Messages(filler), ExperimentTools(), true);
}

}  // namespace

const nlohmann::ordered_json& ExperimentTools() {
  static const nlohmann::ordered_json tools = nlohmann::ordered_json::parse(R"([
    {"type": "function", "function": {
      "name": "get_weather",
      "description": "Get the current weather in a city.",
      "parameters": {"type": "object",
        "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
        "required": ["city"]}}},
    {"type": "function", "function": {
      "name": "search_flights",
      "description": "Search flights between two airports on a date.",
      "parameters": {"type": "object",
        "properties": {
          "origin": {"type": "string", "description": "Departure city or IATA code"},
          "destination": {"type": "string", "description": "Arrival city or IATA code"},
          "date": {"type": "string", "description": "Date as YYYY-MM-DD"}},
        "required": ["origin", "destination", "date"]}}}
  ])");
  return tools;
}

const ExpectedToolCall& ExperimentExpectedCall() {
  static const ExpectedToolCall call{"get_weather", {{"city", {"Reykjavik", "Reykjav\xC3\xADk"}}}};
  return call;
}

const std::string& ExperimentRequest() {
  static const std::string request = "What's the weather in Reykjavik right now?";
  return request;
}

ToolsPrompt BuildToolsPrompt(const tokenizer::Tokenizer& tok, const chat::ChatFormatter& chat,
                             std::span<const int> corpus, int length, uint64_t seed) {
  const int overhead = int(tok.EncodeChat(Render(chat, "")).size());
  const int filler = length - overhead;
  if (filler < 16)
    throw Error(
        fmt::format("eval tools: length {} leaves no room for filler (the prompt without "
                    "filler is {} tokens)",
                    length, overhead));
  if (size_t(filler) + 1 > corpus.size())
    throw Error(
        fmt::format("eval tools: the corpus has {} tokens, fewer than the {} of filler "
                    "needed",
                    corpus.size(), filler));
  std::mt19937_64 rng(seed ^ 0x5EEDF00Dull);
  const size_t start = rng() % (corpus.size() - size_t(filler));
  const std::string text = tok.Decode(corpus.subspan(start, size_t(filler)));
  ToolsPrompt p;
  const chat::ChatPrompt rendered = chat::RenderChat(tok, chat, Messages(text), ExperimentTools());
  p.tokens = rendered.tokens;
  p.filler_tokens = filler;
  const std::string marked = Render(chat, kMarker);
  p.head_tokens = int(tok.EncodeChat(marked.substr(0, marked.find(kMarker))).size());
  p.tools_head_tokens = rendered.tools_head_tokens;
  return p;
}

}  // namespace tqlm::eval
