// Values of the sandboxed Jinja interpreter (tokenizer/jinja_template.h), with Python's
// semantics where chat templates can observe them: str()/repr() text, truthiness, equality,
// ordering, code-point indexing of strings, insertion-ordered dicts.
//
// Sandbox invariants kept here: containers are immutable once built (as in jinja2's
// ImmutableSandboxedEnvironment), their nesting depth is bounded at construction (so printing,
// comparing and destroying a value cannot overflow the stack), and a namespace can never be
// stored inside another value (so no reference cycles, hence no leaks).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace tqlm::jinja {

// Deepest list/dict nesting a value may have (JSON input included).
inline constexpr int kMaxValueDepth = 128;

enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace,
                  kFunction };

class Value;
class Interpreter;

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using NativeFunction = std::function<Value(Interpreter&, CallArgs&)>;

struct ListObject;
struct DictObject;
struct FunctionObject {
  std::string name;
  NativeFunction call;
};

class Value {
 public:
  Value() = default;  // undefined
  static Value Undefined(std::string name = "") {
    Value v;
    v.str_ = std::move(name);
    return v;
  }
  static Value None() { Value v; v.kind_ = Kind::kNone; return v; }
  static Value Bool(bool b) { Value v; v.kind_ = Kind::kBool; v.int_ = b; return v; }
  static Value Int(int64_t i) { Value v; v.kind_ = Kind::kInt; v.int_ = i; return v; }
  static Value Float(double f) { Value v; v.kind_ = Kind::kFloat; v.float_ = f; return v; }
  static Value String(std::string s) {
    Value v; v.kind_ = Kind::kString; v.str_ = std::move(s); return v;
  }
  // Throws tqlm::Error past kMaxValueDepth or when an item is a namespace.
  static Value List(std::vector<Value> items, bool is_tuple = false);
  static Value Dict(std::vector<std::pair<std::string, Value>> items);
  static Value Namespace(std::vector<std::pair<std::string, Value>> items);
  static Value Function(std::string name, NativeFunction fn);
  // JSON objects keep their key order (ordered_json); throws past kMaxValueDepth.
  static Value FromJson(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_number() const {
    return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool;
  }
  bool is_integral() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_double() const { return kind_ == Kind::kFloat ? float_ : double(int_); }
  const std::string& str() const { return str_; }  // string text; undefined: its name
  const std::vector<Value>& items() const;          // list items
  bool is_tuple() const;
  const std::vector<std::pair<std::string, Value>>& entries() const;  // dict / namespace
  const Value* Find(std::string_view key) const;                     // dict / namespace
  void SetAttribute(const std::string& key, Value v);  // namespaces only
  const FunctionObject& function() const { return *fn_; }
  int depth() const;
  // Work to traverse this value (print, compare, serialize): its node count, strings counted
  // by size; saturates. The interpreter charges it to the step limit before any traversal,
  // so shared sub-values ([big] * 1000) cannot make a cheap-looking value expensive to walk.
  int64_t weight() const;

  // Python's bool(), str(), repr().
  bool Truthy() const;
  std::string ToStr() const;
  std::string Repr() const;
  // A short type name for error messages ("str", "list", ...).
  std::string_view TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::shared_ptr<ListObject> list_;
  std::shared_ptr<DictObject> dict_;
  std::shared_ptr<FunctionObject> fn_;
};

struct ListObject {
  std::vector<Value> items;
  bool is_tuple = false;
  int depth = 1;
  int64_t weight = 1;
};

struct DictObject {
  std::vector<std::pair<std::string, Value>> entries;
  int depth = 1;
  int64_t weight = 1;
};

// Python ==, and < (throws tqlm::Error for unorderable types).
bool Equals(const Value& a, const Value& b);
bool Less(const Value& a, const Value& b);

// Python's repr() of a float (shortest round-trip digits, "1e-05", "1.0", "inf").
std::string PyFloatRepr(double f);

// Python's json.dumps as HF transformers' tojson filter calls it.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  int indent = -1;  // < 0: no indent
  std::string indent_text;  // used when indent is given as a string
  bool indent_is_text = false;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string JsonDumps(const Value& v, const JsonDumpOptions& opts);

// UTF-8 helpers: strings are indexed by code point, as Python does.
std::vector<std::string_view> SplitCodePoints(std::string_view s);
size_t CodePointCount(std::string_view s);
void AppendUtf8(std::string& out, uint32_t cp);
bool IsPyWhitespace(std::string_view code_point);

}  // namespace tqlm::jinja
