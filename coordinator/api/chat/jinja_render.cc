#include "coordinator/api/chat/jinja_render.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "coordinator/api/chat/jinja_value.h"

namespace layerskip::coordinator::chat {
namespace {

// Thrown inside the renderer only; RenderJinja turns it into a Status.
struct RenderError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr size_t kMaxOutput = 16 << 20;
constexpr int64_t kMaxRange = 1 << 20;
constexpr int64_t kMaxIterations = 1 << 18;  // loop iterations per render: nested loops cannot run for hours
constexpr char kNamespaceKey[] = "\x01namespace";

enum class Flow { kNormal, kBreak, kContinue };

const char* TypeName(const Value& v) {
  switch (v.type()) {
    case Value::value_t::discarded: return "undefined";
    case Value::value_t::null: return "none";
    case Value::value_t::boolean: return "bool";
    case Value::value_t::string: return "string";
    case Value::value_t::array: return "list";
    case Value::value_t::object: return "dict";
    case Value::value_t::number_float: return "float";
    default: return "int";
  }
}

class Renderer {
 public:
  explicit Renderer(const Value& globals) { scopes_.push_back(globals.is_object() ? globals : Value::object()); }

  std::string Run(const TemplateNode& root) {
    Exec(root);
    return std::move(out_);
  }

 private:
  [[noreturn]] void Fail(int line, const std::string& what) const {
    throw RenderError(absl::StrCat("chat template line ", line, ": ", what));
  }

