#include "engine/decode/draft_vocabulary.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace layerskip {

absl::StatusOr<std::vector<int>> ChooseDraftVocabulary(int V, int k, const std::vector<int>& corpus,
                                                       const std::vector<int>& always) {
  if (k < 1 || k > V)
    return absl::InvalidArgumentError(absl::StrCat("draft vocabulary size ", k, " must be in [1, ", V, "]"));
  std::vector<int64_t> count(V, 0);
  for (int id : corpus)
    if (id >= 0 && id < V) ++count[id];
  std::vector<char> chosen(V, 0);
  int n = 0;
  for (int id : always)
    if (id >= 0 && id < V && n < k && !chosen[id]) chosen[id] = 1, ++n;
  // Most frequent corpus ids first (lower id on ties), then the lowest ids not yet taken.
  std::vector<int> order;
  for (int id = 0; id < V; ++id)
    if (count[id] > 0) order.push_back(id);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return count[a] > count[b]; });
  for (int id : order)
    if (n < k && !chosen[id]) chosen[id] = 1, ++n;
  for (int id = 0; id < V && n < k; ++id)
    if (!chosen[id]) chosen[id] = 1, ++n;
  std::vector<int> ids;
  for (int id = 0; id < V; ++id)
    if (chosen[id]) ids.push_back(id);
  return ids;
}

}  // namespace layerskip
