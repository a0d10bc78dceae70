#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace tqlm::tokenizer {

SpecialTokenSplitter::SpecialTokenSplitter(std::vector<SpecialToken> tokens)
    : tokens_(std::move(tokens)) {
  tokens_.erase(std::remove_if(tokens_.begin(), tokens_.end(),
                               [](const SpecialToken& t) { return t.text.empty(); }),
                tokens_.end());
  // Stable, so that equal-length tokens keep id order (deterministic).
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const SpecialToken& a, const SpecialToken& b) {
    return a.text.size() > b.text.size();
  });
}

std::vector<Fragment> SpecialTokenSplitter::Split(std::string_view text, bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({text, kNoToken});
  std::vector<Fragment> next;
  for (const SpecialToken& special : tokens_) {
    if (!parse_special && !special.always) continue;
    // Cheap rejection: most special tokens never occur in a given text.
    if (text.find(special.text) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.token != kNoToken) {
        next.push_back(fragment);
        continue;
      }
      std::string_view rest = fragment.text;
      for (;;) {
        const size_t at = rest.find(special.text);
        if (at == std::string_view::npos) {
          if (!rest.empty()) next.push_back({rest, kNoToken});
          break;
        }
        if (at > 0) next.push_back({rest.substr(0, at), kNoToken});
        next.push_back({rest.substr(at, special.text.size()), special.id});
        rest.remove_prefix(at + special.text.size());
      }
    }
    fragments.swap(next);
  }
  return fragments;
}

}  // namespace tqlm::tokenizer
