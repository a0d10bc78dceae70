// Jinja parser: tokens -> syntax tree, following jinja2's grammar and operator precedence
// (or < and < not < comparisons < + - < ~ < * / // % < ** < unary < filters/tests < postfix).
// Nesting of expressions and blocks is bounded so that hostile input cannot exhaust the stack.
#pragma once

#include <vector>

#include "jinja/ast.h"
#include "jinja/lexer.h"

namespace tqlm::jinja {

// Bounds the syntax tree's depth (and so the recursion of evaluating and destroying it):
// every nested expression or block and every link of an operator/filter/attribute chain
// counts one level.
inline constexpr int kMaxParseDepth = 256;

// Throws tqlm::Error with the line on syntax errors and unsupported tags (include, extends,
// import, call, ...: a chat template gets no I/O).
Body Parse(const std::vector<Token>& tokens);

}  // namespace tqlm::jinja
