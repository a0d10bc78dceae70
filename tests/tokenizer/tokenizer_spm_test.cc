// SentencePiece ("llama") tokenization on a toy vocabulary built in code: merges by score
// (ties leftmost), "▁" for spaces, the space prefix after specials, byte fallback for
// characters outside the vocabulary (including invalid UTF-8), decoding and streaming of
// partial characters. The real Gemma 3 vocabulary is checked against llama.cpp's ids in
// tests/tokenizer_golden_test.cc.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/spm_encoder.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tqlm/error.h"

namespace tqlm::tokenizer {
namespace {

using Ids = std::vector<TokenId>;

// Ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then `normal` in order from 259.
VocabData SpmVocab(const std::vector<std::pair<std::string, float>>& normal,
                   std::optional<bool> space_prefix = false) {
  VocabData v;
  v.model = "llama";
  auto add = [&](std::string text, TokenType type, float score) {
    v.tokens.push_back(std::move(text));
    v.token_types.push_back(type);
    v.scores.push_back(score);
  };
  add("<unk>", TokenType::kUnknown, 0);
  add("<s>", TokenType::kControl, 0);
  add("</s>", TokenType::kControl, 0);
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    add(hex, TokenType::kByte, 0);
  }
  for (const auto& [text, score] : normal) add(text, TokenType::kNormal, score);
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_space_prefix = space_prefix;
  return v;
}

constexpr TokenId kFirst = 259;
TokenId Byte(int b) { return 3 + b; }

TEST(TokenizerSpm, HighestScoreMergesFirst) {
  // "ab" and "bc" overlap in "abc": the better-scored pair wins, the other never forms.
  const std::vector<std::pair<std::string, float>> base = {{"a", -5}, {"b", -5}, {"c", -5}};
  {
    auto v = base;
    v.insert(v.end(), {{"ab", -1}, {"bc", -2}});
    Tokenizer tok(SpmVocab(v));
    EXPECT_EQ(tok.Encode("abc", false), (Ids{kFirst + 3, kFirst + 2}));  // ab, c
  }
  {
    auto v = base;
    v.insert(v.end(), {{"ab", -2}, {"bc", -1}});
    Tokenizer tok(SpmVocab(v));
    EXPECT_EQ(tok.Encode("abc", false), (Ids{kFirst, kFirst + 4}));  // a, bc
  }
  {
    // Merged symbols merge again: a+b, then ab+c.
    auto v = base;
    v.insert(v.end(), {{"ab", -1}, {"abc", -3}});
    Tokenizer tok(SpmVocab(v));
    EXPECT_EQ(tok.Encode("abc", false), (Ids{kFirst + 4}));
  }
}

TEST(TokenizerSpm, EqualScoresMergeLeftmostFirst) {
  Tokenizer tok(SpmVocab({{"a", -5}, {"b", -5}, {"ab", -1}, {"ba", -1}}));
  EXPECT_EQ(tok.Encode("aba", false), (Ids{kFirst + 2, kFirst}));      // ab, a
  EXPECT_EQ(tok.Encode("baba", false), (Ids{kFirst + 3, kFirst + 3}));  // ba, ba
}

TEST(TokenizerSpm, SpacesBecomeVisibleSpaceAndDecodeBack) {
  const std::string sp(kSpmSpace);
  Tokenizer tok(SpmVocab({{sp, -3}, {"a", -5}, {sp + "a", -1}, {"b", -5}, {sp + "b", -1}}));
  const Ids ids = tok.Encode("a b  a", false);
  // a, ▁b, ▁, ▁a
  EXPECT_EQ(ids, (Ids{kFirst + 1, kFirst + 4, kFirst, kFirst + 2}));
  EXPECT_EQ(tok.Decode(ids), "a b  a");
  EXPECT_EQ(UnescapeSpmSpaces(EscapeSpmSpaces(" x  y ")), " x  y ");
}

TEST(TokenizerSpm, SpacePrefixAtStartAndAfterSpecials) {
  const std::string sp(kSpmSpace);
  Tokenizer tok(SpmVocab({{sp, -3}, {"a", -5}, {sp + "a", -1}}, /*space_prefix=*/std::nullopt));
  // SentencePiece defaults: BOS and a space prefix.
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.Encode("a", true), (Ids{1, kFirst + 2}));
  // After a parsed special token the next fragment gets the prefix again.
  EXPECT_EQ(tok.Encode("a</s>a", false, true), (Ids{kFirst + 2, 2, kFirst + 2}));
  // Not parsed: "</s>" is plain text (bytes here), so only the start is prefixed.
  const Ids plain = tok.Encode("a</s>", false, false);
  ASSERT_EQ(plain.size(), 5u);
  EXPECT_EQ(plain[0], kFirst + 2);
  EXPECT_EQ(plain[1], Byte('<'));

