#include "jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "tqlm/error.h"

namespace tqlm::jinja {
namespace {

const std::vector<Value> kNoItems;
const std::vector<std::pair<std::string, Value>> kNoEntries;

int CheckedDepth(int child_depth) {
  if (child_depth + 1 > kMaxValueDepth) {
    throw Error("chat template: value nesting deeper than " + std::to_string(kMaxValueDepth));
  }
  return child_depth + 1;
}

constexpr int64_t kMaxWeight = int64_t(1) << 50;

int64_t AddWeight(int64_t a, int64_t b) { return std::min(kMaxWeight, a + b); }

void CheckNotNamespace(const Value& v) {
  if (v.kind() == Kind::kNamespace) {
    throw Error("chat template: a namespace cannot be stored inside another value");
  }
}

// Python's repr() of a str: single quotes unless the text has ' and no ".
std::string PyStrRepr(std::string_view s) {
  const bool dq = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (std::string_view cp : SplitCodePoints(s)) {
    const auto c = static_cast<unsigned char>(cp[0]);
    if (cp.size() == 1) {
      if (c == '\\') out += "\\\\";
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else if (c == static_cast<unsigned char>(q)) { out += '\\'; out += q; }
      else if (c < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      } else {
        out += cp;
      }
    } else if (cp.size() == 2 && c == 0xc2 && static_cast<unsigned char>(cp[1]) < 0xa0) {
      char buf[8];  // C1 controls U+0080..U+009F are not printable
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(cp[1]));
      out += buf;
    } else {
      out += cp;
    }
  }
  out += q;
  return out;
}

void JsonString(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (std::string_view cp : SplitCodePoints(s)) {
    const auto c = static_cast<unsigned char>(cp[0]);
    if (cp.size() == 1) {
      switch (c) {
        case '"': out += "\\\""; continue;
        case '\\': out += "\\\\"; continue;
        case '\n': out += "\\n"; continue;
        case '\r': out += "\\r"; continue;
        case '\t': out += "\\t"; continue;
        case '\b': out += "\\b"; continue;
        case '\f': out += "\\f"; continue;
        default: break;
      }
      if (c < 0x20 || (ensure_ascii && c >= 0x7f && c < 0x80)) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else if (ensure_ascii && c >= 0x80) {
        out += "\\ufffd";  // a stray byte: not valid UTF-8
      } else {
        out += cp;
      }
      continue;
    }
    if (!ensure_ascii) {
      out += cp;
      continue;
    }
    uint32_t v = 0;
    if (cp.size() == 2) v = c & 0x1f;
    else if (cp.size() == 3) v = c & 0x0f;
    else v = c & 0x07;
    for (size_t k = 1; k < cp.size(); ++k) v = (v << 6) | (static_cast<unsigned char>(cp[k]) & 0x3f);
    char buf[16];
    if (v >= 0x10000) {
      const uint32_t u = v - 0x10000;
      std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xd800 + (u >> 10), 0xdc00 + (u & 0x3ff));
    } else {
      std::snprintf(buf, sizeof buf, "\\u%04x", v);
    }
    out += buf;
  }
  out += '"';
}

void JsonDumpsTo(std::string& out, const Value& v, const JsonDumpOptions& o, int level) {
  auto newline = [&](int lvl) {
    out += '\n';
    for (int k = 0; k < lvl; ++k) {
      if (o.indent_is_text) out += o.indent_text;
      else out.append(size_t(o.indent), ' ');
    }
  };
  const bool indented = o.indent >= 0 || o.indent_is_text;
  switch (v.kind()) {
    case Kind::kNone: out += "null"; return;
    case Kind::kBool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::kInt: out += std::to_string(v.as_int()); return;
    case Kind::kFloat: {
      const double f = v.as_double();
      if (std::isnan(f)) out += "NaN";
      else if (std::isinf(f)) out += f > 0 ? "Infinity" : "-Infinity";
      else out += PyFloatRepr(f);
      return;
    }
    case Kind::kString: JsonString(out, v.str(), o.ensure_ascii); return;
    case Kind::kList: {
      if (v.items().empty()) { out += "[]"; return; }
      out += '[';
      bool first = true;
      for (const Value& item : v.items()) {
        if (!first) out += o.item_separator;
        first = false;
        if (indented) newline(level + 1);
        JsonDumpsTo(out, item, o, level + 1);
      }
      if (indented) newline(level);
      out += ']';
      return;
    }
    case Kind::kDict: {
      if (v.entries().empty()) { out += "{}"; return; }
      std::vector<const std::pair<std::string, Value>*> order;
      for (const auto& e : v.entries()) order.push_back(&e);
      if (o.sort_keys) {
        std::stable_sort(order.begin(), order.end(),
                         [](auto* a, auto* b) { return a->first < b->first; });
      }
      out += '{';
      bool first = true;
      for (const auto* e : order) {
        if (!first) out += o.item_separator;
        first = false;
        if (indented) newline(level + 1);
        JsonString(out, e->first, o.ensure_ascii);
        out += o.key_separator;
        JsonDumpsTo(out, e->second, o, level + 1);
      }
      if (indented) newline(level);
      out += '}';
      return;
    }
    default:
      throw Error("chat template: tojson: object of type " + std::string(v.TypeName()) +
                  " is not JSON serializable");
  }
}

}  // namespace