  Flow Exec(const TemplateNode& n) {
    switch (n.kind) {
      case TemplateNode::kBody:
        for (const auto& c : n.children) {
          Flow f = Exec(*c);
          if (f != Flow::kNormal) return f;
        }
        return Flow::kNormal;
      case TemplateNode::kText: Emit(n.text); return Flow::kNormal;
      case TemplateNode::kOutput: Emit(PyStr(Eval(*n.exprs[0]))); return Flow::kNormal;
      case TemplateNode::kIf:
        for (size_t i = 0; i < n.exprs.size(); ++i)
          if (Truthy(Eval(*n.exprs[i]))) return Exec(*n.children[i]);
        if (n.children.size() > n.exprs.size()) return Exec(*n.children.back());
        return Flow::kNormal;
      case TemplateNode::kFor: return For(n);
      case TemplateNode::kSet: Set(n); return Flow::kNormal;
      case TemplateNode::kBreak: return Flow::kBreak;
      case TemplateNode::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void Emit(const std::string& s) {
    out_ += s;
    if (out_.size() > kMaxOutput) throw RenderError("chat template: the rendered prompt exceeds 16 MiB");
  }

  void Bind(Value& scope, const TemplateNode& n, const Value& item) {
    if (n.targets.size() == 1) {
      scope[n.targets[0]] = item;
      return;
    }
    if (!item.is_array() || item.size() != n.targets.size())
      Fail(n.line, absl::StrCat("cannot unpack a ", TypeName(item), " into ", n.targets.size(), " loop variables"));
    for (size_t i = 0; i < n.targets.size(); ++i) scope[n.targets[i]] = item[i];
  }

  Flow For(const TemplateNode& n) {
    const Value seq = Eval(*n.exprs[0]);
    std::vector<Value> items;
    if (seq.is_array()) {
      items.assign(seq.begin(), seq.end());
    } else if (seq.is_object()) {
      for (auto it = seq.begin(); it != seq.end(); ++it) items.push_back(it.key());
    } else if (seq.is_string()) {
      const std::string& s = seq.get_ref<const std::string&>();
      for (size_t i = 0; i < s.size();) {
        size_t len = 1;
        while (i + len < s.size() && (static_cast<unsigned char>(s[i + len]) & 0xC0) == 0x80) ++len;
        items.push_back(s.substr(i, len));
        i += len;
      }
    } else if (!IsUndefined(seq)) {
      Fail(n.line, absl::StrCat("cannot loop over a ", TypeName(seq)));
    }
    if (n.exprs.size() > 1) {  // for x in xs if cond
      std::vector<Value> kept;
      for (const Value& item : items) {
        scopes_.push_back(Value::object());
        Bind(scopes_.back(), n, item);
        const bool keep = Truthy(Eval(*n.exprs[1]));
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      if (n.children.size() > 1) return Exec(*n.children[1]);
      return Flow::kNormal;
    }
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      if (++iterations_ > kMaxIterations) Fail(n.line, "the template runs too many loop iterations");
      Value scope = Value::object();
      Bind(scope, n, items[static_cast<size_t>(i)]);
      Value loop = {{"index", i + 1}, {"index0", i}, {"revindex", len - i}, {"revindex0", len - i - 1},
                    {"first", i == 0}, {"last", i == len - 1}, {"length", len}};
      if (i > 0) loop["previtem"] = items[static_cast<size_t>(i - 1)];
      if (i + 1 < len) loop["nextitem"] = items[static_cast<size_t>(i + 1)];
      scope["loop"] = std::move(loop);
      scopes_.push_back(std::move(scope));
      const Flow f = Exec(*n.children[0]);
      scopes_.pop_back();
      if (f == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  void Set(const TemplateNode& n) {
    Value v = Eval(*n.exprs[0]);
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = std::move(v);
      return;
    }
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      auto it = s->find(n.targets[0]);
      if (it == s->end()) continue;
      if (!it->is_object() || !it->contains(kNamespaceKey))
        Fail(n.line, absl::StrCat("cannot set an attribute of '", n.targets[0], "' (only of a namespace())"));
      (*it)[n.targets[1]] = std::move(v);
      return;
    }
    Fail(n.line, absl::StrCat("'", n.targets[0], "' is undefined"));
  }

  Value Lookup(const std::string& name) const {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s)
      if (auto it = s->find(name); it != s->end()) return *it;
    return Undefined();
  }

  Value Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::kLiteral: return e.value;
      case Expr::kName: return Lookup(e.name);
      case Expr::kAttr: {
        Value obj = Eval(*e.args[0]);
        if (IsUndefined(obj) || obj.is_null()) Fail(e.line, absl::StrCat("a ", TypeName(obj), " value has no attribute '", e.name, "'"));
        if (obj.is_object())
          if (auto it = obj.find(e.name); it != obj.end()) return *it;
        return Undefined();
      }
      case Expr::kItem: return Item(e, Eval(*e.args[0]), Eval(*e.args[1]));
      case Expr::kSlice: return Slice(e);
      case Expr::kCall: return Call(e);
      case Expr::kFilter: return Filter(e);
      case Expr::kTest: return Test(e) != e.negated;
      case Expr::kUnary: {
        Value v = Eval(*e.args[0]);
        if (e.name == "not") return !Truthy(v);
        if (!v.is_number()) Fail(e.line, absl::StrCat("bad operand type for unary ", e.name, ": ", TypeName(v)));
        if (e.name == "+") return v;
        if (v.is_number_float()) return -v.get<double>();
        if (v.get<int64_t>() == INT64_MIN) Fail(e.line, "integer overflow in unary -");
        return -v.get<int64_t>();
      }
      case Expr::kBinary: return Binary(e);
      case Expr::kCond:
        if (Truthy(Eval(*e.args[1]))) return Eval(*e.args[0]);
        return e.args[2] ? Eval(*e.args[2]) : Undefined();
      case Expr::kList: {
        Value a = Value::array();
        for (const auto& x : e.args) a.push_back(Eval(*x));
        return a;
      }
      case Expr::kDict: {
        Value d = Value::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = Eval(*e.args[i]);
          if (!k.is_string()) Fail(e.line, "dict keys must be strings");
          d[k.get<std::string>()] = Eval(*e.args[i + 1]);
        }
        return d;
      }
    }
    return Undefined();
  }

  Value Item(const Expr& e, const Value& obj, const Value& key) {
    if (IsUndefined(obj) || obj.is_null()) Fail(e.line, absl::StrCat("a ", TypeName(obj), " value cannot be indexed"));
    if (obj.is_object()) {
      if (!key.is_string()) return Undefined();
      auto it = obj.find(key.get<std::string>());
      return it == obj.end() ? Undefined() : *it;
    }
    if ((obj.is_array() || obj.is_string()) && key.is_number_integer()) {
      const int64_t n = obj.is_array() ? static_cast<int64_t>(obj.size()) : static_cast<int64_t>(obj.get_ref<const std::string&>().size());
      int64_t i = key.get<int64_t>();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Undefined();
      if (obj.is_array()) return obj[static_cast<size_t>(i)];
      return std::string(1, obj.get_ref<const std::string&>()[static_cast<size_t>(i)]);
    }
    Fail(e.line, absl::StrCat("cannot index a ", TypeName(obj), " with a ", TypeName(key)));
  }

