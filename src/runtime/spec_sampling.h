// Speculative sampling (Leviathan et al. 2023, Chen et al. 2023): a draft drew token x from its
// distribution q; the target, whose distribution is p, keeps x with probability min(1, p(x)/q(x))
// and otherwise draws from the residual max(0, p - q), renormalised. Whatever q is, the token
// that comes out is distributed exactly as p, and the draft is accepted with probability
// sum_x min(p(x), q(x)), the most any scheme that keeps p can accept.
#pragma once

#include <random>

#include "runtime/sampler.h"

namespace tqlm::runtime {

// `proposed` must have q(proposed) > 0. Returns `proposed` exactly when it is accepted.
int SpeculativeSample(const SparseDistribution& p, const SparseDistribution& q, int proposed,
                      std::mt19937_64& rng);

}  // namespace tqlm::runtime
