// Syntax tree of a parsed Jinja template (built by jinja_parser, run by jinja_interpreter).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "jinja/value.h"

namespace tqlm::jinja {

enum class ExprKind {
  kLiteral,    // literal
  kName,       // name
  kList,       // args: items
  kTuple,      // args: items
  kDict,       // args: key, value, key, value...
  kGetAttr,    // args[0].name
  kGetItem,    // args[0][args[1]]
  kSlice,      // args[0][args[1]:args[2]:args[3]] (null parts omitted)
  kCall,       // args[0](args[1..], kwargs)
  kFilter,     // args[0] | name(args[1..], kwargs); args[0] null: the filter block's input
  kTest,       // args[0] is [not] name(args[1..], kwargs)
  kNot,        // not args[0]
  kNegate,     // -args[0]
  kPlus,       // +args[0]
  kBinary,     // args[0] name args[1]: + - * / // % ** ~ == != < <= > >= in notin
  kAnd,        // args[0] and args[1]
  kOr,         // args[0] or args[1]
  kCondition,  // args[0] if args[1] else args[2] (args[2] may be null)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0;
  Value literal;
  std::string name;
  bool negated = false;  // kTest: "is not"
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

enum class StmtKind {
  kText,        // text
  kOutput,      // {{ expr }}
  kIf,          // branches (cond, body)..., else_body
  kFor,         // targets in expr [if cond]: body, else_body
  kSet,         // targets = expr; or attr set (targets[0].attr = expr); or block set with filter
  kMacro,       // name(params = defaults): body
  kBreak,
  kContinue,
  kFilterBlock, // {% filter f %} body: filter applied to the rendered body
  kScope,       // body rendered in place ({% generation %})
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;
  std::string name;                 // macro name; namespace attribute for attr set
  ExprPtr expr;                     // output / for iterable / set value
  ExprPtr cond;                     // for filter
  ExprPtr filter;                   // block set / filter block: a kFilter chain on null input
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;    // per param, null when none
  Body body;
  Body else_body;
};

}  // namespace tqlm::jinja
