#pragma once
// Heartbeats of the pipeline's stages: one thread per stage calls its worker's Health every `interval`
// (each call with that deadline). A stage that misses `misses` beats in a row is silent: Liveness() names
// it and `on_silent(stage)` runs once (from that stage's thread) so the caller can cancel the calls in
// flight. A frozen worker (SIGSTOP) keeps its sockets open but answers nothing, so only this notices it.
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "layerskip/v1/worker.grpc.pb.h"

namespace layerskip::pipeline {

class StageHealth {
 public:
  struct Target {
    std::string name;          // for messages: "stage 1 (HOST:PORT, layers 2-3)"
    v1::Worker::Stub* stub;    // outlives this object
  };
  StageHealth(std::vector<Target> targets, std::string token, absl::Duration interval, int misses,
              std::function<void(int)> on_silent);
  ~StageHealth();  // stops and joins the threads

  // OK while every stage answers; UNAVAILABLE naming each silent stage and its last error otherwise.
  absl::Status Liveness() const;
  bool silent(int stage) const;
  // The stage just answered another call (it was loaded and wired): its count of missed beats restarts.
  void Answered(int stage);
  absl::Duration interval() const { return interval_; }

 private:
  void Beat(int stage);  // a stage's thread

  std::vector<Target> targets_;
  std::string token_;
  absl::Duration interval_;
  int misses_needed_;
  std::function<void(int)> on_silent_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<int> missed_;              // consecutive misses per stage
  std::vector<std::string> last_error_;  // per stage
  std::vector<std::thread> threads_;
};

}  // namespace layerskip::pipeline
