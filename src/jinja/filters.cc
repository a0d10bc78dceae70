// Jinja filters, as jinja2 3.1 defines them, plus HF transformers' tojson.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "jinja/builtins.h"
#include "jinja/interpreter.h"

namespace tqlm::jinja {
namespace {

// jinja2's attribute getter for selectattr/map/sort/join: "a.b.0" walks items/attributes.
Value Attribute(Interpreter& in, const Value& v, const std::string& path) {
  Value cur = v;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    if (dot == std::string::npos) dot = path.size();
    const std::string part = path.substr(pos, dot - pos);
    int64_t idx = 0;
    auto r = std::from_chars(part.data(), part.data() + part.size(), idx);
    if (cur.is_undefined()) return cur;
    if (!part.empty() && r.ec == std::errc() && r.ptr == part.data() + part.size()) {
      cur = in.GetItem(cur, Value::Int(idx));
    } else {
      cur = in.GetItem(cur, Value::String(part));
    }
    pos = dot + 1;
  }
  return cur;
}

std::string Str(const Value& v) { return v.ToStr(); }

Value Length(Interpreter& in, const Value& v) {
  switch (v.kind()) {
    case Kind::kString: return Value::Int(int64_t(CodePointCount(v.str())));
    case Kind::kList: return Value::Int(int64_t(v.items().size()));
    case Kind::kDict: return Value::Int(int64_t(v.entries().size()));
    case Kind::kUndefined: return Value::Int(0);
    default: in.Fail("object of type '" + std::string(v.TypeName()) + "' has no len()");
  }
}

// select/reject/selectattr/rejectattr.
Value Select(Interpreter& in, const Value& seq, CallArgs& a, bool attr, bool keep) {
  size_t next = 0;
  std::string attr_name;
  if (attr) {
    if (a.positional.empty() || !a.positional[0].is_string()) in.Fail("selectattr needs an attribute name");
    attr_name = a.positional[0].str();
    next = 1;
  }
  std::string test;
  CallArgs test_args;
  if (next < a.positional.size()) {
    if (!a.positional[next].is_string()) in.Fail("select: test name must be a string");
    test = a.positional[next].str();
    test_args.positional.assign(a.positional.begin() + long(next) + 1, a.positional.end());
    test_args.keyword = a.keyword;
    if (!HasTest(test)) in.Fail("no test named '" + test + "'");
  }
  std::vector<Value> out;
  for (const Value& item : in.Iterate(seq)) {
    in.Step();
    const Value subject = attr ? Attribute(in, item, attr_name) : item;
    CallArgs ta = test_args;
    const bool pass = test.empty() ? subject.Truthy() : ApplyTest(in, test, subject, ta);
    if (pass == keep) out.push_back(item);
  }
  return Value::List(std::move(out));
}

Value Map(Interpreter& in, const Value& seq, CallArgs& a) {
  Args args(in, a, "map");
  std::vector<Value> out;
  if (const Value* attr = args.Find(size_t(-1), "attribute")) {
    const Value def = args.Get(size_t(-1), "default");
    for (const Value& item : in.Iterate(seq)) {
      in.Step();
      Value v = Attribute(in, item, attr->ToStr());
      if (v.is_undefined() && !def.is_undefined()) v = def;
      out.push_back(v);
    }
    return Value::List(std::move(out));
  }
  if (a.positional.empty() || !a.positional[0].is_string()) in.Fail("map needs a filter name or attribute=");
  const std::string filter = a.positional[0].str();
  CallArgs fa;
  fa.positional.assign(a.positional.begin() + 1, a.positional.end());
  fa.keyword = a.keyword;
  for (const Value& item : in.Iterate(seq)) {
    CallArgs copy = fa;
    out.push_back(ApplyFilter(in, filter, item, copy));
  }
  return Value::List(std::move(out));
}

std::string JinjaTitle(std::string_view s) {
  // jinja2's title: words start after "-", whitespace, "(", "{", "[", "<".
  std::string out(s);
  bool start = true;
  for (char& c : out) {
    const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' ||
                     std::isspace(static_cast<unsigned char>(c));
    if (sep) {
      start = true;
      continue;
    }
    c = start ? char(std::toupper(static_cast<unsigned char>(c)))
              : char(std::tolower(static_cast<unsigned char>(c)));
    start = false;
  }
  return out;
}

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Value ToJson(Interpreter& in, const Value& v, CallArgs& a) {
  // HF: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
  Args args(in, a, "tojson");
  JsonDumpOptions o;
  o.ensure_ascii = args.Bool(0, "ensure_ascii", false);
  const Value indent = args.Get(1, "indent", Value::None());
  if (indent.is_string()) {
    o.indent_is_text = true;
    o.indent_text = indent.str();
  } else if (indent.is_integral()) {
    o.indent = int(std::clamp<int64_t>(indent.as_int(), 0, 64));
  } else if (!indent.is_none()) {
    in.Fail("tojson: indent must be an integer or string");
  }
  if (o.indent >= 0 || o.indent_is_text) o.item_separator = ",";
  const Value seps = args.Get(2, "separators", Value::None());
  if (seps.is_list() && seps.items().size() == 2 && seps.items()[0].is_string() &&
      seps.items()[1].is_string()) {
    o.item_separator = seps.items()[0].str();
    o.key_separator = seps.items()[1].str();
  } else if (!seps.is_none()) {
    in.Fail("tojson: separators must be a pair of strings");
  }
  o.sort_keys = args.Bool(3, "sort_keys", false);
  std::string out = JsonDumps(v, o);
  in.CheckSize(out.size());
  in.Step(int64_t(out.size() / 64));
  return Value::String(std::move(out));
}

Value Round(Interpreter& in, const Value& v, CallArgs& a) {
  Args args(in, a, "round");
  const int64_t precision = std::clamp<int64_t>(args.Int(0, "precision", 0), -300, 300);
  const std::string method = args.Str(1, "method", "common");
  if (!v.is_number()) in.Fail("round: not a number");
  if (method == "common" && v.is_integral()) return Value::Int(v.as_int());
  const double scale = std::pow(10.0, double(precision));
  const double x = v.as_double() * scale;
  double r;
  if (method == "common") r = std::nearbyint(x);
  else if (method == "ceil") r = std::ceil(x);
  else if (method == "floor") r = std::floor(x);
  else in.Fail("round: method must be common, ceil or floor");
  return Value::Float(r / scale);
}

Value ToInt(Interpreter& in, const Value& v, CallArgs& a) {
  Args args(in, a, "int");
  const Value def = args.Get(0, "default", Value::Int(0));
  const int64_t base = args.Int(1, "base", 10);
  if (v.is_integral()) return Value::Int(v.as_int());
  if (v.kind() == Kind::kFloat) {
    const double f = v.as_double();
    if (!std::isfinite(f) || std::fabs(f) > 9.2e18) return def;
    return Value::Int(int64_t(f));
  }
  if (v.is_string()) {
    const std::string s = PyStrip(v.str(), Value(), true, true);
    int64_t i = 0;
    const char* b = s.data();
    if (!s.empty() && s[0] == '+') ++b;
    auto r = std::from_chars(b, s.data() + s.size(), i, int(std::clamp<int64_t>(base, 2, 36)));
    if (r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty()) return Value::Int(i);
    double f = 0;
    auto rf = std::from_chars(s.data(), s.data() + s.size(), f);
    if (rf.ec == std::errc() && rf.ptr == s.data() + s.size() && std::isfinite(f) &&
        std::fabs(f) < 9.2e18) {
      return Value::Int(int64_t(f));
    }
  }
  return def;
}

Value ToFloat(Interpreter& in, const Value& v, CallArgs& a) {
  Args args(in, a, "float");
  const Value def = args.Get(0, "default", Value::Float(0.0));
  if (v.is_number()) return Value::Float(v.as_double());
  if (v.is_string()) {
    const std::string s = PyStrip(v.str(), Value(), true, true);
    double f = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), f);
    if (r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty()) return Value::Float(f);
  }
  return def;
}

