#pragma once
// BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE", ...}): vocab, ranked merges,
// ignore_merges, byte_fallback (<0xXX> tokens), unk_token / fuse_unk. Encodes one pre-token at a time.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace layerskip::tokenizer_internal {

class BpeModel {
 public:
  // Parses the "model" object; `file` names tokenizer.json in error messages.
  static absl::StatusOr<BpeModel> FromJson(const nlohmann::json& model, const std::string& file);

  // Appends the ids of one pre-token (already normalized / byte-level mapped) to *ids.
  void Encode(std::string_view word, std::vector<int>* ids) const;

  std::optional<int> TokenToId(std::string_view token) const;
  const std::string* IdToToken(int id) const;  // nullptr when id is not in the vocab
  int size() const { return static_cast<int>(id_to_token_.size()); }

 private:
  struct Merge {
    int rank;
    int new_id;
  };
  static uint64_t PairKey(int a, int b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
  std::vector<int> MergeWord(std::string_view word) const;
  // Per-pre-token result cache (words up to kMaxCachedLen bytes); shared by copies of the model.
  struct Cache {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int>> words;
  };
  static constexpr size_t kMaxCachedLen = 256;
  static constexpr size_t kMaxCacheEntries = 200000;

  absl::flat_hash_map<std::string, int> vocab_;
  std::vector<std::string> id_to_token_;
  absl::flat_hash_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank, merged id
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<int> unk_id_;
  std::vector<int> byte_ids_;  // byte -> id of "<0xXX>", -1 if absent
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace layerskip::tokenizer_internal
