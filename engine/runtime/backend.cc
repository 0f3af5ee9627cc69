#include "engine/runtime/backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace layerskip {

int Backend::context_length() const {
  return std::min({capacity(), max_positions(), config().max_position_embeddings});
}

absl::Status Backend::DecodeArgmax(int b, const TokenBatch& batch, absl::Span<const int> ids, bool draft,
                                   absl::Span<const int> head_rows, int* out, std::unique_ptr<Activations>* x_out) {
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> x, NewActivations(batch.size()));
  LS_RETURN_IF_ERROR(Embed(ids, *x));
  LS_RETURN_IF_ERROR(Forward(0, b, batch, *x));
  if (!head_rows.empty()) LS_RETURN_IF_ERROR(draft ? DraftArgmax(*x, head_rows, out) : ExitArgmax(*x, head_rows, out));
  if (x_out) *x_out = std::move(x);
  return absl::OkStatus();
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
