#include "coordinator/execution/pipeline/stage_health.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/execution/pipeline/stage_client.h"

namespace layerskip::pipeline {

StageHealth::StageHealth(std::vector<Target> targets, std::string token, absl::Duration interval, int misses,
                         std::function<void(int)> on_silent)
    : targets_(std::move(targets)),
      token_(std::move(token)),
      interval_(interval),
      misses_needed_(std::max(1, misses)),
      on_silent_(std::move(on_silent)),
      missed_(targets_.size(), 0),
      last_error_(targets_.size()) {
  for (size_t i = 0; i < targets_.size(); ++i) threads_.emplace_back([this, i] { Beat(static_cast<int>(i)); });
}

StageHealth::~StageHealth() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void StageHealth::Beat(int i) {
  for (;;) {
    const absl::Time start = absl::Now();
    auto ctx = MakeContext(token_, interval_);
    v1::HealthResponse h;
    const grpc::Status st = targets_[i].stub->Health(ctx.get(), v1::HealthRequest(), &h);
    bool became_silent = false;
    {
      std::unique_lock<std::mutex> l(mu_);
      if (st.ok()) {
        missed_[i] = 0;
      } else {
        last_error_[i] = st.error_message();
        became_silent = ++missed_[i] == misses_needed_;
      }
    }
    if (became_silent && on_silent_) on_silent_(i);
    std::unique_lock<std::mutex> l(mu_);
    const auto wait = absl::ToChronoNanoseconds(std::max(absl::ZeroDuration(), start + interval_ - absl::Now()));
    if (cv_.wait_for(l, wait, [&] { return stop_; })) return;
  }
}

void StageHealth::Answered(int stage) {
  std::lock_guard<std::mutex> lock(mu_);
  missed_[stage] = 0;
}

bool StageHealth::silent(int stage) const {
  std::lock_guard<std::mutex> l(mu_);
  return missed_[stage] >= misses_needed_;
}

absl::Status StageHealth::Liveness() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> silent;
  for (size_t i = 0; i < targets_.size(); ++i)
    if (missed_[i] >= misses_needed_)
      silent.push_back(absl::StrCat(targets_[i].name, " missed ", missed_[i], " heartbeats (",
                                    absl::FormatDuration(interval_), " apart; last: ", last_error_[i], ")"));
  if (silent.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("pipeline ", absl::StrJoin(silent, ", ")));
}

}  // namespace layerskip::pipeline
