#include "engine/runtime/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace layerskip::cuda {
namespace {

constexpr size_t kMaxPooled = 64;  // free activation buffers kept for reuse

absl::Status NotCuda() {
  return absl::FailedPreconditionError("activations of another backend given to the CUDA backend");
}

const CudaActivations* AsCuda(const Activations& x) { return dynamic_cast<const CudaActivations*>(&x); }
CudaActivations* AsCuda(Activations& x) { return dynamic_cast<CudaActivations*>(&x); }

}  // namespace

absl::Status ProbeDevice(int index) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat("cuda:", index, ": no CUDA device (cudaGetDeviceCount: ",
                                                      cudaGetErrorString(err), ")"));
  }
  if (count == 0)
    return absl::FailedPreconditionError(absl::StrCat("cuda:", index, ": no CUDA device (cudaGetDeviceCount: 0 devices)"));
  if (index >= count)
    return absl::FailedPreconditionError(
        absl::StrCat("cuda:", index, ": no such device (this machine has ", count, ", cuda:0 to cuda:", count - 1, ")"));
  return absl::OkStatus();
}

CudaActivations::~CudaActivations() {
  if (owner_) owner_->Recycle(std::move(buffer_));
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const ModelWeights& weights, const DeviceSpec& device,
                                                                 int num_slots, int capacity) {
  if (!device.is_cuda()) return absl::InvalidArgumentError(absl::StrCat(device.ToString(), " is not a CUDA device"));
  LS_RETURN_IF_ERROR(ProbeDevice(device.index));
  if (num_slots < 1 || capacity < 2)
    return absl::InvalidArgumentError(absl::StrCat("a KV cache needs >= 1 slot and >= 2 positions, got ", num_slots,
                                                   " x ", capacity));
  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->device_ = device;
  b->first_layer_ = weights.first_layer;
  b->end_layer_ = weights.end_layer;
  b->has_embedding_ = weights.embed != nullptr;
  b->has_head_ = weights.lm_head != nullptr && !weights.final_norm.empty();
  LS_RETURN_IF_ERROR(b->Select());
  CudaModelOptions o;
  o.device = device.index;
  o.max_positions = capacity;
  if (NewKernelsFromEnvironment()) UseNewKernels(&o);  // issue 17's kernels (not yet the default)
  auto model = CudaModel::Create(weights, o);
  if (!model.ok())
    return absl::Status(model.status().code(), absl::StrCat(device.ToString(), ": ", model.status().message()));
  b->model_ = std::move(model).value();
  auto cache = CudaKvCache::Create(weights.config, weights.first_layer, weights.end_layer, num_slots, capacity);
  if (!cache.ok())
    return absl::Status(cache.status().code(), absl::StrCat(device.ToString(), ": the KV cache of ", num_slots,
                                                            " slots x ", capacity, " positions: ", cache.status().message()));
  b->cache_ = std::move(cache).value();
  if (b->has_head_) {
    LS_ASSIGN_OR_RETURN(b->logits_, DeviceBuffer<float>::Alloc(static_cast<size_t>(kHeadChunk) * weights.config.vocab_size));
    LS_ASSIGN_OR_RETURN(b->ids_, DeviceBuffer<int>::Alloc(kHeadChunk));
  }
  const char* graphs = std::getenv("LAYERSKIP_CUDA_GRAPHS");
  b->use_graphs_ = !(graphs && std::string(graphs) == "0");
  if (b->has_embedding_ && b->has_head_) {
    const size_t T = kDecodeAttentionMaxTokens;
    LS_ASSIGN_OR_RETURN(b->step_ids_, DeviceBuffer<int>::Alloc(T));
    LS_ASSIGN_OR_RETURN(b->step_slots_, DeviceBuffer<int>::Alloc(T));
    LS_ASSIGN_OR_RETURN(b->step_positions_, DeviceBuffer<int>::Alloc(T));
    LS_ASSIGN_OR_RETURN(b->step_out_, DeviceBuffer<int>::Alloc(T));
    LS_ASSIGN_OR_RETURN(b->step_x_, DeviceBuffer<float>::Alloc(T * weights.config.hidden_size));
    LS_ASSIGN_OR_RETURN(b->step_logits_, DeviceBuffer<float>::Alloc(T * weights.config.vocab_size));
  }
  return b;
}

CudaBackend::~CudaBackend() {
  if (Select().ok() && model_) model_->Synchronize().IgnoreError();
  for (auto& [key, g] : graphs_)
    if (g.exec) cudaGraphExecDestroy(g.exec);
}

absl::Status CudaBackend::Synchronize() {
  LS_RETURN_IF_ERROR(Select());
  return model_->Synchronize();
}

