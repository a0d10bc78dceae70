// The tree-walking evaluator behind jinja::Template, and the services the built-in filters,
// tests, methods and globals (jinja_builtins.h) use: limits accounting, attribute/item access
// with jinja2's sandboxed lookup rules, iteration, calls.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "jinja/ast.h"
#include "jinja/template.h"
#include "jinja/value.h"

namespace tqlm::jinja {

// A variable scope: the template's top level, a loop iteration, a macro call.
struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  std::shared_ptr<Frame> parent;

  Value* Find(std::string_view name);
  void Set(const std::string& name, Value v);
};

// Deepest evaluation recursion of one render (expressions inside macro calls inside
// expressions...), so that the native stack stays small.
inline constexpr int kMaxEvalDepth = 1000;

class Interpreter {
 public:
  Interpreter(const RenderOptions& options, Value context);

  std::string Run(const Body& body);

  // Limits.
  void Step(int64_t n = 1);
  void CheckSize(size_t bytes) const;  // a string or list about to be built
  [[noreturn]] void Fail(const std::string& what) const;
  const RenderOptions& options() const { return options_; }

  // jinja2's sandboxed getattr (obj.name) and getitem (obj[key]).
  Value GetAttr(const Value& obj, std::string_view name);
  Value GetItem(const Value& obj, const Value& key);
  // Items of a for loop / list filter: list items, dict keys, string characters; undefined
  // is empty.
  std::vector<Value> Iterate(const Value& v);
  Value Call(const Value& callee, CallArgs& args);
  Value Binary(std::string_view op, const Value& a, const Value& b);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow Exec(const Body& body, std::string& out);
  Flow ExecFor(const Stmt& s, std::string& out);
  void ExecSet(const Stmt& s);
  void DefineMacro(const Stmt& s);
  Value CallMacro(const Stmt& s, const std::weak_ptr<Frame>& closure, CallArgs& args);
  std::string RenderBlock(const Body& body);

  Value Eval(const Expr& e);
  Value EvalSlice(const Expr& e);
  CallArgs EvalArgs(const Expr& e, size_t first_arg);
  Value Lookup(const std::string& name);
  void Bind(Frame& frame, const std::vector<std::string>& targets, const Value& v);
  void Append(std::string& out, std::string_view text);

  RenderOptions options_;
  Value context_;
  std::shared_ptr<Frame> frame_;
  Value pipe_input_;  // a filter block's / block set's rendered body
  int64_t steps_ = 0;
  int64_t loop_iterations_ = 0;
  int call_depth_ = 0;
  int eval_depth_ = 0;
};

}  // namespace tqlm::jinja
