#include "runtime/spec_sampling.h"

#include <algorithm>
#include <unordered_map>

namespace tqlm::runtime {
namespace {
double ProbabilityOf(const SparseDistribution& d, int token) {
  for (const auto& [t, pr] : d)
    if (t == token) return pr;
  return 0;
}
}  // namespace

int SpeculativeSample(const SparseDistribution& p, const SparseDistribution& q, int proposed,
                      std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const double px = ProbabilityOf(p, proposed), qx = ProbabilityOf(q, proposed);
  if (qx <= 0) {  // not a draw from q: plain sampling from p
    double u = uniform(rng);
    for (const auto& [t, pr] : p) {
      u -= pr;
      if (u <= 0) return t;
    }
    return p.back().first;
  }
  if (uniform(rng) * qx < px) return proposed;  // accept with probability min(1, p/q)
  // Residual: max(0, p - q) over p's support (q's tokens outside it have p = 0).
  std::unordered_map<int, double> qmap(q.begin(), q.end());
  std::vector<std::pair<int, double>> residual;
  double total = 0;
  for (const auto& [t, pr] : p) {
    const auto it = qmap.find(t);
    const double r = pr - (it == qmap.end() ? 0.0 : it->second);
    if (r > 0) residual.push_back({t, r}), total += r;
  }
  // Rounding can leave nothing when p == q (then acceptance was certain up to rounding).
  if (residual.empty()) return proposed;
  double u = uniform(rng) * total;
  for (const auto& [t, r] : residual) {
    u -= r;
    if (u <= 0) return t;
  }
  return residual.back().first;
}

}  // namespace tqlm::runtime
