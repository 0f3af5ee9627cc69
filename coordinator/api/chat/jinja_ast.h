#pragma once
// The parsed form of a chat template: statements (TemplateNode) holding expressions (Expr).
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace layerskip::coordinator::chat {

using Value = nlohmann::ordered_json;  // template values; a discarded json is Jinja's "undefined"

struct Expr {
  enum Kind {
    kLiteral,  // value
    kName,     // name
    kAttr,     // args[0].name
    kItem,     // args[0][args[1]]
    kSlice,    // args[0][args[1]:args[2]:args[3]] (null parts omitted)
    kCall,     // args[0](args[1..]); arg_names[i] names args[i+1] ("" = positional)
    kFilter,   // args[0] | name(args[1..])
    kTest,     // args[0] is [not] name(args[1..])
    kUnary,    // name ("not", "-", "+") args[0]
    kBinary,   // args[0] name args[1]: or and == != < > <= >= in "not in" + - * / // % ** ~
    kCond,     // args[0] if args[1] else args[2] (args[2] may be null)
    kList,     // [args...]
    kDict,     // {args[0]: args[1], ...}
  };
  Kind kind = kLiteral;
  std::string name;
  Value value;
  std::vector<std::unique_ptr<Expr>> args;
  std::vector<std::string> arg_names;
  bool negated = false;
  int line = 0;
};

struct TemplateNode {
  enum Kind {
    kBody,      // children
    kText,      // text
    kOutput,    // {{ exprs[0] }}
    kIf,        // exprs[i] -> children[i]; a last extra child is the else branch
    kFor,       // for targets in exprs[0] [if exprs[1]]: children[0], else children[1] (optional)
    kSet,       // set target[.attr] = exprs[0]
    kBreak,
    kContinue,
  };
  Kind kind = kBody;
  std::string text;
  std::vector<std::string> targets;  // for: loop variables; set: {name} or {name, attr}
  std::vector<std::unique_ptr<Expr>> exprs;
  std::vector<std::unique_ptr<TemplateNode>> children;
  int line = 0;
};

}  // namespace layerskip::coordinator::chat
