#include "coordinator/execution/pipeline/stage_plan.h"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace layerskip::pipeline {
namespace {

void MarkHeads(std::vector<StageRange>& plan) {
  for (StageRange& s : plan) s.embedding = s.head = false;
  plan.front().embedding = true;
  plan.front().head = true;  // the draft stage's copy
  plan.back().head = true;
}

bool ParseInt(std::string_view s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

absl::StatusOr<std::vector<StageRange>> ParseStagePlan(std::string_view spec, int num_layers) {
  std::vector<StageRange> plan;
  int next = 0;
  const std::string text(spec);
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    const std::string p(part);
    const size_t dash = p.find('-');
    int a = 0, b = 0;
    if (dash == std::string::npos || !ParseInt(std::string_view(p).substr(0, dash), &a) ||
        !ParseInt(std::string_view(p).substr(dash + 1), &b))
      return absl::InvalidArgumentError(absl::StrCat("--stages: '", p, "' is not FIRST-LAST (inclusive layers)"));
    if (a != next)
      return absl::InvalidArgumentError(absl::StrCat("--stages: '", p, "' should start at layer ", next,
                                                     " (ranges must be contiguous from 0)"));
    if (b < a) return absl::InvalidArgumentError(absl::StrCat("--stages: '", p, "' is empty"));
    if (b >= num_layers)
      return absl::InvalidArgumentError(absl::StrCat("--stages: '", p, "' goes past the model's last layer ", num_layers - 1));
    plan.push_back({a, b + 1});
    next = b + 1;
  }
  if (next != num_layers)
    return absl::InvalidArgumentError(absl::StrCat("--stages: layers ", next, "-", num_layers - 1, " are not assigned"));
  if (plan.size() < 2)
    return absl::InvalidArgumentError("--stages: a pipeline needs at least two stages (draft + verify)");
  MarkHeads(plan);
  return plan;
}

absl::StatusOr<std::vector<StageRange>> AutoStagePlan(const LlamaConfig& c, int num_stages, int exit_layer) {
  const int L = c.num_hidden_layers, E = exit_layer;
  if (num_stages < 2) return absl::InvalidArgumentError("a pipeline needs at least two workers (draft + verify)");
  if (E < 1 || E >= L) return absl::InvalidArgumentError(absl::StrCat("exit layer ", E, " must be in [1, ", L - 1, "]"));
  const int n = num_stages - 1;  // verify stages
  if (L - E < n)
    return absl::InvalidArgumentError(absl::StrCat(num_stages, " workers but only ", L - E, " layers after the exit layer ",
                                                   E, " for ", n, " verify stages"));
  // Costs in weight elements: a layer's matrices; the LM head on the last stage.
  const double hd = c.head_dim, D = c.hidden_size;
  const double layer = D * hd * (c.num_attention_heads * 2 + c.num_key_value_heads * 2) + 3.0 * D * c.intermediate_size;
  const double head = D * static_cast<double>(c.vocab_size);
  const int m = L - E;
  // best[s][i]: smallest max cost splitting the first i verify layers into s stages; cut[s][i] the last cut.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(n + 1, std::vector<double>(m + 1, inf));
  std::vector<std::vector<int>> cut(n + 1, std::vector<int>(m + 1, 0));
  best[0][0] = 0.0;
  for (int s = 1; s <= n; ++s)
    for (int i = s; i <= m; ++i)
      for (int j = s - 1; j < i; ++j) {
        const double cost = (i - j) * layer + (s == n && i == m ? head : 0.0);
        const double v = std::max(best[s - 1][j], cost);
        if (v < best[s][i]) {
          best[s][i] = v;
          cut[s][i] = j;
        }
      }
  std::vector<StageRange> plan(num_stages);
  plan[0] = {0, E};
  for (int s = n, i = m; s >= 1; --s) {
    plan[s] = {E + cut[s][i], E + i};
    i = cut[s][i];
  }
  MarkHeads(plan);
  return plan;
}

std::string StagePlanString(const std::vector<StageRange>& plan) {
  return absl::StrJoin(plan, ",", [](std::string* out, const StageRange& s) {
    absl::StrAppend(out, s.first_layer, "-", s.end_layer - 1);
  });
}

}  // namespace layerskip::pipeline
