#pragma once
// Parses the Jinja2 subset chat templates use:
//   {{ expr }}, {% if %}/{% elif %}/{% else %}/{% endif %}, {% for x in xs [if cond] %}...{% else %}...
//   {% endfor %} (also "for k, v in d.items()"), {% set x = expr %}, {% set ns.attr = expr %},
//   {% break %}, {% continue %}, comments, whitespace control.
// Expressions: literals (strings, numbers, true/false/none, lists, tuples as lists, dicts), names, .attr, [index], [a:b:c],
// calls, filters (|name(args)), tests (is [not] name), not/and/or, comparisons, in / not in, + - * / // % **,
// ~, and "a if c else b". Filters, tests and statement tags outside the set the renderer implements
// (jinja_render.h) are errors here, naming the line.
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "coordinator/api/chat/jinja_ast.h"

namespace layerskip::coordinator::chat {

absl::StatusOr<std::unique_ptr<TemplateNode>> ParseJinja(std::string_view source);

// Whether the renderer implements a filter / test / global function of this name.
bool IsKnownFilter(const std::string& name);
bool IsKnownTest(const std::string& name);

}  // namespace layerskip::coordinator::chat