Value Value::List(std::vector<Value> items, bool is_tuple) {
  int child = 0;
  int64_t weight = 1;
  for (const Value& i : items) {
    CheckNotNamespace(i);
    child = std::max(child, i.depth());
    weight = AddWeight(weight, i.weight());
  }
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<ListObject>();
  v.list_->depth = CheckedDepth(child);
  v.list_->weight = weight;
  v.list_->items = std::move(items);
  v.list_->is_tuple = is_tuple;
  return v;
}

Value Value::Dict(std::vector<std::pair<std::string, Value>> items) {
  int child = 0;
  int64_t weight = 1;
  for (const auto& [k, i] : items) {
    CheckNotNamespace(i);
    child = std::max(child, i.depth());
    weight = AddWeight(weight, AddWeight(1 + int64_t(k.size() / 64), i.weight()));
  }
  // Later duplicates replace earlier ones in place, as in a Python dict literal.
  std::vector<std::pair<std::string, Value>> unique;
  std::unordered_map<std::string, size_t> index;
  unique.reserve(items.size());
  for (auto& e : items) {
    auto [it, fresh] = index.emplace(e.first, unique.size());
    if (fresh) {
      unique.push_back(std::move(e));
    } else {
      unique[it->second].second = std::move(e.second);
    }
  }
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<DictObject>();
  v.dict_->depth = CheckedDepth(child);
  v.dict_->weight = weight;
  v.dict_->entries = std::move(unique);
  return v;
}

Value Value::Namespace(std::vector<std::pair<std::string, Value>> items) {
  Value v = Dict(std::move(items));
  v.kind_ = Kind::kNamespace;
  return v;
}

Value Value::Function(std::string name, NativeFunction fn) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.fn_ = std::make_shared<FunctionObject>(FunctionObject{std::move(name), std::move(fn)});
  return v;
}

namespace {
Value FromJsonAt(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxValueDepth) {
    throw Error("chat template: context JSON nested deeper than " +
                std::to_string(kMaxValueDepth));
  }
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::None();
    case nlohmann::ordered_json::value_t::boolean: return Value::Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) return Value::Float(double(u));
      return Value::Int(int64_t(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJsonAt(e, depth + 1));
      return Value::List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<std::string, Value>> entries;
      entries.reserve(j.size());
      for (const auto& [k, e] : j.items()) entries.emplace_back(k, FromJsonAt(e, depth + 1));
      return Value::Dict(std::move(entries));
    }
    default: return Value::None();
  }
}
}  // namespace

Value Value::FromJson(const nlohmann::ordered_json& j) { return FromJsonAt(j, 1); }

const std::vector<Value>& Value::items() const { return list_ ? list_->items : kNoItems; }
bool Value::is_tuple() const { return list_ && list_->is_tuple; }
const std::vector<std::pair<std::string, Value>>& Value::entries() const {
  return dict_ ? dict_->entries : kNoEntries;
}
const Value* Value::Find(std::string_view key) const {
  if (!dict_) return nullptr;
  for (const auto& [k, v] : dict_->entries) {
    if (k == key) return &v;
  }
  return nullptr;
}
void Value::SetAttribute(const std::string& key, Value v) {
  if (kind_ != Kind::kNamespace) throw Error("chat template: can only set attributes of a namespace");
  CheckNotNamespace(v);
  const int d = CheckedDepth(v.depth());
  dict_->weight = AddWeight(dict_->weight, v.weight());  // an upper bound after replacements
  for (auto& [k, old] : dict_->entries) {
    if (k == key) {
      old = std::move(v);
      dict_->depth = std::max(dict_->depth, d);
      return;
    }
  }
  dict_->entries.emplace_back(key, std::move(v));
  dict_->depth = std::max(dict_->depth, d);
}
int64_t Value::weight() const {
  if (list_) return list_->weight;
  if (dict_) return dict_->weight;
  if (kind_ == Kind::kString) return 1 + int64_t(str_.size() / 64);
  return 1;
}