// Sort key comparison; strings compare case-insensitively unless asked otherwise.
bool SortLess(const Value& x, const Value& y, bool case_sensitive) {
  if (!case_sensitive && x.is_string() && y.is_string()) return PyLower(x.str()) < PyLower(y.str());
  return Less(x, y);
}

Value Indent(Interpreter& in, const Value& v, CallArgs& a) {
  Args args(in, a, "indent");
  const Value w = args.Get(0, "width", Value::Int(4));
  const std::string ind = w.is_string() ? w.str() : std::string(size_t(std::clamp<int64_t>(w.as_int(), 0, 256)), ' ');
  const bool first = args.Bool(1, "first", false);
  const bool blank = args.Bool(2, "blank", false);
  std::string s = v.ToStr() + "\n";
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t e = s.find('\n', pos);
    lines.push_back(s.substr(pos, e - pos));
    pos = e + 1;
  }
  std::string rv;
  if (blank) {
    for (size_t k = 0; k < lines.size(); ++k) {
      if (k) rv += "\n" + ind;
      rv += lines[k];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    if (lines.size() > 1) {
      rv += "\n";
      for (size_t k = 1; k < lines.size(); ++k) {
        if (k > 1) rv += "\n";
        if (!lines[k].empty()) rv += ind;
        rv += lines[k];
      }
    }
  }
  if (first) rv = ind + rv;
  in.CheckSize(rv.size());
  return Value::String(rv);
}

}  // namespace

