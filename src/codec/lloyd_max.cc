// LloydMaxCodebook::Get: solve once per (dim, bits, kind), keep for the life of the process.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "codec/coordinate_density.h"
#include "codec/layout.h"
#include "codec/lloyd_max_solver.h"
#include "tqlm/codec.h"
#include "tqlm/error.h"

namespace tqlm::codec {

const LloydMaxCodebook& LloydMaxCodebook::Get(int dim, int bits, CodebookKind kind) {
  if (bits < 1 || bits > kMaxBits) {
    throw Error("codebook: bits must be 1..8, got " + std::to_string(bits));
  }
  if (dim < 3 || dim > 65536) throw Error("codebook: dim must be 3..65536, got " + std::to_string(dim));
  using Key = std::tuple<int, int, int>;
  static std::mutex mu;
  static std::map<Key, std::unique_ptr<const LloydMaxCodebook>> cache;
  // Solving takes milliseconds; holding the lock meanwhile keeps it simple and solves each
  // codebook exactly once. The returned reference stays valid: entries are never erased.
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[Key{dim, bits, int(kind)}];
  if (!slot) {
    const LloydMaxSolution s = SolveLloydMax(CoordinateDensity(dim, kind), bits);
    auto cb = std::make_unique<LloydMaxCodebook>();
    cb->dim = dim;
    cb->bits = bits;
    cb->kind = kind;
    cb->levels.assign(s.levels.begin(), s.levels.end());
    cb->thresholds.assign(s.thresholds.begin(), s.thresholds.end());
    cb->distortion = s.distortion;
    slot = std::move(cb);
  }
  return *slot;
}

int LloydMaxCodebook::Quantize(float t) const {
  // Branchless binary search: the index is the number of thresholds below t.
  int idx = 0;
  for (int step = int(levels.size()) / 2; step >= 1; step /= 2) {
    if (t > thresholds[size_t(idx + step - 1)]) idx += step;
  }
  return idx;
}

}  // namespace tqlm::codec
