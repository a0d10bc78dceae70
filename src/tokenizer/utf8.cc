#include "tokenizer/utf8.h"

namespace tqlm::tokenizer {

size_t Utf8SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xC2) return 0;  // continuation byte, or overlong 2-byte lead
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF5) return 4;
  return 0;
}

namespace {

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Allowed range for the second byte of a sequence, which rules out overlongs, surrogates and
// code points above U+10FFFF (RFC 3629, table 3-7 of the Unicode standard).
void SecondByteRange(uint8_t lead, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (lead == 0xE0) *lo = 0xA0;
  if (lead == 0xED) *hi = 0x9F;
  if (lead == 0xF0) *lo = 0x90;
  if (lead == 0xF4) *hi = 0x8F;
}

}  // namespace

size_t Utf8ValidCharLength(std::string_view s) {
  if (s.empty()) return 0;
  const auto lead = static_cast<uint8_t>(s[0]);
  const size_t n = Utf8SequenceLength(lead);
  if (n <= 1 || n > s.size()) return n == 1 ? 1 : 0;
  uint8_t lo, hi;
  SecondByteRange(lead, &lo, &hi);
  const auto second = static_cast<uint8_t>(s[1]);
  if (second < lo || second > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (!IsContinuation(static_cast<uint8_t>(s[i]))) return 0;
  }
  return n;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = Utf8ValidCharLength(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = Utf8ValidCharLength(s.substr(i));
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

size_t IncompleteUtf8Tail(std::string_view s) {
  // A character is at most 4 bytes, so an unfinished one starts within the last 3 bytes.
  const size_t look = s.size() < 3 ? s.size() : 3;
  for (size_t back = 1; back <= look; ++back) {
    const size_t start = s.size() - back;
    const auto lead = static_cast<uint8_t>(s[start]);
    if (IsContinuation(lead)) continue;
    const size_t n = Utf8SequenceLength(lead);
    if (n <= back) return 0;  // complete (or invalid) character: nothing to hold back
    // Check that the bytes present could still become a valid character.
    if (back >= 2) {
      uint8_t lo, hi;
      SecondByteRange(lead, &lo, &hi);
      const auto second = static_cast<uint8_t>(s[start + 1]);
      if (second < lo || second > hi) return 0;
    }
    return back;
  }
  return 0;
}

void AppendUtf8(uint32_t cpt, std::string* out) {
  if (cpt < 0x80) {
    out->push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

}  // namespace tqlm::tokenizer
