#include "engine/runtime/cuda/cuda_decode.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace layerskip::cuda {
namespace {

#define LS_OP(expr) LS_CUDA_RETURN_IF_ERROR(expr)

absl::Status CheckArgs(const CudaModel& model, const CudaKvCache& cache, int slot, absl::Span<const int> prompt,
                       int max_new_tokens, int exit_layer) {
  if (prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  if (slot < 0 || slot >= cache.num_slots()) return absl::InvalidArgumentError("slot outside the cache");
  if (cache.length(cache.first_layer(), slot) != 0) return absl::FailedPreconditionError("the slot is not empty");
  if (exit_layer < 1 || exit_layer > model.num_layers()) return absl::InvalidArgumentError("exit layer out of range");
  const int64_t last = static_cast<int64_t>(prompt.size()) + max_new_tokens;
  if (last > cache.capacity() || last > model.max_positions())
    return absl::OutOfRangeError(absl::StrCat(last, " positions exceed the context"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int>> GreedyAutoregressive(CudaModel& model, CudaKvCache* cache, int slot,
                                                      absl::Span<const int> prompt, int max_new_tokens,
                                                      int exit_layer) {
  LS_RETURN_IF_ERROR(CheckArgs(model, *cache, slot, prompt, max_new_tokens, exit_layer));
  if (max_new_tokens <= 0) return std::vector<int>();
  const int P = static_cast<int>(prompt.size()), D = model.hidden_size(), V = model.vocab_size();
  const int E = exit_layer;
  LS_ASSIGN_OR_RETURN(auto x, DeviceBuffer<float>::Alloc(static_cast<size_t>(P) * D));
  LS_ASSIGN_OR_RETURN(auto logits, DeviceBuffer<float>::Alloc(V));
  // ids[j]: the j-th generated id; positions[j] = P + j, slots all `slot`: uploaded once.
  std::vector<int> positions(max_new_tokens), slots(max_new_tokens, slot);
  std::iota(positions.begin(), positions.end(), P);
  LS_ASSIGN_OR_RETURN(auto ids, DeviceBuffer<int>::Alloc(max_new_tokens));
  LS_ASSIGN_OR_RETURN(auto pos_dev, DeviceBuffer<int>::FromHost(positions));
  LS_ASSIGN_OR_RETURN(auto slot_dev, DeviceBuffer<int>::FromHost(slots));

  TokenBatch batch;
  for (int i = 0; i < P; ++i) batch.Add(slot, i);
  LS_RETURN_IF_ERROR(model.Embed(prompt, x.get()));
  LS_RETURN_IF_ERROR(model.Forward(0, E, batch, x.get(), cache));
  LS_RETURN_IF_ERROR(model.ExitArgmax(x.get() + static_cast<size_t>(P - 1) * D, 1, logits.get(), ids.get()));
  for (int j = 1; j < max_new_tokens; ++j) {  // token j-1 goes in at position P + j - 1
    LS_RETURN_IF_ERROR(model.EmbedDevice(ids.get() + j - 1, 1, x.get()));
    LS_RETURN_IF_ERROR(model.ForwardDevice(0, E, 1, slot_dev.get(), pos_dev.get() + j - 1, x.get(), cache));
    LS_RETURN_IF_ERROR(model.ExitArgmax(x.get(), 1, logits.get(), ids.get() + j));
  }
  for (int l = 0; l < E; ++l) cache->set_length(l, slot, P + max_new_tokens - 1);
  return ids.ToHost();
}

namespace {

// Device state of self-speculative rounds after the first (input: one bonus token).
struct RoundBuffers {
  int d = 0;
  DeviceBuffer<int> ids;        // [d + 1]: ids[0] = bonus (uploaded), ids[1..d] = drafts
  DeviceBuffer<int> verified;   // [d + 1]: argmax of the full model after the bonus and each draft
  DeviceBuffer<int> positions;  // [d + 1]: P .. P + d (uploaded)
  DeviceBuffer<int> slots;      // [d + 1]: all the slot
  DeviceBuffer<float> exit_cache, logits;  // [d + 1, D], [d + 1, V]
};

// Enqueues one round whose input is the single token ids[0] at positions[0]: d drafting steps over layers
// [0, E) (each: embed, forward, exit-cache row, exit head, argmax into ids[j+1]), the last draft through
// [0, E), one verification pass over [E, L) for the d + 1 exit-cache rows, and their argmax. Only device
// pointers and fixed shapes: capturable as a CUDA graph.
absl::Status EnqueueRound(CudaModel& model, CudaKvCache* cache, int E, RoundBuffers& b) {
  const int D = model.hidden_size(), d = b.d;
  for (int j = 0; j <= d; ++j) {
    float* row = b.exit_cache.get() + static_cast<size_t>(j) * D;
    LS_RETURN_IF_ERROR(model.EmbedDevice(b.ids.get() + j, 1, row));
    LS_RETURN_IF_ERROR(model.ForwardDevice(0, E, 1, b.slots.get(), b.positions.get() + j, row, cache));
    if (j < d) {
      LS_RETURN_IF_ERROR(model.ExitArgmax(row, 1, b.logits.get(), b.ids.get() + j + 1));
    }
  }
  LS_RETURN_IF_ERROR(model.ForwardDevice(E, model.num_layers(), d + 1, b.slots.get(), b.positions.get(),
                                         b.exit_cache.get(), cache));
  return model.ExitArgmax(b.exit_cache.get(), d + 1, b.logits.get(), b.verified.get());
}

}  // namespace

absl::StatusOr<std::vector<int>> GreedySelfSpeculative(CudaModel& model, CudaKvCache* cache, int slot,
                                                       absl::Span<const int> prompt, int max_new_tokens,
                                                       int exit_layer, int speculations, bool use_graph,
                                                       SelfSpeculativeStats* stats) {
  const int L = model.num_layers(), E = exit_layer, d = speculations;
  LS_RETURN_IF_ERROR(CheckArgs(model, *cache, slot, prompt, max_new_tokens + d + 1, E));
  if (E >= L || d < 0 || d + 1 > kDecodeAttentionMaxTokens)
    return absl::InvalidArgumentError("self-speculation needs 1 <= E < L and 0 <= d < 64");
  SelfSpeculativeStats local;
  if (!stats) stats = &local;
  std::vector<int> out;
  if (max_new_tokens <= 0) return out;
  const int P = static_cast<int>(prompt.size()), D = model.hidden_size(), V = model.vocab_size();

  // The first round is the autoregressive prefill of the whole prompt (its bonus token: the full model's
  // first id); every later round drafts from one bonus token.
  {
    LS_ASSIGN_OR_RETURN(auto x, DeviceBuffer<float>::Alloc(static_cast<size_t>(P) * D));
    LS_ASSIGN_OR_RETURN(auto logits, DeviceBuffer<float>::Alloc(V));
    LS_ASSIGN_OR_RETURN(auto id, DeviceBuffer<int>::Alloc(1));
    TokenBatch batch;
    for (int i = 0; i < P; ++i) batch.Add(slot, i);
    LS_RETURN_IF_ERROR(model.Embed(prompt, x.get()));
    LS_RETURN_IF_ERROR(model.Forward(0, L, batch, x.get(), cache));
    LS_RETURN_IF_ERROR(model.ExitArgmax(x.get() + static_cast<size_t>(P - 1) * D, 1, logits.get(), id.get()));
    LS_ASSIGN_OR_RETURN(std::vector<int> first, id.ToHost());
    out.push_back(first[0]);
  }

  RoundBuffers b;
  b.d = d;
  LS_ASSIGN_OR_RETURN(b.ids, DeviceBuffer<int>::Alloc(d + 1));
  LS_ASSIGN_OR_RETURN(b.verified, DeviceBuffer<int>::Alloc(d + 1));
  LS_ASSIGN_OR_RETURN(b.positions, DeviceBuffer<int>::Alloc(d + 1));
  LS_ASSIGN_OR_RETURN(b.slots, DeviceBuffer<int>::FromHost(std::vector<int>(d + 1, slot)));
  LS_ASSIGN_OR_RETURN(b.exit_cache, DeviceBuffer<float>::Alloc(static_cast<size_t>(d + 1) * D));
  LS_ASSIGN_OR_RETURN(b.logits, DeviceBuffer<float>::Alloc(static_cast<size_t>(d + 1) * V));
  cudaGraphExec_t exec = nullptr;
  stats->graph = false;
  // Host staging: [bonus, positions P..P+d] go up in two copies; [drafts, verified] come down in two.
  std::vector<int> up_pos(d + 1), drafts(d + 1), verified(d + 1);
  absl::Status status;
  while (static_cast<int>(out.size()) < max_new_tokens) {
    const int len = P + static_cast<int>(out.size()) - 1;  // cached positions; the bonus goes in at len
    std::iota(up_pos.begin(), up_pos.end(), len);
    const int bonus = out.back();
    cudaStream_t s = model.stream();
    if (!(status = CudaStatus(cudaMemcpyAsync(b.ids.get(), &bonus, sizeof(int), cudaMemcpyHostToDevice, s), "up")).ok())
      break;
    if (!(status = CudaStatus(cudaMemcpyAsync(b.positions.get(), up_pos.data(), (d + 1) * sizeof(int),
                                              cudaMemcpyHostToDevice, s), "up")).ok())
      break;
    if (use_graph && !exec && stats->rounds > 0) {  // round 1 ran eagerly (kernel attributes are set)
      cudaGraph_t graph = nullptr;
      if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
        const absl::Status enq = EnqueueRound(model, cache, E, b);
        const cudaError_t end = cudaStreamEndCapture(s, &graph);
        if (enq.ok() && end == cudaSuccess && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess) stats->graph = true;
        else exec = nullptr;
        if (graph) cudaGraphDestroy(graph);
        (void)cudaGetLastError();
      }
      if (!exec) use_graph = false;  // fall back to eager launches
    }
    if (exec) status = CudaStatus(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
    else status = EnqueueRound(model, cache, E, b);
    if (!status.ok()) break;
    if (!(status = CudaStatus(cudaMemcpyAsync(drafts.data(), b.ids.get(), (d + 1) * sizeof(int),
                                              cudaMemcpyDeviceToHost, s), "down")).ok())
      break;
    if (!(status = CudaStatus(cudaMemcpyAsync(verified.data(), b.verified.get(), (d + 1) * sizeof(int),
                                              cudaMemcpyDeviceToHost, s), "down")).ok())
      break;
    if (!(status = model.Synchronize()).ok()) break;
    // drafts[1..d] vs verified[0..d-1]: accept the leading matches, then the verifier's bonus.
    int n = 0;
    while (n < d && drafts[n + 1] == verified[n]) ++n;
    ++stats->rounds;
    stats->drafted += d;
    stats->accepted += n;
    for (int i = 0; i < n; ++i) out.push_back(drafts[i + 1]);
    out.push_back(verified[n]);
    // Cached now: the bonus and the n accepted drafts; the new bonus is not cached yet.
    for (int l = 0; l < L; ++l) cache->set_length(l, slot, len + 1 + n);
  }
  if (exec) cudaGraphExecDestroy(exec);
  LS_RETURN_IF_ERROR(status);
  out.resize(max_new_tokens);
  return out;
}

}  // namespace layerskip::cuda