  Value Slice(const Expr& e) {
    Value obj = Eval(*e.args[0]);
    if (!obj.is_array() && !obj.is_string()) Fail(e.line, absl::StrCat("cannot slice a ", TypeName(obj)));
    const int64_t n = obj.is_array() ? static_cast<int64_t>(obj.size()) : static_cast<int64_t>(obj.get_ref<const std::string&>().size());
    auto part = [&](int k) -> std::optional<int64_t> {
      if (!e.args[k]) return std::nullopt;
      Value v = Eval(*e.args[k]);
      if (v.is_null()) return std::nullopt;
      if (!v.is_number_integer()) Fail(e.line, "slice indices must be integers");
      return v.get<int64_t>();
    };
    const int64_t step = part(3).value_or(1);
    if (step == 0) Fail(e.line, "slice step cannot be zero");
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t x = *v < -n ? -n - 1 : (*v < 0 ? *v + n : *v);  // (no overflow for any index)
      return step > 0 ? std::clamp<int64_t>(x, 0, n) : std::clamp<int64_t>(x, -1, n - 1);
    };
    const int64_t a = clamp(part(1), step > 0 ? 0 : n - 1), b = clamp(part(2), step > 0 ? n : -1);
    Value out = obj.is_array() ? Value::array() : Value("");
    std::string s;
    for (int64_t i = a; step > 0 ? i < b : i > b;) {
      if (obj.is_array()) out.push_back(obj[static_cast<size_t>(i)]);
      else s += obj.get_ref<const std::string&>()[static_cast<size_t>(i)];
      if (__builtin_add_overflow(i, step, &i)) break;
    }
    return obj.is_array() ? out : Value(s);
  }

  // Positional and keyword arguments of a call or filter, evaluated.
  struct Args {
    std::vector<Value> pos;
    std::vector<std::pair<std::string, Value>> kw;
    const Value* Get(size_t i, const char* name) const {
      for (const auto& [k, v] : kw)
        if (k == name) return &v;
      return i < pos.size() ? &pos[i] : nullptr;
    }
  };
  Args EvalArgs(const Expr& e) {
    Args a;
    for (size_t i = 1; i < e.args.size(); ++i) {
      Value v = Eval(*e.args[i]);
      if (e.arg_names[i - 1].empty()) a.pos.push_back(std::move(v));
      else a.kw.emplace_back(e.arg_names[i - 1], std::move(v));
    }
    return a;
  }
  std::string StrArg(const Expr& e, const Args& a, size_t i, const char* name, const char* fn) {
    const Value* v = a.Get(i, name);
    if (!v || !v->is_string()) Fail(e.line, absl::StrCat(fn, "(): argument '", name, "' must be a string"));
    return v->get<std::string>();
  }

  Value Call(const Expr& e);
  Value Method(const Expr& e, const Value& obj, const std::string& name, const Args& a);
  Value Filter(const Expr& e);
  bool Test(const Expr& e);
  Value Binary(const Expr& e);

  std::vector<Value> scopes_;  // innermost last
  std::string out_;
  int64_t iterations_ = 0;
};

