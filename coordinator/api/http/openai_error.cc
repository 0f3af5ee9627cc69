#include "coordinator/api/http/openai_error.h"

#include <nlohmann/json.hpp>

namespace layerskip::coordinator::http {
namespace {

const char* TypeFor(int status) {
  switch (status) {
    case 400: case 404: case 405: case 413: return "invalid_request_error";
    case 401: return "authentication_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return "server_error";
  }
}

// The leading "field: " of a validation message, if it names a field (letters, digits, '_', '.').
std::string ParamOf(const std::string& message) {
  const size_t colon = message.find(": ");
  if (colon == std::string::npos || colon == 0 || colon > 40) return "";
  for (size_t i = 0; i < colon; ++i) {
    const char c = message[i];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '[' || c == ']')) return "";
  }
  return message.substr(0, colon);
}

}  // namespace

HttpError MakeHttpError(int status, const std::string& message, const std::string& param) {
  nlohmann::json e = {{"message", message}, {"type", TypeFor(status)}, {"code", status}};
  e["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
  if (status == 404 && message.rfind("The model", 0) == 0) e["code"] = "model_not_found";
  return {status, nlohmann::json{{"error", e}}.dump()};
}

HttpError ToHttpError(const absl::Status& s) {
  int status = 500;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: status = 400; break;
    case absl::StatusCode::kUnauthenticated: status = 401; break;
    case absl::StatusCode::kPermissionDenied: status = 403; break;
    case absl::StatusCode::kNotFound: status = 404; break;
    case absl::StatusCode::kResourceExhausted: status = 429; break;
    case absl::StatusCode::kUnavailable: status = 503; break;
    case absl::StatusCode::kCancelled: status = 499; break;
    case absl::StatusCode::kDeadlineExceeded: status = 504; break;
    default: status = 500;
  }
  const std::string message(s.message());
  return MakeHttpError(status, message, status == 400 ? ParamOf(message) : "");
}

}  // namespace layerskip::coordinator::http
