// libFuzzer target for the tokenizer: Encode (with and without special-token parsing) and
// Decode/StreamDecoder on a small hand-built byte-level BPE vocabulary with merges, control
// and user-defined tokens. Any bytes must encode; decoding the ids must give the input back
// (byte-level BPE is lossless when specials are not parsed); streaming must agree with Decode.
//
//   build-fuzz/fuzz_tokenizer_encode -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tqlm/error.h"

namespace {

using tqlm::tokenizer::TokenType;
using tqlm::tokenizer::VocabData;

const tqlm::tokenizer::Tokenizer& Toy() {
  static const tqlm::tokenizer::Tokenizer tok = [] {
    VocabData v;
    v.model = "gpt2";
    v.pre = "qwen2";
    for (int b = 0; b < 256; ++b) {
      v.tokens.emplace_back(tqlm::tokenizer::ByteToUtf8(static_cast<uint8_t>(b)));
      v.token_types.push_back(TokenType::kNormal);
    }
    const std::string sp(tqlm::tokenizer::ByteToUtf8(' '));
    for (const std::string& t : {std::string("th"), std::string("the"), sp + "t", sp + "the",
                                 std::string("in"), std::string("ing"), std::string("er")}) {
      v.tokens.push_back(t);
      v.token_types.push_back(TokenType::kNormal);
    }
    v.merges = {"t h", "th e", sp + " t", sp + "t he", "i n", "in g", "e r"};
    for (const auto& [t, type] : {std::pair<std::string, TokenType>{"<|im_start|>", TokenType::kControl},
                                  {"<|im_end|>", TokenType::kControl},
                                  {"<tool_call>", TokenType::kUserDefined}}) {
      v.tokens.push_back(t);
      v.token_types.push_back(type);
    }
    v.eos_id = int32_t(v.tokens.size()) - 2;
    return tqlm::tokenizer::Tokenizer(std::move(v));
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto& tok = Toy();
  try {
    const std::vector<int32_t> plain = tok.Encode(text, false, false);
    const std::string back = tok.Decode(plain, true);
    // Byte-level BPE round-trips valid UTF-8 (invalid bytes may be repaired first).
    if (tqlm::tokenizer::IsValidUtf8(text) && back != text) std::abort();
    const std::vector<int32_t> special = tok.Encode(text, true, true);
    const std::string rendered = tok.Decode(special, true);
    tqlm::tokenizer::StreamDecoder stream(tok, true);
    std::string streamed;
    for (int32_t id : special) streamed += stream.Push(id);
    streamed += stream.Flush();
    if (streamed != rendered) std::abort();
  } catch (const tqlm::Error&) {
  }
  return 0;
}
