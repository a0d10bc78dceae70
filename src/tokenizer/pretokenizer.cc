#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <array>

#include "tqlm/error.h"

namespace tqlm::tokenizer {

namespace {

// Unicode White_Space (what llama.cpp's tables call whitespace), for use inside [...]. Spelled
// out because PCRE2's \s differs at U+0085 and because llama.cpp maps all of these to \s.
#define TQLM_WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define TQLM_S "[" TQLM_WS "]"
#define TQLM_NOT_S "[^" TQLM_WS "]"

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
constexpr const char* kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" TQLM_WS "\\p{L}\\p{N}]+|" TQLM_S
    "+(?!" TQLM_NOT_S ")";

// Llama 3 (tiktoken cl100k-like), with the case-insensitive contractions spelled out:
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
#define TQLM_LLAMA3_LIKE(NUMBERS)                                                         \
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
  NUMBERS "| ?[^" TQLM_WS "\\p{L}\\p{N}]+[\\r\\n]*|" TQLM_S "*[\\r\\n]+|" TQLM_S        \
  "+(?!" TQLM_NOT_S ")|" TQLM_S "+"

constexpr const char* kLlama3 = TQLM_LLAMA3_LIKE("\\p{N}{1,3}");
// Qwen2: as Llama 3, but every digit is its own piece.
constexpr const char* kQwen2 = TQLM_LLAMA3_LIKE("\\p{N}");

bool OneOf(std::string_view s, std::initializer_list<std::string_view> names) {
  for (auto n : names) {
    if (s == n) return true;
  }
  return false;
}

}  // namespace

PreTokenizerSpec PreTokenizerSpecFor(std::string_view pre) {
  PreTokenizerSpec spec;
  if (pre.empty() || pre == "default") {
    spec.name = "default";
    spec.patterns = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
  } else if (OneOf(pre, {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                         "midm-2.0", "lfm2"})) {
    spec.name = "llama3";
    spec.patterns = {kLlama3};
    spec.ignore_merges = true;
    spec.add_bos = true;
  } else if (OneOf(pre, {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"})) {
    spec.name = "llama3-regex";
    spec.patterns = {kLlama3};
  } else if (OneOf(pre, {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"})) {
    spec.name = "qwen2";
    spec.patterns = {kQwen2};
  } else if (OneOf(pre, {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                         "minerva-7b", "mellum2"})) {
    // Digits are split one by one first, then the GPT-2 regex runs on what is between them.
    spec.name = "smollm";
    spec.patterns = {"\\p{N}", kGpt2};
  } else if (OneOf(pre, {"gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "exaone4", "trillion",
                         "granite-docling", "jina-es", "jina-de", "roberta-bpe"})) {
    spec.name = "gpt2";
    spec.patterns = {kGpt2};
  } else {
    throw Error("unsupported pre-tokenizer '" + std::string(pre) +
                "' (tokenizer.ggml.pre); supported: default, gpt-2, smollm, llama-bpe, qwen2 and "
                "their aliases");
  }
  return spec;
}

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const PreTokenizerSpec& spec) : spec_(spec) {
  for (const std::string& pattern : spec_.patterns) {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    auto compiled = std::make_unique<Compiled>();
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
    if (compiled->code == nullptr) {
      std::array<PCRE2_UCHAR, 256> msg{};
      pcre2_get_error_message(err, msg.data(), msg.size());
      throw Error("pre-tokenizer '" + spec_.name + "': regex does not compile at offset " +
                  std::to_string(err_offset) + ": " + reinterpret_cast<const char*>(msg.data()));
    }
    // JIT is an optimisation only: without it (unsupported CPU, no executable memory) the
    // interpreter gives the same matches.
    compiled->jit = pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE) == 0;
    compiled_.push_back(std::move(compiled));
  }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

// Owns the per-call PCRE2 scratch: match data and (for JIT) a private stack, so that Split can
// run on several threads at once.
class MatchScratch {
 public:
  MatchScratch() {
    data_ = pcre2_match_data_create(4, nullptr);
    context_ = pcre2_match_context_create(nullptr);
    jit_stack_ = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (data_ == nullptr || context_ == nullptr) throw Error("pre-tokenizer: out of memory");
    if (jit_stack_ != nullptr) pcre2_jit_stack_assign(context_, nullptr, jit_stack_);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack_);
    pcre2_match_context_free(context_);
    pcre2_match_data_free(data_);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;

  pcre2_match_data* data() { return data_; }
  pcre2_match_context* context() { return context_; }

 private:
  pcre2_match_data* data_ = nullptr;
  pcre2_match_context* context_ = nullptr;
  pcre2_jit_stack* jit_stack_ = nullptr;
};

// Splits `span` into matches of `code` and the gaps between them.
void SplitOne(const pcre2_code* code, std::string_view span, MatchScratch* scratch,
              std::vector<std::string_view>* out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(span.data());
  size_t pos = 0;   // where the next search starts
  size_t done = 0;  // end of the last piece emitted
  while (pos < span.size()) {
    const int rc = pcre2_match(code, subject, span.size(), pos, PCRE2_NO_UTF_CHECK,
                               scratch->data(), scratch->context());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      std::array<PCRE2_UCHAR, 256> msg{};
      pcre2_get_error_message(rc, msg.data(), msg.size());
      throw Error(std::string("pre-tokenizer: regex match failed: ") +
                  reinterpret_cast<const char*>(msg.data()));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch->data());
    const size_t start = ov[0], end = ov[1];
    if (end == start) {
      // None of our patterns can match empty, but never loop: step over one character.
      pos = start + 1;
      while (pos < span.size() && (static_cast<uint8_t>(span[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    if (start > done) out->push_back(span.substr(done, start - done));
    out->push_back(span.substr(start, end - start));
    done = pos = end;
  }
  if (done < span.size()) out->push_back(span.substr(done));
}

}  // namespace

void PreTokenizer::Split(std::string_view text, std::vector<std::string_view>* pieces) const {
  if (text.empty()) return;
  MatchScratch scratch;
  std::vector<std::string_view> current{text};
  std::vector<std::string_view> next;
  for (size_t p = 0; p < compiled_.size(); ++p) {
    std::vector<std::string_view>* dest = p + 1 == compiled_.size() ? pieces : &next;
    if (dest == &next) next.clear();
    for (std::string_view span : current) SplitOne(compiled_[p]->code, span, &scratch, dest);
    if (dest == &next) current.swap(next);
  }
  if (compiled_.empty()) pieces->push_back(text);
}

std::vector<std::string_view> PreTokenizer::Split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  Split(text, &pieces);
  return pieces;
}

}  // namespace tqlm::tokenizer
