#include "jinja/lexer.h"

#include <algorithm>
#include <cctype>

#include "jinja/value.h"
#include "tqlm/error.h"

namespace tqlm::jinja {
namespace {

// Length of the Python-whitespace code point at s[i], or 0.
size_t WhitespaceAt(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
  n = std::min(n, s.size() - i);
  return IsPyWhitespace(s.substr(i, n)) ? n : 0;
}

size_t SkipWhitespace(std::string_view s, size_t i) {
  while (i < s.size()) {
    const size_t n = WhitespaceAt(s, i);
    if (n == 0) break;
    i += n;
  }
  return i;
}

// Python's str.rstrip().
std::string_view RStrip(std::string_view s) {
  std::vector<std::string_view> cps = SplitCodePoints(s);
  size_t end = cps.size();
  while (end > 0 && IsPyWhitespace(cps[end - 1])) --end;
  size_t bytes = 0;
  for (size_t k = 0; k < end; ++k) bytes += cps[k].size();
  return s.substr(0, bytes);
}

bool AllWhitespace(std::string_view s) {
  for (std::string_view cp : SplitCodePoints(s)) {
    if (!IsPyWhitespace(cp)) return false;
  }
  return !s.empty();
}

class Lexer {
 public:
  Lexer(std::string src, const LexOptions& o) : src_(std::move(src)), opt_(o) {}

  std::vector<Token> Run() {
    std::string_view s = src_;
    size_t pos = 0;
    bool line_starting = true;
    while (pos < s.size()) {
      size_t tag = pos;
      for (;;) {
        tag = s.find('{', tag);
        if (tag == std::string_view::npos || tag + 1 >= s.size()) {
          tag = std::string_view::npos;
          break;
        }
        const char k = s[tag + 1];
        if (k == '{' || k == '%' || k == '#') break;
        ++tag;
      }
      if (tag == std::string_view::npos) {
        Emit(TokenKind::kData, std::string(s.substr(pos)), pos);
        break;
      }
      const char kind = s[tag + 1];
      char sign = 0;
      if (tag + 2 < s.size() && (s[tag + 2] == '-' || s[tag + 2] == '+')) sign = s[tag + 2];
      std::string_view text = s.substr(pos, tag - pos);
      if (sign == '-') {
        text = RStrip(text);
      } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && AllWhitespace(text.substr(l_pos))) {
          text = text.substr(0, l_pos);
        }
      }
      if (!text.empty()) Emit(TokenKind::kData, std::string(text), pos);
      size_t p = tag + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        const size_t end = s.find("#}", p);
        if (end == std::string_view::npos) Fail("missing end of comment tag", tag);
        pos = FinishTagEnd(s, end, end + 2, /*block=*/true, line_starting, p);
        continue;
      }
      if (kind == '%' && IsRawBegin(s, p, &pos, &line_starting)) {
        LexRawBody(s, pos, &pos, &line_starting);
        continue;
      }
      Emit(kind == '{' ? TokenKind::kVariableBegin : TokenKind::kBlockBegin, "", tag);
      pos = LexTag(s, p, kind == '%', &line_starting);
    }
    tokens_.push_back(Token{TokenKind::kEnd, "", Line(s.size())});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void Fail(const std::string& what, size_t at) const {
    throw Error("chat template syntax error at line " + std::to_string(Line(at)) + ": " + what);
  }

  // Line of byte `at`; tokens come in order, so counting resumes where it stopped.
  int Line(size_t at) const {
    at = std::min(at, src_.size());
    if (at < line_pos_) {
      line_pos_ = 0;
      line_no_ = 1;
    }
    line_no_ += int(std::count(src_.begin() + long(line_pos_), src_.begin() + long(at), '\n'));
    line_pos_ = at;
    return line_no_;
  }

  void Emit(TokenKind k, std::string text, size_t at) {
    tokens_.push_back(Token{k, std::move(text), Line(at)});
  }

