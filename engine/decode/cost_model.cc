#include "engine/decode/cost_model.h"

#include <algorithm>
#include <cmath>

namespace layerskip {

double CostModel::At(const std::vector<double>& t, int n) {
  if (t.empty() || n <= 0) return 0.0;
  const int m = static_cast<int>(t.size());
  if (n <= m) return t[n - 1];
  // Past the last measured row count: the slope of the last measured half (at least flat).
  const int a = std::max(1, m / 2);
  const double slope = std::max(0.0, (t[m - 1] - t[a - 1]) / std::max(1, m - a));
  return t[m - 1] + slope * (n - m);
}

double CostModel::AutoregressiveStep(int batch) const { return num_layers * Layer(batch) + Head(batch); }

double CostModel::Round(int E, int d, int batch) const {
  if (d <= 0) return AutoregressiveStep(batch);
  const int verify_rows = batch * (d + 1);
  return (d + 1) * E * Layer(batch) + d * DraftHead(batch) + (num_layers - E) * Layer(verify_rows) + Head(verify_rows);
}

bool CostModel::Valid() const {
  auto ok = [](const std::vector<double>& t) {
    if (t.size() != static_cast<size_t>(kMaxRows)) return false;
    for (double v : t)
      if (!(v > 0) || !std::isfinite(v)) return false;
    return true;
  };
  if (num_layers < 2 || !ok(layer_seconds) || !ok(head_seconds) || !ok(draft_head_seconds)) return false;
  if (prior_acceptance.size() != static_cast<size_t>(num_layers + 1)) return false;
  for (double a : prior_acceptance)
    if (!(a >= 0 && a <= 1)) return false;
  return true;
}

double ExpectedTokens(const std::vector<double>& reach, int d) {
  double t = 1.0;
  for (int i = 0; i < d && i < static_cast<int>(reach.size()); ++i) t += reach[i];
  return t;
}

double PredictedSpeedup(const CostModel& cost, int E, int d, int batch, const std::vector<double>& reach) {
  if (d <= 0) return 1.0;
  return ExpectedTokens(reach, d) * cost.AutoregressiveStep(batch) / cost.Round(E, d, batch);
}

}  // namespace layerskip
