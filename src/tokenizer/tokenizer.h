// Text <-> token ids for a model, built from its VocabData. Byte-level BPE ("gpt2" models:
// SmolLM2, Llama 3, Qwen2) follows llama.cpp token for token:
//   1. special tokens are cut out of the raw text (SpecialTokenSplitter);
//   2. each remaining fragment is repaired to valid UTF-8 (bad bytes -> U+FFFD) and split into
//      pieces by the pre-tokenizer regexes chosen by `tokenizer.ggml.pre` (PreTokenizer);
//   3. each piece's bytes become their byte-level symbols, which BPE merges by rank
//      (BpeMerger); a byte with no symbol token falls back to a <0xXX> token if there is one.
// SentencePiece ("llama") vocabularies (Llama 2, Gemma) share steps 1 and the byte fallback but
// merge by token score over UTF-8 characters instead (tokenizer/spm_encoder.h).
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe_merger.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/vocab.h"

namespace tqlm::model {
class GgufFile;
}

namespace tqlm::tokenizer {

class Tokenizer {
 public:
  // Validates and indexes `vocab`; throws tqlm::Error on an unsupported model kind or
  // pre-tokenizer, duplicate token texts, or inconsistent special-token settings.
  explicit Tokenizer(VocabData vocab);
  // LoadVocab(file) + constructor.
  static std::unique_ptr<Tokenizer> FromGguf(const model::GgufFile& file);

  // Text -> ids. add_special: prepend BOS / append EOS where the model asks for them.
  // parse_special: control tokens written in the text (e.g. "<|im_start|>") become their ids;
  // otherwise they are tokenized as plain text. Any bytes are accepted. Thread-safe.
  std::vector<TokenId> Encode(std::string_view text, bool add_special = true,
                              bool parse_special = false) const;
  // A rendered chat prompt: specials parsed, BOS/EOS as the model asks, except that no second
  // BOS is added when the text already starts with it (templates such as Gemma's write
  // bos_token themselves; llama.cpp's chat code drops the duplicate the same way).
  std::vector<TokenId> EncodeChat(std::string_view text) const;

  // Ids -> bytes (normally UTF-8, but a token may hold part of a character). Control tokens
  // render as their text only when render_special is set; otherwise as nothing. Throws
  // tqlm::Error for an id outside the vocabulary.
  std::string Decode(std::span<const TokenId> ids, bool render_special = false) const;
  // The bytes of one token (see Decode).
  std::string_view Piece(TokenId id, bool render_special = false) const;

  // True for tokens that end generation: EOS, EOT (<|im_end|>, <|eot_id|>...), EOM and the
  // other end-like control tokens llama.cpp treats as end-of-generation.
  bool IsEndOfGeneration(TokenId id) const;
  bool IsControl(TokenId id) const;

  int32_t vocab_size() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  TokenId bos() const { return vocab_.bos_id; }
  TokenId eos() const { return vocab_.eos_id; }
  TokenId eot() const { return vocab_.eot_id; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  const std::vector<TokenId>& end_of_generation_ids() const { return eog_ids_; }
  // Id of the token whose (stored) text is exactly `text`.
  std::optional<TokenId> FindToken(std::string_view text) const;
  TokenType type(TokenId id) const;
  const VocabData& vocab() const { return vocab_; }
  const PreTokenizerSpec& pre_tokenizer() const { return pre_->spec(); }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  void CheckId(TokenId id) const;
  void InitSpecialTokens();
  void InitMerges();
  void EncodeText(std::string_view raw, std::vector<TokenId>* out) const;

  VocabData vocab_;
  std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> token_ids_;
  std::unique_ptr<PreTokenizer> pre_;
  BpeMerger merger_;
  SpecialTokenSplitter specials_;
  std::array<TokenId, 256> byte_tokens_{};  // initial BPE symbol for each byte
  std::vector<std::string> pieces_;          // decoded bytes of each token
  std::vector<bool> eog_;
  std::vector<TokenId> eog_ids_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool spm_ = false;               // SentencePiece ("llama") vocabulary
  bool add_space_prefix_ = false;  // SentencePiece: "▁" before text at the start / after specials
};

}  // namespace tqlm::tokenizer
