#include "eval/niah.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "chat/render.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

// Names that do not occur in the Austen filler, so the needle is the only place they appear.
constexpr const char* kFirst[] = {"Ottilie", "Bartholomew", "Zenobia", "Leopold", "Marisol",
                                  "Thaddeus", "Ingrid",      "Casimir", "Rosalind", "Evander",
                                  "Philippa", "Ignatius"};
constexpr const char* kLast[] = {"Quimby",   "Vasquez", "Okonkwo", "Lindqvist", "Castellano",
                                 "Pemberly", "Haldane", "Moreau",  "Ferreira",  "Kowalski"};

std::string Sentence(int phrasing, const std::string& name, const std::string& number) {
  switch (phrasing % kNeedlePhrasings) {
    case 0: return fmt::format("The secret number of {} is {}.", name, number);
    case 1: return fmt::format("{}'s secret number is {}.", name, number);
    default:
      return fmt::format("Remember this: the secret number that belongs to {} is {}.", name,
                         number);
  }
}

const char* kInstruction =
    "Read the following text. Somewhere in it a secret number is mentioned; you will be asked "
    "about it at the end.\n\n";

std::string UserText(const std::string& before, const std::string& sentence,
                     const std::string& after, const std::string& question) {
  return std::string(kInstruction) + before + " " + sentence + " " + after + "\n\n" + question;
}

std::vector<int> ChatTokens(const tokenizer::Tokenizer& tok, const chat::ChatFormatter& chat,
                            const std::string& user) {
  const std::vector<chat::ChatMessage> messages = {{"user", user}};
  return chat::RenderChat(tok, chat, messages).tokens;
}

}  // namespace

Needle MakeNeedle(uint64_t seed, int phrasing) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 12345);
  Needle n;
  n.name = std::string(kFirst[rng() % std::size(kFirst)]) + " " + kLast[rng() % std::size(kLast)];
  n.number = std::to_string(10000 + rng() % 90000);
  n.phrasing = phrasing % kNeedlePhrasings;
  n.sentence = Sentence(n.phrasing, n.name, n.number);
  n.question = fmt::format("What is the secret number of {}? Answer with the number only.", n.name);
  return n;
}

NiahPrompt BuildNiahPrompt(const tokenizer::Tokenizer& tok, const chat::ChatFormatter& chat,
                           std::span<const int> corpus, int length, double depth,
                           const Needle& needle, uint64_t seed) {
  if (depth < 0 || depth > 1) throw Error(fmt::format("niah: depth {} outside [0, 1]", depth));
  const int overhead = int(ChatTokens(tok, chat, UserText("", needle.sentence, "", needle.question)).size());
  const int filler = length - overhead;
  if (filler < 16)
    throw Error(fmt::format("niah: length {} leaves no room for filler (the prompt without "
                            "filler is {} tokens)",
                            length, overhead));
  if (size_t(filler) + 1 > corpus.size())
    throw Error(fmt::format("niah: the corpus has {} tokens, fewer than the {} of filler needed",
                            corpus.size(), filler));
  std::mt19937_64 rng(seed ^ 0xA5A5A5A5ull);
  const size_t start = rng() % (corpus.size() - size_t(filler));
  const std::span<const int> text = corpus.subspan(start, size_t(filler));
  // Insert after the first token at or past the depth that ends a sentence (or paragraph),
  // so the needle reads as a sentence of its own; the very end if none follows.
  int cut = std::clamp(int(depth * filler + 0.5), 0, filler);
  while (cut > 0 && cut < filler) {
    const std::string piece = tok.Decode(text.subspan(size_t(cut) - 1, 1));
    if (piece.find_first_of(".!?\n") != std::string::npos) break;
    ++cut;
  }
  const std::string before = tok.Decode(text.subspan(0, size_t(cut)));
  const std::string after = tok.Decode(text.subspan(size_t(cut)));
  NiahPrompt p;
  p.tokens = ChatTokens(tok, chat, UserText(before, needle.sentence, after, needle.question));
  p.filler_tokens = filler;
  p.depth = double(cut) / filler;
  return p;
}

bool NiahCorrect(const std::string& answer, const Needle& needle) {
  return answer.find(needle.number) != std::string::npos;
}

}  // namespace tqlm::eval
