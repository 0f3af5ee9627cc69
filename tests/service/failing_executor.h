#pragma once
// Test double for the service tests: an Executor that behaves like the one it wraps until `steps` steps
// have run, then fails every step with INTERNAL (a fatal engine error).
#include <memory>
#include <vector>

#include "engine/decode/executor.h"

namespace layerskip::testing {

class FailingExecutor : public Executor {
 public:
  FailingExecutor(std::unique_ptr<Executor> inner, int steps) : inner_(std::move(inner)), left_(steps) {}
  const LlamaConfig& config() const override { return inner_->config(); }
  int num_slots() const override { return inner_->num_slots(); }
  int context_length() const override { return inner_->context_length(); }
  absl::Status Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) override {
    if (left_-- <= 0) return absl::InternalError("injected engine failure (--fail-after-steps)");
    return inner_->Step(seqs, options);
  }
  void Release(int slot) override { inner_->Release(slot); }
  absl::Status Health() override { return inner_->Health(); }
  absl::Status Liveness() override { return inner_->Liveness(); }

 private:
  std::unique_ptr<Executor> inner_;
  int left_;
};

}  // namespace layerskip::testing
