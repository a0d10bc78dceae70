// Prompt lookup (n-gram speculation): the next tokens of a text often repeat an earlier part of
// it (code being edited, a quoted document, a list being continued). The proposal is what
// followed the latest earlier occurrence of the text's last n tokens, trying the longest n
// first; no second model, nothing learned.
#pragma once

#include <span>
#include <vector>

namespace tqlm::runtime {

// Up to `max_tokens` tokens that followed the latest earlier occurrence of the last n tokens of
// `context`, for n from n_max down to n_min (the first n that occurs wins); empty when none
// does. Throws tqlm::Error unless 1 <= n_min <= n_max.
std::vector<int> NgramPropose(std::span<const int> context, int n_min, int n_max, int max_tokens);

}  // namespace tqlm::runtime
