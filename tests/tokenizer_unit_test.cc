// Unit tests for the tokenizer's pieces: byte mapping, UTF-8 helpers, BPE merges on a toy
// vocabulary, special-token splitting, streaming detokenization, invalid input.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tokenizer/bpe_merger.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"
#include "tqlm/error.h"

namespace tqlm::tokenizer {
namespace {

using testing::ToyVocab;

TEST(TokenizerByteLevel, MappingIsABijectionWithGpt2Landmarks) {
  EXPECT_EQ(ByteToCodepoint('A'), uint32_t('A'));
  EXPECT_EQ(ByteToCodepoint('!'), uint32_t('!'));
  EXPECT_EQ(ByteToCodepoint(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(ByteToCodepoint('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(ByteToCodepoint(0), 0x100u);
  EXPECT_EQ(ByteToCodepoint(0xAD), 0x143u);  // the last remapped byte
  EXPECT_EQ(ByteToUtf8(' '), "\xC4\xA0");
  std::vector<bool> seen(0x200, false);
  for (int b = 0; b < 256; ++b) {
    const uint32_t c = ByteToCodepoint(static_cast<uint8_t>(b));
    ASSERT_LT(c, seen.size());
    EXPECT_FALSE(seen[c]) << "code point used twice: " << c;
    seen[c] = true;
    EXPECT_EQ(CodepointToByte(c), b);
  }
  EXPECT_EQ(CodepointToByte(' '), -1);  // space itself is not a token character
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(DecodeByteLevel(EncodeByteLevel(all)), all);
  EXPECT_EQ(EncodeByteLevel("a b\n"), "a\xC4\xA0" "b\xC4\x8A");
}

TEST(TokenizerUtf8, ValidationAndRepair) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE4\xBD\xA0 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // cut short
  EXPECT_FALSE(IsValidUtf8("\x80"));              // stray continuation
  EXPECT_FALSE(IsValidUtf8("\xC0\x80"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(SanitizeUtf8("a\xFF" "b"), "a" + fffd + "b");
  EXPECT_EQ(SanitizeUtf8("\xE4\xBD" "x"), fffd + fffd + "x");  // one replacement per bad byte
  EXPECT_EQ(SanitizeUtf8("ok \xC3\xA9"), "ok \xC3\xA9");
}

TEST(TokenizerUtf8, IncompleteTail) {
  EXPECT_EQ(IncompleteUtf8Tail(""), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("ab\xC3"), 1u);
  EXPECT_EQ(IncompleteUtf8Tail("ab\xC3\xA9"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("\xF0\x9F"), 2u);
  EXPECT_EQ(IncompleteUtf8Tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8Tail("\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("x\x80"), 0u);      // invalid, never completes: not held
  EXPECT_EQ(IncompleteUtf8Tail("\xE0\x80"), 0u);   // overlong prefix: not held
  EXPECT_EQ(IncompleteUtf8Tail("\xFF"), 0u);
}

TEST(TokenizerBpe, MergesFollowRankNotPosition) {
  BpeMerger m;
  // symbols a=0 b=1 c=2; ab=3 bc=4 abc=5
  m.Add(1, 2, 0, 4);  // "b c" first
  m.Add(0, 1, 1, 3);  // "a b"
  m.Add(3, 2, 2, 5);  // "ab c"
  std::vector<TokenId> out;
  m.Apply({0, 1, 2}, &out);
  EXPECT_EQ(out, (std::vector<TokenId>{0, 4}));  // a + bc: "ab c" never gets a chance
  out.clear();
  m.Apply({0, 1, 0, 1, 2}, &out);  // ab + a + bc
  EXPECT_EQ(out, (std::vector<TokenId>{3, 0, 4}));
  out.clear();
  m.Apply({}, &out);
  EXPECT_TRUE(out.empty());
}

TEST(TokenizerBpe, EqualRanksMergeLeftmostFirst) {
  BpeMerger m;
  m.Add(0, 0, 0, 1);  // a a -> aa
  m.Add(1, 1, 1, 2);  // aa aa -> aaaa
  std::vector<TokenId> out;
  m.Apply({0, 0, 0}, &out);
  EXPECT_EQ(out, (std::vector<TokenId>{1, 0}));
  out.clear();
  m.Apply({0, 0, 0, 0, 0}, &out);
  EXPECT_EQ(out, (std::vector<TokenId>{2, 0}));
  out.clear();
  m.Add(5, 5, 0, 5);  // a pair whose second rank entry must not override the first
  m.Add(0, 0, 7, 9);
  EXPECT_EQ(m.Find(0, 0)->result, 1);
}

TEST(TokenizerBpe, ToyVocabularyEncodesAndDecodes) {
  // ids: 256 "ab", 257 "abc", 258 "Ġab" ; merges by rank
  Tokenizer tok(ToyVocab({"ab", "abc", "\xC4\xA0" "ab"},
                         {"a b", "ab c", "\xC4\xA0 ab"}));
  EXPECT_EQ(tok.Encode("abc", false), (std::vector<TokenId>{257}));
  EXPECT_EQ(tok.Encode("abc ab", false), (std::vector<TokenId>{257, 258}));
  EXPECT_EQ(tok.Encode("abd", false), (std::vector<TokenId>{256, 'd'}));
  EXPECT_EQ(tok.Decode(tok.Encode("abc ab xyz\n", false)), "abc ab xyz\n");
  EXPECT_TRUE(tok.Encode("", true).empty());
  EXPECT_THROW(tok.Decode(std::vector<TokenId>{100000}), Error);
  EXPECT_THROW(tok.Decode(std::vector<TokenId>{-1}), Error);
}

TEST(TokenizerBpe, BosEosAddedOnlyWhenAsked) {
  VocabData v = ToyVocab({}, {}, {{"<s>", TokenType::kControl}, {"</s>", TokenType::kControl}});
  v.bos_id = 256;
  v.eos_id = 257;
  v.add_bos = true;
  v.add_eos = true;
  Tokenizer tok(v);
  EXPECT_EQ(tok.Encode("a", true), (std::vector<TokenId>{256, 'a', 257}));
  EXPECT_EQ(tok.Encode("a", false), (std::vector<TokenId>{'a'}));
  EXPECT_TRUE(tok.add_bos());
  v.bos_id = kNoToken;
  EXPECT_THROW(Tokenizer{v}, Error);  // add_bos without a BOS token
}

TEST(TokenizerBpe, LlamaBpeAddsBosByDefaultAndIgnoresMerges) {
  // "ab" is a token but no merge builds it: Llama 3 takes whole-piece tokens as they are.
  VocabData v = ToyVocab({"ab"}, {}, {{"<|begin_of_text|>", TokenType::kControl}}, "llama-bpe");
  v.bos_id = 257;
  Tokenizer tok(v);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.Encode("ab", true), (std::vector<TokenId>{257, 256}));
  VocabData g = ToyVocab({"ab"}, {}, {}, "gpt2");
  EXPECT_EQ(Tokenizer(g).Encode("ab", true), (std::vector<TokenId>{'a', 'b'}));
}

TEST(TokenizerBpe, ByteFallbackTokens) {
  // A vocabulary missing the symbol for byte 'z' but holding <0x7A>.
  VocabData v = ToyVocab({}, {}, {{"<0x7A>", TokenType::kByte}});
  v.tokens['z'] = "unused-slot";
  Tokenizer tok(v);
  const std::vector<TokenId> ids = tok.Encode("az", false);
  EXPECT_EQ(ids, (std::vector<TokenId>{'a', 256}));
  EXPECT_EQ(tok.Decode(ids), "az");
}

TEST(TokenizerBpe, RejectsUnsupportedAndBrokenVocabularies) {
  VocabData unknown = ToyVocab({}, {});
  unknown.model = "no-such-model";
  EXPECT_THROW(Tokenizer{unknown}, Error);
  VocabData pre = ToyVocab({}, {}, {}, "no-such-pre");
  EXPECT_THROW(Tokenizer{pre}, Error);
  VocabData dup = ToyVocab({"a"}, {});  // "a" duplicates byte 'a'
  EXPECT_THROW(Tokenizer{dup}, Error);
  VocabData types = ToyVocab({}, {});
  types.token_types.pop_back();
  EXPECT_THROW(Tokenizer{types}, Error);
}

TEST(TokenizerSpecial, SplitterLongestFirstAndParseFlag) {
  SpecialTokenSplitter s({{"<a>", 1, false}, {"<a><b>", 2, false}, {"<u>", 3, true}});
  auto f = s.Split("x<a><b>y<a>z<u>", true);
  ASSERT_EQ(f.size(), 6u);
  EXPECT_EQ(f[0].text, "x");
  EXPECT_EQ(f[1].token, 2);
  EXPECT_EQ(f[2].text, "y");
  EXPECT_EQ(f[3].token, 1);
  EXPECT_EQ(f[4].text, "z");
  EXPECT_EQ(f[5].token, 3);
  auto plain = s.Split("x<a>y<u>", false);  // control not matched, user-defined still is
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(plain[0].text, "x<a>y");
  EXPECT_EQ(plain[1].token, 3);
  EXPECT_TRUE(s.Split("", true).empty());
  auto adjacent = s.Split("<a><a>", true);
  ASSERT_EQ(adjacent.size(), 2u);
  EXPECT_EQ(adjacent[1].token, 1);
}

TEST(TokenizerSpecial, ControlTokensInText) {
  VocabData v = ToyVocab({}, {},
                         {{"<|im_start|>", TokenType::kControl},
                          {"<|im_end|>", TokenType::kControl},
                          {"<tool>", TokenType::kUserDefined}});
  Tokenizer tok(v);
  const TokenId start = 256, end = 257, tool = 258;
  EXPECT_EQ(tok.Encode("<|im_start|>a<|im_end|>", false, true),
            (std::vector<TokenId>{start, 'a', end}));
  const auto plain = tok.Encode("<|im_start|>", false, false);
  EXPECT_EQ(plain.size(), std::string("<|im_start|>").size());  // bytes, no merges here
  EXPECT_EQ(tok.Encode("<tool>", false, false), (std::vector<TokenId>{tool}));
  // Control tokens are hidden unless asked for; user-defined ones always show.
  EXPECT_EQ(tok.Decode(std::vector<TokenId>{start, 'a', end, tool}), "a<tool>");
  EXPECT_EQ(tok.Decode(std::vector<TokenId>{start, 'a', end}, true), "<|im_start|>a<|im_end|>");
  // <|im_end|> is recognised by name as end of turn / generation.
  EXPECT_EQ(tok.eot(), end);
  EXPECT_TRUE(tok.IsEndOfGeneration(end));
  EXPECT_FALSE(tok.IsEndOfGeneration(start));
  EXPECT_FALSE(tok.IsEndOfGeneration('a'));
  EXPECT_FALSE(tok.IsEndOfGeneration(-5));
}

TEST(TokenizerStream, HoldsPartialUtf8UntilComplete) {
  Tokenizer tok(ToyVocab({}, {}));
  StreamDecoder dec(tok);
  // "é" = C3 A9, "😀" = F0 9F 98 80: one byte per token in this vocabulary.
  EXPECT_EQ(dec.Push('h'), "h");
  EXPECT_EQ(dec.Push(0xC3), "");
  EXPECT_EQ(dec.pending(), 1u);
  EXPECT_EQ(dec.Push(0xA9), "\xC3\xA9");
  EXPECT_EQ(dec.Push(0xF0), "");
  EXPECT_EQ(dec.Push(0x9F), "");
  EXPECT_EQ(dec.Push(0x98), "");
  EXPECT_EQ(dec.Push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(dec.Push(0xE4), "");
  EXPECT_EQ(dec.Flush(), "\xE4");  // an unfinished character still comes out at the end
  EXPECT_EQ(dec.pending(), 0u);
  EXPECT_EQ(dec.Push(0x80), "\x80");  // invalid byte: passed through, not held
}

TEST(TokenizerStream, ConcatenationEqualsDecode) {
  Tokenizer tok(ToyVocab({}, {}));
  const std::string text = "mixed: caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80!";
  const auto ids = tok.Encode(text, false);
  StreamDecoder dec(tok);
  std::string streamed;
  for (TokenId id : ids) streamed += dec.Push(id);
  streamed += dec.Flush();
  EXPECT_EQ(streamed, tok.Decode(ids));
  EXPECT_EQ(streamed, text);
}

TEST(TokenizerInvalidInput, InvalidUtf8DoesNotCrashAndBecomesReplacementChars) {
  Tokenizer tok(ToyVocab({}, {}));
  const std::string fffd = "\xEF\xBF\xBD";
  const std::string bad = std::string("a\xFF\xFE b \xC3") + std::string(1, '\0') + "\xED\xA0\x80z";
  const auto ids = tok.Encode(bad, true, true);
  EXPECT_EQ(ids, tok.Encode("a" + fffd + fffd + " b " + fffd + std::string(1, '\0') + fffd +
                                fffd + fffd + "z",
                            true, true));
  // Every single byte value on its own.
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    EXPECT_FALSE(tok.Encode(one, false).empty()) << b;
  }
}

TEST(TokenizerInvalidInput, RandomBytesNeverBreakEncodeDecode) {
  VocabData v = ToyVocab({"ab", "\xC4\xA0" "ab", "<|"}, {"a b", "\xC4\xA0 ab", "< |"},
                         {{"<|x|>", TokenType::kControl}, {"<u>", TokenType::kUserDefined}},
                         "llama-bpe");
  v.add_bos = false;
  Tokenizer tok(v);
  std::mt19937 rng(7);
  const std::string alphabet = "ab <|x>u\n\t1'S";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int len = static_cast<int>(rng() % 40);
    for (int i = 0; i < len; ++i) {
      s.push_back(rng() % 3 == 0 ? static_cast<char>(rng() & 0xFF)
                                 : alphabet[rng() % alphabet.size()]);
    }
    for (bool special : {false, true}) {
      const auto ids = tok.Encode(s, true, special);
      for (TokenId id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size()) << id;
      const std::string back = tok.Decode(ids, true);
      EXPECT_EQ(back, SanitizeUtf8(s));  // exact for valid input, U+FFFD for bad bytes
    }
  }
}

}  // namespace
}  // namespace tqlm::tokenizer
