#include "coordinator/api/chat/jinja_parser.h"

#include <set>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "coordinator/api/chat/jinja_lexer.h"

namespace layerskip::coordinator::chat {
namespace {

// Thrown inside the parser only; ParseJinja turns it into a Status.
struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kMaxDepth = 128;  // nesting of expressions and blocks

class Parser {
 public:
  explicit Parser(std::vector<JinjaToken> t) : t_(std::move(t)) {}

  std::unique_ptr<TemplateNode> Template() {
    std::string end;
    auto body = Body({}, &end);
    return body;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw ParseError(absl::StrCat("chat template line ", Peek().line, ": ", what));
  }
  const JinjaToken& Peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  JinjaToken Next() {
    JinjaToken t = Peek();
    if (i_ < t_.size() - 1) ++i_;
    return t;
  }
  bool IsOp(const char* op, size_t ahead = 0) const { return Peek(ahead).kind == JinjaToken::kOp && Peek(ahead).text == op; }
  bool IsName(const char* n, size_t ahead = 0) const { return Peek(ahead).kind == JinjaToken::kName && Peek(ahead).text == n; }
  void ExpectOp(const char* op) {
    if (!IsOp(op)) Fail(absl::StrCat("expected '", op, "'", Describe()));
    Next();
  }
  void ExpectName(const char* n) {
    if (!IsName(n)) Fail(absl::StrCat("expected '", n, "'", Describe()));
    Next();
  }
  void ExpectTagEnd() {
    if (Peek().kind != JinjaToken::kTagEnd) Fail(absl::StrCat("expected the end of the tag", Describe()));
    Next();
  }
  std::string Describe() const {
    const JinjaToken& t = Peek();
    switch (t.kind) {
      case JinjaToken::kEof: return ", found the end of the template";
      case JinjaToken::kTagEnd: return ", found the end of the tag";
      case JinjaToken::kText: return ", found text";
      default: return absl::StrCat(", found '", t.text, "'");
    }
  }
  struct Depth {
    explicit Depth(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxDepth) p_->Fail("nested too deeply");
    }
    ~Depth() { --p_->depth_; }
    Parser* p_;
  };

  // Statements until a {% name %} whose name is in `ends` (left unconsumed except for "{%"; *end gets it).
  std::unique_ptr<TemplateNode> Body(const std::set<std::string>& ends, std::string* end) {
    Depth d(this);
    auto body = std::make_unique<TemplateNode>();
    body->kind = TemplateNode::kBody;
    while (true) {
      const JinjaToken& t = Peek();
      if (t.kind == JinjaToken::kEof) {
        if (!ends.empty()) Fail(absl::StrCat("missing {% ", *ends.rbegin(), " %}"));  // endfor / endif sort last
        return body;
      }
      if (t.kind == JinjaToken::kText) {
        auto n = std::make_unique<TemplateNode>();
        n->kind = TemplateNode::kText;
        n->text = Next().text;
        body->children.push_back(std::move(n));
        continue;
      }
      if (t.kind == JinjaToken::kExprBegin) {
        Next();
        auto n = std::make_unique<TemplateNode>();
        n->kind = TemplateNode::kOutput;
        n->line = t.line;
        n->exprs.push_back(Expression());
        ExpectTagEnd();
        body->children.push_back(std::move(n));
        continue;
      }
      if (t.kind != JinjaToken::kStmtBegin) Fail("unexpected token");
      const JinjaToken& name = Peek(1);
      if (name.kind != JinjaToken::kName) {
        Next();
        Fail(absl::StrCat("expected a tag name", Describe()));
      }
      if (ends.count(name.text)) {
        Next();
        *end = Next().text;
        return body;
      }
      Next();
      body->children.push_back(Statement());
    }
  }

