#pragma once
// Renders a parsed template with Jinja2's semantics for the subset jinja_parser.h accepts: Python truth,
// str() of values (None, True, 1.5, ['a'] ...), undefined names that render as "" but fail when used as a
// value, scopes (a {% set %} inside a loop does not leak; namespace() objects do), loop.index0 / index /
// first / last / length / revindex, raise_exception(message), range, namespace, strftime_now, the string
// methods strip/lstrip/rstrip/upper/lower/title/capitalize/startswith/endswith/split/replace and the
// dict methods items/keys/values/get. Bounded: 16 MiB of output, 2^18 loop iterations, integer overflow is
// an error.
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/api/chat/jinja_ast.h"

namespace layerskip::coordinator::chat {

// `globals` is a JSON object of the template's variables. Errors (raise_exception, type errors, an output
// over 16 MiB) are INVALID_ARGUMENT naming the line.
absl::StatusOr<std::string> RenderJinja(const TemplateNode& root, const Value& globals);

}  // namespace layerskip::coordinator::chat