Value Renderer::Call(const Expr& e) {
  const Expr& callee = *e.args[0];
  Args a = EvalArgs(e);
  if (callee.kind == Expr::kAttr) return Method(e, Eval(*callee.args[0]), callee.name, a);
  if (callee.kind != Expr::kName) Fail(e.line, "only functions and methods can be called");
  if (!IsUndefined(Lookup(callee.name))) Fail(e.line, absl::StrCat("'", callee.name, "' is not callable"));
  if (callee.name == "raise_exception") {
    const Value* m = a.Get(0, "message");
    throw RenderError(absl::StrCat("chat template: ", m ? PyStr(*m) : std::string("raise_exception()")));
  }
  if (callee.name == "range") {
    int64_t lo = 0, hi = 0, step = 1;
    for (const Value& v : a.pos)
      if (!v.is_number_integer()) Fail(e.line, "range() takes integers");
    if (a.pos.size() == 1) hi = a.pos[0].get<int64_t>();
    else if (a.pos.size() >= 2) lo = a.pos[0].get<int64_t>(), hi = a.pos[1].get<int64_t>();
    if (a.pos.size() == 3) step = a.pos[2].get<int64_t>();
    if (a.pos.empty() || a.pos.size() > 3 || step == 0) Fail(e.line, "range() takes 1 to 3 integers, step not 0");
    Value out = Value::array();
    for (int64_t i = lo; step > 0 ? i < hi : i > hi;) {
      if (out.size() >= static_cast<size_t>(kMaxRange)) Fail(e.line, "range() is too long");
      out.push_back(i);
      if (__builtin_add_overflow(i, step, &i)) break;
    }
    return out;
  }
  if (callee.name == "namespace") {
    Value ns = Value::object();
    ns[kNamespaceKey] = true;
    for (auto& [k, v] : a.kw) ns[k] = v;
    return ns;
  }
  if (callee.name == "strftime_now") {
    const std::string fmt = StrArg(e, a, 0, "format", "strftime_now");
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
    return std::string(buf, n);
  }
  Fail(e.line, absl::StrCat("the function '", callee.name, "' is not supported"));
}

Value Renderer::Method(const Expr& e, const Value& obj, const std::string& name, const Args& a) {
  if (obj.is_string()) {
    const std::string& s = obj.get_ref<const std::string&>();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const Value* c = a.Get(0, "chars");
      std::string chars = c && c->is_string() ? c->get<std::string>() : "";
      return PyStrip(s, c && c->is_string() ? &chars : nullptr, name != "rstrip", name != "lstrip");
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      std::string out = s;
      bool start = true;
      for (char& ch : out) {
        const bool alpha = std::isalpha(static_cast<unsigned char>(ch));
        if (name == "upper") ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        else if (name == "lower") ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        else if (name == "title") ch = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(ch)) : std::tolower(static_cast<unsigned char>(ch)));
        else ch = static_cast<char>(&ch == &out[0] ? std::toupper(static_cast<unsigned char>(ch)) : std::tolower(static_cast<unsigned char>(ch)));
        start = !alpha;
      }
      return out;
    }
    if (name == "startswith" || name == "endswith") {
      const Value* p = a.Get(0, "prefix");
      std::vector<std::string> options;
      if (p && p->is_string()) options.push_back(p->get<std::string>());
      else if (p && p->is_array())
        for (const Value& x : *p)
          if (x.is_string()) options.push_back(x.get<std::string>());
      if (options.empty()) Fail(e.line, absl::StrCat(name, "() takes a string"));
      for (const std::string& o : options)
        if (s.size() >= o.size() && (name == "startswith" ? s.compare(0, o.size(), o) == 0 : s.compare(s.size() - o.size(), o.size(), o) == 0))
          return true;
      return false;
    }
    if (name == "split") {
      const Value* sep = a.Get(0, "sep");
      const Value* maxv = a.Get(1, "maxsplit");
      int64_t max = maxv && maxv->is_number_integer() ? maxv->get<int64_t>() : -1;
      Value out = Value::array();
      if (!sep || sep->is_null()) {  // runs of whitespace
        size_t i = 0;
        while (true) {
          while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
          if (i >= s.size()) break;
          if (max == 0) { out.push_back(PyStrip(s.substr(i), nullptr, false, true)); break; }
          size_t j = i;
          while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
          out.push_back(s.substr(i, j - i));
          --max;
          i = j;
        }
        return out;
      }
      if (!sep->is_string() || sep->get<std::string>().empty()) Fail(e.line, "split() takes a non-empty string separator");
      const std::string d = sep->get<std::string>();
      size_t i = 0;
      while (true) {
        const size_t j = max == 0 ? std::string::npos : s.find(d, i);
        if (j == std::string::npos) { out.push_back(s.substr(i)); break; }
        out.push_back(s.substr(i, j - i));
        i = j + d.size();
        --max;
      }
      return out;
    }
    if (name == "replace") {
      const std::string from = StrArg(e, a, 0, "old", "replace"), to = StrArg(e, a, 1, "new", "replace");
      const Value* cnt = a.Get(2, "count");
      int64_t count = cnt && cnt->is_number_integer() ? cnt->get<int64_t>() : -1;
      std::string out;
      size_t i = 0;
      if (from.empty()) return s;
      while (count != 0) {
        const size_t j = s.find(from, i);
        if (j == std::string::npos) break;
        out += s.substr(i, j - i) + to;
        i = j + from.size();
        --count;
      }
      return out + s.substr(i);
    }
  }
  if (obj.is_object()) {
    if (name == "items") {
      Value out = Value::array();
      for (auto it = obj.begin(); it != obj.end(); ++it)
        if (it.key() != kNamespaceKey) out.push_back(Value::array({it.key(), it.value()}));
      return out;
    }
    if (name == "keys" || name == "values") {
      Value out = Value::array();
      for (auto it = obj.begin(); it != obj.end(); ++it)
        if (it.key() != kNamespaceKey) out.push_back(name == "keys" ? Value(it.key()) : it.value());
      return out;
    }
    if (name == "get") {
      const std::string key = StrArg(e, a, 0, "key", "get");
      if (auto it = obj.find(key); it != obj.end()) return *it;
      const Value* d = a.Get(1, "default");
      return d ? *d : Value(nullptr);
    }
  }
  Fail(e.line, absl::StrCat("the method '", name, "' of a ", TypeName(obj), " is not supported"));
}

