// Chat templates rendered by tqlm's Jinja interpreter must be byte-identical to what Python's
// jinja2 renders (as HF transformers configures it) for the same template and context. The
// golden files come from scripts/gen_jinja_golden.py: the templates of the GGUF models in the
// setup plus hand-written Llama 3.1 / Mistral / Gemma-style and feature templates, each with
// 33 message lists (system or not, multi-turn, tools, tool calls and results, content parts)
// and add_generation_prompt on and off. Cases where jinja2 raised must raise tqlm::Error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "jinja/template.h"
#include "tqlm/error.h"

namespace tqlm::jinja {
namespace {

std::filesystem::path DataDir() {
  const char* env = std::getenv("TQLM_SOURCE_DIR");
  return std::filesystem::path(env ? env : TQLM_SOURCE_DIR) / "tests" / "data" / "jinja";
}

class JinjaGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(JinjaGolden, MatchesPythonJinja2) {
  const std::filesystem::path path = DataDir() / (GetParam() + ".json");
  std::ifstream f(path);
  ASSERT_TRUE(f) << path;
  std::stringstream ss;
  ss << f.rdbuf();
  const nlohmann::ordered_json golden = nlohmann::ordered_json::parse(ss.str());
  const Template t(golden["template"].get<std::string>());
  RenderOptions options;
  options.now = golden["now"].get<std::time_t>();
  int same = 0, raised = 0, total = 0, expected = 0;
  for (const auto& c : golden["cases"]) {
    ++total;
    const std::string name = c["name"].get<std::string>();
    if (c.contains("expected")) {
      ++expected;
      try {
        const std::string got = t.Render(c["context"], options);
        EXPECT_EQ(got, c["expected"].get<std::string>()) << name;
        same += got == c["expected"].get<std::string>();
      } catch (const Error& e) {
        ADD_FAILURE() << name << ": unexpected error: " << e.what();
      }
    } else {
      try {
        (void)t.Render(c["context"], options);
        ADD_FAILURE() << name << ": jinja2 raised \"" << c["error"].get<std::string>()
                      << "\" but tqlm rendered";
      } catch (const Error& e) {
        if (c.value("raised", false)) {
          EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos)
              << name << ": " << e.what();
        }
        ++raised;
      }
    }
  }
  std::printf("[ jinja ] %s: %d/%d rendered identically, %d/%d errors raised as in jinja2\n",
              GetParam().c_str(), same, expected, raised, total - expected);
  EXPECT_GE(total, 60);
}

INSTANTIATE_TEST_SUITE_P(Templates, JinjaGolden,
                         ::testing::Values("smollm2", "qwen2.5_coder", "llama3.1_tools",
                                           "mistral_tools", "gemma3_style", "features"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace tqlm::jinja
