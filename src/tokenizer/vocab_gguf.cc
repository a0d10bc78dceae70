#include "tokenizer/vocab_gguf.h"

#include "model/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tqlm/error.h"

namespace tqlm::tokenizer {

namespace {

TokenId ReadId(const model::GgufFile& file, std::string_view key, TokenId def) {
  if (!file.Has(key)) return def;
  const uint32_t id = file.GetU32(key);
  return id > static_cast<uint32_t>(INT32_MAX) ? kNoToken : static_cast<TokenId>(id);
}

std::optional<bool> ReadFlag(const model::GgufFile& file, std::string_view key) {
  if (!file.Has(key)) return std::nullopt;
  return file.GetBool(key);
}

}  // namespace

VocabData LoadVocab(const model::GgufFile& file) {
  VocabData v;
  v.model = file.GetString("tokenizer.ggml.model");
  v.pre = file.GetString("tokenizer.ggml.pre", "");

  const auto& tokens = file.GetStringArray("tokenizer.ggml.tokens");
  v.tokens.assign(tokens.begin(), tokens.end());
  const size_t n = v.tokens.size();

  if (auto types = file.TryGetArray<int32_t>("tokenizer.ggml.token_type")) {
    if (types->size() < n) {
      throw Error("gguf: tokenizer.ggml.token_type has " + std::to_string(types->size()) +
                  " entries for " + std::to_string(n) + " tokens");
    }
    v.token_types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const int32_t t = (*types)[i];
      v.token_types.push_back(t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::kUndefined);
    }
  }
  if (auto scores = file.TryGetArray<float>("tokenizer.ggml.scores")) {
    if (scores->size() < n) {
      throw Error("gguf: tokenizer.ggml.scores has " + std::to_string(scores->size()) +
                  " entries for " + std::to_string(n) + " tokens");
    }
    scores->resize(n);
    v.scores = std::move(*scores);
  }
  if (file.Has("tokenizer.ggml.merges")) {
    const auto& merges = file.GetStringArray("tokenizer.ggml.merges");
    v.merges.assign(merges.begin(), merges.end());
  } else if (v.model == "gpt2") {
    throw Error("gguf: BPE tokenizer without tokenizer.ggml.merges");
  }

  // llama.cpp's defaults when the file names no id: SentencePiece 1/2/0, GPT-2 BPE 11/11.
  const bool spm = v.model == "llama";
  v.bos_id = ReadId(file, "tokenizer.ggml.bos_token_id", spm ? 1 : 11);
  v.eos_id = ReadId(file, "tokenizer.ggml.eos_token_id", spm ? 2 : 11);
  v.eot_id = ReadId(file, "tokenizer.ggml.eot_token_id", kNoToken);
  v.eom_id = ReadId(file, "tokenizer.ggml.eom_token_id", kNoToken);
  v.unk_id = ReadId(file, "tokenizer.ggml.unknown_token_id", spm ? 0 : kNoToken);
  v.pad_id = ReadId(file, "tokenizer.ggml.padding_token_id", kNoToken);

  v.add_bos = ReadFlag(file, "tokenizer.ggml.add_bos_token");
  v.add_eos = ReadFlag(file, "tokenizer.ggml.add_eos_token");
  v.add_space_prefix = ReadFlag(file, "tokenizer.ggml.add_space_prefix");
  v.chat_template = file.GetString("tokenizer.chat_template", "");
  return v;
}

std::unique_ptr<Tokenizer> Tokenizer::FromGguf(const model::GgufFile& file) {
  return std::make_unique<Tokenizer>(LoadVocab(file));
}

}  // namespace tqlm::tokenizer
