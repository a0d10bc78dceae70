#include "runtime/spec_controller.h"

#include <algorithm>
#include <cmath>

namespace tqlm::runtime {
namespace {
// Old observations fade so that the estimates follow the text: after a code block ends and
// prose begins, about 1 / (1 - decay) steps later the old acceptance no longer counts.
constexpr double kDecay = 0.95;
// Before any observation: a weak prior of half a hit and half a miss (alpha = 0.5), so
// speculation is tried and then follows what it measures; weak, so that a run of rejections
// can take alpha near 0 (down to 0.5 / (1 / (1 - kDecay) + 1)).
constexpr double kPriorHits = 0.5, kPriorMisses = 0.5;
// With prompt lookup the proposals made while off are scored for free, so nothing needs to be
// verified on faith: the prior is one miss (alpha 0) and the first scored proposals decide
// (prose, where lookups rarely match, then never pays for a verification it did not earn).
// Before the cost line can be fitted (every step so far fed the same number of tokens): each
// extra token assumed to cost this fraction of a one-token step. Weighted as one observation,
// it only matters until steps of two different sizes have been measured.
constexpr double kPriorExtraCost = 0.1;
// Probes while speculation is off: after kFirstProbe idle steps, then twice as many each time up
// to kLastProbe (so they cost a small and shrinking share of the steps), kProbeLength tokens.
constexpr int kFirstProbe = 16, kLastProbe = 512, kProbeLength = 4;
}  // namespace

SpecController::SpecController(const SpecParams& params)
    : adaptive_(params.adaptive), max_draft_(std::max(0, params.max_draft)),
      scored_while_off_(params.mode == SpecMode::kNgram), probe_after_(kFirstProbe) {}

double SpecController::alpha() const {
  const double ph = scored_while_off_ ? 0.0 : kPriorHits;
  const double pm = scored_while_off_ ? 1.0 : kPriorMisses;
  return (hits_ + ph) / (hits_ + misses_ + ph + pm);
}

double SpecController::RelativeCost(int n) const {
  double a = 1, b = kPriorExtraCost;  // in units of a one-token step until measured
  if (timed_) {
    const double mean_n = sn_ / w_, mean_y = sy_ / w_;
    const double var = snn_ / w_ - mean_n * mean_n;
    if (var > 1e-9) {
      b = (sny_ / w_ - mean_n * mean_y) / var;
      a = mean_y - b * mean_n;
    } else {  // one size only: split its time with the prior ratio
      a = mean_y / (1 + kPriorExtraCost * mean_n);
      b = a * kPriorExtraCost;
    }
    // Noise (a shared machine) can tilt the line; a step never costs less than a smaller one.
    b = std::max(b, 0.0);
    a = std::max(a, 1e-3 * (a + b * mean_n));
  }
  return (a + b * n) / (a + b);
}

int SpecController::BestLength(int available, bool prior_cost) const {
  const double al = alpha();
  int best = 0;
  double best_gain = 1.0, expected = 0, term = 1;
  for (int k = 1; k <= available; ++k) {
    term *= al;
    expected += term;
    const double cost =
        prior_cost ? (1 + kPriorExtraCost * (1 + k)) / (1 + kPriorExtraCost) : RelativeCost(1 + k);
    const double gain = (1 + expected) / cost;
    if (gain > best_gain) best_gain = gain, best = k;
  }
  return best;
}

int SpecController::Length(int available) {
  available = std::min(available, max_draft_);
  if (!adaptive_ || available <= 0) return std::max(available, 0);
  const int best = BestLength(available, false);
  if (best > 0) {
    idle_ = 0;
    probe_after_ = kFirstProbe;
    return best;
  }
  // Proposals scored while off keep alpha current for free; when alpha alone rules
  // speculation out (it would not pay even at the cheap prior cost), a probe could only
  // re-measure the cost, which is not what keeps it off: none (prose stays at plain decoding).
  if (scored_while_off_ && BestLength(available, true) == 0) return 0;
  if (++idle_ < probe_after_) return 0;
  idle_ = 0;
  probe_after_ = std::min(2 * probe_after_, kLastProbe);
  return std::min(available, kProbeLength);
}

void SpecController::Timed(int n_fed, double seconds) {
  if (n_fed < 1 || !(seconds > 0)) return;
  w_ = w_ * kDecay + 1;
  sn_ = sn_ * kDecay + n_fed;
  snn_ = snn_ * kDecay + double(n_fed) * n_fed;
  sy_ = sy_ * kDecay + seconds;
  sny_ = sny_ * kDecay + n_fed * seconds;
  timed_ = true;
}

void SpecController::Scored(int k, int accepted) {
  if (k <= 0) return;
  accepted = std::clamp(accepted, 0, k);
  hits_ = hits_ * kDecay + accepted;
  misses_ = misses_ * kDecay + (accepted < k ? 1 : 0);
}

void ShadowScore::Produced(int token, SpecController& ctl) {
  if (proposal_.empty()) return;
  if (proposal_[size_t(matched_)] == token && ++matched_ < int(proposal_.size())) return;
  ctl.Scored(int(proposal_.size()), matched_);
  proposal_.clear();
}

}  // namespace tqlm::runtime
