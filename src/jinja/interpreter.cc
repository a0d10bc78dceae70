#include "jinja/interpreter.h"

#include <algorithm>

#include "jinja/builtins.h"
#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "tqlm/error.h"

namespace tqlm::jinja {

Value* Frame::Find(std::string_view name) {
  for (auto& [k, v] : vars) {
    if (k == name) return &v;
  }
  return nullptr;
}

void Frame::Set(const std::string& name, Value v) {
  if (Value* old = Find(name)) {
    *old = std::move(v);
  } else {
    vars.emplace_back(name, std::move(v));
  }
}

Interpreter::Interpreter(const RenderOptions& options, Value context)
    : options_(options), context_(std::move(context)), frame_(std::make_shared<Frame>()) {}

void Interpreter::Fail(const std::string& what) const { throw Error("chat template: " + what); }

void Interpreter::Step(int64_t n) {
  steps_ += n;
  if (steps_ > options_.limits.max_steps) {
    Fail("step limit exceeded (" + std::to_string(options_.limits.max_steps) + " steps)");
  }
}

void Interpreter::CheckSize(size_t bytes) const {
  if (bytes > options_.limits.max_string_bytes) {
    Fail("string or list size limit exceeded (" +
         std::to_string(options_.limits.max_string_bytes) + ")");
  }
}

void Interpreter::Append(std::string& out, std::string_view text) {
  Step(1 + int64_t(text.size() / 256));
  if (out.size() + text.size() > options_.limits.max_output_bytes) {
    Fail("output size limit exceeded (" + std::to_string(options_.limits.max_output_bytes) +
         " bytes)");
  }
  out += text;
}

std::string Interpreter::Run(const Body& body) {
  std::string out;
  if (Exec(body, out) != Flow::kNormal) Fail("'break' or 'continue' outside a loop");
  return out;
}

Interpreter::Flow Interpreter::Exec(const Body& body, std::string& out) {
  for (const StmtPtr& sp : body) {
    const Stmt& s = *sp;
    Step();
    switch (s.kind) {
      case StmtKind::kText: Append(out, s.text); break;
      case StmtKind::kOutput: {
        const Value v = Eval(*s.expr);
        Step(v.weight());
        Append(out, v.ToStr());
        break;
      }
      case StmtKind::kIf: {
        const Body* chosen = &s.else_body;
        for (const auto& [cond, b] : s.branches) {
          if (Eval(*cond).Truthy()) {
            chosen = &b;
            break;
          }
        }
        const Flow f = Exec(*chosen, out);
        if (f != Flow::kNormal) return f;
        break;
      }
      case StmtKind::kFor: {
        ExecFor(s, out);
        break;
      }
      case StmtKind::kSet: ExecSet(s); break;
      case StmtKind::kMacro: DefineMacro(s); break;
      case StmtKind::kBreak: return Flow::kBreak;
      case StmtKind::kContinue: return Flow::kContinue;
      case StmtKind::kFilterBlock: {
        pipe_input_ = Value::String(RenderBlock(s.body));
        Append(out, Eval(*s.filter).ToStr());
        break;
      }
      case StmtKind::kScope: {
        const Flow f = Exec(s.body, out);
        if (f != Flow::kNormal) return f;
        break;
      }
    }
  }
  return Flow::kNormal;
}

std::string Interpreter::RenderBlock(const Body& body) {
  std::string text;
  if (Exec(body, text) != Flow::kNormal) Fail("'break' or 'continue' outside a loop");
  return text;
}

void Interpreter::Bind(Frame& frame, const std::vector<std::string>& targets, const Value& v) {
  if (targets.size() == 1) {
    frame.Set(targets[0], v);
    return;
  }
  std::vector<Value> parts = Iterate(v);
  if (parts.size() != targets.size()) {
    Fail("cannot unpack " + std::to_string(parts.size()) + " values into " +
         std::to_string(targets.size()) + " names");
  }
  for (size_t k = 0; k < targets.size(); ++k) frame.Set(targets[k], parts[k]);
}

Interpreter::Flow Interpreter::ExecFor(const Stmt& s, std::string& out) {
  const std::vector<Value> all = Iterate(Eval(*s.expr));
  std::vector<Value> items;
  const std::shared_ptr<Frame> outer = frame_;
  struct Restore {
    Interpreter& in;
    std::shared_ptr<Frame> f;
    ~Restore() { in.frame_ = f; }
  } restore{*this, outer};
  if (s.cond) {
    for (const Value& v : all) {
      frame_ = std::make_shared<Frame>();
      frame_->parent = outer;
      Bind(*frame_, s.targets, v);
      if (Eval(*s.cond).Truthy()) items.push_back(v);
      frame_ = outer;
    }
  } else {
    items = all;
  }
  const int64_t n = int64_t(items.size());
  for (int64_t k = 0; k < n; ++k) {
    if (++loop_iterations_ > options_.limits.max_loop_iterations) {
      Fail("loop iteration limit exceeded (" +
           std::to_string(options_.limits.max_loop_iterations) + ")");
    }
    frame_ = std::make_shared<Frame>();
    frame_->parent = outer;
    Bind(*frame_, s.targets, items[size_t(k)]);
    const Value prev = k > 0 ? items[size_t(k - 1)] : Value::Undefined("loop.previtem");
    const Value next = k + 1 < n ? items[size_t(k + 1)] : Value::Undefined("loop.nextitem");
    Value cycle = Value::Function("loop.cycle", [k](Interpreter& in, CallArgs& a) {
      if (a.positional.empty()) in.Fail("loop.cycle() needs at least one argument");
      return a.positional[size_t(k) % a.positional.size()];
    });
    frame_->Set("loop", Value::Dict({{"index0", Value::Int(k)},
                                      {"index", Value::Int(k + 1)},
                                      {"revindex0", Value::Int(n - k - 1)},
                                      {"revindex", Value::Int(n - k)},
                                      {"first", Value::Bool(k == 0)},
                                      {"last", Value::Bool(k == n - 1)},
                                      {"length", Value::Int(n)},
                                      {"depth", Value::Int(1)},
                                      {"depth0", Value::Int(0)},
                                      {"previtem", prev},
                                      {"nextitem", next},
                                      {"cycle", cycle}}));
    const Flow f = Exec(s.body, out);
    if (f == Flow::kBreak) break;
  }
  frame_ = outer;
  if (n == 0) {
    const Flow f = Exec(s.else_body, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

void Interpreter::ExecSet(const Stmt& s) {
  if (!s.name.empty()) {
    Value target = Lookup(s.targets[0]);
    if (target.kind() != Kind::kNamespace) {
      Fail("cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
    }
    target.SetAttribute(s.name, Eval(*s.expr));
    return;
  }
  Value v;
  if (s.expr) {
    v = Eval(*s.expr);
  } else {
    v = Value::String(RenderBlock(s.body));
    if (s.filter) {
      pipe_input_ = v;
      v = Eval(*s.filter);
    }
  }
  Bind(*frame_, s.targets, v);
}

void Interpreter::DefineMacro(const Stmt& s) {
  // The closure is weak: a frame holding its own macro must not keep itself alive.
  std::weak_ptr<Frame> closure = frame_;
  const Stmt* def = &s;
  frame_->Set(s.name, Value::Function(s.name, [def, closure](Interpreter& in, CallArgs& a) {
    return in.CallMacro(*def, closure, a);
  }));
}

Value Interpreter::CallMacro(const Stmt& s, const std::weak_ptr<Frame>& closure,
                             CallArgs& args) {
  std::shared_ptr<Frame> parent = closure.lock();
  if (!parent) Fail("macro '" + s.name + "' called outside the scope that defined it");
  if (call_depth_ >= options_.limits.max_call_depth) {
    Fail("macro recursion limit exceeded (depth " +
         std::to_string(options_.limits.max_call_depth) + ")");
  }
  if (args.positional.size() > s.params.size()) {
    Fail("macro '" + s.name + "' takes " + std::to_string(s.params.size()) +
         " arguments, got " + std::to_string(args.positional.size()));
  }
  auto frame = std::make_shared<Frame>();
  frame->parent = parent;
  const std::shared_ptr<Frame> saved = frame_;
  struct Restore {
    Interpreter& in;
    std::shared_ptr<Frame> f;
    ~Restore() {
      in.frame_ = f;
      --in.call_depth_;
    }
  } restore{*this, saved};
  ++call_depth_;
  frame_ = frame;
  for (const auto& [k, v] : args.keyword) {
    if (std::find(s.params.begin(), s.params.end(), k) == s.params.end()) {
      Fail("macro '" + s.name + "' has no argument '" + k + "'");
    }
  }
  for (size_t p = 0; p < s.params.size(); ++p) {
    Value v;
    bool given = false;
    if (p < args.positional.size()) {
      v = args.positional[p];
      given = true;
    }
    for (const auto& [k, kv] : args.keyword) {
      if (k == s.params[p]) {
        v = kv;
        given = true;
      }
    }
    if (!given) v = s.defaults[p] ? Eval(*s.defaults[p]) : Value::Undefined(s.params[p]);
    frame->Set(s.params[p], v);
  }
  return Value::String(RenderBlock(s.body));
}

Value Interpreter::Lookup(const std::string& name) {
  for (Frame* f = frame_.get(); f; f = f->parent.get()) {
    if (Value* v = f->Find(name)) return *v;
  }
  if (const Value* v = context_.Find(name)) return *v;
  Value g = GlobalFunction(name);
  if (!g.is_undefined()) return g;
  return Value::Undefined(name);
}

CallArgs Interpreter::EvalArgs(const Expr& e, size_t first_arg) {
  CallArgs a;
  for (size_t k = first_arg; k < e.args.size(); ++k) a.positional.push_back(Eval(*e.args[k]));
  for (const auto& [name, ex] : e.kwargs) a.keyword.emplace_back(name, Eval(*ex));
  return a;
}

Value Interpreter::Call(const Value& callee, CallArgs& args) {
  if (callee.kind() == Kind::kFunction) return callee.function().call(*this, args);
  if (callee.is_undefined()) Fail("'" + callee.str() + "' is undefined");
  Fail("'" + std::string(callee.TypeName()) + "' object is not callable");
}

Value Interpreter::GetAttr(const Value& obj, std::string_view name) {
  Step(1 + int64_t(obj.entries().size() / 32));
  switch (obj.kind()) {
    case Kind::kUndefined:
      Fail("'" + obj.str() + "' is undefined (getting attribute '" + std::string(name) + "')");
    case Kind::kDict: {
      Value m = BoundMethod(obj, name);
      if (!m.is_undefined()) return m;
      if (const Value* v = obj.Find(name)) return *v;
      break;
    }
    case Kind::kNamespace:
      if (const Value* v = obj.Find(name)) return *v;
      break;
    case Kind::kString:
    case Kind::kList: return BoundMethod(obj, name);
    default: break;
  }
  return Value::Undefined(std::string(name));
}

Value Interpreter::GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) Fail("'" + obj.str() + "' is undefined (subscripted)");
  Step(1 + int64_t(obj.entries().size() / 32) + (obj.is_string() ? obj.weight() : 0));
  if ((obj.is_list() || obj.is_string()) && key.is_integral()) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      const int64_t n = int64_t(obj.items().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined("index " + std::to_string(key.as_int()));
      return obj.items()[size_t(i)];
    }
    const std::vector<std::string_view> cps = SplitCodePoints(obj.str());
    const int64_t n = int64_t(cps.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::Undefined("index " + std::to_string(key.as_int()));
    return Value::String(std::string(cps[size_t(i)]));
  }
  if (key.is_string()) {
    if (obj.is_dict() || obj.kind() == Kind::kNamespace) {
      if (const Value* v = obj.Find(key.str())) return *v;
    }
    if (obj.kind() != Kind::kNamespace) {
      Value m = BoundMethod(obj, key.str());
      if (!m.is_undefined()) return m;
    }
    return Value::Undefined(key.str());
  }
  return Value::Undefined(key.ToStr());
}

std::vector<Value> Interpreter::Iterate(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return {};
    case Kind::kList: Step(int64_t(v.items().size())); return v.items();
    case Kind::kDict: {
      Step(int64_t(v.entries().size()));
      std::vector<Value> keys;
      for (const auto& [k, x] : v.entries()) keys.push_back(Value::String(k));
      return keys;
    }
    case Kind::kString: {
      std::vector<Value> chars;
      for (std::string_view cp : SplitCodePoints(v.str())) chars.push_back(Value::String(std::string(cp)));
      Step(int64_t(chars.size()));
      return chars;
    }
    default: Fail("'" + std::string(v.TypeName()) + "' object is not iterable");
  }
}

Value Interpreter::EvalSlice(const Expr& e) {
  const Value obj = Eval(*e.args[0]);
  auto part = [&](size_t k, bool* given) -> int64_t {
    *given = false;
    if (!e.args[k]) return 0;
    const Value v = Eval(*e.args[k]);
    if (v.is_none()) return 0;
    if (!v.is_integral()) Fail("slice indices must be integers");
    *given = true;
    return v.as_int();
  };
  bool has_start, has_stop, has_step;
  int64_t start = part(1, &has_start), stop = part(2, &has_stop), step = part(3, &has_step);
  if (!has_step) step = 1;
  if (step == 0) Fail("slice step cannot be zero");
  std::vector<std::string_view> cps;
  int64_t n;
  if (obj.is_list()) n = int64_t(obj.items().size());
  else if (obj.is_string()) {
    cps = SplitCodePoints(obj.str());
    n = int64_t(cps.size());
  } else if (obj.is_undefined()) {
    Fail("'" + obj.str() + "' is undefined (sliced)");
  } else {
    Fail("'" + std::string(obj.TypeName()) + "' object is not subscriptable");
  }
  // Python's slice.indices().
  auto clamp = [&](int64_t v, bool given, int64_t def) {
    if (!given) return def;
    if (v < 0) {
      v += n;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= n) {
      v = step < 0 ? n - 1 : n;
    }
    return v;
  };
  start = clamp(start, has_start, step < 0 ? n - 1 : 0);
  stop = clamp(stop, has_stop, step < 0 ? -1 : n);
  std::vector<size_t> idx;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) idx.push_back(size_t(i));
  Step(int64_t(idx.size()));
  if (obj.is_list()) {
    std::vector<Value> out;
    for (size_t i : idx) out.push_back(obj.items()[i]);
    return Value::List(std::move(out), obj.is_tuple());
  }
  std::string out;
  for (size_t i : idx) out += cps[i];
  return Value::String(std::move(out));
}

Value Interpreter::Eval(const Expr& e) {
  Step();
  struct DepthGuard {
    int& d;
    explicit DepthGuard(int& d) : d(++d) {}
    ~DepthGuard() { --d; }
  } guard(eval_depth_);
  if (eval_depth_ > kMaxEvalDepth) Fail("expressions nested too deeply (through macro calls)");
  switch (e.kind) {
    case ExprKind::kLiteral: return e.literal;
    case ExprKind::kName: return Lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      for (const ExprPtr& a : e.args) items.push_back(Eval(*a));
      return Value::List(std::move(items), e.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      std::vector<std::pair<std::string, Value>> entries;
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        const Value key = Eval(*e.args[k]);
        if (!key.is_string()) Fail("dict keys must be strings in this sandbox");
        entries.emplace_back(key.str(), Eval(*e.args[k + 1]));
      }
      return Value::Dict(std::move(entries));
    }
    case ExprKind::kGetAttr: return GetAttr(Eval(*e.args[0]), e.name);
    case ExprKind::kGetItem: {
      const Value obj = Eval(*e.args[0]);
      return GetItem(obj, Eval(*e.args[1]));
    }
    case ExprKind::kSlice: return EvalSlice(e);
    case ExprKind::kCall: {
      const Value callee = Eval(*e.args[0]);
      CallArgs a = EvalArgs(e, 1);
      return Call(callee, a);
    }
    case ExprKind::kFilter: {
      const Value input = e.args[0] ? Eval(*e.args[0]) : pipe_input_;
      CallArgs a = EvalArgs(e, 1);
      return ApplyFilter(*this, e.name, input, a);
    }
    case ExprKind::kTest: {
      const Value v = Eval(*e.args[0]);
      CallArgs a = EvalArgs(e, 1);
      return Value::Bool(ApplyTest(*this, e.name, v, a) != e.negated);
    }
    case ExprKind::kNot: return Value::Bool(!Eval(*e.args[0]).Truthy());
    case ExprKind::kNegate:
    case ExprKind::kPlus: {
      const Value v = Eval(*e.args[0]);
      if (!v.is_number()) Fail("bad operand type for unary operator: '" + std::string(v.TypeName()) + "'");
      if (e.kind == ExprKind::kPlus) return v.kind() == Kind::kBool ? Value::Int(v.as_int()) : v;
      if (v.kind() == Kind::kFloat) return Value::Float(-v.as_double());
      if (v.as_int() == INT64_MIN) Fail("integer overflow");
      return Value::Int(-v.as_int());
    }
    case ExprKind::kAnd: {
      Value a = Eval(*e.args[0]);
      return a.Truthy() ? Eval(*e.args[1]) : a;
    }
    case ExprKind::kOr: {
      Value a = Eval(*e.args[0]);
      return a.Truthy() ? a : Eval(*e.args[1]);
    }
    case ExprKind::kCondition: {
      if (Eval(*e.args[1]).Truthy()) return Eval(*e.args[0]);
      return e.args[2] ? Eval(*e.args[2]) : Value::Undefined("conditional expression");
    }
    case ExprKind::kBinary: {
      const Value a = Eval(*e.args[0]);
      const Value b = Eval(*e.args[1]);
      return Binary(e.name, a, b);
    }
  }
  return Value();
}

// Template ------------------------------------------------------------------------------------

Template::Template(std::string_view source)
    : body_(std::make_shared<const Body>(Parse(Lex(source)))) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::Render(const nlohmann::ordered_json& context,
                             const RenderOptions& options) const {
  if (!context.is_object()) throw Error("chat template: the context must be a JSON object");
  Interpreter in(options, Value::FromJson(context));
  return in.Run(*body_);
}

}  // namespace tqlm::jinja
