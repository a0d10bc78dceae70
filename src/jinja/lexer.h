// Jinja lexer: template source -> tokens, with jinja2's whitespace handling as HF transformers
// configures it (trim_blocks and lstrip_blocks on, keep_trailing_newline off): newlines are
// normalized to "\n", one trailing newline is dropped, "{%-"/"-%}" strip whitespace, "{%+"
// keeps it, comments vanish and {% raw %} bodies become plain text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tqlm::jinja {

enum class TokenKind {
  kData, kVariableBegin, kVariableEnd, kBlockBegin, kBlockEnd,
  kName, kString, kInteger, kFloat, kOperator, kEnd
};

struct Token {
  TokenKind kind;
  std::string text;  // data text, name, decoded string literal, number text, operator
  int line = 1;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

// Throws tqlm::Error on malformed source (unterminated tag, comment, string, raw block).
std::vector<Token> Lex(std::string_view source, const LexOptions& options = {});

}  // namespace tqlm::jinja
