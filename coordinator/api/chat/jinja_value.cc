#include "coordinator/api/chat/jinja_value.h"

#include <cstdio>

namespace layerskip::coordinator::chat {
namespace {

std::string FloatStr(double d) {
  std::string s = Value(d).dump();  // shortest round-trip, "2.0" for 2
  if (s == "null") return d != d ? "nan" : (d > 0 ? "inf" : "-inf");
  return s;
}

std::string JsonString(const std::string& s) {
  // json.dumps(ensure_ascii=False): escape quotes, backslashes and control characters only.
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

void Dumps(const Value& v, int indent, int level, std::string& out) {
  const std::string nl = indent < 0 ? "" : "\n" + std::string(static_cast<size_t>(indent * (level + 1)), ' ');
  const std::string close = indent < 0 ? "" : "\n" + std::string(static_cast<size_t>(indent * level), ' ');
  const char* sep = indent < 0 ? ", " : ",";
  if (v.is_array()) {
    if (v.empty()) { out += "[]"; return; }
    out += "[";
    bool first = true;
    for (const Value& x : v) {
      if (!first) out += sep;
      first = false;
      out += nl;
      Dumps(x, indent, level + 1, out);
    }
    out += close + "]";
  } else if (v.is_object()) {
    if (v.empty()) { out += "{}"; return; }
    out += "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += sep;
      first = false;
      out += nl + JsonString(it.key()) + ": ";
      Dumps(it.value(), indent, level + 1, out);
    }
    out += close + "}";
  } else if (v.is_string()) {
    out += JsonString(v.get<std::string>());
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    out += d != d ? "NaN" : (d == 1.0 / 0.0 ? "Infinity" : (d == -1.0 / 0.0 ? "-Infinity" : FloatStr(d)));
  } else if (v.is_discarded()) {
    out += "null";
  } else {
    out += v.dump();  // null, true, false, integers
  }
}

std::string ReprString(const std::string& s) {
  // Python picks single quotes unless the string holds a single quote and no double quote.
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(q)) { out += '\\'; out += q; }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  return out + q;
}

}  // namespace

bool Truthy(const Value& v) {
  switch (v.type()) {
    case Value::value_t::null:
    case Value::value_t::discarded: return false;
    case Value::value_t::boolean: return v.get<bool>();
    case Value::value_t::number_integer:
    case Value::value_t::number_unsigned: return v.get<int64_t>() != 0;
    case Value::value_t::number_float: return v.get<double>() != 0.0;
    case Value::value_t::string: return !v.get_ref<const std::string&>().empty();
    default: return !v.empty();
  }
}

std::string PyRepr(const Value& v) {
  if (v.is_string()) return ReprString(v.get<std::string>());
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + PyRepr(v[i]);
    return out + "]";
  }
  if (v.is_object()) {
    std::string out = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += (first ? "" : ", ") + ReprString(it.key()) + ": " + PyRepr(it.value());
      first = false;
    }
    return out + "}";
  }
  return PyStr(v);
}

std::string PyStr(const Value& v) {
  switch (v.type()) {
    case Value::value_t::discarded: return "";
    case Value::value_t::null: return "None";
    case Value::value_t::boolean: return v.get<bool>() ? "True" : "False";
    case Value::value_t::number_float: return FloatStr(v.get<double>());
    case Value::value_t::string: return v.get<std::string>();
    case Value::value_t::array:
    case Value::value_t::object: return PyRepr(v);
    default: return v.dump();
  }
}

bool PyEqual(const Value& a, const Value& b) {
  if (a.is_discarded() || b.is_discarded()) return a.is_discarded() && b.is_discarded();
  const bool an = a.is_number() || a.is_boolean(), bn = b.is_number() || b.is_boolean();
  if (an && bn) {
    auto num = [](const Value& x) { return x.is_boolean() ? (x.get<bool>() ? 1.0 : 0.0) : x.get<double>(); };
    if ((a.is_number_integer() || a.is_boolean()) && (b.is_number_integer() || b.is_boolean())) {
      auto in = [](const Value& x) { return x.is_boolean() ? int64_t{x.get<bool>()} : x.get<int64_t>(); };
      return in(a) == in(b);
    }
    return num(a) == num(b);
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!PyEqual(a[i], b[i])) return false;
    return true;
  }
  return a == b;
}

std::string PyJsonDumps(const Value& v, int indent) {
  std::string out;
  Dumps(v, indent, 0, out);
  return out;
}

std::string PyStrip(const std::string& s, const std::string* chars, bool left, bool right) {
  const std::string ws = " \t\n\r\v\f\x1c\x1d\x1e\x1f";
  const std::string& set = chars ? *chars : ws;
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && set.find(s[b]) != std::string::npos) ++b;
  if (right)
    while (e > b && set.find(s[e - 1]) != std::string::npos) --e;
  return s.substr(b, e - b);
}

size_t CodePoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace layerskip::coordinator::chat