  std::unique_ptr<TemplateNode> Statement() {
    const JinjaToken tag = Next();
    auto n = std::make_unique<TemplateNode>();
    n->line = tag.line;
    if (tag.text == "if") {
      n->kind = TemplateNode::kIf;
      n->exprs.push_back(Expression());
      ExpectTagEnd();
      std::string end;
      while (true) {
        n->children.push_back(Body({"elif", "else", "endif"}, &end));
        if (end == "elif") {
          n->exprs.push_back(Expression());
          ExpectTagEnd();
        } else if (end == "else") {
          ExpectTagEnd();
          n->children.push_back(Body({"endif"}, &end));
          break;
        } else {
          break;
        }
      }
      ExpectTagEnd();
    } else if (tag.text == "for") {
      n->kind = TemplateNode::kFor;
      do {
        if (Peek().kind != JinjaToken::kName) Fail(absl::StrCat("expected a loop variable", Describe()));
        n->targets.push_back(Next().text);
      } while (IsOp(",") && (Next(), true));
      ExpectName("in");
      n->exprs.push_back(Or());
      if (IsName("if")) {
        Next();
        n->exprs.push_back(Expression());
      }
      if (IsName("recursive")) Fail("recursive loops are not supported");
      ExpectTagEnd();
      std::string end;
      n->children.push_back(Body({"else", "endfor"}, &end));
      if (end == "else") {
        ExpectTagEnd();
        n->children.push_back(Body({"endfor"}, &end));
      }
      ExpectTagEnd();
    } else if (tag.text == "set") {
      n->kind = TemplateNode::kSet;
      if (Peek().kind != JinjaToken::kName) Fail(absl::StrCat("expected a variable name", Describe()));
      n->targets.push_back(Next().text);
      if (IsOp(".")) {
        Next();
        if (Peek().kind != JinjaToken::kName) Fail(absl::StrCat("expected an attribute name", Describe()));
        n->targets.push_back(Next().text);
      }
      if (IsOp(",")) Fail("tuple assignment in {% set %} is not supported");
      if (!IsOp("=")) Fail("block assignment ({% set x %}...{% endset %}) is not supported");
      Next();
      n->exprs.push_back(Expression());
      ExpectTagEnd();
    } else if (tag.text == "break" || tag.text == "continue") {
      n->kind = tag.text == "break" ? TemplateNode::kBreak : TemplateNode::kContinue;
      ExpectTagEnd();
    } else {
      Fail(absl::StrCat("the tag {% ", tag.text, " %} is not supported"));
    }
    return n;
  }

