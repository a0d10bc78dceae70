// Jinja tests ("x is defined") and global functions (range, namespace, dict,
// raise_exception, strftime_now).
#include <algorithm>
#include <ctime>

#include "jinja/builtins.h"
#include "jinja/interpreter.h"
#include "tqlm/error.h"

namespace tqlm::jinja {
namespace {

const char* const kTests[] = {"defined", "undefined", "none", "string", "mapping", "iterable",
                              "number", "sequence", "true", "false", "boolean", "integer",
                              "float", "callable", "equalto", "eq", "==", "ne", "!=", "lt", "<",
                              "le", "<=", "gt", ">", "ge", ">=", "in", "odd", "even",
                              "divisibleby", "sameas", "lower", "upper"};

}  // namespace

bool HasTest(std::string_view name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

bool ApplyTest(Interpreter& in, std::string_view t, const Value& v, CallArgs& a) {
  in.Step(v.weight());
  for (const Value& x : a.positional) in.Step(x.weight());
  Args args(in, a, t);
  const Kind k = v.kind();
  if (t == "defined") return k != Kind::kUndefined;
  if (t == "undefined") return k == Kind::kUndefined;
  if (t == "none") return k == Kind::kNone;
  if (t == "string") return k == Kind::kString;
  if (t == "mapping") return k == Kind::kDict;
  if (t == "iterable") return k == Kind::kString || k == Kind::kList || k == Kind::kDict ||
                              k == Kind::kUndefined;
  if (t == "sequence") return k == Kind::kString || k == Kind::kList || k == Kind::kDict;
  if (t == "number") return v.is_number();
  if (t == "true") return k == Kind::kBool && v.as_bool();
  if (t == "false") return k == Kind::kBool && !v.as_bool();
  if (t == "boolean") return k == Kind::kBool;
  if (t == "integer") return k == Kind::kInt;
  if (t == "float") return k == Kind::kFloat;
  if (t == "callable") return k == Kind::kFunction;
  const Value other = args.Get(0, "other");
  if (t == "equalto" || t == "eq" || t == "==") return Equals(v, other);
  if (t == "ne" || t == "!=") return !Equals(v, other);
  if (t == "lt" || t == "<") return Less(v, other);
  if (t == "le" || t == "<=") return !Less(other, v);
  if (t == "gt" || t == ">") return Less(other, v);
  if (t == "ge" || t == ">=") return !Less(v, other);
  if (t == "in") return in.Binary("in", v, args.Get(0, "seq")).as_bool();
  if (t == "odd" || t == "even" || t == "divisibleby") {
    if (!v.is_integral()) in.Fail("test '" + std::string(t) + "' needs an integer");
    if (t == "odd") return v.as_int() % 2 != 0;
    if (t == "even") return v.as_int() % 2 == 0;
    const int64_t d = args.Int(0, "num", 0);
    if (d == 0) in.Fail("divisibleby(0)");
    return v.as_int() % d == 0;
  }
  if (t == "sameas") {
    // Python identity: exact for None/True/False; for other values the best we can say.
    return v.kind() == other.kind() && Equals(v, other);
  }
  if (t == "lower") return v.is_string() && PyLower(v.str()) == v.str();
  if (t == "upper") return v.is_string() && PyUpper(v.str()) == v.str();
  in.Fail("no test named '" + std::string(t) + "'");
}

Value GlobalFunction(std::string_view name) {
  if (name == "range") {
    return Value::Function("range", [](Interpreter& in, CallArgs& a) {
      Args args(in, a, "range");
      int64_t start = 0, stop = 0, step = 1;
      if (args.positional() == 1) {
        stop = args.Int(0, "stop", 0);
      } else {
        start = args.Int(0, "start", 0);
        stop = args.Int(1, "stop", 0);
        step = args.Int(2, "step", 1);
      }
      if (step == 0) in.Fail("range() step must not be zero");
      const int64_t limit = in.options().limits.max_loop_iterations;
      std::vector<Value> items;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (int64_t(items.size()) >= limit) {
          in.Fail("range() too big (loop iteration limit " + std::to_string(limit) + ")");
        }
        items.push_back(Value::Int(i));
        if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
      }
      in.Step(int64_t(items.size()));
      return Value::List(std::move(items));
    });
  }
  if (name == "namespace" || name == "dict") {
    const bool ns = name == "namespace";
    return Value::Function(std::string(name), [ns](Interpreter& in, CallArgs& a) {
      std::vector<std::pair<std::string, Value>> entries;
      for (const Value& p : a.positional) {
        if (!p.is_dict()) in.Fail(std::string(ns ? "namespace" : "dict") + "() takes a mapping");
        for (const auto& e : p.entries()) entries.push_back(e);
      }
      for (const auto& e : a.keyword) entries.push_back(e);
      return ns ? Value::Namespace(std::move(entries)) : Value::Dict(std::move(entries));
    });
  }
  if (name == "raise_exception") {
    return Value::Function("raise_exception", [](Interpreter&, CallArgs& a) -> Value {
      const std::string msg = a.positional.empty() ? "" : a.positional[0].ToStr();
      throw Error("chat template raised an exception: " + msg);
    });
  }
  if (name == "strftime_now") {
    return Value::Function("strftime_now", [](Interpreter& in, CallArgs& a) {
      Args args(in, a, "strftime_now");
      const std::string fmt = args.Str(0, "format");
      const std::time_t now = in.options().now ? *in.options().now : std::time(nullptr);
      std::tm tm{};
      gmtime_r(&now, &tm);
      if (fmt.size() > 256) in.Fail("strftime_now: format too long");
      char buf[1024];
      const size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
      if (n == 0 && !fmt.empty()) in.Fail("strftime_now: formatted date too long");
      return Value::String(std::string(buf, n));
    });
  }
  return Value::Undefined(std::string(name));
}

}  // namespace tqlm::jinja
