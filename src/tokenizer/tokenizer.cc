#include "tokenizer/tokenizer.h"

#include <array>
#include <cstdio>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/spm_encoder.h"
#include "tokenizer/utf8.h"
#include "tqlm/error.h"

namespace tqlm::tokenizer {

namespace {

// Token texts that mark the end of a turn or of generation. Models' GGUFs rarely list them in
// metadata, so (like llama.cpp) they are recognised by name. The first present one of the EOT
// list becomes eot_id when the GGUF does not set it.
constexpr std::array<std::string_view, 10> kEotNames = {
    "<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",        "<|endoftext|>",
    "<|end_of_text|>", "<EOT>",    "_<EOT>",  "<｜end▁of▁sentence｜>", "<end_of_utterance>"};
constexpr std::array<std::string_view, 11> kEogNames = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>",      "_<EOT>",     "<|end_of_text|>", "<end_of_utterance>", "<｜end▁of▁sentence｜>"};
// Fill-in-the-middle pad / repo / file-separator tokens also end generation in llama.cpp.
constexpr std::array<std::string_view, 11> kFimEogNames = {
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>",  "<PAD>",  "[PAD]",       "<|fim_repo|>",
    "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>"};

bool IsSpecialType(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUnknown;
}

// "<0x41>" -> 0x41, or -1.
int ParseByteToken(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') value |= c - '0';
    else if (c >= 'A' && c <= 'F') value |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') value |= c - 'a' + 10;
    else return -1;
  }
  return value;
}

}  // namespace

Tokenizer::Tokenizer(VocabData vocab) : vocab_(std::move(vocab)) {
  spm_ = vocab_.model == "llama";
  if (vocab_.model != "gpt2" && !spm_) {
    throw Error("unsupported tokenizer model '" + vocab_.model +
                "' (tokenizer.ggml.model); supported: gpt2 (byte-level BPE), llama (SentencePiece)");
  }
  // A SentencePiece vocabulary without scores merges leftmost first (llama.cpp's default 0).
  if (spm_ && vocab_.scores.empty()) vocab_.scores.assign(vocab_.tokens.size(), 0.0f);
  if (spm_ && vocab_.scores.size() != vocab_.tokens.size()) {
    throw Error("tokenizer: " + std::to_string(vocab_.scores.size()) + " scores for " +
                std::to_string(vocab_.tokens.size()) + " tokens");
  }
  const size_t n = vocab_.tokens.size();
  if (n == 0) throw Error("tokenizer: the vocabulary is empty");
  if (n > static_cast<size_t>(INT32_MAX)) throw Error("tokenizer: vocabulary too large");
  if (vocab_.token_types.empty()) vocab_.token_types.assign(n, TokenType::kNormal);
  if (vocab_.token_types.size() != n) {
    throw Error("tokenizer: " + std::to_string(vocab_.token_types.size()) + " token types for " +
                std::to_string(n) + " tokens");
  }

  token_ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string& text = vocab_.tokens[i];
    if (text.empty()) text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp names them
    auto [it, inserted] = token_ids_.emplace(text, static_cast<TokenId>(i));
    if (!inserted) {
      throw Error("tokenizer: duplicate token '" + text + "' (ids " + std::to_string(it->second) +
                  " and " + std::to_string(i) + ")");
    }
  }
  for (TokenId* id : {&vocab_.bos_id, &vocab_.eos_id, &vocab_.eot_id, &vocab_.eom_id,
                      &vocab_.unk_id, &vocab_.pad_id}) {
    if (*id < 0 || static_cast<size_t>(*id) >= n) *id = kNoToken;
  }

  pre_ = std::make_unique<PreTokenizer>(PreTokenizerSpecFor(vocab_.pre));
  // SentencePiece models default to a BOS and a space prefix, as in llama.cpp.
  add_bos_ = vocab_.add_bos.value_or(spm_ || pre_->spec().add_bos);
  add_space_prefix_ = spm_ && vocab_.add_space_prefix.value_or(true);
  add_eos_ = vocab_.add_eos.value_or(false);
  if (add_bos_ && vocab_.bos_id == kNoToken) {
    throw Error("tokenizer: add_bos is set but the model has no BOS token");
  }
  if (add_eos_ && vocab_.eos_id == kNoToken) {
    throw Error("tokenizer: add_eos is set but the model has no EOS token");
  }

  InitSpecialTokens();
  InitMerges();

  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    auto it = token_ids_.find(spm_ ? std::string_view(hex) : ByteToUtf8(static_cast<uint8_t>(b)));
    if (it == token_ids_.end()) {
      // Byte-level BPE may carry raw bytes as <0xXX> tokens instead; SentencePiece falls back
      // to a token whose text is the byte itself.
      const std::string raw(1, static_cast<char>(b));
      it = token_ids_.find(spm_ ? std::string_view(raw) : std::string_view(hex));
    }
    byte_tokens_[b] = it == token_ids_.end() ? kNoToken : it->second;
  }

  pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = vocab_.tokens[i];
    switch (vocab_.token_types[i]) {
      case TokenType::kNormal:
        pieces_[i] = spm_ ? UnescapeSpmSpaces(text) : DecodeByteLevel(text);
        break;
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUserDefined:
        pieces_[i] = text;
        break;
      case TokenType::kByte: {
        const int b = ParseByteToken(text);
        if (b >= 0) pieces_[i] = std::string(1, static_cast<char>(b));
        break;
      }
      default:  // unused / undefined: render as nothing, like llama.cpp
        break;
    }
  }
}

