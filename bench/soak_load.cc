#include "bench/soak_load.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace layerskip::bench {
namespace {

using Clock = std::chrono::steady_clock;

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    default: return "OTHER";
  }
}

struct Tally {
  std::mutex mu;
  int64_t sent = 0, completed = 0, lost = 0, short_ok = 0, hung = 0, tokens = 0;
  std::map<std::string, int64_t> failed;  // by code
  std::vector<std::string> examples;      // first few lost / short / hung streams
  void Note(const std::string& what) {
    if (examples.size() < 8) examples.push_back(what);
  }
};

enum class Kind { kNormal, kCancel, kDeadline };

void Client(const SoakOptions& o, const v1::GenerateRequest& base, int index, Clock::time_point end, Tally* tally) {
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(o.server, o.credentials));
  std::mt19937 rng(7919 * (index + 1));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  while (Clock::now() < end) {
    v1::GenerateRequest q = base;
    const int max_tokens = 1 + static_cast<int>(rng() % static_cast<unsigned>(o.max_tokens));
    q.set_max_tokens(max_tokens);
    const int prompt = 1 + static_cast<int>(rng() % static_cast<unsigned>(o.prompt_tokens));
    for (int i = 0; i < prompt; ++i) q.add_prompt_ids(static_cast<int>(rng() % static_cast<unsigned>(o.vocab)));
    const double pick = u(rng);
    const Kind kind = pick < o.cancel_fraction ? Kind::kCancel
                      : pick < o.cancel_fraction + o.deadline_fraction ? Kind::kDeadline
                                                                       : Kind::kNormal;
    grpc::ClientContext ctx;
    if (!o.auth_token.empty()) ctx.AddMetadata("authorization", "Bearer " + o.auth_token);
    const double deadline_s = kind == Kind::kDeadline ? 0.02 + 0.5 * u(rng) : o.hang_seconds;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::microseconds(static_cast<int64_t>(deadline_s * 1e6)));
    const int cancel_after = kind == Kind::kCancel ? static_cast<int>(rng() % 4) : -1;  // messages before TryCancel
    {
      std::lock_guard<std::mutex> l(tally->mu);
      ++tally->sent;
    }
    auto reader = stub->Generate(&ctx, q);
    if (cancel_after == 0) ctx.TryCancel();
    v1::GenerateResponse m;
    int messages = 0, tokens = 0;
    bool summary = false;
    while (reader->Read(&m)) {
      tokens += m.token_ids_size();
      summary |= m.has_summary();
      if (++messages == cancel_after) ctx.TryCancel();
    }
    const grpc::Status st = reader->Finish();
    std::lock_guard<std::mutex> l(tally->mu);
    tally->tokens += tokens;
    if (st.ok()) {
      ++tally->completed;
      if (tokens != max_tokens || !summary) {
        ++tally->short_ok;
        tally->Note("OK with " + std::to_string(tokens) + " of " + std::to_string(max_tokens) + " tokens");
      }
      continue;
    }
    ++tally->failed[CodeName(st.error_code())];
    if (kind == Kind::kNormal && st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      ++tally->hung;
      tally->Note("hung: no end within " + std::to_string(o.hang_seconds) + " s");
    } else if (kind == Kind::kNormal && tokens > 0) {
      ++tally->lost;
      tally->Note("lost after " + std::to_string(tokens) + " tokens: " + CodeName(st.error_code()) + " " + st.error_message());
    } else if (kind == Kind::kNormal && st.error_code() == grpc::StatusCode::UNAVAILABLE) {
      // Refused before any token (health NOT_SERVING while a worker restarts): retry after a pause.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    } else if (kind == Kind::kNormal) {
      ++tally->lost;
      tally->Note(std::string("failed: ") + CodeName(st.error_code()) + " " + st.error_message());
    }
  }
}

}  // namespace

int RunSoak(const SoakOptions& o, const v1::GenerateRequest& base) {
  Tally tally;
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + std::chrono::microseconds(static_cast<int64_t>(o.seconds * 1e6));
  std::vector<std::thread> threads;
  for (int i = 0; i < o.concurrency; ++i) threads.emplace_back(Client, std::cref(o), std::cref(base), i, end, &tally);
  for (auto& t : threads) t.join();
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("soak: %.0f s, %d streams: sent %lld, completed %lld, failed", took, o.concurrency,
              static_cast<long long>(tally.sent), static_cast<long long>(tally.completed));
  int64_t failed = 0;
  for (const auto& [code, n] : tally.failed) {
    std::printf(" %s=%lld", code.c_str(), static_cast<long long>(n));
    failed += n;
  }
  if (tally.failed.empty()) std::printf(" none");
  std::printf("; tokens %lld\n", static_cast<long long>(tally.tokens));
  const int64_t unaccounted = tally.sent - tally.completed - failed;
  std::printf("soak: lost %lld, short %lld, hung %lld, unaccounted %lld\n", static_cast<long long>(tally.lost),
              static_cast<long long>(tally.short_ok), static_cast<long long>(tally.hung), static_cast<long long>(unaccounted));
  for (const std::string& e : tally.examples) std::printf("soak:   %s\n", e.c_str());
  return tally.lost == 0 && tally.short_ok == 0 && tally.hung == 0 && unaccounted == 0 ? 0 : 3;
}

}  // namespace layerskip::bench