Value ApplyFilter(Interpreter& in, std::string_view f, const Value& v, CallArgs& a) {
  in.Step(v.weight());  // filters may walk their whole input
  Args args(in, a, f);
  if (f == "tojson") return ToJson(in, v, a);
  if (f == "trim") return Value::String(PyStrip(Str(v), args.Get(0, "chars"), true, true));
  if (f == "upper") return Value::String(PyUpper(Str(v)));
  if (f == "lower") return Value::String(PyLower(Str(v)));
  if (f == "title") return Value::String(JinjaTitle(Str(v)));
  if (f == "capitalize") {
    std::string s = PyLower(Str(v));
    if (!s.empty()) s[0] = char(std::toupper(static_cast<unsigned char>(s[0])));
    return Value::String(s);
  }
  if (f == "length" || f == "count") return Length(in, v);
  if (f == "string") return Value::String(Str(v));
  if (f == "safe") return Value::String(Str(v));
  if (f == "escape" || f == "e") return Value::String(Escape(Str(v)));
  if (f == "default" || f == "d") {
    const bool boolean = args.Bool(1, "boolean", false);
    if (v.is_undefined() || (boolean && !v.Truthy())) return args.Get(0, "default_value", Value::String(""));
    return v;
  }
  if (f == "replace") {
    if (v.is_undefined()) return Value::String("");
    return Value::String(PyReplace(in, Str(v), args.Str(0, "old"), args.Str(1, "new"), args.Int(2, "count", -1)));
  }
  if (f == "first" || f == "last") {
    const std::vector<Value> items = in.Iterate(v);
    if (items.empty()) return Value::Undefined("no first/last item");
    return f == "first" ? items.front() : items.back();
  }
  if (f == "join") {
    const std::string sep = args.Str(0, "d", "");
    const Value attr = args.Get(1, "attribute", Value::None());
    std::string out;
    bool first = true;
    for (const Value& item : in.Iterate(v)) {
      if (!first) out += sep;
      first = false;
      out += (attr.is_none() ? item : Attribute(in, item, attr.ToStr())).ToStr();
      in.CheckSize(out.size());
    }
    in.Step(int64_t(out.size() / 64));
    return Value::String(out);
  }
  if (f == "list") {
    if (v.is_undefined()) return Value::List({});
    return Value::List(in.Iterate(v));
  }
  if (f == "items") {
    if (v.is_undefined()) return Value::List({});
    if (!v.is_dict()) in.Fail("items: can only get item pairs from a mapping");
    std::vector<Value> out;
    for (const auto& [k, x] : v.entries()) out.push_back(Value::List({Value::String(k), x}, true));
    return Value::List(std::move(out));
  }
  if (f == "selectattr") return Select(in, v, a, true, true);
  if (f == "rejectattr") return Select(in, v, a, true, false);
  if (f == "select") return Select(in, v, a, false, true);
  if (f == "reject") return Select(in, v, a, false, false);
  if (f == "map") return Map(in, v, a);
  if (f == "reverse") {
    if (v.is_string()) {
      std::vector<std::string_view> cps = SplitCodePoints(v.str());
      std::string out;
      for (size_t k = cps.size(); k-- > 0;) out += cps[k];
      return Value::String(out);
    }
    std::vector<Value> items = in.Iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::List(std::move(items));
  }
  if (f == "round") return Round(in, v, a);
  if (f == "int") return ToInt(in, v, a);
  if (f == "float") return ToFloat(in, v, a);
  if (f == "abs") {
    if (v.kind() == Kind::kFloat) return Value::Float(std::fabs(v.as_double()));
    if (!v.is_integral()) in.Fail("abs: not a number");
    if (v.as_int() == INT64_MIN) in.Fail("integer overflow");
    return Value::Int(std::llabs(v.as_int()));
  }
  if (f == "unique" || f == "sort" || f == "min" || f == "max" || f == "sum") {
    const bool case_sensitive = args.Bool(f == "sort" ? 1 : 0, "case_sensitive", false);
    const Value attr = args.Get(f == "sort" ? 2 : 99, "attribute", Value::None());
    auto key = [&](const Value& x) { return attr.is_none() ? x : Attribute(in, x, attr.ToStr()); };
    std::vector<Value> items = in.Iterate(v);
    const int64_t n = int64_t(items.size());
    in.Step(f == "unique" ? std::min<int64_t>(n * n, int64_t(1) << 50) : n * 4);
    if (f == "sum") {
      Value acc = args.Get(99, "start", Value::Int(0));
      for (const Value& x : items) acc = in.Binary("+", acc, key(x));
      return acc;
    }
    if (f == "unique") {
      std::vector<Value> out;
      for (const Value& x : items) {
        const Value kx = key(x);
        bool seen = false;
        for (const Value& y : out) {
          const Value ky = key(y);
          seen |= (!case_sensitive && kx.is_string() && ky.is_string())
                      ? PyLower(kx.str()) == PyLower(ky.str()) : Equals(kx, ky);
        }
        if (!seen) out.push_back(x);
      }
      return Value::List(std::move(out));
    }
    if (f == "sort") {
      const bool reverse = args.Bool(0, "reverse", false);
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        return reverse ? SortLess(key(y), key(x), case_sensitive) : SortLess(key(x), key(y), case_sensitive);
      });
      return Value::List(std::move(items));
    }
    if (items.empty()) return Value::Undefined("empty sequence");
    Value best = items[0];
    for (const Value& x : items) {
      const bool better = f == "min" ? SortLess(key(x), key(best), case_sensitive)
                                     : SortLess(key(best), key(x), case_sensitive);
      if (better) best = x;
    }
    return best;
  }
  if (f == "indent") return Indent(in, v, a);
  if (f == "wordcount") {
    int64_t n = 0;
    bool in_word = false;
    for (char c : Str(v)) {
      const bool w = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || (static_cast<unsigned char>(c) >= 0x80);
      n += w && !in_word;
      in_word = w;
    }
    return Value::Int(n);
  }
  if (f == "dictsort") {
    if (!v.is_dict()) in.Fail("dictsort: not a mapping");
    std::vector<std::pair<std::string, Value>> e = v.entries();
    std::stable_sort(e.begin(), e.end(), [](const auto& x, const auto& y) { return PyLower(x.first) < PyLower(y.first); });
    std::vector<Value> out;
    for (auto& [k, x] : e) out.push_back(Value::List({Value::String(k), x}, true));
    return Value::List(std::move(out));
  }
  in.Fail("no filter named '" + std::string(f) + "'");
}

}  // namespace tqlm::jinja
