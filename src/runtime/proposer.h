// Where speculative proposals come from: prompt lookup (free: the proposal is computed before
// deciding how much of it to verify) or a draft model (each proposed token costs a draft
// forward pass, so its length is decided first).
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/spec_params.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::runtime {

class Proposer {
 public:
  virtual ~Proposer() = default;
  // True when proposing costs next to nothing (the caller proposes the most it could use, then
  // verifies part of it); false when each token costs work (the caller asks for what it uses).
  virtual bool free() const = 0;
  // Up to `max_tokens` tokens likely to follow `context` (the whole sequence so far).
  virtual std::vector<int> Propose(std::span<const int> context, int max_tokens) = 0;
  // When the last proposal was sampled (a draft model at temperature > 0): the distribution
  // each of its tokens was drawn from, for speculative sampling; else nullptr (a proposal not
  // drawn from a distribution is verified by sampling the target and comparing, also exact).
  virtual const std::vector<SparseDistribution>* draws() const { return nullptr; }
};

// The proposer for params.mode (nullptr for kNone). kDraft needs `draft`, a session on a model
// with the target's vocabulary, used only by this proposer; throws tqlm::Error without one. The
// draft samples with `sampler` (greedy at temperature 0).
std::unique_ptr<Proposer> MakeProposer(const SpecParams& params, const SamplerParams& sampler,
                                       Session* draft);

// A draft model's tokens must mean what the target's mean: the same tokenizer kind, token list
// and special tokens. Throws tqlm::Error saying what differs.
void CheckDraftVocabulary(const tokenizer::Tokenizer& target, const tokenizer::Tokenizer& draft);

}  // namespace tqlm::runtime