Value Renderer::Filter(const Expr& e) {
  Value v = Eval(*e.args[0]);
  Args a = EvalArgs(e);
  const std::string& f = e.name;
  if (f == "default" || f == "d") {
    const Value* b = a.Get(1, "boolean");
    const bool use = IsUndefined(v) || (b && Truthy(*b) && !Truthy(v));
    const Value* d = a.Get(0, "default_value");
    return use ? (d ? *d : Value("")) : v;
  }
  if (f == "string") return PyStr(v);
  if (f == "tojson") {
    const Value* ind = a.Get(0, "indent");
    return PyJsonDumps(v, ind && ind->is_number_integer() ? static_cast<int>(ind->get<int64_t>()) : -1);
  }
  if (f == "length" || f == "count") {
    if (v.is_string()) return static_cast<int64_t>(CodePoints(v.get<std::string>()));
    if (v.is_array() || v.is_object()) return static_cast<int64_t>(v.size() - (v.is_object() && v.contains(kNamespaceKey)));
    if (IsUndefined(v)) return 0;
    Fail(e.line, absl::StrCat("a ", TypeName(v), " has no length"));
  }
  if (f == "list") {
    if (v.is_array()) return v;
    Value out = Value::array();
    if (v.is_string())
      for (char c : v.get<std::string>()) out.push_back(std::string(1, c));
    else if (v.is_object())
      for (auto it = v.begin(); it != v.end(); ++it) out.push_back(it.key());
    else Fail(e.line, absl::StrCat("cannot make a list of a ", TypeName(v)));
    return out;
  }
  if (f == "first" || f == "last") {
    if (v.is_array()) return v.empty() ? Undefined() : (f == "first" ? v.front() : v.back());
    if (v.is_string()) {
      const std::string& s = v.get_ref<const std::string&>();
      return s.empty() ? Undefined() : Value(std::string(1, f == "first" ? s.front() : s.back()));
    }
    Fail(e.line, absl::StrCat("|", f, " needs a list or a string, got a ", TypeName(v)));
  }
  if (f == "reverse") {
    if (v.is_array()) return Value(std::vector<Value>(v.rbegin(), v.rend()));
    if (v.is_string()) {
      std::string s = v.get<std::string>();
      return std::string(s.rbegin(), s.rend());
    }
    Fail(e.line, absl::StrCat("cannot reverse a ", TypeName(v)));
  }
  if (f == "join") {
    if (!v.is_array()) Fail(e.line, absl::StrCat("|join needs a list, got a ", TypeName(v)));
    const Value* sep = a.Get(0, "d");
    std::string out, d = sep ? PyStr(*sep) : "";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? d : "") + PyStr(v[i]);
    return out;
  }
  if (f == "items") return Method(e, v, "items", {});
  if (f == "int") {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number()) {
      const double d = v.get<double>();
      return std::fabs(d) < 9.2e18 ? static_cast<int64_t>(d) : int64_t{0};
    }
    if (v.is_string()) {
      try { return static_cast<int64_t>(std::stoll(v.get<std::string>())); } catch (...) { return 0; }
    }
    return 0;
  }
  if (f == "float") {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      try { return std::stod(v.get<std::string>()); } catch (...) { return 0.0; }
    }
    return 0.0;
  }
  if (f == "abs") {
    if (v.is_number_float()) return std::fabs(v.get<double>());
    if (v.is_number()) {
      if (v.get<int64_t>() == INT64_MIN) Fail(e.line, "integer overflow in |abs");
      return std::llabs(v.get<int64_t>());
    }
    Fail(e.line, absl::StrCat("|abs needs a number, got a ", TypeName(v)));
  }
  // String filters.
  if (!v.is_string()) {
    if (IsUndefined(v)) Fail(e.line, absl::StrCat("|", f, " of an undefined value"));
    v = PyStr(v);
  }
  if (f == "trim") {
    const Value* c = a.Get(0, "chars");
    std::string chars = c && c->is_string() ? c->get<std::string>() : "";
    return PyStrip(v.get<std::string>(), c && c->is_string() ? &chars : nullptr, true, true);
  }
  if (f == "replace") return Method(e, v, "replace", a);
  if (f == "upper" || f == "lower" || f == "title" || f == "capitalize") return Method(e, v, f, a);
  Fail(e.line, absl::StrCat("the filter '", f, "' is not supported"));
}