int Value::depth() const {
  if (list_) return list_->depth;
  if (dict_) return dict_->depth;
  return 0;
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool:
    case Kind::kInt: return int_ != 0;
    case Kind::kFloat: return float_ != 0.0;
    case Kind::kString: return !str_.empty();
    case Kind::kList: return !list_->items.empty();
    case Kind::kDict: return !dict_->entries.empty();
    default: return true;
  }
}

std::string Value::ToStr() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kString: return str_;
    default: return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return int_ ? "True" : "False";
    case Kind::kInt: return std::to_string(int_);
    case Kind::kFloat: return PyFloatRepr(float_);
    case Kind::kString: return PyStrRepr(str_);
    case Kind::kList: {
      const bool t = list_->is_tuple;
      std::string out = t ? "(" : "[";
      for (size_t k = 0; k < list_->items.size(); ++k) {
        if (k) out += ", ";
        out += list_->items[k].Repr();
      }
      if (t && list_->items.size() == 1) out += ',';
      out += t ? ")" : "]";
      return out;
    }
    case Kind::kDict:
    case Kind::kNamespace: {
      std::string out = kind_ == Kind::kNamespace ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, v] : dict_->entries) {
        if (!first) out += ", ";
        first = false;
        out += PyStrRepr(k);
        out += ": ";
        out += v.Repr();
      }
      out += kind_ == Kind::kNamespace ? "}>" : "}";
      return out;
    }
    case Kind::kFunction: return "<function " + fn_->name + ">";
  }
  return "";
}

std::string_view Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return is_tuple() ? "tuple" : "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kFunction: return "function";
  }
  return "?";
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return true;
    case Kind::kString: return a.str() == b.str();
    case Kind::kList: {
      if (a.is_tuple() != b.is_tuple() || a.items().size() != b.items().size()) return false;
      for (size_t k = 0; k < a.items().size(); ++k) {
        if (!Equals(a.items()[k], b.items()[k])) return false;
      }
      return true;
    }
    case Kind::kDict: {
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& [k, v] : a.entries()) {
        const Value* o = b.Find(k);
        if (!o || !Equals(v, *o)) return false;
      }
      return true;
    }
    case Kind::kNamespace:
    case Kind::kFunction: return &a.entries() == &b.entries() && a.depth() == b.depth();
    default: return false;
  }
}

bool Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() < b.as_int();
    return a.as_double() < b.as_double();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 order = code points
  if (a.is_list() && b.is_list()) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      if (!Equals(x[k], y[k])) return Less(x[k], y[k]);
    }
    return x.size() < y.size();
  }
  throw Error("chat template: '<' not supported between instances of '" +
              std::string(a.TypeName()) + "' and '" + std::string(b.TypeName()) + "'");
}

std::string PyFloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  if (f == 0) return std::signbit(f) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e+02"
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t k = 0; k < e; ++k) {
    if (sci[k] != '.') digits += sci[k];
  }
  const int exp10 = std::stoi(sci.substr(e + 1));
  const int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  std::string out = sign;
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += eb;
  } else if (decpt <= 0) {
    out += "0.";
    out.append(size_t(-decpt), '0');
    out += digits;
  } else if (size_t(decpt) >= digits.size()) {
    out += digits;
    out.append(size_t(decpt) - digits.size(), '0');
    out += ".0";
  } else {
    out += digits.substr(0, size_t(decpt));
    out += '.';
    out += digits.substr(size_t(decpt));
  }
  return out;
}

std::string JsonDumps(const Value& v, const JsonDumpOptions& opts) {
  std::string out;
  JsonDumpsTo(out, v, opts, 0);
  return out;
}

std::vector<std::string_view> SplitCodePoints(std::string_view s) {
  std::vector<std::string_view> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 1;
    if (c >= 0xf0 && c < 0xf8) n = 4;
    else if (c >= 0xe0) n = 3;
    else if (c >= 0xc0) n = 2;
    if (c >= 0xf8 || i + n > s.size()) n = 1;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) { n = 1; break; }
    }
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

size_t CodePointCount(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

bool IsPyWhitespace(std::string_view cp) {
  if (cp.size() == 1) {
    const auto c = static_cast<unsigned char>(cp[0]);
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  }
  static const char* const kSpaces[] = {"\u0085", "\u00a0", "\u1680", "\u2000", "\u2001",
                                        "\u2002", "\u2003", "\u2004", "\u2005", "\u2006",
                                        "\u2007", "\u2008", "\u2009", "\u200a", "\u2028",
                                        "\u2029", "\u202f", "\u205f", "\u3000"};
  for (const char* s : kSpaces) {
    if (cp == s) return true;
  }
  return false;
}

}  // namespace tqlm::jinja
