// GPT-2's reversible byte <-> Unicode mapping. Byte-level BPE vocabularies store every token as
// a string of "printable" code points, one per byte: bytes that are visible Latin-1 characters
// ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) map to themselves, the other 68 bytes (controls,
// space, 0x7F-0xA0, 0xAD) to U+0100, U+0101, ... in byte order. So ' ' is stored as 'Ġ'
// (U+0120) and '\n' as 'Ċ' (U+010A).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tqlm::tokenizer {

// Code point that byte `b` is stored as.
uint32_t ByteToCodepoint(uint8_t b);

// Byte that code point `cpt` stands for, or -1 if `cpt` is not in the mapping.
int CodepointToByte(uint32_t cpt);

// The UTF-8 string of ByteToCodepoint(b) (1 or 2 bytes), from a table built once.
std::string_view ByteToUtf8(uint8_t b);

// Raw bytes -> their byte-level (token text) form.
std::string EncodeByteLevel(std::string_view raw);

// Token text -> raw bytes. Characters outside the mapping (which a well-formed byte-level
// vocabulary never contains) are copied through unchanged.
std::string DecodeByteLevel(std::string_view token_text);

}  // namespace tqlm::tokenizer
