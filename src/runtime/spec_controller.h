// How many proposed tokens to verify per step. Verifying k tokens costs more than decoding one
// (the weights are read once, but the arithmetic grows with k and the attention reads the cache
// k + 1 times), and pays only as far as the proposals are accepted. The controller keeps two
// estimates, both learned while generating:
//   - alpha, the probability that a proposed token is accepted given that the ones before it
//     were (from verified steps, and from proposals scored against the tokens produced
//     instead while speculation is off, which cost nothing);
//   - the cost of a forward pass over n tokens, a + b n seconds (a least-squares line through
//     the measured steps, forgetting old ones);
// and picks the k maximising expected tokens per second, (1 + alpha + ... + alpha^k) / cost(1 + k)
// relative to one token per cost(1). When no k > 0 beats plain decoding it returns 0: speculation
// is off until the estimates change (or a probe, below). The choice never changes the output,
// only the speed.
#pragma once

#include <vector>

#include "runtime/spec_params.h"

namespace tqlm::runtime {

class SpecController {
 public:
  explicit SpecController(const SpecParams& params);

  // How many of the `available` proposed tokens the next step should verify (0: decode one).
  // While that is 0, every so often (less often each time it stays 0) a short probe is verified
  // anyway: the cost of verifying is only measured by doing it, and a measurement spoiled by a
  // busy moment must not keep speculation off for good. With prompt lookup, whose proposals
  // are scored while off, probes are taken only while the cost, not the acceptance, is what
  // keeps speculation off.
  int Length(int available);
  // A forward pass over `n_fed` tokens took `seconds` (n_fed = 1: a plain decode step).
  void Timed(int n_fed, double seconds);
  // k proposed tokens of which the first `accepted` were right (verified, or scored while off).
  void Scored(int k, int accepted);

  double alpha() const;
  // Cost of a forward pass over n tokens relative to one token's.
  double RelativeCost(int n) const;

 private:
  // The k > 0 that maximises expected tokens per unit of cost (0: none beats plain decoding),
  // with the measured cost line or the prior one.
  int BestLength(int available, bool prior_cost) const;

  bool adaptive_;
  int max_draft_;
  bool scored_while_off_;  // proposals keep coming while off (prompt lookup): ShadowScore
  // Acceptance: decayed counts of accepted tokens and of first rejections.
  double hits_ = 0, misses_ = 0;
  // Cost line: decayed least-squares sums over (n, seconds).
  double w_ = 0, sn_ = 0, snn_ = 0, sy_ = 0, sny_ = 0;
  bool timed_ = false;
  int idle_ = 0;         // steps without speculation since the last verified one
  int probe_after_ = 0;  // idle steps before the next probe (grows while probes do not pay)
};

// While speculation is off, the proposals it would have made are scored against the tokens
// produced instead (free for prompt lookup), so that the controller notices when they start to
// pay again.
class ShadowScore {
 public:
  bool active() const { return !proposal_.empty(); }
  // Scores at most the first kTokens of the proposal, so that it is decided (and can turn
  // speculation on) within that many tokens, however long the match it came from.
  static constexpr size_t kTokens = 8;
  void Start(std::vector<int> proposal) {
    if (proposal.size() > kTokens) proposal.resize(kTokens);
    proposal_ = std::move(proposal), matched_ = 0;
  }
  void Clear() { proposal_.clear(); }
  // The next token produced; scores the proposal once it is decided.
  void Produced(int token, SpecController& ctl);

 private:
  std::vector<int> proposal_;
  int matched_ = 0;
};

}  // namespace tqlm::runtime
