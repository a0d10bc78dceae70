// Needle in a haystack: a unique fact (a random 5-digit number bound to a random name, in one
// of several phrasings) inserted at a relative depth of filler text from the corpus, a
// question at the end, and an exact-substring check of the model's greedy answer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "chat/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::eval {

struct Needle {
  std::string name;
  std::string number;  // 5 digits
  int phrasing = 0;    // index into the needle sentence templates
  std::string sentence;
  std::string question;
};

inline constexpr int kNeedlePhrasings = 3;

// Deterministic in (seed, phrasing): same needle on every run and machine.
Needle MakeNeedle(uint64_t seed, int phrasing);

struct NiahPrompt {
  std::vector<int> tokens;  // the whole chat prompt, ready to feed
  int filler_tokens = 0;    // filler tokens around the needle
  double depth = 0;         // where the needle landed: filler tokens before it / filler_tokens
};

// Builds the chat prompt of about `length` tokens (user turn: instruction, filler with the
// needle at `depth` of the filler, question; then the assistant's turn opens). The filler is
// a run of `corpus` tokens starting at an offset drawn from `seed`; the needle goes in at the
// first sentence end at or after the depth. Throws tqlm::Error if the corpus is too short or
// `length` leaves no room for filler.
NiahPrompt BuildNiahPrompt(const tokenizer::Tokenizer& tok, const chat::ChatFormatter& chat,
                           std::span<const int> corpus, int length, double depth,
                           const Needle& needle, uint64_t seed);

// Exact substring check of the needle's number in the answer.
bool NiahCorrect(const std::string& answer, const Needle& needle);

}  // namespace tqlm::eval
