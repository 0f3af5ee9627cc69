#include "engine/runtime/cpu_backend.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"
#include "kernels/sampling.h"

namespace layerskip {

const CpuActivations* AsCpu(const Activations& x) { return dynamic_cast<const CpuActivations*>(&x); }
CpuActivations* AsCpu(Activations& x) { return dynamic_cast<CpuActivations*>(&x); }

namespace {

absl::Status NotCpu() { return absl::FailedPreconditionError("activations of another backend given to the CPU backend"); }

}  // namespace

std::unique_ptr<CpuBackend> CpuBackend::Create(std::shared_ptr<const ModelWeights> weights, int num_slots,
                                               int capacity, int threads) {
  auto pool = std::make_unique<ThreadPool>(threads);
  const int first = weights->first_layer, end = weights->end_layer;
  auto model = std::make_unique<Model>(weights, capacity, pool.get());
  auto cache = std::make_unique<KvCache>(weights->config, first, end, num_slots, capacity);
  auto b = std::make_unique<CpuBackend>(model.get(), cache.get());
  b->own_pool_ = std::move(pool);
  b->own_model_ = std::move(model);
  b->own_cache_ = std::move(cache);
  return b;
}

CpuBackend::CpuBackend(Model* model, int num_slots, int capacity)
    : model_(model),
      own_cache_(std::make_unique<KvCache>(model->config(), model->weights().first_layer, model->weights().end_layer,
                                           num_slots, capacity)),
      cache_(own_cache_.get()) {}

CpuBackend::CpuBackend(Model* model, KvCache* cache) : model_(model), cache_(cache) {}

absl::StatusOr<std::unique_ptr<Activations>> CpuBackend::NewActivations(int rows) {
  if (rows < 0) return absl::InvalidArgumentError("negative row count");
  return std::unique_ptr<Activations>(std::make_unique<CpuActivations>(rows, hidden_size()));
}

absl::Status CpuBackend::Upload(const float* host, Activations& x) {
  CpuActivations* c = AsCpu(x);
  if (!c) return NotCpu();
  const size_t bytes = sizeof(float) * static_cast<size_t>(x.rows()) * x.width();
  if (bytes > 0) std::memcpy(c->data(), host, bytes);  // an empty vector's data() may be null
  return absl::OkStatus();
}

absl::Status CpuBackend::Download(const Activations& x, float* host) {
  const CpuActivations* c = AsCpu(x);
  if (!c) return NotCpu();
  const size_t bytes = sizeof(float) * static_cast<size_t>(x.rows()) * x.width();
  if (bytes > 0) std::memcpy(host, c->data(), bytes);  // an empty vector's data() may be null
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyRows(const Activations& src, int src_row, int n, Activations& dst, int dst_row) {
  const CpuActivations* s = AsCpu(src);
  CpuActivations* d = AsCpu(dst);
  if (!s || !d) return NotCpu();
  LS_RETURN_IF_ERROR(CheckRowRange(src, src_row, n, "source"));
  LS_RETURN_IF_ERROR(CheckRowRange(dst, dst_row, n, "destination"));
  if (n > 0) std::memmove(d->row(dst_row), s->row(src_row), sizeof(float) * static_cast<size_t>(n) * src.width());
  return absl::OkStatus();
}

absl::Status CpuBackend::Embed(absl::Span<const int> ids, Activations& x) {
  CpuActivations* c = AsCpu(x);
  if (!c) return NotCpu();
  if (static_cast<int>(ids.size()) != x.rows())
    return absl::InvalidArgumentError(absl::StrCat(ids.size(), " ids for activations of ", x.rows(), " rows"));
  return model_->Embed(ids, c->data());
}

absl::Status CpuBackend::Forward(int a, int b, const TokenBatch& batch, Activations& x) {
  CpuActivations* c = AsCpu(x);
  if (!c) return NotCpu();
  if (batch.size() != x.rows())
    return absl::InvalidArgumentError(absl::StrCat(batch.size(), " tokens for activations of ", x.rows(), " rows"));
  return model_->Forward(a, b, batch, c->data(), cache_);
}

absl::StatusOr<std::vector<float>> CpuBackend::Gather(const Activations& h, absl::Span<const int> rows) const {
  const CpuActivations* c = AsCpu(h);
  if (!c) return NotCpu();
  LS_RETURN_IF_ERROR(CheckRows(h, rows));
  const int D = h.width();
  std::vector<float> out(rows.size() * static_cast<size_t>(D));
  for (size_t i = 0; i < rows.size(); ++i) std::memcpy(out.data() + i * D, c->row(rows[i]), sizeof(float) * D);
  return out;
}

absl::Status CpuBackend::ExitHead(const Activations& h, absl::Span<const int> rows, float* logits) {
  LS_ASSIGN_OR_RETURN(std::vector<float> g, Gather(h, rows));
  return model_->ExitHead(g.data(), static_cast<int>(rows.size()), logits);
}

absl::Status CpuBackend::DraftHead(const Activations& h, absl::Span<const int> rows, float* logits) {
  LS_ASSIGN_OR_RETURN(std::vector<float> g, Gather(h, rows));
  return model_->DraftHead(g.data(), static_cast<int>(rows.size()), logits);
}

absl::Status CpuBackend::ExitArgmax(const Activations& h, absl::Span<const int> rows, int* ids) {
  const int64_t V = vocab_size();
  std::vector<float> logits(rows.size() * static_cast<size_t>(V));
  LS_RETURN_IF_ERROR(ExitHead(h, rows, logits.data()));
  for (size_t i = 0; i < rows.size(); ++i) ids[i] = cpu::Argmax(logits.data() + i * V, V);
  return absl::OkStatus();
}

absl::Status CpuBackend::DraftArgmax(const Activations& h, absl::Span<const int> rows, int* ids) {
  const int64_t V = vocab_size();
  std::vector<float> logits(rows.size() * static_cast<size_t>(V));
  LS_RETURN_IF_ERROR(DraftHead(h, rows, logits.data()));
  for (size_t i = 0; i < rows.size(); ++i) ids[i] = cpu::Argmax(logits.data() + i * V, V);
  return absl::OkStatus();
}

int64_t CpuBackend::kv_cache_bytes() const {
  return cache_->bytes_per_position() * cache_->num_slots() * cache_->capacity();
}

}  // namespace layerskip
