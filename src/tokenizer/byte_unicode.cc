#include "tokenizer/byte_unicode.h"

#include <array>

#include "tokenizer/utf8.h"

namespace tqlm::tokenizer {

namespace {

bool MapsToItself(uint8_t b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

struct ByteTables {
  std::array<uint32_t, 256> cpt{};
  std::array<std::string, 256> utf8;
  std::array<int16_t, 512> byte_of_cpt{};  // every mapped code point is < 0x144

  ByteTables() {
    byte_of_cpt.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const auto byte = static_cast<uint8_t>(b);
      cpt[b] = MapsToItself(byte) ? static_cast<uint32_t>(b) : next++;
      AppendUtf8(cpt[b], &utf8[b]);
      byte_of_cpt[cpt[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteTables& Tables() {
  static const ByteTables tables;
  return tables;
}

}  // namespace

uint32_t ByteToCodepoint(uint8_t b) { return Tables().cpt[b]; }

int CodepointToByte(uint32_t cpt) {
  return cpt < Tables().byte_of_cpt.size() ? Tables().byte_of_cpt[cpt] : -1;
}

std::string_view ByteToUtf8(uint8_t b) { return Tables().utf8[b]; }

std::string EncodeByteLevel(std::string_view raw) {
  const ByteTables& t = Tables();
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) out += t.utf8[static_cast<uint8_t>(c)];
  return out;
}

std::string DecodeByteLevel(std::string_view token_text) {
  std::string out;
  out.reserve(token_text.size());
  size_t i = 0;
  while (i < token_text.size()) {
    const auto lead = static_cast<uint8_t>(token_text[i]);
    // The mapping only uses U+0021..U+0143: one- or two-byte characters.
    if (lead < 0x80) {
      const int b = CodepointToByte(lead);
      out.push_back(b >= 0 ? static_cast<char>(b) : static_cast<char>(lead));
      ++i;
      continue;
    }
    const size_t n = Utf8ValidCharLength(token_text.substr(i));
    if (n == 2) {
      const uint32_t cpt = ((lead & 0x1Fu) << 6) | (static_cast<uint8_t>(token_text[i + 1]) & 0x3Fu);
      const int b = CodepointToByte(cpt);
      if (b >= 0) {
        out.push_back(static_cast<char>(b));
        i += 2;
        continue;
      }
    }
    const size_t len = n == 0 ? 1 : n;
    out.append(token_text.data() + i, len);
    i += len;
  }
  return out;
}

}  // namespace tqlm::tokenizer
