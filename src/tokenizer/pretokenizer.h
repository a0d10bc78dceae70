// Pre-tokenization: splitting text into the pieces ("words") that BPE merges within, by the
// regular expressions of the model's `tokenizer.ggml.pre`, compiled with PCRE2 (UTF + Unicode
// properties, JIT when available).
//
// A pre-tokenizer is a list of patterns applied in turn, as llama.cpp does: each pattern splits
// every piece from the previous pattern into its matches and the unmatched gaps between them
// (gaps are kept as pieces, nothing is dropped), and a pattern never looks past the end of the
// piece it works on. `\s` is spelled out as Unicode's White_Space set, which is what llama.cpp
// treats as whitespace.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tqlm::tokenizer {

struct PreTokenizerSpec {
  std::string name;                   // canonical name, e.g. "llama3", "qwen2", "smollm"
  std::vector<std::string> patterns;  // PCRE2 syntax
  bool ignore_merges = false;  // a piece that is itself a vocabulary token is not merged (Llama 3)
  bool add_bos = false;        // default for add_bos when the GGUF does not say
};

// The spec for a `tokenizer.ggml.pre` value ("" = llama.cpp's "default"). Throws tqlm::Error
// naming the value if it is not supported.
PreTokenizerSpec PreTokenizerSpecFor(std::string_view pre);

class PreTokenizer {
 public:
  // Compiles the patterns; throws tqlm::Error with PCRE2's message if one does not compile.
  explicit PreTokenizer(const PreTokenizerSpec& spec);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Splits well-formed UTF-8 `text` (callers sanitize first) into consecutive non-empty pieces
  // that concatenate back to `text`. Appends views into `text` to `pieces`. Thread-safe.
  void Split(std::string_view text, std::vector<std::string_view>* pieces) const;
  std::vector<std::string_view> Split(std::string_view text) const;

  const PreTokenizerSpec& spec() const { return spec_; }

 private:
  struct Compiled;
  PreTokenizerSpec spec_;
  std::vector<std::unique_ptr<Compiled>> compiled_;
};

}  // namespace tqlm::tokenizer