  // After a tag closer ending at `close_end` (its first char at `close`): handles "-"/"+"
  // before it, trim_blocks after it, and whether the next data starts a line.
  size_t FinishTagEnd(std::string_view s, size_t close, size_t close_end, bool block,
                      bool& line_starting, size_t tag_body) {
    const char before = close > tag_body ? s[close - 1] : 0;
    size_t pos = close_end;
    if (before == '-') {
      pos = SkipWhitespace(s, close_end);
      line_starting = pos > close_end && s[pos - 1] == '\n';
    } else if (before == '+') {
      line_starting = false;
    } else if (block && opt_.trim_blocks && pos < s.size() && s[pos] == '\n') {
      ++pos;
      line_starting = true;
    } else {
      line_starting = false;
    }
    return pos;
  }

  // "{%" (sign) ws "raw" ws ("-%}" ws | "%}"): no trim_blocks after it, as in jinja2.
  bool IsRawBegin(std::string_view s, size_t p, size_t* after, bool* line_starting) {
    size_t q = SkipWhitespace(s, p);
    if (s.substr(q, 3) != "raw") return false;
    q = SkipWhitespace(s, q + 3);
    if (s.substr(q, 3) == "-%}") {
      const size_t e = SkipWhitespace(s, q + 3);
      *line_starting = e > q + 3 && s[e - 1] == '\n';
      *after = e;
      return true;
    }
    if (s.substr(q, 2) == "%}") {
      *after = q + 2;
      *line_starting = false;
      return true;
    }
    return false;
  }

  void LexRawBody(std::string_view s, size_t p, size_t* after, bool* line_starting) {
    size_t search = p;
    for (;;) {
      const size_t open = s.find("{%", search);
      if (open == std::string_view::npos) Fail("missing end of raw directive", p);
      size_t q = open + 2;
      char sign = 0;
      if (q < s.size() && (s[q] == '-' || s[q] == '+')) sign = s[q++];
      q = SkipWhitespace(s, q);
      if (s.substr(q, 6) != "endraw") {
        search = open + 1;
        continue;
      }
      q = SkipWhitespace(s, q + 6);
      size_t close;
      if (s.substr(q, 3) == "+%}" || s.substr(q, 3) == "-%}") close = q + 1;
      else if (s.substr(q, 2) == "%}") close = q;
      else {
        search = open + 1;
        continue;
      }
      std::string_view text = s.substr(p, open - p);
      if (sign == '-') {
        text = RStrip(text);
      } else if (sign != '+' && opt_.lstrip_blocks) {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if ((l_pos > 0 || *line_starting) && AllWhitespace(text.substr(l_pos))) {
          text = text.substr(0, l_pos);
        }
      }
      if (!text.empty()) Emit(TokenKind::kData, std::string(text), p);
      *after = FinishTagEnd(s, close, close + 2, true, *line_starting, q);
      return;
    }
  }

