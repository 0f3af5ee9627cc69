#pragma once
// OpenAI's error JSON, {"error": {"message", "type", "param", "code"}}, and the HTTP status for an
// absl::Status: INVALID_ARGUMENT 400, UNAUTHENTICATED 401, NOT_FOUND 404, RESOURCE_EXHAUSTED 429,
// UNAVAILABLE 503, others 500. `param` is the field a message starts with ("top_p: must be ...").
#include <string>

#include "absl/status/status.h"

namespace layerskip::coordinator::http {

struct HttpError {
  int status = 500;
  std::string body;  // the error JSON
};

HttpError ToHttpError(const absl::Status& status);
// The same JSON for an explicit status code and message (404 unknown route, 405, ...).
HttpError MakeHttpError(int status, const std::string& message, const std::string& param = "");

}  // namespace layerskip::coordinator::http
