#include "runtime/ngram_proposer.h"

#include <fmt/format.h>

#include <algorithm>

#include "tqlm/error.h"

namespace tqlm::runtime {

std::vector<int> NgramPropose(std::span<const int> context, int n_min, int n_max,
                              int max_tokens) {
  if (n_min < 1 || n_max < n_min)
    throw Error(fmt::format("n-gram lengths must satisfy 1 <= min <= max (got {} and {})", n_min,
                            n_max));
  std::vector<int> out;
  const int L = int(context.size());
  if (max_tokens <= 0) return out;
  for (int n = std::min(n_max, L - 1); n >= n_min; --n) {
    const std::span<const int> suffix = context.subspan(size_t(L - n));
    // Occurrences ending at e < L (so at least one token follows), the latest first: the text
    // nearest the end is the likeliest to be continued the same way.
    for (int e = L - 1; e >= n; --e) {
      if (context[size_t(e - 1)] != suffix.back()) continue;
      if (!std::equal(suffix.begin(), suffix.end(), context.begin() + (e - n))) continue;
      const int take = std::min(max_tokens, L - e);
      out.assign(context.begin() + e, context.begin() + e + take);
      return out;
    }
  }
  return out;
}

}  // namespace tqlm::runtime
