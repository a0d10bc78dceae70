// libFuzzer target for the Jinja chat-template interpreter: any template text must either
// parse and render, or throw tqlm::Error; never crash, hang, leak, overflow the stack or hit
// undefined behaviour. Limits are small so every input finishes quickly; the context holds the
// kinds of data a chat template sees (messages with tool calls, tools, flags, tokens).
//
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DTQLM_FUZZ=ON -DTQLM_TESTS=OFF \
//       -DTQLM_BENCH=OFF && cmake --build build-fuzz --target fuzz_jinja_template
//   build-fuzz/fuzz_jinja_template fuzz/corpus/jinja_template -max_total_time=60
// (the corpus holds the templates in tests/data/jinja/templates and the models' templates).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "jinja/template.h"
#include "tqlm/error.h"

namespace {

const nlohmann::ordered_json& Context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Weather in Paris? \u00e9\ud83d\ude00"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call12345",
        "type": "function", "function": {"name": "get_weather",
        "arguments": {"city": "Paris", "days": 3, "metric": true, "x": 1.5}}}]},
      {"role": "tool", "content": "22 C", "tool_call_id": "call12345"},
      {"role": "assistant", "content": "It is 22 C."},
      {"role": "user", "content": [{"type": "text", "text": "thanks"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather",
      "description": "Weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "documents": null, "add_generation_prompt": true,
    "bos_token": "<s>", "eos_token": "</s>"
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string_view src(reinterpret_cast<const char*>(data), size);
  tqlm::jinja::RenderOptions options;
  options.now = 0;
  options.limits.max_steps = 200'000;
  options.limits.max_loop_iterations = 20'000;
  options.limits.max_call_depth = 16;
  options.limits.max_output_bytes = 1 << 20;
  options.limits.max_string_bytes = 1 << 20;
  try {
    const tqlm::jinja::Template t(src);
    (void)t.Render(Context(), options);
  } catch (const tqlm::Error&) {
  }
  return 0;
}
