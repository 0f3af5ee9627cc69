#pragma once
// Which layers each pipeline stage holds. Stage 0 is the draft stage: embedding, layers [0, E) and a copy
// of the exit head (final norm + LM head), so drafting never leaves it. Stages 1.. hold [E, L) in
// contiguous ranges; the last one holds the exit head and decides acceptance.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"

namespace layerskip::pipeline {

struct StageRange {
  int first_layer = 0;
  int end_layer = 0;  // exclusive
  bool embedding = false;
  bool head = false;
};

// Explicit plan, "0-3,4-11,12-15" (inclusive layer ranges): contiguous, covering [0, L), at least two
// stages. The exit layer E is stage 0's end.
absl::StatusOr<std::vector<StageRange>> ParseStagePlan(std::string_view spec, int num_layers);

// Automatic plan for num_stages stages: stage 0 = [0, exit_layer); the other stages split [E, L) so that
// the largest stage cost is smallest, a layer costing its weights and the last stage also the LM head.
absl::StatusOr<std::vector<StageRange>> AutoStagePlan(const LlamaConfig& config, int num_stages, int exit_layer);

// "0-3,4-11,12-15" for logs and errors.
std::string StagePlanString(const std::vector<StageRange>& plan);

}  // namespace layerskip::pipeline
