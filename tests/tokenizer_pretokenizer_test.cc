// Pre-tokenizer splits for each supported `tokenizer.ggml.pre` family, worked out by hand from
// the regexes (and llama.cpp's reading of them: gaps kept, one span at a time).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tqlm/error.h"

namespace tqlm::tokenizer {
namespace {

std::vector<std::string> SplitWith(std::string_view pre, std::string_view text) {
  PreTokenizer p(PreTokenizerSpecFor(pre));
  std::vector<std::string> out;
  std::string joined;
  for (auto piece : p.Split(text)) {
    out.emplace_back(piece);
    joined += piece;
  }
  EXPECT_EQ(joined, text) << "pieces must cover the text";
  return out;
}

using V = std::vector<std::string>;

TEST(PreTokenizerLlama3, WordsContractionsNumbers) {
  EXPECT_EQ(SplitWith("llama-bpe", "Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(SplitWith("llama-bpe", "I'm HERE'S don't"),
            (V{"I", "'m", " HERE", "'S", " don", "'t"}));
  EXPECT_EQ(SplitWith("llama-bpe", "a 12345 b"), (V{"a", " ", "123", "45", " b"}));
  EXPECT_EQ(SplitWith("llama-bpe", "x1234567"), (V{"x", "123", "456", "7"}));
}

TEST(PreTokenizerLlama3, PunctuationAndWhitespace) {
  EXPECT_EQ(SplitWith("llama-bpe", "hello!!! world"), (V{"hello", "!!!", " world"}));
  EXPECT_EQ(SplitWith("llama-bpe", "a\n\nb"), (V{"a", "\n\n", "b"}));
  EXPECT_EQ(SplitWith("llama-bpe", "x  \n y"), (V{"x", "  \n", " y"}));
  EXPECT_EQ(SplitWith("llama-bpe", "  leading"), (V{" ", " leading"}));
  EXPECT_EQ(SplitWith("llama-bpe", "end   "), (V{"end", "   "}));
  EXPECT_EQ(SplitWith("llama-bpe", "f(x);\n"), (V{"f", "(x", ");\n"}));
  EXPECT_EQ(SplitWith("llama-bpe", "$word"), (V{"$word"}));  // one non-letter may lead a word
  EXPECT_EQ(SplitWith("llama-bpe", "\tindent"), (V{"\tindent"}));
}

TEST(PreTokenizerLlama3, UnicodeClasses) {
  // CJK letters form words; U+00A0 is whitespace; emoji are "other" (punctuation class).
  EXPECT_EQ(SplitWith("llama-bpe", "\xE4\xBD\xA0\xE5\xA5\xBD \xE4\xB8\x96"),
            (V{"\xE4\xBD\xA0\xE5\xA5\xBD", " \xE4\xB8\x96"}));
  EXPECT_EQ(SplitWith("llama-bpe", "a\xC2\xA0\xC2\xA0" "b"), (V{"a", "\xC2\xA0", "\xC2\xA0" "b"}));
  EXPECT_EQ(SplitWith("llama-bpe", "hi \xF0\x9F\x98\x80\xF0\x9F\x98\x80"),
            (V{"hi", " \xF0\x9F\x98\x80\xF0\x9F\x98\x80"}));
  EXPECT_EQ(SplitWith("llama-bpe", "\xC2\xB2\xC2\xB3"), (V{"\xC2\xB2\xC2\xB3"}));  // ²³ are \p{N}
}

TEST(PreTokenizerQwen2, DigitsOneByOne) {
  EXPECT_EQ(SplitWith("qwen2", "a 12345 b"), (V{"a", " ", "1", "2", "3", "4", "5", " b"}));
  EXPECT_EQ(SplitWith("qwen2", "It's OK"), (V{"It", "'s", " OK"}));
}

TEST(PreTokenizerGpt2, CaseSensitiveContractionsAndSpaces) {
  EXPECT_EQ(SplitWith("gpt-2", "it's IT'S"), (V{"it", "'s", " IT", "'", "S"}));
  EXPECT_EQ(SplitWith("gpt-2", "Hello  world"), (V{"Hello", " ", " world"}));
  EXPECT_EQ(SplitWith("gpt-2", "a\nb"), (V{"a", "\n", "b"}));
  EXPECT_EQ(SplitWith("gpt-2", "x 123 y"), (V{"x", " 123", " y"}));
  EXPECT_EQ(SplitWith("gpt-2", "end  "), (V{"end", "  "}));
}

TEST(PreTokenizerSmollm, DigitsSplitBeforeGpt2) {
  EXPECT_EQ(SplitWith("smollm", "abc 123"), (V{"abc", " ", "1", "2", "3"}));
  EXPECT_EQ(SplitWith("smollm", "v1.2"), (V{"v", "1", ".", "2"}));
  EXPECT_EQ(SplitWith("smollm", "a  b"), (V{"a", " ", " b"}));
}

TEST(PreTokenizerDefault, PunctuationRunsFirst) {
  EXPECT_EQ(SplitWith("default", "hi, there"), (V{"hi", ",", " there"}));
  EXPECT_EQ(SplitWith("", "12345"), (V{"123", "45"}));
}

TEST(PreTokenizer, UnknownNameThrowsAndEmptyTextGivesNothing) {
  EXPECT_THROW(PreTokenizerSpecFor("klingon"), Error);
  PreTokenizer p(PreTokenizerSpecFor("qwen2"));
  EXPECT_TRUE(p.Split("").empty());
  EXPECT_TRUE(PreTokenizerSpecFor("llama3").ignore_merges);
  EXPECT_FALSE(PreTokenizerSpecFor("qwen2").ignore_merges);
}

TEST(PreTokenizer, LongWhitespaceRunsDoNotBlowTheStack) {
  std::string text = "a" + std::string(200000, ' ') + "b" + std::string(100000, '\n');
  for (const char* pre : {"llama-bpe", "qwen2", "smollm"}) {
    PreTokenizer p(PreTokenizerSpecFor(pre));
    size_t total = 0;
    for (auto piece : p.Split(text)) total += piece.size();
    EXPECT_EQ(total, text.size()) << pre;
  }
}

}  // namespace
}  // namespace tqlm::tokenizer
