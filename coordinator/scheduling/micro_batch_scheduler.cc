#include "coordinator/scheduling/micro_batch_scheduler.h"

#include <algorithm>
#include <tuple>

namespace layerskip::coordinator {
namespace {

bool SameOptions(const DecodeOptions& a, const DecodeOptions& b) {
  auto key = [](const DecodeOptions& o) {
    const bool ss = o.mode == DecodeMode::kSelfSpeculative;
    return std::make_tuple(o.mode, o.mode == DecodeMode::kAutoregressive || (ss && o.auto_exit_layer) ? 0 : o.exit_layer,
                           ss ? o.speculation.speculations : 0, ss && o.speculation.adaptive, ss && o.auto_speculations,
                           ss && o.auto_exit_layer);
  };
  return key(a) == key(b);
}

}  // namespace

int MicroBatchScheduler::RoundTokens(const Request& r, bool speculate) {
  const int pending = static_cast<int>(r.seq->pending().size());
  if (!speculate || r.spec.options.mode != DecodeMode::kSelfSpeculative) return pending;
  const SpeculationConfig& s = r.spec.options.speculation;
  const int d = s.adaptive ? std::max(r.seq->draft_limit, s.speculations) : s.speculations;
  return pending + d;
}

std::vector<StepGroup> MicroBatchScheduler::Schedule(const std::vector<Request*>& running) const {
  // Pick the round: decoding sequences first (they always run), then prefills in admission order.
  std::vector<Request*> chosen;
  int tokens = 0;
  for (Request* r : running)
    if (r->seq->cached() > 0 && static_cast<int>(chosen.size()) < limits_.max_batch_size) {
      chosen.push_back(r);
      tokens += RoundTokens(*r, /*speculate=*/false);
    }
  for (Request* r : running) {
    if (r->seq->cached() > 0) continue;
    if (static_cast<int>(chosen.size()) >= limits_.max_batch_size) break;
    const int t = RoundTokens(*r, false);
    if (tokens + t > limits_.max_batched_tokens && !chosen.empty()) break;  // keep admission order
    chosen.push_back(r);
    tokens += t;
  }
  const bool speculation_off =
      limits_.speculation_batch_threshold > 0 && static_cast<int>(chosen.size()) >= limits_.speculation_batch_threshold;

  std::vector<StepGroup> groups;
  for (Request* r : chosen) {
    DecodeOptions o = r->spec.options;
    bool off = false;
    if (speculation_off && o.mode == DecodeMode::kSelfSpeculative) {
      o = DecodeOptions{};  // autoregressive: same tokens (greedy) / same distribution (sampling)
      off = true;
    }
    auto it = std::find_if(groups.begin(), groups.end(), [&](const StepGroup& g) { return SameOptions(g.options, o); });
    if (it == groups.end()) {
      groups.push_back(StepGroup{o, {}, false});
      it = groups.end() - 1;
    }
    it->requests.push_back(r);
    it->speculation_off |= off;
  }
  return groups;
}

}  // namespace layerskip::coordinator
