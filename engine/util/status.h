#pragma once
// Status helpers: Debian's Abseil (20220623) has no ABSL_RETURN_IF_ERROR.
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LS_CONCAT_INNER(a, b) a##b
#define LS_CONCAT(a, b) LS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define LS_RETURN_IF_ERROR(expr)                     \
  do {                                               \
    ::absl::Status ls_status_ = (expr);              \
    if (!ls_status_.ok()) return ls_status_;         \
  } while (0)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its error.
#define LS_ASSIGN_OR_RETURN(lhs, expr) \
  LS_ASSIGN_OR_RETURN_IMPL(LS_CONCAT(ls_statusor_, __LINE__), lhs, expr)
#define LS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
