// A sandboxed interpreter for the Jinja subset that chat templates use (the
// `tokenizer.chat_template` of GGUF files), rendering byte-identically to Python's jinja2 as
// HF transformers configures it: ImmutableSandboxedEnvironment(trim_blocks=True,
// lstrip_blocks=True) with the loopcontrols extension, HF's tojson, raise_exception and
// strftime_now.
//
// Sandbox: templates only see the JSON context and the built-in filters, tests, methods and
// globals (no Python objects, no I/O, no include/import); containers are immutable except
// namespace(); every render is bounded in steps, loop iterations, macro recursion, string and
// output size, and value nesting, each failing with a tqlm::Error that says which limit.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tqlm::jinja {

struct Stmt;

struct Limits {
  int64_t max_steps = 20'000'000;           // expression evaluations + statements
  int64_t max_loop_iterations = 1'000'000;  // all loops of a render together; range() size
  int max_call_depth = 64;                  // nested macro calls
  size_t max_output_bytes = 32u << 20;      // the rendered text (and any block/macro output)
  size_t max_string_bytes = 32u << 20;      // any string or list built while rendering
};

struct RenderOptions {
  Limits limits;
  // The time strftime_now() formats (in UTC); unset: the current time.
  std::optional<std::time_t> now;
};

class Template {
 public:
  // Parses `source`; throws tqlm::Error (with the line) on syntax errors or unsupported tags.
  explicit Template(std::string_view source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the top-level variables of `context` (a JSON object; key order is kept, as
  // tojson shows it). raise_exception(msg) in the template throws tqlm::Error carrying msg.
  std::string Render(const nlohmann::ordered_json& context,
                     const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const std::vector<std::unique_ptr<Stmt>>> body_;
};

}  // namespace tqlm::jinja
