// Methods of str, dict and list values (the non-mutating ones jinja2's immutable sandbox
// allows), argument helpers, and Python string operations shared with the filters.
#include <algorithm>
#include <cctype>
#include <charconv>

#include "jinja/builtins.h"
#include "jinja/interpreter.h"

namespace tqlm::jinja {

const Value* Args::Find(size_t pos, std::string_view name) const {
  if (pos < a_.positional.size()) return &a_.positional[pos];
  for (const auto& [k, v] : a_.keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value Args::Get(size_t pos, std::string_view name, Value def) const {
  const Value* v = Find(pos, name);
  return v ? *v : def;
}

std::string Args::Str(size_t pos, std::string_view name, std::string def) const {
  const Value* v = Find(pos, name);
  if (!v || v->is_none()) return def;
  if (!v->is_string()) in_.Fail(std::string(fn_) + ": argument '" + std::string(name) + "' must be a string");
  return v->str();
}

int64_t Args::Int(size_t pos, std::string_view name, int64_t def) const {
  const Value* v = Find(pos, name);
  if (!v || v->is_none()) return def;
  if (!v->is_integral()) in_.Fail(std::string(fn_) + ": argument '" + std::string(name) + "' must be an integer");
  return v->as_int();
}

bool Args::Bool(size_t pos, std::string_view name, bool def) const {
  const Value* v = Find(pos, name);
  return v ? v->Truthy() : def;
}

std::string PyStrip(std::string_view s, const Value& chars, bool left, bool right) {
  const std::vector<std::string_view> cps = SplitCodePoints(s);
  std::vector<std::string_view> set;
  const bool custom = chars.is_string();
  if (custom) set = SplitCodePoints(chars.str());
  auto strip = [&](std::string_view cp) {
    if (!custom) return IsPyWhitespace(cp);
    return std::find(set.begin(), set.end(), cp) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left) while (b < e && strip(cps[b])) ++b;
  if (right) while (e > b && strip(cps[e - 1])) --e;
  std::string out;
  for (size_t k = b; k < e; ++k) out += cps[k];
  return out;
}

// ASCII case mapping only (non-ASCII letters are left as they are).
std::string PyUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
  }
  return out;
}

std::string PyLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  }
  return out;
}

std::string PyReplace(Interpreter& in, std::string_view s, std::string_view old,
                      std::string_view with, int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    // Python inserts `with` before every code point and at the end.
    for (std::string_view cp : SplitCodePoints(s)) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      out += cp;
      in.CheckSize(out.size());
    }
    if (count < 0 || done < count) out += with;
    return out;
  }
  size_t pos = 0;
  while (true) {
    const size_t at = (count >= 0 && done >= count) ? std::string_view::npos : s.find(old, pos);
    if (at == std::string_view::npos) break;
    out.append(s.substr(pos, at - pos));
    out += with;
    in.CheckSize(out.size());
    pos = at + old.size();
    ++done;
  }
  out.append(s.substr(pos));
  in.Step(int64_t(out.size() / 256));
  return out;
}

