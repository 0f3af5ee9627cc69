#pragma once
// One accepted request: what the client asked for (validated), its sequence once admitted, where its output
// goes, and its timestamps. Fields below "engine thread" are touched only by the EngineLoop thread.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/decode/generate.h"
#include "engine/decode/output_processor.h"
#include "engine/decode/sequence.h"
#include "engine/tokenizer/tokenizer.h"

namespace layerskip::coordinator {

using Clock = std::chrono::steady_clock;

// A validated request: prompt ids, generation parameters (without stop_check: the engine loop sets it from
// `stop`), stop strings and decoding options.
struct RequestSpec {
  std::vector<int> prompt;
  GenerationParams params;
  std::vector<std::string> stop;
  DecodeOptions options;
};

// What a request reports when it ends (completed, stopped, cancelled by shutdown).
struct RequestSummary {
  FinishReason finish_reason = FinishReason::kNone;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  SpecStats spec;
  int64_t autoregressive_steps = 0;  // steps run without drafting because the batch was large
  double queue_seconds = 0, ttft_seconds = 0, e2e_seconds = 0;
  DecodeOptions options;
};

// Where a request's output goes (a gRPC stream or a unary response). Called from the engine thread; after
// OnFinish or OnError nothing more is called. Implementations must be thread-safe against their RPC.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // Newly accepted ids and the text they complete (text never runs past a stop sequence).
  virtual void OnTokens(const std::vector<int>& ids, const std::string& text) = 0;
  // The request ended normally (length, stop) or was cancelled by the server's shutdown.
  virtual void OnFinish(const RequestSummary& summary) = 0;
  // The request failed (client cancel, deadline, engine error, queue full).
  virtual void OnError(const absl::Status& status) = 0;
};

struct Request {
  uint64_t id = 0;
  RequestSpec spec;
  std::shared_ptr<RequestSink> sink;
  Clock::time_point arrival = Clock::now();
  std::optional<Clock::time_point> deadline;
  std::atomic<bool> cancelled{false};  // set by the RPC (client cancel, deadline)

  // --- engine thread
  std::unique_ptr<Sequence> seq;  // created at admission, with its slot
  int64_t reserved_positions = 0;
  Clock::time_point admitted, first_token, last_token;
  size_t streamed_ids = 0;  // generated ids already sent
  std::unique_ptr<OutputProcessor> output;  // detokenisation and stop strings (null without a tokenizer)
  int64_t autoregressive_steps = 0;
  SpecStats reported;      // spec stats already added to the metrics
  bool in_flight = false;  // in a step the executor has started and not finished
  uint64_t last_step = 0;  // when its last step finished (the loop's step counter): oldest go first
};

}  // namespace layerskip::coordinator
