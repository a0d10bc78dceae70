// Binary operators with Python's semantics (int64 with overflow errors instead of bigints).
#include <cmath>

#include "jinja/interpreter.h"

namespace tqlm::jinja {
namespace {

bool Contains(Interpreter& in, const Value& container, const Value& item) {
  switch (container.kind()) {
    case Kind::kString:
      if (!item.is_string()) in.Fail("'in <string>' requires string as left operand");
      return container.str().find(item.str()) != std::string::npos;
    case Kind::kList:
      for (const Value& v : container.items()) {
        if (Equals(v, item)) return true;
      }
      return false;
    case Kind::kDict:
      return item.is_string() && container.Find(item.str()) != nullptr;
    case Kind::kUndefined: return false;
    default:
      in.Fail("argument of type '" + std::string(container.TypeName()) + "' is not iterable");
  }
}

// Wraps a __builtin_*_overflow result: the value is read only after the check has run.
Value CheckedInt(Interpreter& in, bool overflow, const int64_t& v) {
  if (overflow) in.Fail("integer overflow");
  return Value::Int(v);
}

}  // namespace

Value Interpreter::Binary(std::string_view op, const Value& a, const Value& b) {
  Step(a.weight() + b.weight());  // comparisons, 'in' and '~' may walk both operands
  if (op == "==") return Value::Bool(Equals(a, b));
  if (op == "!=") return Value::Bool(!Equals(a, b));
  if (op == "<") return Value::Bool(Less(a, b));
  if (op == ">") return Value::Bool(Less(b, a));
  if (op == "<=") return Value::Bool(!Less(b, a));
  if (op == ">=") return Value::Bool(!Less(a, b));
  if (op == "in") return Value::Bool(Contains(*this, b, a));
  if (op == "notin") return Value::Bool(!Contains(*this, b, a));
  if (op == "~") {
    std::string s = a.ToStr();
    const std::string t = b.ToStr();
    CheckSize(s.size() + t.size());
    Step(int64_t((s.size() + t.size()) / 256));
    return Value::String(s + t);
  }
  if (a.is_undefined() || b.is_undefined()) {
    Fail("'" + (a.is_undefined() ? a.str() : b.str()) + "' is undefined (operand of '" +
         std::string(op) + "')");
  }
  auto type_error = [&]() -> Value {
    Fail("unsupported operand type(s) for " + std::string(op) + ": '" +
         std::string(a.TypeName()) + "' and '" + std::string(b.TypeName()) + "'");
  };
  const bool ints = a.is_integral() && b.is_integral();
  const bool nums = a.is_number() && b.is_number();
  int64_t r = 0;
  if (op == "+") {
    if (ints) return CheckedInt(*this, __builtin_add_overflow(a.as_int(), b.as_int(), &r), r);
    if (nums) return Value::Float(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      CheckSize(a.str().size() + b.str().size());
      Step(int64_t((a.str().size() + b.str().size()) / 256));
      return Value::String(a.str() + b.str());
    }
    if (a.is_list() && b.is_list()) {
      CheckSize(a.items().size() + b.items().size());
      Step(int64_t(a.items().size() + b.items().size()));
      std::vector<Value> items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return Value::List(std::move(items), a.is_tuple() && b.is_tuple());
    }
    return type_error();
  }
  if (op == "-") {
    if (ints) return CheckedInt(*this, __builtin_sub_overflow(a.as_int(), b.as_int(), &r), r);
    if (nums) return Value::Float(a.as_double() - b.as_double());
    return type_error();
  }
  if (op == "*") {
    if (ints) return CheckedInt(*this, __builtin_mul_overflow(a.as_int(), b.as_int(), &r), r);
    if (nums) return Value::Float(a.as_double() * b.as_double());
    const Value* seq = a.is_integral() ? &b : b.is_integral() ? &a : nullptr;
    const Value* count = a.is_integral() ? &a : &b;
    if (seq && (seq->is_string() || seq->is_list())) {
      const int64_t n = std::max<int64_t>(0, count->as_int());
      const size_t unit = seq->is_string() ? seq->str().size() : seq->items().size();
      if (unit && uint64_t(n) > options_.limits.max_string_bytes / unit) CheckSize(SIZE_MAX);
      CheckSize(unit * size_t(n));
      Step(int64_t(unit * size_t(n) / 64));
      if (seq->is_string()) {
        std::string s;
        for (int64_t k = 0; k < n; ++k) s += seq->str();
        return Value::String(std::move(s));
      }
      std::vector<Value> items;
      for (int64_t k = 0; k < n; ++k) items.insert(items.end(), seq->items().begin(), seq->items().end());
      return Value::List(std::move(items), seq->is_tuple());
    }
    return type_error();
  }
  if (!nums) {
    if (op == "%" && a.is_string()) Fail("printf-style string formatting ('%') is not supported");
    return type_error();
  }
  if (op == "/") {
    if (b.as_double() == 0) Fail("division by zero");
    return Value::Float(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (ints) {
      const int64_t x = a.as_int(), y = b.as_int();
      if (y == 0) Fail("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) Fail("integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value::Int(op == "//" ? q : m);
    }
    const double x = a.as_double(), y = b.as_double();
    if (y == 0) Fail("float division or modulo by zero");
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    if (op == "%") return Value::Float(m);
    return Value::Float(std::floor(x / y));
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), acc = 1;
      if (base == 0) return Value::Int(e == 0 ? 1 : 0);
      if (base == 1) return Value::Int(1);
      if (base == -1) return Value::Int(e % 2 ? -1 : 1);
      for (int64_t k = 0; k < e; ++k) {
        if (__builtin_mul_overflow(acc, base, &acc)) Fail("integer overflow");
      }
      return Value::Int(acc);
    }
    return Value::Float(std::pow(a.as_double(), b.as_double()));
  }
  Fail("unknown operator '" + std::string(op) + "'");
}

}  // namespace tqlm::jinja
