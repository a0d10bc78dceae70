#include "runtime/proposer.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "runtime/ngram_proposer.h"
#include "tqlm/error.h"

namespace tqlm::runtime {
namespace {

class NgramProposer final : public Proposer {
 public:
  explicit NgramProposer(const SpecParams& p) : min_(p.ngram_min), max_(p.ngram_max) {
    NgramPropose({}, min_, max_, 0);  // rejects bad lengths before the first step
  }
  bool free() const override { return true; }
  std::vector<int> Propose(std::span<const int> context, int max_tokens) override {
    return NgramPropose(context, min_, max_, max_tokens);
  }

 private:
  int min_, max_;
};

// The draft decodes as the target would: greedy at temperature 0, else sampling with the same
// settings (its own random stream), recording each token's distribution for speculative
// sampling (spec_sampling.h).
class DraftProposer final : public Proposer {
 public:
  DraftProposer(const SpecParams& p, const SamplerParams& sampler, Session& draft)
      : draft_(draft), min_p_(p.draft_min_p), sampled_(sampler.temperature > 0),
        sampler_(Reseeded(sampler)) {}
  bool free() const override { return false; }
  const std::vector<SparseDistribution>* draws() const override {
    return sampled_ ? &draws_ : nullptr;
  }

  std::vector<int> Propose(std::span<const int> context, int max_tokens) override {
    std::vector<int> out;
    draws_.clear();
    if (max_tokens <= 0 || context.empty()) return out;
    // Room in the draft's context for the catch-up and the proposal (its last token is not fed).
    max_tokens = std::min(max_tokens, draft_.n_ctx() - int(context.size()) + 1);
    if (max_tokens <= 0) return out;
    // Bring the draft's sequence in line: keep the common prefix, feed the rest. At least the
    // last token is fed again, for its logits.
    const std::vector<int>& have = draft_.history();
    size_t common = 0;
    while (common < have.size() && common < context.size() && have[common] == context[common])
      ++common;
    common = std::min(common, context.size() - 1);
    if (common < have.size()) draft_.Rewind(int(common));
    std::span<const float> logits = draft_.Feed(context.subspan(common));
    for (;;) {
      const int best = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
      if (min_p_ > 0 && TopProbability(logits, best) < min_p_) break;
      int token = best;
      if (sampled_) {
        draws_.push_back(sampler_.Distribution(logits, draft_.history()));
        token = sampler_.Sample(logits, draft_.history());
      }
      out.push_back(token);
      if (int(out.size()) >= max_tokens) break;
      const int next[1] = {token};
      logits = draft_.Feed(next);
    }
    return out;
  }

 private:
  static SamplerParams Reseeded(SamplerParams p) {
    p.seed ^= 0x9E3779B97F4A7C15ull;  // the draft's draws are not the target's
    return p;
  }
  static double TopProbability(std::span<const float> logits, int best) {
    double sum = 0;
    for (float l : logits) sum += std::exp(double(l) - logits[size_t(best)]);
    return 1.0 / sum;
  }

  Session& draft_;
  float min_p_;
  bool sampled_;
  Sampler sampler_;
  std::vector<SparseDistribution> draws_;
};

}  // namespace

std::unique_ptr<Proposer> MakeProposer(const SpecParams& params, const SamplerParams& sampler,
                                       Session* draft) {
  switch (params.mode) {
    case SpecMode::kNone:
      return nullptr;
    case SpecMode::kNgram:
      return std::make_unique<NgramProposer>(params);
    case SpecMode::kDraft:
      if (!draft) throw Error("draft-model speculation needs a draft model (-md FILE)");
      return std::make_unique<DraftProposer>(params, sampler, *draft);
  }
  return nullptr;
}

void CheckDraftVocabulary(const tokenizer::Tokenizer& target, const tokenizer::Tokenizer& draft) {
  const tokenizer::VocabData& t = target.vocab();
  const tokenizer::VocabData& d = draft.vocab();
  const char* why = "the draft model cannot propose tokens for this model";
  if (t.model != d.model)
    throw Error(fmt::format("{}: its tokenizer is '{}', the target's '{}'", why, d.model, t.model));
  if (t.tokens.size() != d.tokens.size())
    throw Error(fmt::format("{}: its vocabulary has {} tokens, the target's {}", why,
                            d.tokens.size(), t.tokens.size()));
  for (size_t i = 0; i < t.tokens.size(); ++i)
    if (t.tokens[i] != d.tokens[i])
      throw Error(fmt::format("{}: token {} is '{}' in the draft and '{}' in the target", why, i,
                              d.tokens[i], t.tokens[i]));
  if (t.bos_id != d.bos_id || t.eos_id != d.eos_id)
    throw Error(fmt::format("{}: its BOS/EOS tokens are {}/{}, the target's {}/{}", why, d.bos_id,
                            d.eos_id, t.bos_id, t.eos_id));
}

SpecMode ParseSpecMode(const std::string& name) {
  if (name == "none") return SpecMode::kNone;
  if (name == "ngram") return SpecMode::kNgram;
  if (name == "draft") return SpecMode::kDraft;
  throw Error("unknown speculation mode '" + name + "' (choices: none, ngram, draft)");
}

const char* SpecModeName(SpecMode mode) {
  switch (mode) {
    case SpecMode::kNone: return "none";
    case SpecMode::kNgram: return "ngram";
    case SpecMode::kDraft: return "draft";
  }
  return "none";
}

}  // namespace tqlm::runtime
