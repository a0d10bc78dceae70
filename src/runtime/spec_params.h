// Speculative decoding options and counters (issue 28). Speculation proposes several tokens,
// the target model verifies them in one forward pass (its weights read once for all of them),
// and the stream keeps the longest prefix that it would have produced itself: the output is
// the same token for token (greedy) or in distribution (sampling) as without speculation.
#pragma once

#include <cstdint>
#include <string>

namespace tqlm::runtime {

enum class SpecMode {
  kNone,
  kNgram,  // prompt lookup: continue the latest earlier occurrence of the last few tokens
  kDraft,  // a small draft model with the same vocabulary proposes (see speculative.h)
};

struct SpecParams {
  SpecMode mode = SpecMode::kNone;
  int max_draft = 16;   // --spec-max: most tokens proposed per verification step
  int ngram_min = 2;    // --spec-ngram-min / --spec-ngram-max: suffix lengths looked up,
  int ngram_max = 4;    //   longest first (a one-token suffix matches too much of a text)
  float draft_min_p = 0.0f;  // --spec-min-p: the draft stops proposing below this probability
  // Let the proposal length follow the measured acceptance and cost (spec_controller.h), down
  // to no speculation at all; off: always propose as much as there is (tests, measurements).
  bool adaptive = true;
};

struct SpecStats {
  int64_t steps = 0;      // verification forward passes (with at least one proposed token)
  int64_t proposed = 0;   // proposed tokens verified
  int64_t accepted = 0;   // of which the target kept
  double AcceptanceRate() const { return proposed > 0 ? double(accepted) / double(proposed) : 0; }
  SpecStats& operator+=(const SpecStats& o) {
    steps += o.steps;
    proposed += o.proposed;
    accepted += o.accepted;
    return *this;
  }
};

// "none", "ngram", "draft"; anything else is a tqlm::Error naming the choices.
SpecMode ParseSpecMode(const std::string& name);
const char* SpecModeName(SpecMode mode);

}  // namespace tqlm::runtime
