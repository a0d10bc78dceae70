#include "chat/tool_call_python.h"

#include <charconv>
#include <cmath>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "chat/tool_call_json.h"
#include "tokenizer/utf8.h"

namespace tqlm::chat::tool_call_internal {
namespace {

using Json = nlohmann::ordered_json;

bool IsIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Recursive descent over the text; every method returns false (or nullopt) on anything outside
// the supported syntax, leaving the caller to reject the whole block.
class PythonCallParser {
 public:
  explicit PythonCallParser(std::string_view text) : s_(text) {}

  std::optional<std::vector<ChatToolCall>> All() {
    std::vector<ChatToolCall> calls;
    SkipSeparators();
    while (i_ < s_.size()) {
      if (Eat('[')) {
        // [call, call, ...]
        for (;;) {
          SkipSpace();
          if (Eat(']')) break;
          if (!Call(&calls)) return std::nullopt;
          SkipSpace();
          if (Eat(',')) continue;
          if (!Eat(']')) return std::nullopt;
          break;
        }
      } else if (!Call(&calls)) {
        return std::nullopt;
      }
      SkipSeparators();
    }
    if (calls.empty()) return std::nullopt;
    return calls;
  }

 private:
  void SkipSpace() {
    while (i_ < s_.size() && IsSpace(s_[i_])) ++i_;
  }
  void SkipSeparators() {
    while (i_ < s_.size() && (IsSpace(s_[i_]) || s_[i_] == ';' || s_[i_] == ',')) ++i_;
  }
  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  std::optional<std::string> Identifier() {
    if (i_ >= s_.size() || !IsIdentStart(s_[i_])) return std::nullopt;
    const size_t start = i_;
    while (i_ < s_.size() && IsIdentChar(s_[i_])) ++i_;
    return std::string(s_.substr(start, i_ - start));
  }

  // name(kw=value, ...) or print(<call>); appends to `calls`.
  bool Call(std::vector<ChatToolCall>* calls) {
    std::vector<std::string> parts;
    for (;;) {
      std::optional<std::string> part = Identifier();
      if (!part) return false;
      parts.push_back(std::move(*part));
      if (!Eat('.')) break;
    }
    SkipSpace();
    if (!Eat('(')) return false;
    if (parts.size() == 1 && parts[0] == "print") {
      const size_t save = i_;
      SkipSpace();
      std::vector<ChatToolCall> inner;
      if (Call(&inner)) {
        SkipSpace();
        if (Eat(')')) {
          for (ChatToolCall& c : inner) calls->push_back(std::move(c));
          return true;
        }
      }
      i_ = save;  // a tool that is itself called "print"
    }
    if (parts.size() > 1 && parts.back() == "call") parts.pop_back();
    Json args = Json::object();
    SkipSpace();
    if (!Eat(')')) {
      for (;;) {
        SkipSpace();
        std::optional<std::string> key = Identifier();
        if (!key) return false;
        SkipSpace();
        if (!Eat('=') || (i_ < s_.size() && s_[i_] == '=')) return false;
        SkipSpace();
        Json value;
        if (!Value(&value, 1)) return false;
        if (args.contains(*key)) return false;  // duplicate keyword: a syntax error in Python
        args[*key] = std::move(value);
        SkipSpace();
        if (Eat(')')) break;
        if (!Eat(',')) return false;
        SkipSpace();
        if (Eat(')')) break;  // trailing comma
      }
    }
    ChatToolCall call;
    call.name = parts.back();
    std::optional<std::string> text = ArgumentsText(args);
    if (!text) return false;
    call.arguments = std::move(*text);
    calls->push_back(std::move(call));
    return true;
  }