namespace {

std::string PyTitle(std::string_view s) {
  // str.title(): upper-case a letter after a non-letter, lower-case the others (ASCII).
  std::string out(s);
  bool prev_letter = false;
  for (char& c : out) {
    const bool letter = std::isalpha(static_cast<unsigned char>(c)) != 0;
    if (letter) c = prev_letter ? char(std::tolower(c)) : char(std::toupper(c));
    prev_letter = letter || (static_cast<unsigned char>(c) >= 0x80);
  }
  return out;
}

Value Split(Interpreter& in, const std::string& s, const Value& sep_v, int64_t maxsplit) {
  std::vector<Value> parts;
  if (sep_v.is_none() || sep_v.is_undefined()) {
    const std::vector<std::string_view> cps = SplitCodePoints(s);
    size_t k = 0;
    while (k < cps.size()) {
      while (k < cps.size() && IsPyWhitespace(cps[k])) ++k;
      if (k == cps.size()) break;
      std::string word;
      if (maxsplit >= 0 && int64_t(parts.size()) >= maxsplit) {
        for (; k < cps.size(); ++k) word += cps[k];
        word = PyStrip(word, Value(), false, true);
        parts.push_back(Value::String(word));
        break;
      }
      while (k < cps.size() && !IsPyWhitespace(cps[k])) word += cps[k++];
      parts.push_back(Value::String(word));
    }
  } else {
    if (!sep_v.is_string()) in.Fail("split: separator must be a string");
    const std::string& sep = sep_v.str();
    if (sep.empty()) in.Fail("split: empty separator");
    size_t pos = 0;
    while (true) {
      const size_t at = (maxsplit >= 0 && int64_t(parts.size()) >= maxsplit)
                            ? std::string::npos : s.find(sep, pos);
      if (at == std::string::npos) break;
      parts.push_back(Value::String(s.substr(pos, at - pos)));
      pos = at + sep.size();
    }
    parts.push_back(Value::String(s.substr(pos)));
  }
  in.Step(int64_t(parts.size()));
  return Value::List(std::move(parts));
}

bool AffixMatch(Interpreter& in, const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) {
    if (!a.is_string()) in.Fail("startswith/endswith: argument must be a string or tuple of strings");
    const std::string& t = a.str();
    if (t.size() > s.size()) return false;
    return prefix ? s.compare(0, t.size(), t) == 0 : s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  if (affix.is_list()) {
    for (const Value& a : affix.items()) {
      if (one(a)) return true;
    }
    return false;
  }
  return one(affix);
}

// str.format with "{}", "{0}", "{name}" and "{{"/"}}" (no format specs).
std::string PyFormat(Interpreter& in, const std::string& fmt, CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') { out += '{'; ++i; continue; }
    if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') { out += '}'; ++i; continue; }
    if (c != '{') { out += c; continue; }
    const size_t end = fmt.find('}', i);
    if (end == std::string::npos) in.Fail("format: single '{' in format string");
    const std::string field = fmt.substr(i + 1, end - i - 1);
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index < a.positional.size()) v = &a.positional[auto_index++];
    } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
      // Digits only, but possibly more than fit: from_chars reports that instead of throwing.
      size_t k = 0;
      const auto r = std::from_chars(field.data(), field.data() + field.size(), k);
      if (r.ec == std::errc() && k < a.positional.size()) v = &a.positional[k];
    } else {
      for (const auto& [name, kv] : a.keyword) {
        if (name == field) v = &kv;
      }
    }
    if (!v) in.Fail("format: no value for field '{" + field + "}'");
    out += v->ToStr();
    in.CheckSize(out.size());
    i = end;
  }
  return out;
}

Value StrMethod(Interpreter& in, const std::string& s, std::string_view m, CallArgs& a) {
  Args args(in, a, m);
  if (m == "strip") return Value::String(PyStrip(s, args.Get(0, "chars"), true, true));
  if (m == "lstrip") return Value::String(PyStrip(s, args.Get(0, "chars"), true, false));
  if (m == "rstrip") return Value::String(PyStrip(s, args.Get(0, "chars"), false, true));
  if (m == "upper") return Value::String(PyUpper(s));
  if (m == "lower") return Value::String(PyLower(s));
  if (m == "title") return Value::String(PyTitle(s));
  if (m == "capitalize") {
    std::string out = PyLower(s);
    if (!out.empty()) out[0] = char(std::toupper(static_cast<unsigned char>(out[0])));
    return Value::String(out);
  }
  if (m == "split") return Split(in, s, args.Get(0, "sep", Value::None()), args.Int(1, "maxsplit", -1));
  if (m == "splitlines") {
    std::vector<Value> lines;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t e = s.find_first_of("\r\n", pos);
      if (e == std::string::npos) {
        lines.push_back(Value::String(s.substr(pos)));
        break;
      }
      lines.push_back(Value::String(s.substr(pos, e - pos)));
      pos = e + ((s[e] == '\r' && e + 1 < s.size() && s[e + 1] == '\n') ? 2 : 1);
    }
    return Value::List(std::move(lines));
  }
  if (m == "startswith") return Value::Bool(AffixMatch(in, s, args.Get(0, "prefix"), true));
  if (m == "endswith") return Value::Bool(AffixMatch(in, s, args.Get(0, "suffix"), false));
  if (m == "replace") {
    return Value::String(PyReplace(in, s, args.Str(0, "old"), args.Str(1, "new"), args.Int(2, "count", -1)));
  }
  if (m == "find" || m == "rfind" || m == "count" || m == "index") {
    const std::string sub = args.Str(0, "sub");
    if (m == "count") {
      if (sub.empty()) return Value::Int(int64_t(CodePointCount(s)) + 1);
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value::Int(n);
    }
    const size_t at = m == "rfind" ? s.rfind(sub) : s.find(sub);
    if (at == std::string::npos) {
      if (m == "index") in.Fail("index: substring not found");
      return Value::Int(-1);
    }
    return Value::Int(int64_t(CodePointCount(std::string_view(s).substr(0, at))));
  }
  if (m == "join") {
    std::string out;
    bool first = true;
    for (const Value& v : in.Iterate(args.Get(0, "iterable"))) {
      if (!v.is_string()) in.Fail("join: sequence item must be a string");
      if (!first) out += s;
      first = false;
      out += v.str();
      in.CheckSize(out.size());
    }
    return Value::String(out);
  }
  if (m == "format") return Value::String(PyFormat(in, s, a));
  if (m == "isdigit" || m == "isalpha" || m == "isalnum" || m == "isspace" ||
      m == "islower" || m == "isupper") {
    if (s.empty()) return Value::Bool(false);
    bool ok = true, cased = false;
    for (char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (m == "isdigit") ok &= std::isdigit(c) != 0;
      else if (m == "isalpha") ok &= std::isalpha(c) != 0;
      else if (m == "isalnum") ok &= std::isalnum(c) != 0;
      else if (m == "isspace") ok &= std::isspace(c) != 0;
      else if (m == "islower") { ok &= !std::isupper(c); cased |= std::islower(c) != 0; }
      else { ok &= !std::islower(c); cased |= std::isupper(c) != 0; }
    }
    if (m == "islower" || m == "isupper") ok &= cased;
    return Value::Bool(ok);
  }
  in.Fail("str has no method '" + std::string(m) + "'");
}

