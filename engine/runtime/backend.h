#pragma once
// One device-neutral runtime: the interface that decoding (engine/decode/), the local executor and the
// pipeline worker call, implemented by the CPU backend (engine/runtime/cpu_backend.h) and the CUDA backend
// (engine/runtime/cuda/cuda_backend.h). A backend holds a model's loaded layers [first_layer, end_layer)
// (+ embedding and exit head when loaded) and the KV cache of those layers; activations are handles whose
// memory lives on the backend's device and move to the host only when asked (the pipeline's transport,
// logits for sampling).
//
// Shapes: D = hidden_size, V = vocab_size; an Activations of n rows is x[n, D] f32 on the device.
// One thread at a time calls a backend (the engine loop, or the worker's serialised service).
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/config.h"
#include "engine/runtime/device.h"
#include "engine/runtime/token_batch.h"

namespace layerskip {

// Hidden states x[rows, D] on a backend's device. Made by Backend::NewActivations and usable only with the
// backend that made it (which it must not outlive).
class Activations {
 public:
  virtual ~Activations() = default;
  int rows() const { return rows_; }
  int width() const { return width_; }

 protected:
  Activations(int rows, int width) : rows_(rows), width_(width) {}
  int rows_, width_;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const DeviceSpec& device() const = 0;
  virtual const LlamaConfig& config() const = 0;
  int num_layers() const { return config().num_hidden_layers; }
  int hidden_size() const { return config().hidden_size; }
  int vocab_size() const { return config().vocab_size; }
  // The loaded layers, and whether the embedding / the exit head (final norm + LM head) are loaded.
  virtual int first_layer() const = 0;
  virtual int end_layer() const = 0;
  virtual bool has_embedding() const = 0;
  virtual bool has_head() const = 0;
  // The largest position + 1 the model runs at (RoPE table); context_length() also bounds it by the cache.
  virtual int max_positions() const = 0;
  int context_length() const;

  // --- Activations ---
  // A new x[rows, D] (uninitialised), rows >= 0.
  virtual absl::StatusOr<std::unique_ptr<Activations>> NewActivations(int rows) = 0;
  // x = host[x.rows(), D] (the pipeline's transport in), and host[x.rows(), D] = x (out).
  virtual absl::Status Upload(const float* host, Activations& x) = 0;
  virtual absl::Status Download(const Activations& x, float* host) = 0;
  // dst rows [dst_row, dst_row + n) = src rows [src_row, src_row + n) (src and dst may be the same handle
  // only when the ranges do not overlap).
  virtual absl::Status CopyRows(const Activations& src, int src_row, int n, Activations& dst, int dst_row) = 0;

  // --- Compute ---
  // x[ids.size(), D] = embedding rows of ids (x.rows() must equal ids.size()). InvalidArgument for an id
  // outside [0, V).
  virtual absl::Status Embed(absl::Span<const int> ids, Activations& x) = 0;
  // Runs layers [a, b) in place on x[batch.size(), D]: appends each token's K/V to its slot in every layer
  // of [a, b) and attends causally to positions [0, position]. Checks the batch against the cache
  // (CheckTokenBatch: loaded layers, slots, consecutive positions from each slot's length, capacity) before
  // touching anything; InvalidArgument when x.rows() != batch.size().
  virtual absl::Status Forward(int a, int b, const TokenBatch& batch, Activations& x) = 0;
  // The exit head on rows `rows` of h: logits[rows.size(), V] to the host. After layer E-1 this is early
  // exit at E; after the last layer, the model's output.
  virtual absl::Status ExitHead(const Activations& h, absl::Span<const int> rows, float* logits) = 0;
  // ids[rows.size()] = argmax of the exit head on those rows, computed on the device (no logits copied).
  virtual absl::Status ExitArgmax(const Activations& h, absl::Span<const int> rows, int* ids) = 0;
  // The draft head: the exit head restricted to the draft vocabulary (-inf outside it; the full head when
  // none is set). Drafting uses it; verification always uses the exit head, so decoding stays lossless.
  virtual absl::Status DraftHead(const Activations& h, absl::Span<const int> rows, float* logits) = 0;
  virtual absl::Status DraftArgmax(const Activations& h, absl::Span<const int> rows, int* ids) = 0;
  // The decode fast path, one call for: x = Embed(ids); Forward(0, b, batch, x); out[i] = argmax of the
  // exit head (draft == false) or the draft head (draft == true) on row head_rows[i]; *x_out = x when
  // x_out is given. The default runs those calls; the CUDA backend replays a CUDA graph captured per
  // batch-size bucket for decode steps (at most 64 tokens) and runs anything else eagerly. Same results
  // either way (batch-invariant kernels), same checks and errors as the calls it stands for.
  virtual absl::Status DecodeArgmax(int b, const TokenBatch& batch, absl::Span<const int> ids, bool draft,
                                    absl::Span<const int> head_rows, int* out, std::unique_ptr<Activations>* x_out);
  // Waits until the device has finished the work enqueued so far (timing; the CPU backend is synchronous).
  virtual absl::Status Synchronize() { return absl::OkStatus(); }
  // Restricts the draft head to `ids` (distinct, in [0, V); empty: the full head). Call before decoding.
  virtual absl::Status SetDraftVocabulary(std::vector<int> ids) = 0;
  virtual int draft_vocab_size() const = 0;

  // --- KV cache of layers [first_layer, end_layer), num_slots x capacity positions ---
  virtual int num_slots() const = 0;
  virtual int capacity() const = 0;
  // Cached positions of (layer, slot); layer in [first_layer, end_layer).
  virtual int length(int layer, int slot) const = 0;
  // Every layer of `slot` (or layers [a, b) only) keeps at most `len` positions: a rollback.
  virtual void Truncate(int slot, int len) = 0;
  virtual void TruncateLayers(int slot, int a, int b, int len) = 0;
  // Frees a slot for a new sequence (length 0 everywhere).
  void Reset(int slot) { Truncate(slot, 0); }
  // Bytes of KV cache the backend holds, and bytes per cached position (all its layers).
  virtual int64_t kv_cache_bytes() const = 0;
};

// Checks every backend runs on its arguments: each of `rows` inside h; src/dst row ranges inside their
// handles. InvalidArgument naming the row otherwise.
absl::Status CheckRows(const Activations& h, absl::Span<const int> rows);
absl::Status CheckRowRange(const Activations& x, int row, int n, const char* what);

}  // namespace layerskip
