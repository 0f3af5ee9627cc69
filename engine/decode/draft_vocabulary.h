#pragma once
// The draft head's vocabulary subset: the K tokens most likely to be drafted. From a calibration corpus
// (the K most frequent ids of its encoding), topped up from the tokenizer's order (byte-level BPE numbers
// its tokens in merge order, so low ids are the most frequent pieces). The eos ids are always included.
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace layerskip {

// K ids in [0, vocab_size), distinct, sorted ascending. `corpus_ids`: the corpus's encoding (may be empty).
// InvalidArgument when K is not in [1, vocab_size].
absl::StatusOr<std::vector<int>> ChooseDraftVocabulary(int vocab_size, int k, const std::vector<int>& corpus_ids,
                                                       const std::vector<int>& always);

}  // namespace layerskip
