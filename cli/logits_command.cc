// layerskip logits: the exit head's logits after chosen layers for a prompt, as JSON. Used to compare the
// engine with other implementations (the training recipe's tests) and to inspect early exits.
#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "engine/util/status.h"
#include "nlohmann/json.hpp"

namespace layerskip::cli {
namespace {

absl::Status Logits(const Flags& flags) {
  if (!flags.Has("model")) return absl::InvalidArgumentError("--model DIR is required");
  if (!flags.Has("prompt-ids")) return absl::InvalidArgumentError("--prompt-ids 1,2,3 is required");
  LS_ASSIGN_OR_RETURN(const DeviceSpec device, DeviceFromFlags(flags));
  LS_ASSIGN_OR_RETURN(ModelLoadOptions load, LoadOptionsFromFlags(flags));
  LS_ASSIGN_OR_RETURN(auto m, LoadModelDir(flags.Get("model"), load));
  const LlamaConfig& c = m->weights->config;
  const int L = c.num_hidden_layers, V = c.vocab_size;
  LS_ASSIGN_OR_RETURN(std::vector<int> ids, ParseIntList(flags.Get("prompt-ids"), "--prompt-ids"));
  std::vector<int> exits;
  if (flags.Get("exit-layers", "all") == "all") {
    for (int e = 1; e <= L; ++e) exits.push_back(e);
  } else {
    LS_ASSIGN_OR_RETURN(exits, ParseIntList(flags.Get("exit-layers"), "--exit-layers"));
  }
  for (int e : exits)
    if (e < 1 || e > L) return absl::InvalidArgumentError(absl::StrCat("--exit-layers: ", e, " is outside [1, ", L, "]"));
  if (static_cast<int>(ids.size()) > m->context)
    return absl::OutOfRangeError(absl::StrCat("the prompt of ", ids.size(), " tokens is longer than the context ", m->context));

  // Prefill layer by layer; after layer e-1 the exit head gives exit e for every position.
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, BackendFromFlags(flags, *m, device, /*num_slots=*/1));
  TokenBatch batch;
  std::vector<int> rows;
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.Add(0, static_cast<int>(i), TokenRole::kPrompt);  // the whole input is a prompt
    rows.push_back(static_cast<int>(i));
  }
  const int n = static_cast<int>(ids.size());
  std::vector<float> logits(static_cast<size_t>(n) * V);
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> x, backend->NewActivations(n));
  LS_RETURN_IF_ERROR(backend->Embed(ids, *x));
  nlohmann::json out = {{"prompt_ids", ids}, {"device", device.ToString()}, {"exits", nlohmann::json::object()}};
  for (int l = 0; l < L; ++l) {
    LS_RETURN_IF_ERROR(backend->Forward(l, l + 1, batch, *x));
    if (std::find(exits.begin(), exits.end(), l + 1) == exits.end()) continue;
    LS_RETURN_IF_ERROR(backend->ExitHead(*x, rows, logits.data()));
    nlohmann::json rows = nlohmann::json::array();
    for (int i = 0; i < n; ++i) rows.push_back(std::vector<float>(logits.begin() + static_cast<size_t>(i) * V,
                                                                  logits.begin() + static_cast<size_t>(i + 1) * V));
    out["exits"][std::to_string(l + 1)] = std::move(rows);
  }
  std::cout << out.dump() << std::endl;
  return absl::OkStatus();
}

}  // namespace

int RunLogits(int argc, char** argv) {
  auto flags = Flags::Parse(argc, argv, 2, {"model", "prompt-ids", "exit-layers", "dtype", "weights", "threads", "max-context", "device"}, {"no-mmap"});
  if (!flags.ok()) return Fail("logits", flags.status());
  absl::Status s = Logits(*flags);
  return s.ok() ? 0 : Fail("logits", s);
}

}  // namespace layerskip::cli