void Tokenizer::InitSpecialTokens() {
  const size_t n = vocab_.tokens.size();
  // Like llama.cpp, a token recognised as an end token by name is treated as control even if
  // the GGUF typed it otherwise (it is then matched in text only when parsing specials).
  auto mark_control = [&](TokenId id) { vocab_.token_types[id] = TokenType::kControl; };
  if (vocab_.eot_id == kNoToken) {
    for (std::string_view name : kEotNames) {
      if (auto id = FindToken(name)) {
        vocab_.eot_id = *id;
        break;
      }
    }
  }
  if (vocab_.eom_id == kNoToken) {
    if (auto id = FindToken("<|eom_id|>")) vocab_.eom_id = *id;
  }
  eog_.assign(n, false);
  auto add_eog = [&](TokenId id) {
    if (id == kNoToken || eog_[id]) return;
    eog_[id] = true;
    eog_ids_.push_back(id);
  };
  for (const auto* names : {&kEogNames, &kFimEogNames}) {
    for (std::string_view name : *names) {
      if (auto id = FindToken(name)) {
        add_eog(*id);
        mark_control(*id);
      }
    }
  }
  for (TokenId id : {vocab_.eos_id, vocab_.eot_id, vocab_.eom_id}) add_eog(id);
  for (TokenId id : {vocab_.eot_id, vocab_.eom_id}) {
    if (id != kNoToken) mark_control(id);
  }

  std::vector<SpecialToken> specials;
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = vocab_.token_types[i];
    if (IsSpecialType(t) || t == TokenType::kUserDefined) {
      specials.push_back({vocab_.tokens[i], static_cast<TokenId>(i), t == TokenType::kUserDefined});
    }
  }
  specials_ = SpecialTokenSplitter(std::move(specials));
}

void Tokenizer::InitMerges() {
  merger_.Reserve(vocab_.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
    const std::string& merge = vocab_.merges[rank];
    // Split at the first space after the first character (a side may itself start with one).
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos) continue;
    const std::string_view left(merge.data(), space);
    const std::string_view right(merge.data() + space + 1, merge.size() - space - 1);
    auto l = token_ids_.find(left);
    auto r = token_ids_.find(right);
    if (l == token_ids_.end() || r == token_ids_.end()) continue;
    joined.assign(left);
    joined.append(right);
    auto j = token_ids_.find(std::string_view(joined));
    // A merge whose result is not a token could never be emitted; skip it.
    if (j == token_ids_.end()) continue;
    merger_.Add(l->second, r->second, static_cast<int32_t>(rank), j->second);
  }
}

