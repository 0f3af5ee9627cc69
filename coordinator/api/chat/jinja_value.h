#pragma once
// Python semantics for template values (nlohmann::ordered_json; discarded = Jinja's undefined): truth,
// str(), repr(), equality, json.dumps as transformers' tojson writes it, and the string helpers the
// renderer's filters and methods share.
#include <string>

#include "coordinator/api/chat/jinja_ast.h"

namespace layerskip::coordinator::chat {

inline Value Undefined() { return Value(Value::value_t::discarded); }
inline bool IsUndefined(const Value& v) { return v.is_discarded(); }

bool Truthy(const Value& v);
std::string PyStr(const Value& v);   // str(v); undefined -> ""
std::string PyRepr(const Value& v);  // repr(v): strings quoted
bool PyEqual(const Value& a, const Value& b);
// json.dumps(v, ensure_ascii=False, indent=indent (< 0: None), sort_keys=False).
std::string PyJsonDumps(const Value& v, int indent);
// str.strip(chars) / lstrip / rstrip; `chars` null: whitespace.
std::string PyStrip(const std::string& s, const std::string* chars, bool left, bool right);
size_t CodePoints(const std::string& s);

}  // namespace layerskip::coordinator::chat