bool Renderer::Test(const Expr& e) {
  const std::string& t = e.name;
  if (t == "defined" || t == "undefined") {
    const bool defined = !IsUndefined(Eval(*e.args[0]));
    return t == "defined" ? defined : !defined;
  }
  Value v = Eval(*e.args[0]);
  Args a = EvalArgs(e);
  const Value* arg = a.Get(0, "other");
  if (t == "none") return v.is_null();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") return v.is_number_integer();
  if (t == "float") return v.is_number_float();
  if (t == "boolean") return v.is_boolean();
  if (t == "true") return v.is_boolean() && v.get<bool>();
  if (t == "false") return v.is_boolean() && !v.get<bool>();
  if (t == "mapping") return v.is_object();
  if (t == "iterable") return v.is_array() || v.is_object() || v.is_string();
  if (t == "sequence") return v.is_array() || v.is_object() || v.is_string();
  if (t == "odd" || t == "even" || t == "divisibleby") {
    if (!v.is_number_integer()) Fail(e.line, absl::StrCat("'is ", t, "' needs an integer"));
    const int64_t x = v.get<int64_t>();
    if (t == "divisibleby") {
      if (!arg || !arg->is_number_integer() || arg->get<int64_t>() == 0) Fail(e.line, "'is divisibleby' needs a non-zero integer");
      return x % arg->get<int64_t>() == 0;
    }
    return (x % 2 != 0) == (t == "odd");
  }
  if (!arg) Fail(e.line, absl::StrCat("'is ", t, "' needs an argument"));
  if (t == "eq" || t == "sameas") return PyEqual(v, *arg);
  if (t == "ne") return !PyEqual(v, *arg);
  if (t == "in") {
    if (arg->is_array()) {
      for (const Value& x : *arg)
        if (PyEqual(x, v)) return true;
      return false;
    }
    if (arg->is_object()) return v.is_string() && arg->contains(v.get<std::string>());
    if (arg->is_string() && v.is_string()) return arg->get<std::string>().find(v.get<std::string>()) != std::string::npos;
    Fail(e.line, "'is in' needs a list, dict or string");
  }
  Fail(e.line, absl::StrCat("the test '", t, "' is not supported"));
}

