// Built-in filters, tests, methods of str/dict/list, and global functions of the Jinja
// interpreter; each mirrors jinja2 3.1 (and Python) for what chat templates use.
#pragma once

#include <string_view>

#include "jinja/value.h"

namespace tqlm::jinja {

class Interpreter;

// Throws tqlm::Error for unknown filters/tests.
Value ApplyFilter(Interpreter& in, std::string_view name, const Value& input, CallArgs& args);
bool ApplyTest(Interpreter& in, std::string_view name, const Value& v, CallArgs& args);
bool HasTest(std::string_view name);
// A method of a str/dict/list value bound to it, or undefined when there is none.
Value BoundMethod(const Value& obj, std::string_view name);
// range, namespace, dict, raise_exception, strftime_now; undefined for other names.
Value GlobalFunction(std::string_view name);

// Argument access helper: positional index or keyword name, else the default.
class Args {
 public:
  Args(Interpreter& in, CallArgs& a, std::string_view fn) : in_(in), a_(a), fn_(fn) {}
  const Value* Find(size_t pos, std::string_view name) const;
  Value Get(size_t pos, std::string_view name, Value def = Value()) const;
  std::string Str(size_t pos, std::string_view name, std::string def = "") const;
  int64_t Int(size_t pos, std::string_view name, int64_t def) const;
  bool Bool(size_t pos, std::string_view name, bool def) const;
  size_t positional() const { return a_.positional.size(); }
  Interpreter& in() const { return in_; }

 private:
  Interpreter& in_;
  CallArgs& a_;
  std::string_view fn_;
};

// Python str methods shared by filters and methods.
std::string PyStrip(std::string_view s, const Value& chars, bool left, bool right);
std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PyReplace(Interpreter& in, std::string_view s, std::string_view old,
                      std::string_view with, int64_t count);

}  // namespace tqlm::jinja