int CudaBackend::graphs_captured() const {
  int n = 0;
  for (const auto& [key, g] : graphs_) n += g.exec != nullptr;
  return n;
}

absl::Status CudaBackend::EnqueueStep(int b, int bucket) {
  LS_RETURN_IF_ERROR(model_->EmbedDevice(step_ids_.get(), bucket, step_x_.get()));
  LS_RETURN_IF_ERROR(model_->ForwardDevice(0, b, bucket, step_slots_.get(), step_positions_.get(), step_x_.get(),
                                           cache_.get()));
  return model_->ExitArgmax(step_x_.get(), bucket, step_logits_.get(), step_out_.get());
}

absl::Status CudaBackend::DecodeArgmax(int b, const TokenBatch& batch, absl::Span<const int> ids, bool draft,
                                       absl::Span<const int> head_rows, int* out, std::unique_ptr<Activations>* x_out) {
  const int n = batch.size();
  if (!use_graphs_ || n == 0 || n > kDecodeAttentionMaxTokens || n > model_->max_batch() || b < 1 ||
      static_cast<int>(ids.size()) != n || !step_x_.get() || (draft && !draft_ids_.empty()))
    return Backend::DecodeArgmax(b, batch, ids, draft, head_rows, out, x_out);
  LS_RETURN_IF_ERROR(Select());
  // The checks of Embed, Forward and the heads, before any work.
  for (int id : ids)
    if (id < 0 || id >= vocab_size())
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")"));
  std::map<int, int> next;
  LS_RETURN_IF_ERROR(CheckTokenBatch(batch, 0, b, num_layers(), first_layer_, end_layer_, max_positions(), *cache_, &next));
  for (int r : head_rows)
    if (r < 0 || r >= n) return absl::InvalidArgumentError(absl::StrCat("head row ", r, " is outside the step's ", n, " rows"));
  int bucket = 1;
  while (bucket < n) bucket *= 2;
  // Pad rows repeat the last token: the same K/V to the same place, a result nobody reads.
  std::vector<int> h_ids(bucket), h_slots(bucket), h_positions(bucket);
  for (int i = 0; i < bucket; ++i) {
    const int s = std::min(i, n - 1);
    h_ids[i] = ids[s];
    h_slots[i] = batch.slots[s];
    h_positions[i] = batch.positions[s];
  }
  cudaStream_t stream = model_->stream();
  const size_t bytes = sizeof(int) * bucket;
  LS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(step_ids_.get(), h_ids.data(), bytes, cudaMemcpyHostToDevice, stream));
  LS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(step_slots_.get(), h_slots.data(), bytes, cudaMemcpyHostToDevice, stream));
  LS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(step_positions_.get(), h_positions.data(), bytes, cudaMemcpyHostToDevice, stream));
  StepGraph& g = graphs_[{bucket, b}];
  if (!g.exec && g.warmed && !g.failed) {  // second use: capture
    cudaGraph_t graph = nullptr;
    if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
      const absl::Status enqueued = EnqueueStep(b, bucket);
      const cudaError_t end = cudaStreamEndCapture(stream, &graph);
      if (!enqueued.ok() || end != cudaSuccess || cudaGraphInstantiate(&g.exec, graph, 0) != cudaSuccess) g.exec = nullptr;
      if (graph) cudaGraphDestroy(graph);
    }
    (void)cudaGetLastError();  // a failed capture leaves a sticky-free error; eager from now on
    g.failed = g.exec == nullptr;
  }
  if (g.exec) {
    LS_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(g.exec, stream));
  } else {
    LS_RETURN_IF_ERROR(EnqueueStep(b, bucket));
    g.warmed = true;
  }
  std::vector<int> all(bucket);
  LS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(all.data(), step_out_.get(), bytes, cudaMemcpyDeviceToHost, stream));
  if (x_out) {
    LS_ASSIGN_OR_RETURN(*x_out, NewActivations(n));
    LS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(AsCuda(**x_out)->data(), step_x_.get(),
                                            sizeof(float) * static_cast<size_t>(n) * hidden_size(),
                                            cudaMemcpyDeviceToDevice, stream));
  }
  LS_RETURN_IF_ERROR(model_->Synchronize());
  for (size_t i = 0; i < head_rows.size(); ++i) out[i] = all[head_rows[i]];
  for (const auto& [slot, len] : next)
    for (int l = 0; l < b; ++l) cache_->set_length(l, slot, len);
  return absl::OkStatus();
}

absl::Status CudaBackend::Select() const { return CudaStatus(cudaSetDevice(device_.index), "cudaSetDevice"); }

void CudaBackend::Recycle(DeviceBuffer<float> buffer) {
  if (buffer.size() > 0 && pool_.size() < kMaxPooled) pool_.push_back(std::move(buffer));
  // else: freed here (cudaFree waits for the device, so no queued kernel still uses it)
}