Value DictMethod(Interpreter& in, const Value& d, std::string_view m, CallArgs& a) {
  Args args(in, a, m);
  if (m == "items") {
    std::vector<Value> out;
    for (const auto& [k, v] : d.entries()) out.push_back(Value::List({Value::String(k), v}, true));
    return Value::List(std::move(out));
  }
  if (m == "keys") {
    std::vector<Value> out;
    for (const auto& [k, v] : d.entries()) out.push_back(Value::String(k));
    return Value::List(std::move(out));
  }
  if (m == "values") {
    std::vector<Value> out;
    for (const auto& [k, v] : d.entries()) out.push_back(v);
    return Value::List(std::move(out));
  }
  if (m == "get") {
    const Value key = args.Get(0, "key");
    if (key.is_string()) {
      if (const Value* v = d.Find(key.str())) return *v;
    }
    return args.Get(1, "default", Value::None());
  }
  in.Fail("dict has no method '" + std::string(m) + "'");
}

Value ListMethod(Interpreter& in, const Value& l, std::string_view m, CallArgs& a) {
  Args args(in, a, m);
  const Value x = args.Get(0, "value");
  if (m == "count") {
    int64_t n = 0;
    for (const Value& v : l.items()) n += Equals(v, x);
    return Value::Int(n);
  }
  if (m == "index") {
    for (size_t k = 0; k < l.items().size(); ++k) {
      if (Equals(l.items()[k], x)) return Value::Int(int64_t(k));
    }
    in.Fail("list.index(x): x not in list");
  }
  in.Fail("list has no method '" + std::string(m) + "'");
}

bool IsStrMethod(std::string_view m) {
  static const char* const kNames[] = {
      "strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize", "split",
      "splitlines", "startswith", "endswith", "replace", "find", "rfind", "count", "index",
      "join", "format", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper"};
  return std::find(std::begin(kNames), std::end(kNames), m) != std::end(kNames);
}

}  // namespace

Value BoundMethod(const Value& obj, std::string_view name) {
  const std::string m(name);
  if (obj.is_string() && IsStrMethod(name)) {
    return Value::Function("str." + m, [obj, m](Interpreter& in, CallArgs& a) {
      in.Step(1 + int64_t(obj.str().size() / 256));
      return StrMethod(in, obj.str(), m, a);
    });
  }
  if (obj.is_dict() && (name == "items" || name == "keys" || name == "values" || name == "get")) {
    return Value::Function("dict." + m, [obj, m](Interpreter& in, CallArgs& a) {
      in.Step(1 + int64_t(obj.entries().size()));
      return DictMethod(in, obj, m, a);
    });
  }
  if (obj.is_list() && (name == "count" || name == "index")) {
    return Value::Function("list." + m, [obj, m](Interpreter& in, CallArgs& a) {
      in.Step(obj.weight());
      return ListMethod(in, obj, m, a);
    });
  }
  return Value::Undefined(m);
}

}  // namespace tqlm::jinja