std::optional<TokenId> Tokenizer::FindToken(std::string_view text) const {
  auto it = token_ids_.find(text);
  if (it == token_ids_.end()) return std::nullopt;
  return it->second;
}

void Tokenizer::CheckId(TokenId id) const {
  if (id < 0 || id >= vocab_size()) {
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary (size " +
                std::to_string(vocab_size()) + ")");
  }
}

TokenType Tokenizer::type(TokenId id) const {
  CheckId(id);
  return vocab_.token_types[id];
}

bool Tokenizer::IsEndOfGeneration(TokenId id) const {
  return id >= 0 && id < vocab_size() && eog_[id];
}

bool Tokenizer::IsControl(TokenId id) const {
  return id >= 0 && id < vocab_size() && vocab_.token_types[id] == TokenType::kControl;
}

void Tokenizer::EncodeText(std::string_view raw, std::vector<TokenId>* out) const {
  std::string repaired;
  std::string_view text = raw;
  if (!IsValidUtf8(raw)) {
    repaired = SanitizeUtf8(raw);
    text = repaired;
  }
  std::vector<std::string_view> pieces;
  pre_->Split(text, &pieces);
  const bool ignore_merges = pre_->spec().ignore_merges;
  std::vector<TokenId> symbols;
  for (std::string_view piece : pieces) {
    if (ignore_merges) {
      auto it = token_ids_.find(std::string_view(EncodeByteLevel(piece)));
      if (it != token_ids_.end()) {
        out->push_back(it->second);
        continue;
      }
    }
    symbols.clear();
    for (char c : piece) symbols.push_back(byte_tokens_[static_cast<uint8_t>(c)]);
    merger_.Apply(symbols, out);
  }
}

std::vector<TokenId> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && add_bos_) out.push_back(vocab_.bos_id);
  std::optional<SpmVocab> spm;
  if (spm_) {
    spm = SpmVocab{[this](std::string_view s) {
                     auto it = token_ids_.find(s);
                     return it == token_ids_.end() ? kNoToken : it->second;
                   },
                   vocab_.scores, &byte_tokens_, vocab_.unk_id};
  }
  // SentencePiece: a text fragment at the start or after a special token gets the space prefix.
  bool after_special = true;
  for (const Fragment& fragment : specials_.Split(text, parse_special)) {
    if (fragment.token != kNoToken) {
      out.push_back(fragment.token);
      after_special = true;
    } else if (spm) {
      SpmEncode(fragment.text, add_space_prefix_ && after_special, *spm, &out);
      after_special = false;
    } else {
      EncodeText(fragment.text, &out);
    }
  }
  if (add_special && add_eos_) out.push_back(vocab_.eos_id);
  return out;
}

std::vector<TokenId> Tokenizer::EncodeChat(std::string_view text) const {
  const bool has_bos = add_bos_ && vocab_.bos_id != kNoToken &&
                       text.starts_with(vocab_.tokens[static_cast<size_t>(vocab_.bos_id)]);
  std::vector<TokenId> ids = Encode(text, /*add_special=*/true, /*parse_special=*/true);
  if (has_bos && ids.size() >= 2 && ids[0] == vocab_.bos_id && ids[1] == vocab_.bos_id) {
    ids.erase(ids.begin());
  }
  return ids;
}

std::string_view Tokenizer::Piece(TokenId id, bool render_special) const {
  CheckId(id);
  if (!render_special && IsSpecialType(vocab_.token_types[id])) return {};
  return pieces_[id];
}

std::string Tokenizer::Decode(std::span<const TokenId> ids, bool render_special) const {
  std::string out;
  for (TokenId id : ids) out += Piece(id, render_special);
  return out;
}

}  // namespace tqlm::tokenizer