  bool Value(Json* out, int depth) {
    if (depth > kMaxJsonDepth || i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '"' || c == '\'') {
      std::string text;
      if (!String(&text)) return false;
      *out = std::move(text);
      return true;
    }
    if (c == '[' || c == '(') return Sequence(out, c == '[' ? ']' : ')', depth);
    if (c == '{') return Dict(out, depth);
    if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.') return Number(out);
    std::optional<std::string> word = Identifier();
    if (!word) return false;
    // Python's constants, and JSON's spelling of them (models mix the two).
    if (*word == "True" || *word == "true") {
      *out = true;
    } else if (*word == "False" || *word == "false") {
      *out = false;
    } else if (*word == "None" || *word == "null") {
      *out = nullptr;
    } else {
      return false;  // a variable or expression: no value we could know
    }
    return true;
  }

  bool Sequence(Json* out, char close, int depth) {
    ++i_;
    *out = Json::array();
    for (;;) {
      SkipSpace();
      if (Eat(close)) return true;
      Json item;
      if (!Value(&item, depth + 1)) return false;
      out->push_back(std::move(item));
      SkipSpace();
      if (Eat(close)) return true;
      if (!Eat(',')) return false;
    }
  }

  bool Dict(Json* out, int depth) {
    ++i_;
    *out = Json::object();
    for (;;) {
      SkipSpace();
      if (Eat('}')) return true;
      if (i_ >= s_.size() || (s_[i_] != '"' && s_[i_] != '\'')) return false;
      std::string key;
      if (!String(&key)) return false;
      SkipSpace();
      if (!Eat(':')) return false;
      SkipSpace();
      Json item;
      if (!Value(&item, depth + 1)) return false;
      (*out)[key] = std::move(item);
      SkipSpace();
      if (Eat('}')) return true;
      if (!Eat(',')) return false;
    }
  }

  // Reads `digits` hex digits as a code point.
  bool Hex(int digits, uint32_t* cpt) {
    if (s_.size() - i_ < size_t(digits)) return false;
    *cpt = 0;
    for (int k = 0; k < digits; ++k) {
      const int v = HexValue(s_[i_++]);
      if (v < 0) return false;
      *cpt = *cpt * 16 + uint32_t(v);
    }
    return true;
  }

  bool String(std::string* out) {
    const char quote = s_[i_++];
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == quote) return true;
      if (c == '\n') return false;  // unterminated on this line
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i_ >= s_.size()) return false;
      const char e = s_[i_++];
      uint32_t cpt = 0;
      switch (e) {
        case 'n': out->push_back('\n'); break;
        case 't': out->push_back('\t'); break;
        case 'r': out->push_back('\r'); break;
        case '0': out->push_back('\0'); break;
        case '\\': case '\'': case '"': out->push_back(e); break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U':
          if (!Hex(e == 'x' ? 2 : e == 'u' ? 4 : 8, &cpt)) return false;
          if (cpt > 0x10FFFF || (cpt >= 0xD800 && cpt <= 0xDFFF)) return false;
          tokenizer::AppendUtf8(cpt, out);
          break;
        default:  // Python keeps unknown escapes as written
          out->push_back('\\');
          out->push_back(e);
      }
    }
    return false;
  }

  bool Number(Json* out) {
    const size_t start = i_;
    if (s_[i_] == '-' || s_[i_] == '+') ++i_;
    bool is_float = false;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c >= '0' && c <= '9') {
        ++i_;
      } else if (c == '.' || c == 'e' || c == 'E') {
        is_float = true;
        ++i_;
        if ((c == 'e' || c == 'E') && i_ < s_.size() && (s_[i_] == '-' || s_[i_] == '+')) ++i_;
      } else {
        break;
      }
    }
    std::string_view token = s_.substr(start, i_ - start);
    if (!token.empty() && token[0] == '+') token.remove_prefix(1);
    if (token.empty()) return false;
    const char* first = token.data();
    const char* last = token.data() + token.size();
    if (!is_float) {
      int64_t v = 0;
      const auto r = std::from_chars(first, last, v);
      if (r.ec == std::errc() && r.ptr == last) {
        *out = v;
        return true;
      }
    }
    double d = 0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec != std::errc() || r.ptr != last || !std::isfinite(d)) return false;
    *out = d;
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::optional<std::vector<ChatToolCall>> CallsFromPython(std::string_view text) {
  return PythonCallParser(text).All();
}

}  // namespace tqlm::chat::tool_call_internal