absl::StatusOr<std::unique_ptr<Activations>> CudaBackend::NewActivations(int rows) {
  if (rows < 0) return absl::InvalidArgumentError("negative row count");
  LS_RETURN_IF_ERROR(Select());
  const size_t need = static_cast<size_t>(std::max(rows, 1)) * hidden_size();
  // The smallest pooled buffer that fits (the stream orders its reuse after every earlier use).
  auto best = pool_.end();
  for (auto it = pool_.begin(); it != pool_.end(); ++it)
    if (it->size() >= need && (best == pool_.end() || it->size() < best->size())) best = it;
  DeviceBuffer<float> buffer;
  if (best != pool_.end()) {
    buffer = std::move(*best);
    pool_.erase(best);
  } else {
    size_t rounded = 1;  // power-of-two rows, so buffers are reused across nearby sizes
    while (rounded < static_cast<size_t>(std::max(rows, 1))) rounded *= 2;
    LS_ASSIGN_OR_RETURN(buffer, DeviceBuffer<float>::Alloc(rounded * hidden_size()));
  }
  return std::unique_ptr<Activations>(std::make_unique<CudaActivations>(this, std::move(buffer), rows, hidden_size()));
}

absl::Status CudaBackend::Upload(const float* host, Activations& x) {
  CudaActivations* c = AsCuda(x);
  if (!c) return NotCuda();
  LS_RETURN_IF_ERROR(Select());
  const size_t bytes = sizeof(float) * static_cast<size_t>(x.rows()) * x.width();
  if (bytes > 0)
    LS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(c->data(), host, bytes, cudaMemcpyHostToDevice, model_->stream()));
  return model_->Synchronize();  // the host buffer may go as soon as this returns
}

absl::Status CudaBackend::Download(const Activations& x, float* host) {
  const CudaActivations* c = AsCuda(x);
  if (!c) return NotCuda();
  LS_RETURN_IF_ERROR(Select());
  const size_t bytes = sizeof(float) * static_cast<size_t>(x.rows()) * x.width();
  if (bytes > 0)
    LS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host, c->data(), bytes, cudaMemcpyDeviceToHost, model_->stream()));
  return model_->Synchronize();
}

absl::Status CudaBackend::CopyRows(const Activations& src, int src_row, int n, Activations& dst, int dst_row) {
  const CudaActivations* s = AsCuda(src);
  CudaActivations* d = AsCuda(dst);
  if (!s || !d) return NotCuda();
  LS_RETURN_IF_ERROR(CheckRowRange(src, src_row, n, "source"));
  LS_RETURN_IF_ERROR(CheckRowRange(dst, dst_row, n, "destination"));
  if (n == 0) return absl::OkStatus();
  LS_RETURN_IF_ERROR(Select());
  LS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d->row(dst_row), s->row(src_row), sizeof(float) * static_cast<size_t>(n) * src.width(),
                                          cudaMemcpyDeviceToDevice, model_->stream()));
  return absl::OkStatus();
}

absl::Status CudaBackend::Embed(absl::Span<const int> ids, Activations& x) {
  CudaActivations* c = AsCuda(x);
  if (!c) return NotCuda();
  if (static_cast<int>(ids.size()) != x.rows())
    return absl::InvalidArgumentError(absl::StrCat(ids.size(), " ids for activations of ", x.rows(), " rows"));
  LS_RETURN_IF_ERROR(Select());
  return model_->Embed(ids, c->data());
}

absl::Status CudaBackend::Forward(int a, int b, const TokenBatch& batch, Activations& x) {
  CudaActivations* c = AsCuda(x);
  if (!c) return NotCuda();
  if (batch.size() != x.rows())
    return absl::InvalidArgumentError(absl::StrCat(batch.size(), " tokens for activations of ", x.rows(), " rows"));
  LS_RETURN_IF_ERROR(Select());
  return model_->Forward(a, b, batch, c->data(), cache_.get());
}

absl::StatusOr<const float*> CudaBackend::RowsOf(const Activations& h, absl::Span<const int> rows,
                                                 std::unique_ptr<Activations>* scratch) {
  const CudaActivations* c = AsCuda(h);
  if (!c) return NotCuda();
  LS_RETURN_IF_ERROR(CheckRows(h, rows));
  if (!has_head_) return absl::FailedPreconditionError("this model shard has no exit head (final norm + LM head)");
  bool run = true;
  for (size_t i = 1; i < rows.size(); ++i) run &= rows[i] == rows[0] + static_cast<int>(i);
  if (run) return rows.empty() ? c->data() : c->row(rows[0]);
  LS_ASSIGN_OR_RETURN(*scratch, NewActivations(static_cast<int>(rows.size())));
  for (size_t i = 0; i < rows.size();) {  // runs of consecutive rows, one copy each
    size_t n = 1;
    while (i + n < rows.size() && rows[i + n] == rows[i] + static_cast<int>(n)) ++n;
    LS_RETURN_IF_ERROR(CopyRows(h, rows[i], static_cast<int>(n), **scratch, static_cast<int>(i)));
    i += n;
  }
  return AsCuda(**scratch)->data();
}