  std::unique_ptr<Expr> Make(Expr::Kind k, std::string name = "") const {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->name = std::move(name);
    e->line = Peek().line;
    return e;
  }
  std::unique_ptr<Expr> Binary(std::string op, std::unique_ptr<Expr> a, std::unique_ptr<Expr> b) const {
    auto e = Make(Expr::kBinary, std::move(op));
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  // expr := or ["if" or ["else" expr]]
  std::unique_ptr<Expr> Expression() {
    Depth d(this);
    auto value = Or();
    if (!IsName("if")) return value;
    Next();
    auto e = Make(Expr::kCond);
    e->args.push_back(std::move(value));
    e->args.push_back(Or());
    if (IsName("else")) {
      Next();
      e->args.push_back(Expression());
    } else {
      e->args.push_back(nullptr);
    }
    return e;
  }
  std::unique_ptr<Expr> Or() {
    auto a = And();
    while (IsName("or")) {
      Next();
      a = Binary("or", std::move(a), And());
    }
    return a;
  }
  std::unique_ptr<Expr> And() {
    auto a = Not();
    while (IsName("and")) {
      Next();
      a = Binary("and", std::move(a), Not());
    }
    return a;
  }
  std::unique_ptr<Expr> Not() {
    if (IsName("not")) {
      Depth d(this);
      Next();
      auto e = Make(Expr::kUnary, "not");
      e->args.push_back(Not());
      return e;
    }
    return Compare();
  }
  std::unique_ptr<Expr> Compare() {
    auto a = Concat();
    while (true) {
      static const char* kOps[] = {"==", "!=", "<", ">", "<=", ">="};
      std::string op;
      for (const char* o : kOps)
        if (IsOp(o)) op = o;
      if (!op.empty()) {
        Next();
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        return a;
      }
      a = Binary(op, std::move(a), Concat());
    }
  }
  std::unique_ptr<Expr> Concat() {
    auto a = Sum();
    while (IsOp("~")) {
      Next();
      a = Binary("~", std::move(a), Sum());
    }
    return a;
  }
  std::unique_ptr<Expr> Sum() {
    auto a = Product();
    while (IsOp("+") || IsOp("-")) {
      std::string op = Next().text;
      a = Binary(op, std::move(a), Product());
    }
    return a;
  }
  std::unique_ptr<Expr> Product() {
    auto a = Power();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Next().text;
      a = Binary(op, std::move(a), Power());
    }
    return a;
  }
  std::unique_ptr<Expr> Power() {
    auto a = Unary();
    while (IsOp("**")) {
      Next();
      a = Binary("**", std::move(a), Unary());
    }
    return a;
  }
  std::unique_ptr<Expr> Unary() {
    if (IsOp("-") || IsOp("+")) {
      Depth d(this);
      auto e = Make(Expr::kUnary, Next().text);
      e->args.push_back(Unary());
      return e;
    }
    return FilterAndTest(Postfix(Primary()));
  }
  // Filters (| name(args)) and tests (is [not] name [arg]) bind tighter than the operators.
  std::unique_ptr<Expr> FilterAndTest(std::unique_ptr<Expr> e) {
    while (true) {
      if (IsOp("|")) {
        Next();
        if (Peek().kind != JinjaToken::kName) Fail(absl::StrCat("expected a filter name", Describe()));
        const std::string name = Next().text;
        if (!IsKnownFilter(name)) Fail(absl::StrCat("the filter '", name, "' is not supported"));
        auto f = Make(Expr::kFilter, name);
        f->args.push_back(std::move(e));
        if (IsOp("(")) Arguments(*f);
        e = std::move(f);
      } else if (IsName("is")) {
        Next();
        auto t = Make(Expr::kTest);
        if (IsName("not")) {
          Next();
          t->negated = true;
        }
        if (Peek().kind != JinjaToken::kName) Fail(absl::StrCat("expected a test name", Describe()));
        t->name = Next().text;
        if (!IsKnownTest(t->name)) Fail(absl::StrCat("the test '", t->name, "' is not supported"));
        t->args.push_back(std::move(e));
        if (IsOp("(")) {
          Arguments(*t);
        } else if (Peek().kind == JinjaToken::kString || Peek().kind == JinjaToken::kInt ||
                   Peek().kind == JinjaToken::kFloat || (Peek().kind == JinjaToken::kName && !IsName("and") &&
                                                         !IsName("or") && !IsName("if") && !IsName("else"))) {
          t->args.push_back(Postfix(Primary()));  // "x is divisibleby 3", "x is sameas none"
          t->arg_names.push_back("");
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  // (args, name=value, ...) into e.args[1..] / e.arg_names.
  void Arguments(Expr& e) {
    ExpectOp("(");
    while (!IsOp(")")) {
      std::string name;
      if (Peek().kind == JinjaToken::kName && IsOp("=", 1)) {
        name = Next().text;
        Next();
      }
      e.args.push_back(Expression());
      e.arg_names.push_back(name);
      if (!IsOp(")")) ExpectOp(",");
    }
    Next();
  }
  std::unique_ptr<Expr> Postfix(std::unique_ptr<Expr> e) {
    while (true) {
      if (IsOp(".")) {
        Next();
        if (Peek().kind != JinjaToken::kName && Peek().kind != JinjaToken::kInt) Fail(absl::StrCat("expected an attribute", Describe()));
        auto a = Make(Expr::kAttr, Next().text);
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (IsOp("[")) {
        Next();
        std::unique_ptr<Expr> parts[3];
        int n = 0;
        bool slice = false;
        while (true) {
          if (!IsOp(":") && !IsOp("]")) parts[n] = Expression();
          if (IsOp(":")) {
            Next();
            slice = true;
            if (++n > 2) Fail("a slice takes at most three parts");
            continue;
          }
          break;
        }
        ExpectOp("]");
        auto x = Make(slice ? Expr::kSlice : Expr::kItem);
        x->args.push_back(std::move(e));
        if (!slice && !parts[0]) Fail("empty subscript []");
        for (int i = 0; i < (slice ? 3 : 1); ++i) x->args.push_back(std::move(parts[i]));
        e = std::move(x);
      } else if (IsOp("(")) {
        auto c = Make(Expr::kCall);
        c->args.push_back(std::move(e));
        Arguments(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  std::unique_ptr<Expr> Primary() {
    Depth d(this);
    const JinjaToken t = Peek();
    switch (t.kind) {
      case JinjaToken::kString: {
        auto e = Make(Expr::kLiteral);
        e->value = Next().text;
        while (Peek().kind == JinjaToken::kString) e->value = e->value.get<std::string>() + Next().text;  // "a" "b"
        return e;
      }
      case JinjaToken::kInt: {
        auto e = Make(Expr::kLiteral);
        try {
          e->value = std::stoll(Next().text);
        } catch (...) {
          Fail("integer literal out of range");
        }
        return e;
      }
      case JinjaToken::kFloat: {
        auto e = Make(Expr::kLiteral);
        e->value = std::stod(Next().text);
        return e;
      }
      case JinjaToken::kName: {
        Next();
        auto e = Make(Expr::kLiteral);
        if (t.text == "true" || t.text == "True") e->value = true;
        else if (t.text == "false" || t.text == "False") e->value = false;
        else if (t.text == "none" || t.text == "None") e->value = nullptr;
        else e = Make(Expr::kName, t.text);
        return e;
      }
      case JinjaToken::kOp:
        if (t.text == "(") {
          Next();
          if (IsOp(")")) {  // () : an empty tuple, a list here
            Next();
            return Make(Expr::kList);
          }
          auto e = Expression();
          if (IsOp(",")) {  // a tuple: a list here
            auto list = Make(Expr::kList);
            list->args.push_back(std::move(e));
            while (IsOp(",")) {
              Next();
              if (IsOp(")")) break;
              list->args.push_back(Expression());
            }
            e = std::move(list);
          }
          ExpectOp(")");
          return e;
        }
        if (t.text == "[") {
          Next();
          auto e = Make(Expr::kList);
          while (!IsOp("]")) {
            e->args.push_back(Expression());
            if (!IsOp("]")) ExpectOp(",");
          }
          Next();
          return e;
        }
        if (t.text == "{") {
          Next();
          auto e = Make(Expr::kDict);
          while (!IsOp("}")) {
            e->args.push_back(Expression());
            ExpectOp(":");
            e->args.push_back(Expression());
            if (!IsOp("}")) ExpectOp(",");
          }
          Next();
          return e;
        }
        break;
      default: break;
    }
    Fail(absl::StrCat("expected an expression", Describe()));
  }

  std::vector<JinjaToken> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

bool IsKnownFilter(const std::string& name) {
  static const std::set<std::string> kFilters = {"trim", "length", "count", "upper", "lower", "capitalize", "title",
                                                 "first", "last", "join", "default", "d", "string", "int", "float",
                                                 "tojson", "replace", "list", "reverse", "abs", "items"};
  return kFilters.count(name) > 0;
}

bool IsKnownTest(const std::string& name) {
  static const std::set<std::string> kTests = {"defined", "undefined", "none", "string", "number", "integer",
                                               "float", "boolean", "mapping", "iterable", "sequence", "true",
                                               "false", "odd", "even", "divisibleby", "eq", "ne", "sameas", "in"};
  return kTests.count(name) > 0;
}

absl::StatusOr<std::unique_ptr<TemplateNode>> ParseJinja(std::string_view source) {
  absl::StatusOr<std::vector<JinjaToken>> tokens = LexJinja(source);
  if (!tokens.ok()) return tokens.status();
  try {
    return Parser(*std::move(tokens)).Template();
  } catch (const ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
}

}  // namespace layerskip::coordinator::chat