  size_t LexTag(std::string_view s, size_t p, bool block, bool* line_starting) {
    const char* close = block ? "%}" : "}}";
    int balance = 0;
    const size_t start = p;
    while (true) {
      if (p >= s.size()) Fail(block ? "missing end of block tag" : "missing end of variable tag", start);
      if (balance == 0) {
        // The closer, optionally preceded by a whitespace-control sign.
        size_t c = std::string_view::npos;
        if ((s[p] == '-' || (block && s[p] == '+')) && s.substr(p + 1, 2) == close) c = p + 1;
        else if (s.substr(p, 2) == close) c = p;
        if (c != std::string_view::npos) {
          Emit(block ? TokenKind::kBlockEnd : TokenKind::kVariableEnd, "", p);
          return FinishTagEnd(s, c, c + 2, block, *line_starting, c == p ? c : p);
        }
      }
      const size_t ws = WhitespaceAt(s, p);
      if (ws) {
        p += ws;
        continue;
      }
      const char ch = s[p];
      if (std::isdigit(static_cast<unsigned char>(ch))) {
        p = LexNumber(s, p);
      } else if (std::isalpha(static_cast<unsigned char>(ch)) || ch == '_') {
        size_t e = p;
        while (e < s.size() && (std::isalnum(static_cast<unsigned char>(s[e])) || s[e] == '_')) ++e;
        Emit(TokenKind::kName, std::string(s.substr(p, e - p)), p);
        p = e;
      } else if (ch == '\'' || ch == '"') {
        p = LexString(s, p);
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                           "*", "%", "~", "[", "]", "(", ")", "{", "}", ">",
                                           "<", "=", ".", ":", "|", ",", ";"};
        const char* found = nullptr;
        for (const char* op : kOps) {
          if (s.substr(p, std::char_traits<char>::length(op)) == op) {
            found = op;
            break;
          }
        }
        if (!found) Fail(std::string("unexpected character '") + ch + "'", p);
        const std::string op = found;
        if (op == "(" || op == "[" || op == "{") ++balance;
        if (op == ")" || op == "]" || op == "}") {
          if (balance == 0) Fail("unexpected '" + op + "'", p);
          --balance;
        }
        Emit(TokenKind::kOperator, op, p);
        p += op.size();
      }
    }
  }

  size_t LexNumber(std::string_view s, size_t p) {
    auto digits = [&](size_t q) {
      while (q < s.size() && (std::isdigit(static_cast<unsigned char>(s[q])) ||
                              (s[q] == '_' && q + 1 < s.size() &&
                               std::isdigit(static_cast<unsigned char>(s[q + 1]))))) {
        ++q;
      }
      return q;
    };
    size_t e = digits(p);
    bool is_float = false;
    if (e + 1 < s.size() && s[e] == '.' && std::isdigit(static_cast<unsigned char>(s[e + 1]))) {
      e = digits(e + 1);
      is_float = true;
    }
    if (e < s.size() && (s[e] == 'e' || s[e] == 'E')) {
      size_t q = e + 1;
      if (q < s.size() && (s[q] == '+' || s[q] == '-')) ++q;
      if (q < s.size() && std::isdigit(static_cast<unsigned char>(s[q]))) {
        e = digits(q);
        is_float = true;
      }
    }
    std::string text;
    for (char c : s.substr(p, e - p)) {
      if (c != '_') text += c;
    }
    Emit(is_float ? TokenKind::kFloat : TokenKind::kInteger, text, p);
    return e;
  }

  // A quoted string with Python's escapes (jinja2 decodes literals with "unicode-escape").
  size_t LexString(std::string_view s, size_t p) {
    const char q = s[p];
    std::string out;
    size_t i = p + 1;
    auto hex = [&](size_t n) -> uint32_t {
      if (i + n > s.size()) Fail("truncated escape in string", p);
      uint32_t v = 0;
      for (size_t k = 0; k < n; ++k) {
        const char c = s[i + k];
        if (!std::isxdigit(static_cast<unsigned char>(c))) Fail("bad escape in string", p);
        v = v * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                                                                         : (std::tolower(c) - 'a' + 10));
      }
      i += n;
      return v;
    };
    while (true) {
      if (i >= s.size()) Fail("unterminated string", p);
      const char c = s[i];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++i;
        continue;
      }
      if (i + 1 >= s.size()) Fail("unterminated string", p);
      const char e = s[i + 1];
      i += 2;
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\n': break;  // line continuation
        case 'x': AppendUtf8(out, hex(2)); break;
        case 'u': AppendUtf8(out, hex(4)); break;
        case 'U': {
          const uint32_t v = hex(8);
          if (v > 0x10ffff) Fail("bad \\U escape in string", p);
          AppendUtf8(out, v);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = uint32_t(e - '0');
            for (int k = 0; k < 2 && i < s.size() && s[i] >= '0' && s[i] <= '7'; ++k) {
              v = v * 8 + uint32_t(s[i++] - '0');
            }
            AppendUtf8(out, v);
          } else {
            out += '\\';  // unknown escapes stay as written
            --i;
          }
      }
    }
    Emit(TokenKind::kString, std::move(out), p);
    return i + 1;
  }

  std::string src_;
  LexOptions opt_;
  mutable size_t line_pos_ = 0;
  mutable int line_no_ = 1;
  std::vector<Token> tokens_;
};

std::string NormalizeNewlines(std::string_view src, bool keep_trailing_newline) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

std::vector<Token> Lex(std::string_view source, const LexOptions& options) {
  return Lexer(NormalizeNewlines(source, options.keep_trailing_newline), options).Run();
}

}  // namespace tqlm::jinja