template <typename Each>
absl::Status CudaBackend::HeadChunks(const float* h, int n, Each each) {
  for (int begin = 0; begin < n; begin += kHeadChunk) {
    const int m = std::min(kHeadChunk, n - begin);
    LS_RETURN_IF_ERROR(each(h + static_cast<size_t>(begin) * hidden_size(), begin, m));
  }
  return model_->Synchronize();
}

absl::Status CudaBackend::ExitHead(const Activations& h, absl::Span<const int> rows, float* logits) {
  LS_RETURN_IF_ERROR(Select());
  std::unique_ptr<Activations> scratch;
  LS_ASSIGN_OR_RETURN(const float* x, RowsOf(h, rows, &scratch));
  const size_t V = vocab_size();
  return HeadChunks(x, static_cast<int>(rows.size()), [&](const float* rows_x, int begin, int m) -> absl::Status {
    LS_RETURN_IF_ERROR(model_->ExitHead(rows_x, m, logits_.get()));
    // Synchronous for pageable host memory: logits_ is free again when this returns.
    return CudaStatus(cudaMemcpyAsync(logits + begin * V, logits_.get(), sizeof(float) * m * V,
                                      cudaMemcpyDeviceToHost, model_->stream()),
                      "logits to the host");
  });
}

absl::Status CudaBackend::ExitArgmax(const Activations& h, absl::Span<const int> rows, int* ids) {
  LS_RETURN_IF_ERROR(Select());
  std::unique_ptr<Activations> scratch;
  LS_ASSIGN_OR_RETURN(const float* x, RowsOf(h, rows, &scratch));
  return HeadChunks(x, static_cast<int>(rows.size()), [&](const float* rows_x, int begin, int m) -> absl::Status {
    LS_RETURN_IF_ERROR(model_->ExitArgmax(rows_x, m, logits_.get(), ids_.get()));
    return CudaStatus(cudaMemcpyAsync(ids + begin, ids_.get(), sizeof(int) * m, cudaMemcpyDeviceToHost, model_->stream()),
                      "ids to the host");
  });
}

// The draft vocabulary's rows of the LM head give the same values as the full head's rows, so the draft
// head is the exit head with -inf outside the subset (applied on the host).
absl::Status CudaBackend::DraftHead(const Activations& h, absl::Span<const int> rows, float* logits) {
  LS_RETURN_IF_ERROR(ExitHead(h, rows, logits));
  if (draft_ids_.empty()) return absl::OkStatus();
  const size_t V = vocab_size();
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t v = 0; v < V; ++v)
      if (!in_draft_[v]) logits[i * V + v] = -INFINITY;
  return absl::OkStatus();
}

absl::Status CudaBackend::DraftArgmax(const Activations& h, absl::Span<const int> rows, int* ids) {
  if (draft_ids_.empty()) return ExitArgmax(h, rows, ids);
  const int64_t V = vocab_size();
  std::vector<float> logits(rows.size() * static_cast<size_t>(V));
  LS_RETURN_IF_ERROR(DraftHead(h, rows, logits.data()));
  for (size_t i = 0; i < rows.size(); ++i) {  // first maximum, as the CPU and device argmax
    const float* l = logits.data() + i * V;
    ids[i] = static_cast<int>(std::max_element(l, l + V) - l);
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::SetDraftVocabulary(std::vector<int> ids) {
  const int V = vocab_size();
  std::vector<char> seen(V, 0);
  for (int id : ids) {
    if (id < 0 || id >= V)
      return absl::InvalidArgumentError(absl::StrCat("draft vocabulary id ", id, " is outside [0, ", V, ")"));
    if (seen[id]++) return absl::InvalidArgumentError(absl::StrCat("draft vocabulary id ", id, " is repeated"));
  }
  if (!ids.empty() && !has_head_)
    return absl::FailedPreconditionError("this model shard has no LM head for a draft vocabulary");
  draft_ids_ = std::move(ids);
  in_draft_ = draft_ids_.empty() ? std::vector<char>() : std::move(seen);
  return absl::OkStatus();
}

int CudaBackend::draft_vocab_size() const {
  return draft_ids_.empty() ? vocab_size() : static_cast<int>(draft_ids_.size());
}

}  // namespace layerskip::cuda
