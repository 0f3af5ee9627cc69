#include "engine/runtime/backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace layerskip {

int Backend::context_length() const {
  return std::min({capacity(), max_positions(), config().max_position_embeddings});
}

absl::Status CheckRows(const Activations& h, absl::Span<const int> rows) {
  for (int r : rows)
    if (r < 0 || r >= h.rows())
      return absl::InvalidArgumentError(absl::StrCat("head row ", r, " is outside the activations' ", h.rows(), " rows"));
  return absl::OkStatus();
}

absl::Status CheckRowRange(const Activations& x, int row, int n, const char* what) {
  if (n < 0 || row < 0 || row + n > x.rows())
    return absl::InvalidArgumentError(
        absl::StrCat(what, " rows [", row, ", ", row + n, ") are outside the activations' ", x.rows(), " rows"));
  return absl::OkStatus();
}

}  // namespace layerskip
