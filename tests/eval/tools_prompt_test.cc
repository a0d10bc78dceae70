// The tool-calling prompt on the real default model's tokenizer (skipped when it is not
// installed): its length, where the filler starts, and the errors for impossible lengths.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "eval/tools_prompt.h"
#include "model/model.h"
#include "chat/chat_format.h"
#include "tokenizer/tokenizer.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

TEST(ToolsPrompt, LengthHeadAndErrors) {
  const char* c = std::getenv("TQLM_CACHE");
  const char* home = std::getenv("HOME");
  const std::string path = (c ? std::string(c) : std::string(home ? home : ".") + "/.cache/tqlm") +
                           "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
  auto model = model::Model::Load(path);
  auto tok = tokenizer::Tokenizer::FromGguf(model->file());
  auto chat = chat::MakeChatFormatter(tok->vocab());
  std::string text;
  for (int i = 0; i < 60; ++i)
    text += "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy "
            "disposition, seemed to unite some of the best blessings of existence (" +
            std::to_string(i) + "). ";
  const std::vector<int> corpus = tok->Encode(text, false, false);
  const ToolsPrompt p = BuildToolsPrompt(*tok, *chat, corpus, 300, 7);
  // Filler is decoded and re-encoded inside the template: the length may drift a little.
  EXPECT_NEAR(double(p.tokens.size()), 300.0, 8.0);
  EXPECT_GT(p.head_tokens, 10);
  EXPECT_LT(p.head_tokens + p.filler_tokens, int(p.tokens.size()));
  const std::string rendered = tok->Decode(p.tokens);
  EXPECT_NE(rendered.find(ExperimentRequest()), std::string::npos);
  EXPECT_NE(rendered.find("Woodhouse"), std::string::npos);
  // Same seed, same prompt; another seed, another filler offset.
  EXPECT_EQ(BuildToolsPrompt(*tok, *chat, corpus, 300, 7).tokens, p.tokens);
  EXPECT_NE(BuildToolsPrompt(*tok, *chat, corpus, 300, 8).tokens, p.tokens);
  EXPECT_THROW(BuildToolsPrompt(*tok, *chat, corpus, 20, 7), Error);     // no room for filler
  EXPECT_THROW(BuildToolsPrompt(*tok, *chat, corpus, 100000, 7), Error);  // corpus too short
}

}  // namespace
}  // namespace tqlm::eval
