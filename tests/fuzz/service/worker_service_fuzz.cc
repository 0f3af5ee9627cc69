// libFuzzer target: the Worker service's request handlers with arbitrary requests, called as gRPC would
// call them (a ServerContext, the parsed request, a response) on services that hold shards of the tiny
// model (models/tiny-random): stage 0 (layers 0-1 + embedding + head, linked to stage 1 over loopback TCP)
// and stage 1 (layers 2-3 + head). Input: byte 0 picks the method, the rest is the request's wire bytes.
// Every answer must be a status (never a crash, hang, sanitizer report or huge allocation).
// Kept out of the environment: LoadShard always names the tiny model and asks for at most 16 slots x 256
// positions (more is legitimate but beyond libFuzzer's malloc limit); Connect only targets loopback.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "worker/worker_service.h"

namespace layerskip::worker {
namespace {

const std::string kModel = std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";

struct Fixture {
  std::unique_ptr<WorkerService> first, last, scratch;
};

std::unique_ptr<WorkerService> Service() {
  WorkerOptions o;  // no token: the handlers are reached directly
  o.recv_timeout = absl::Milliseconds(5);
  auto s = WorkerService::Create(o);
  if (!s.ok()) std::abort();
  return std::move(s).value();
}

void Load(WorkerService& w, int first, int end, bool embedding, v1::ShardInfo* info) {
  v1::LoadShardRequest r;
  r.set_model_path(kModel);
  r.set_first_layer(first);
  r.set_end_layer(end);
  r.set_embedding(embedding);
  r.set_head(true);
  r.set_num_slots(4);
  r.set_context(64);
  r.set_threads(1);
  grpc::ServerContext ctx;
  if (!w.LoadShard(&ctx, &r, info).ok()) std::abort();
}

Fixture* MakeFixture() {
  auto* f = new Fixture;
  f->first = Service();
  f->last = Service();
  f->scratch = Service();
  v1::ShardInfo a, b;
  Load(*f->first, 0, 2, true, &a);
  Load(*f->last, 2, 4, false, &b);
  // Wired as the coordinator wires them: stage 1 learns its place (it then takes stage 0's link), then
  // stage 0 dials it.
  v1::ConnectRequest c1, c0;
  c1.set_stage(1);
  c0.set_stage(0);
  c0.set_next_endpoint(b.data_endpoint());
  v1::ConnectResponse cr;
  grpc::ServerContext ctx1, ctx0;
  if (!f->last->Connect(&ctx1, &c1, &cr).ok() || !f->first->Connect(&ctx0, &c0, &cr).ok()) std::abort();
  return f;
}

template <class Req>
bool Parse(const uint8_t* data, size_t size, Req* r) {
  return r->ParseFromArray(data, static_cast<int>(size));
}

}  // namespace
}  // namespace layerskip::worker

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace layerskip::worker;
  namespace v1 = layerskip::v1;
  static Fixture* f = MakeFixture();
  if (size < 1) return 0;
  const uint8_t method = data[0] % 6;
  ++data;
  --size;
  grpc::ServerContext ctx;
  switch (method) {
    case 0: {
      v1::LoadShardRequest r;
      if (!Parse(data, size, &r)) return 0;
      r.set_model_path(kModel);
      r.set_num_slots(std::min(r.num_slots(), 16));
      r.set_context(std::min(r.context(), 256));
      r.set_threads(std::min(r.threads(), 2));
      v1::ShardInfo info;
      f->scratch->LoadShard(&ctx, &r, &info);
      break;
    }
    case 1: {
      v1::ConnectRequest r;
      if (!Parse(data, size, &r)) return 0;
      if (!r.next_endpoint().empty()) r.set_next_endpoint("127.0.0.1:1");  // refused at once
      v1::ConnectResponse resp;
      f->scratch->Connect(&ctx, &r, &resp);
      break;
    }
    case 2: {
      v1::DraftRequest r;
      if (!Parse(data, size, &r)) return 0;
      v1::DraftResponse resp;
      f->first->Draft(&ctx, &r, &resp);
      break;
    }
    case 3: {
      v1::VerifyRequest r;
      if (!Parse(data, size, &r)) return 0;
      v1::VerifyResponse resp;
      f->last->Verify(&ctx, &r, &resp);
      break;
    }
    case 4: {
      v1::AcceptRequest r;
      if (!Parse(data, size, &r)) return 0;
      v1::AcceptResponse resp;
      (r.round() % 2 ? f->last : f->first)->Accept(&ctx, &r, &resp);
      break;
    }
    case 5: {
      v1::ReleaseRequest r;
      if (!Parse(data, size, &r)) return 0;
      v1::ReleaseResponse resp;
      f->first->Release(&ctx, &r, &resp);
      f->last->Release(&ctx, &r, &resp);
      break;
    }
  }
  return 0;
}