  Tokenizer no_prefix(SpmVocab({{sp, -3}, {"a", -5}, {sp + "a", -1}}, false));
  EXPECT_EQ(no_prefix.Encode("a", false), (Ids{kFirst + 1}));
}

TEST(TokenizerSpm, ByteFallbackForUnknownAndInvalidText) {
  Tokenizer tok(SpmVocab({{"a", -5}}));
  // "é" is not in the vocabulary: its two UTF-8 bytes.
  EXPECT_EQ(tok.Encode("a\xC3\xA9", false), (Ids{kFirst, Byte(0xC3), Byte(0xA9)}));
  // Invalid UTF-8 never fails: a stray continuation byte, a lone lead byte, a cut character.
  EXPECT_EQ(tok.Encode("\x80" "a\xFF", false), (Ids{Byte(0x80), kFirst, Byte(0xFF)}));
  EXPECT_EQ(tok.Encode("a\xE2\x96", false), (Ids{kFirst, Byte(0xE2), Byte(0x96)}));
  const std::string text = "a\xC3\xA9\xF0\x9F\x98\x80\x80";
  EXPECT_EQ(tok.Decode(tok.Encode(text, false)), text);
}

TEST(TokenizerSpm, StreamingHoldsBackPartialCharacters) {
  Tokenizer tok(SpmVocab({{"a", -5}}));
  const Ids ids = tok.Encode("a\xF0\x9F\x98\x80", false);  // a, then four byte tokens of 😀
  ASSERT_EQ(ids.size(), 5u);
  StreamDecoder stream(tok);
  EXPECT_EQ(stream.Push(ids[0]), "a");
  EXPECT_EQ(stream.Push(ids[1]), "");
  EXPECT_EQ(stream.Push(ids[2]), "");
  EXPECT_EQ(stream.Push(ids[3]), "");
  EXPECT_EQ(stream.Push(ids[4]), "\xF0\x9F\x98\x80");
  EXPECT_EQ(stream.Flush(), "");
}

TEST(TokenizerSpm, ControlTokensRenderOnlyOnRequest) {
  Tokenizer tok(SpmVocab({{"a", -5}}));
  const Ids ids = tok.Encode("<s>a</s>", false, true);
  EXPECT_EQ(ids, (Ids{1, kFirst, 2}));
  EXPECT_EQ(tok.Decode(ids), "a");
  EXPECT_EQ(tok.Decode(ids, true), "<s>a</s>");
  EXPECT_TRUE(tok.IsEndOfGeneration(2));
}

TEST(TokenizerSpm, ChatEncodingAddsNoSecondBos) {
  Tokenizer tok(SpmVocab({{"a", -5}}));
  EXPECT_EQ(tok.EncodeChat("<s>a"), (Ids{1, kFirst}));
  EXPECT_EQ(tok.EncodeChat("a"), (Ids{1, kFirst}));
  EXPECT_EQ(tok.Encode("<s>a", true, true), (Ids{1, 1, kFirst}));
}

TEST(TokenizerSpm, MissingScoresMergeLeftmostAndBadScoresAreRejected) {
  VocabData v = SpmVocab({{"a", 0}, {"aa", 0}});
  v.scores.clear();
  Tokenizer tok(v);
  EXPECT_EQ(tok.Encode("aaa", false), (Ids{kFirst + 1, kFirst}));
  VocabData bad = SpmVocab({{"a", 0}});
  bad.scores.pop_back();
  EXPECT_THROW(Tokenizer{bad}, Error);
}

TEST(TokenizerSpm, NoFallbackTokenIsAClearError) {
  // A vocabulary without byte tokens or <unk>: an unknown character cannot be encoded.
  VocabData v;
  v.model = "llama";
  v.tokens = {"<s>", "a"};
  v.scores = {0, -1};
  v.token_types = {TokenType::kControl, TokenType::kNormal};
  v.bos_id = 0;
  v.add_space_prefix = false;
  Tokenizer tok(v);
  EXPECT_EQ(tok.Encode("aa", false), (Ids{1, 1}));
  EXPECT_THROW(tok.Encode("ab", false), Error);
}

}  // namespace
}  // namespace tqlm::tokenizer
