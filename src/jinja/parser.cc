#include "jinja/parser.h"

#include <charconv>
#include <set>

#include "tqlm/error.h"

namespace tqlm::jinja {
namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& t) : t_(t) {}

  Body ParseTemplate() {
    std::string end;
    Body body = ParseBody({}, &end);
    return body;
  }

 private:
  // Guards recursion depth.
  struct Depth {
    explicit Depth(Parser& p) : p(p) {
      if (++p.depth_ > kMaxParseDepth) p.Fail("template nested too deeply");
    }
    ~Depth() { --p.depth_; }
    Parser& p;
  };
  // Counts the links of a left-nested chain (a + b + c, x.y.z, x|f|g): each one deepens the
  // tree by a level.
  struct Chain {
    explicit Chain(Parser& p) : p(p) {}
    void Add() {
      ++n;
      if (++p.depth_ > kMaxParseDepth) p.Fail("template nested too deeply");
    }
    ~Chain() { p.depth_ -= n; }
    Parser& p;
    int n = 0;
  };

  const Token& Cur() const { return t_[pos_]; }
  const Token& Peek(size_t k = 1) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  void Next() {
    if (pos_ + 1 < t_.size()) ++pos_;
  }
  [[noreturn]] void Fail(const std::string& what) const {
    throw Error("chat template syntax error at line " + std::to_string(Cur().line) + ": " + what);
  }
  bool IsOp(const char* op) const { return Cur().kind == TokenKind::kOperator && Cur().text == op; }
  bool IsName(const char* n) const { return Cur().kind == TokenKind::kName && Cur().text == n; }
  void ExpectOp(const char* op) {
    if (!IsOp(op)) Fail(std::string("expected '") + op + "'");
    Next();
  }
  std::string ExpectName() {
    if (Cur().kind != TokenKind::kName) Fail("expected a name");
    std::string n = Cur().text;
    Next();
    return n;
  }
  void ExpectBlockEnd() {
    if (Cur().kind != TokenKind::kBlockEnd) Fail("expected end of block tag");
    Next();
  }

  static ExprPtr Make(ExprKind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // Statements until "{% <one of end_names>": leaves the position on that name and stores
  // it in *end; with no end names, runs to the end of input.
  Body ParseBody(const std::set<std::string>& end_names, std::string* end) {
    Depth d(*this);
    Body body;
    for (;;) {
      const Token& tok = Cur();
      switch (tok.kind) {
        case TokenKind::kEnd:
          if (!end_names.empty()) Fail("unexpected end of template (missing end tag)");
          return body;
        case TokenKind::kData: {
          auto s = std::make_unique<Stmt>();
          s->kind = StmtKind::kText;
          s->line = tok.line;
          s->text = tok.text;
          body.push_back(std::move(s));
          Next();
          break;
        }
        case TokenKind::kVariableBegin: {
          auto s = std::make_unique<Stmt>();
          s->kind = StmtKind::kOutput;
          s->line = tok.line;
          Next();
          s->expr = ParseTuple(true);
          if (Cur().kind != TokenKind::kVariableEnd) Fail("expected '}}'");
          Next();
          body.push_back(std::move(s));
          break;
        }
        case TokenKind::kBlockBegin: {
          Next();
          if (Cur().kind != TokenKind::kName) Fail("expected a tag name");
          if (end_names.count(Cur().text)) {
            *end = Cur().text;
            return body;
          }
          body.push_back(ParseStatement());
          break;
        }
        default: Fail("unexpected token");
      }
    }
  }

  StmtPtr ParseStatement() {
    const std::string kw = Cur().text;
    const int line = Cur().line;
    auto s = std::make_unique<Stmt>();
    s->line = line;
    Next();
    std::string end;
    if (kw == "if") {
      s->kind = StmtKind::kIf;
      for (;;) {
        ExprPtr cond = ParseTuple(true);
        ExpectBlockEnd();
        Body b = ParseBody({"elif", "else", "endif"}, &end);
        s->branches.emplace_back(std::move(cond), std::move(b));
        Next();
        if (end == "elif") continue;
        if (end == "else") {
          ExpectBlockEnd();
          s->else_body = ParseBody({"endif"}, &end);
          Next();
        }
        break;
      }
      ExpectBlockEnd();
    } else if (kw == "for") {
      s->kind = StmtKind::kFor;
      s->targets = ParseTargets(nullptr);
      if (!IsName("in")) Fail("expected 'in'");
      Next();
      s->expr = ParseTuple(false);
      if (IsName("if")) {
        Next();
        s->cond = ParseExpression(true);
      }
      if (IsName("recursive")) Fail("recursive loops are not supported");
      ExpectBlockEnd();
      s->body = ParseBody({"endfor", "else"}, &end);
      Next();
      if (end == "else") {
        ExpectBlockEnd();
        s->else_body = ParseBody({"endfor"}, &end);
        Next();
      }
      ExpectBlockEnd();
    } else if (kw == "set") {
      s->kind = StmtKind::kSet;
      s->targets = ParseTargets(&s->name);
      if (IsOp("=")) {
        Next();
        s->expr = ParseTuple(true);
        ExpectBlockEnd();
      } else {
        if (s->targets.size() != 1 || !s->name.empty()) Fail("expected '='");
        if (IsOp("|")) s->filter = ParseFilters(nullptr);
        ExpectBlockEnd();
        s->body = ParseBody({"endset"}, &end);
        Next();
        ExpectBlockEnd();
      }
    } else if (kw == "macro") {
      s->kind = StmtKind::kMacro;
      s->name = ExpectName();
      ExpectOp("(");
      while (!IsOp(")")) {
        if (!s->params.empty()) ExpectOp(",");
        if (IsOp(")")) break;
        s->params.push_back(ExpectName());
        if (IsOp("=")) {
          Next();
          s->defaults.push_back(ParseExpression(true));
        } else {
          s->defaults.push_back(nullptr);
        }
      }
      Next();
      ExpectBlockEnd();
      s->body = ParseBody({"endmacro"}, &end);
      Next();
      if (Cur().kind == TokenKind::kName) Next();  // {% endmacro name %}
      ExpectBlockEnd();
    } else if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0) Fail("'" + kw + "' outside a loop");
      s->kind = kw == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      ExpectBlockEnd();
    } else if (kw == "filter") {
      s->kind = StmtKind::kFilterBlock;
      s->filter = ParseFilters(nullptr, /*leading_pipe=*/false);
      ExpectBlockEnd();
      s->body = ParseBody({"endfilter"}, &end);
      Next();
      ExpectBlockEnd();
    } else if (kw == "generation") {
      s->kind = StmtKind::kScope;
      ExpectBlockEnd();
      s->body = ParseBody({"endgeneration"}, &end);
      Next();
      ExpectBlockEnd();
    } else {
      Fail("unsupported tag '" + kw + "'");
    }
    return s;
  }

  // for/set targets: name | name, name... | (name, ...) | ns.attr (when attr is given).
  std::vector<std::string> ParseTargets(std::string* attr) {
    std::vector<std::string> names;
    const bool paren = IsOp("(");
    if (paren) Next();
    names.push_back(ExpectName());
    if (attr && !paren && IsOp(".")) {
      Next();
      *attr = ExpectName();
      return names;
    }
    while (IsOp(",")) {
      Next();
      if (Cur().kind != TokenKind::kName) break;
      names.push_back(ExpectName());
    }
    if (paren) ExpectOp(")");
    return names;
  }

  // Expressions ------------------------------------------------------------------------------

  ExprPtr ParseTuple(bool with_condexpr) {
    const int line = Cur().line;
    ExprPtr first = ParseExpression(with_condexpr);
    if (!IsOp(",")) return first;
    auto t = Make(ExprKind::kTuple, line);
    t->args.push_back(std::move(first));
    while (IsOp(",")) {
      Next();
      if (Cur().kind == TokenKind::kVariableEnd || Cur().kind == TokenKind::kBlockEnd ||
          IsOp(")") || IsName("if")) {
        break;
      }
      t->args.push_back(ParseExpression(with_condexpr));
    }
    return t;
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    Depth d(*this);
    ExprPtr e = ParseOr();
    if (!with_condexpr) return e;
    Chain chain(*this);
    while (IsName("if")) {
      chain.Add();
      const int line = Cur().line;
      Next();
      auto c = Make(ExprKind::kCondition, line);
      ExprPtr cond = ParseOr();
      ExprPtr other;
      if (IsName("else")) {
        Next();
        other = ParseExpression(true);
      }
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr Binary(ExprKind k, std::string op, ExprPtr a, ExprPtr b, int line) {
    auto e = Make(k, line);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr ParseOr() {
    ExprPtr e = ParseAnd();
    Chain chain(*this);
  while (IsName("or")) {
      chain.Add();
      const int line = Cur().line;
      Next();
      e = Binary(ExprKind::kOr, "or", std::move(e), ParseAnd(), line);
    }
    return e;
  }

  ExprPtr ParseAnd() {
    ExprPtr e = ParseNot();
    Chain chain(*this);
  while (IsName("and")) {
      chain.Add();
      const int line = Cur().line;
      Next();
      e = Binary(ExprKind::kAnd, "and", std::move(e), ParseNot(), line);
    }
    return e;
  }

  ExprPtr ParseNot() {
    Depth d(*this);
    if (IsName("not")) {
      auto e = Make(ExprKind::kNot, Cur().line);
      Next();
      e->args.push_back(ParseNot());
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    ExprPtr left = ParseMath1();
    ExprPtr result;
    for (;;) {
      std::string op;
      const int line = Cur().line;
      if (Cur().kind == TokenKind::kOperator &&
          (Cur().text == "==" || Cur().text == "!=" || Cur().text == "<" || Cur().text == "<=" ||
           Cur().text == ">" || Cur().text == ">=")) {
        op = Cur().text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && Peek().kind == TokenKind::kName && Peek().text == "in") {
        op = "notin";
        Next();
        Next();
      } else {
        break;
      }
      ExprPtr right = ParseMath1();
      // Chained comparisons (a < b < c) as a conjunction; the middle operand is re-parsed
      // from its tokens' tree by cloning-free evaluation: we keep it simple and reject chains.
      if (result) Fail("chained comparisons are not supported");
      result = Binary(ExprKind::kBinary, op, std::move(left), std::move(right), line);
    }
    return result ? std::move(result) : std::move(left);
  }

  ExprPtr ParseMath1() {
    ExprPtr e = ParseConcat();
    Chain chain(*this);
  while (IsOp("+") || IsOp("-")) {
      chain.Add();
      const std::string op = Cur().text;
      const int line = Cur().line;
      Next();
      e = Binary(ExprKind::kBinary, op, std::move(e), ParseConcat(), line);
    }
    return e;
  }

  ExprPtr ParseConcat() {
    ExprPtr e = ParseMath2();
    Chain chain(*this);
  while (IsOp("~")) {
      chain.Add();
      const int line = Cur().line;
      Next();
      e = Binary(ExprKind::kBinary, "~", std::move(e), ParseMath2(), line);
    }
    return e;
  }

  ExprPtr ParseMath2() {
    ExprPtr e = ParsePow();
    Chain chain(*this);
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      chain.Add();
      const std::string op = Cur().text;
      const int line = Cur().line;
      Next();
      e = Binary(ExprKind::kBinary, op, std::move(e), ParsePow(), line);
    }
    return e;
  }

  ExprPtr ParsePow() {
    ExprPtr e = ParseUnary(true);
    Chain chain(*this);
  while (IsOp("**")) {
      chain.Add();
      const int line = Cur().line;
      Next();
      e = Binary(ExprKind::kBinary, "**", std::move(e), ParseUnary(true), line);
    }
    return e;
  }

  ExprPtr ParseUnary(bool with_filter) {
    Depth d(*this);
    ExprPtr e;
    const int line = Cur().line;
    if (IsOp("-") || IsOp("+")) {
      const bool neg = IsOp("-");
      Next();
      e = Make(neg ? ExprKind::kNegate : ExprKind::kPlus, line);
      e->args.push_back(ParseUnary(false));
    } else {
      e = ParsePrimary();
    }
    e = ParsePostfix(std::move(e));
    if (with_filter) e = ParseFilterExpr(std::move(e));
    return e;
  }

  // Out-of-range literals (the lexer accepts any run of digits) are template errors, not
  // exceptions from the standard library.
  int64_t IntegerLiteral(const std::string& t) const {
    int64_t v = 0;
    int base = 10;
    size_t skip = 0;
    if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) base = 16, skip = 2;
    else if (t.size() > 2 && t[0] == '0' && (t[1] == 'o' || t[1] == 'O')) base = 8, skip = 2;
    else if (t.size() > 2 && t[0] == '0' && (t[1] == 'b' || t[1] == 'B')) base = 2, skip = 2;
    auto r = std::from_chars(t.data() + skip, t.data() + t.size(), v, base);
    if (r.ec != std::errc() || r.ptr != t.data() + t.size()) Fail("bad integer literal '" + t + "'");
    return v;
  }

  ExprPtr ParsePrimary() {
    Depth d(*this);
    const Token& tok = Cur();
    const int line = tok.line;
    switch (tok.kind) {
      case TokenKind::kName: {
        auto e = Make(ExprKind::kLiteral, line);
        const std::string& n = tok.text;
        if (n == "true" || n == "True") e->literal = Value::Bool(true);
        else if (n == "false" || n == "False") e->literal = Value::Bool(false);
        else if (n == "none" || n == "None") e->literal = Value::None();
        else {
          e->kind = ExprKind::kName;
          e->name = n;
        }
        Next();
        return e;
      }
      case TokenKind::kString: {
        std::string s;
        while (Cur().kind == TokenKind::kString) {
          s += Cur().text;
          Next();
        }
        auto e = Make(ExprKind::kLiteral, line);
        e->literal = Value::String(std::move(s));
        return e;
      }
      case TokenKind::kInteger: {
        auto e = Make(ExprKind::kLiteral, line);
        e->literal = Value::Int(IntegerLiteral(tok.text));
        Next();
        return e;
      }
      case TokenKind::kFloat: {
        auto e = Make(ExprKind::kLiteral, line);
        double v = 0;
        auto r = std::from_chars(tok.text.data(), tok.text.data() + tok.text.size(), v);
        if (r.ec != std::errc()) Fail("bad float literal");
        e->literal = Value::Float(v);
        Next();
        return e;
      }
      case TokenKind::kOperator: {
        if (IsOp("(")) {
          Next();
          if (IsOp(")")) {
            Next();
            return Make(ExprKind::kTuple, line);
          }
          ExprPtr first = ParseExpression(true);
          if (IsOp(")")) {
            Next();
            return first;
          }
          auto t = Make(ExprKind::kTuple, line);
          t->args.push_back(std::move(first));
          while (IsOp(",")) {
            Next();
            if (IsOp(")")) break;
            t->args.push_back(ParseExpression(true));
          }
          ExpectOp(")");
          return t;
        }
        if (IsOp("[")) {
          Next();
          auto l = Make(ExprKind::kList, line);
          while (!IsOp("]")) {
            if (!l->args.empty()) ExpectOp(",");
            if (IsOp("]")) break;
            l->args.push_back(ParseExpression(true));
          }
          Next();
          return l;
        }
        if (IsOp("{")) {
          Next();
          auto m = Make(ExprKind::kDict, line);
          while (!IsOp("}")) {
            if (!m->args.empty()) ExpectOp(",");
            if (IsOp("}")) break;
            m->args.push_back(ParseExpression(true));
            ExpectOp(":");
            m->args.push_back(ParseExpression(true));
          }
          Next();
          return m;
        }
        Fail("unexpected '" + tok.text + "'");
      }
      default: Fail("unexpected token in expression");
    }
  }

  ExprPtr ParsePostfix(ExprPtr e) {
    Chain chain(*this);
    for (;;) {
      chain.Add();
      const int line = Cur().line;
      if (IsOp(".")) {
        Next();
        if (Cur().kind == TokenKind::kName) {
          auto g = Make(ExprKind::kGetAttr, line);
          g->name = Cur().text;
          g->args.push_back(std::move(e));
          Next();
          e = std::move(g);
        } else if (Cur().kind == TokenKind::kInteger) {
          auto g = Make(ExprKind::kGetItem, line);
          g->args.push_back(std::move(e));
          auto idx = Make(ExprKind::kLiteral, line);
          idx->literal = Value::Int(IntegerLiteral(Cur().text));
          g->args.push_back(std::move(idx));
          Next();
          e = std::move(g);
        } else {
          Fail("expected an attribute name");
        }
      } else if (IsOp("[")) {
        Next();
        e = ParseSubscript(std::move(e), line);
      } else if (IsOp("(")) {
        auto c = Make(ExprKind::kCall, line);
        c->args.push_back(std::move(e));
        ParseCallArgs(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr obj, int line) {
    // [a], [a:b], [a:b:c], [::-1] ...
    ExprPtr parts[3];
    int colons = 0;
    if (!IsOp(":")) parts[0] = ParseExpression(true);
    while (IsOp(":") && colons < 2) {
      Next();
      ++colons;
      if (!IsOp(":") && !IsOp("]")) parts[colons] = ParseExpression(true);
    }
    ExpectOp("]");
    if (colons == 0) {
      auto g = Make(ExprKind::kGetItem, line);
      g->args.push_back(std::move(obj));
      g->args.push_back(std::move(parts[0]));
      return g;
    }
    auto s = Make(ExprKind::kSlice, line);
    s->args.push_back(std::move(obj));
    for (auto& p : parts) s->args.push_back(std::move(p));
    return s;
  }

  // "(" args ")" into e->args (after those present) and e->kwargs.
  void ParseCallArgs(Expr& e) {
    ExpectOp("(");
    bool first = true;
    while (!IsOp(")")) {
      if (!first) ExpectOp(",");
      first = false;
      if (IsOp(")")) break;
      if (IsOp("*") || IsOp("**")) Fail("*args and **kwargs in calls are not supported");
      if (Cur().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
          Peek().text == "=") {
        std::string key = Cur().text;
        Next();
        Next();
        e.kwargs.emplace_back(std::move(key), ParseExpression(true));
      } else {
        if (!e.kwargs.empty()) Fail("positional argument after keyword argument");
        e.args.push_back(ParseExpression(true));
      }
    }
    Next();
  }

  // "| f(args) | g ..." applied to `input` (null: a block's rendered text).
  ExprPtr ParseFilters(ExprPtr input, bool leading_pipe = true) {
    bool need_pipe = leading_pipe;
    ExprPtr e = std::move(input);
    Chain chain(*this);
    for (;;) {
      chain.Add();
      if (need_pipe) {
        if (!IsOp("|")) return e;
        Next();
      }
      need_pipe = true;
      auto f = Make(ExprKind::kFilter, Cur().line);
      f->name = ExpectName();
      while (IsOp(".")) {  // dotted filter names
        Next();
        f->name += "." + ExpectName();
      }
      f->args.push_back(std::move(e));
      if (IsOp("(")) ParseCallArgs(*f);
      e = std::move(f);
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr e) {
    Chain chain(*this);
    for (;;) {
      chain.Add();
      if (IsOp("|")) {
        e = ParseFilters(std::move(e));
      } else if (IsName("is")) {
        auto t = Make(ExprKind::kTest, Cur().line);
        Next();
        if (IsName("not")) {
          t->negated = true;
          Next();
        }
        t->name = ExpectName();
        while (IsOp(".")) {
          Next();
          t->name += "." + ExpectName();
        }
        t->args.push_back(std::move(e));
        if (IsOp("(")) {
          ParseCallArgs(*t);
        } else if ((Cur().kind == TokenKind::kName || Cur().kind == TokenKind::kString ||
                    Cur().kind == TokenKind::kInteger || Cur().kind == TokenKind::kFloat ||
                    IsOp("(") || IsOp("[") || IsOp("{")) &&
                   !IsName("else") && !IsName("or") && !IsName("and")) {
          if (IsName("is")) Fail("cannot chain multiple tests with 'is'");
          t->args.push_back(ParsePostfix(ParsePrimary()));
        }
        e = std::move(t);
      } else if (IsOp("(")) {
        auto c = Make(ExprKind::kCall, Cur().line);
        c->args.push_back(std::move(e));
        ParseCallArgs(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

 public:
  int loop_depth_ = 0;

 private:
  const std::vector<Token>& t_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Body Parse(const std::vector<Token>& tokens) {
  Parser p(tokens);
  p.loop_depth_ = 1;  // break/continue validity is checked at run time
  return p.ParseTemplate();
}

}  // namespace tqlm::jinja
