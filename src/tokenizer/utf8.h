// UTF-8 helpers for the tokenizer: repairing invalid input before the Unicode regexes see it,
// and finding where a byte stream stops in the middle of a character (streaming output).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tqlm::tokenizer {

// Length of the UTF-8 sequence a lead byte announces (1..4), or 0 for a byte that cannot start
// one (continuation bytes 0x80-0xBF, 0xC0/0xC1, 0xF5-0xFF).
size_t Utf8SequenceLength(uint8_t lead);

// Length of the well-formed UTF-8 character at the start of `s` (1..4), or 0 if `s` does not
// start with one (invalid, overlong, surrogate, beyond U+10FFFF, or cut short).
size_t Utf8ValidCharLength(std::string_view s);

// True if all of `s` is well-formed UTF-8.
bool IsValidUtf8(std::string_view s);

// `s` with every byte that does not begin a well-formed character replaced by U+FFFD, one
// replacement per bad byte, as llama.cpp does before pre-tokenization.
std::string SanitizeUtf8(std::string_view s);

// Number of bytes at the end of `s` that are a proper prefix of a well-formed character, i.e.
// bytes a streaming printer should hold back until more arrive (0..3).
size_t IncompleteUtf8Tail(std::string_view s);

// Appends the UTF-8 encoding of a code point (<= U+10FFFF) to `out`.
void AppendUtf8(uint32_t cpt, std::string* out);

}  // namespace tqlm::tokenizer