Value Renderer::Binary(const Expr& e) {
  const std::string& op = e.name;
  if (op == "and") {
    Value a = Eval(*e.args[0]);
    return Truthy(a) ? Eval(*e.args[1]) : a;
  }
  if (op == "or") {
    Value a = Eval(*e.args[0]);
    return Truthy(a) ? a : Eval(*e.args[1]);
  }
  const Value a = Eval(*e.args[0]), b = Eval(*e.args[1]);
  if (op == "~") return PyStr(a) + PyStr(b);
  if (op == "==") return PyEqual(a, b);
  if (op == "!=") return !PyEqual(a, b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_array()) {
      for (const Value& x : b) found = found || PyEqual(x, a);
    } else if (b.is_object()) {
      found = a.is_string() && b.contains(a.get<std::string>());
    } else if (b.is_string() && a.is_string()) {
      found = b.get<std::string>().find(a.get<std::string>()) != std::string::npos;
    } else if (!IsUndefined(b)) {
      Fail(e.line, absl::StrCat("'in' needs a list, dict or string on the right, got a ", TypeName(b)));
    }
    return op == "in" ? found : !found;
  }
  const bool nums = (a.is_number() || a.is_boolean()) && (b.is_number() || b.is_boolean());
  const bool ints = nums && !a.is_number_float() && !b.is_number_float();
  auto num = [](const Value& x) { return x.is_boolean() ? (x.get<bool>() ? 1.0 : 0.0) : x.get<double>(); };
  auto in = [](const Value& x) { return x.is_boolean() ? int64_t{x.get<bool>()} : x.get<int64_t>(); };
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    int c = 0;
    if (nums) c = num(a) < num(b) ? -1 : num(a) > num(b) ? 1 : 0;
    else if (a.is_string() && b.is_string()) c = a.get<std::string>().compare(b.get<std::string>());
    else Fail(e.line, absl::StrCat("cannot compare a ", TypeName(a), " with a ", TypeName(b)));
    return op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) return a.get<std::string>() + b.get<std::string>();
    if (a.is_array() && b.is_array()) {
      Value out = a;
      for (const Value& x : b) out.push_back(x);
      return out;
    }
  }
  if (op == "*" && ((a.is_string() && b.is_number_integer()) || (b.is_string() && a.is_number_integer()))) {
    const std::string& s = a.is_string() ? a.get_ref<const std::string&>() : b.get_ref<const std::string&>();
    const int64_t n = a.is_string() ? b.get<int64_t>() : a.get<int64_t>();
    if (n > 0 && !s.empty() && static_cast<uint64_t>(n) > kMaxOutput / s.size()) Fail(e.line, "string repetition is too long");
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += s;
    return out;
  }
  if (!nums)
    Fail(e.line, absl::StrCat("unsupported operand types for ", op, ": ", TypeName(a), " and ", TypeName(b)));
  if (op == "/") {
    if (num(b) == 0) Fail(e.line, "division by zero");
    return num(a) / num(b);
  }
  if (ints) {
    const int64_t x = in(a), y = in(b);
    int64_t z = 0;
    bool overflow = false;
    if (op == "+") overflow = __builtin_add_overflow(x, y, &z);
    else if (op == "-") overflow = __builtin_sub_overflow(x, y, &z);
    else if (op == "*") overflow = __builtin_mul_overflow(x, y, &z);
    else if (op == "**") {
      const double p = std::pow(static_cast<double>(x), static_cast<double>(y));
      overflow = !(std::fabs(p) < 9.2e18);
      z = overflow ? 0 : static_cast<int64_t>(p);
    }
    if (overflow) Fail(e.line, absl::StrCat("integer overflow in ", op));
    if (op == "+" || op == "-" || op == "*" || op == "**") return z;
    if (y == 0) Fail(e.line, "division by zero");
    if (y == -1) return op == "//" ? (x == INT64_MIN ? (Fail(e.line, "integer overflow in //"), int64_t{0}) : -x) : int64_t{0};
    int64_t q = x / y, r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) --q, r += y;  // Python floors
    return op == "//" ? q : r;
  }
  const double x = num(a), y = num(b);
  if (op == "+") return x + y;
  if (op == "-") return x - y;
  if (op == "*") return x * y;
  if (op == "**") return std::pow(x, y);
  if (y == 0) Fail(e.line, "division by zero");
  const double q = std::floor(x / y);
  return op == "//" ? q : x - q * y;
}

}  // namespace

absl::StatusOr<std::string> RenderJinja(const TemplateNode& root, const Value& globals) {
  try {
    return Renderer(globals).Run(root);
  } catch (const RenderError& e) {
    return absl::InvalidArgumentError(e.what());
  } catch (const std::exception& e) {  // a json type error the checks above missed
    return absl::InvalidArgumentError(absl::StrCat("chat template: ", e.what()));
  }
}

}  // namespace layerskip::coordinator::chat
