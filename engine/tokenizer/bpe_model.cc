// BPE model: rank-based merging with a priority queue over a linked list of symbols.
#include "engine/tokenizer/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/unicode_util.h"

namespace layerskip::tokenizer_internal {

using nlohmann::json;

absl::StatusOr<BpeModel> BpeModel::FromJson(const json& model, const std::string& file) {
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": model.", what));
  };
  if (!model.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": \"model\" is not an object"));
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") return error(absl::StrCat("type \"", type, "\" is not supported (only BPE)"));
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(field) && !model[field].is_null() && !model[field].get<std::string>().empty()) {
      return error(absl::StrCat(field, " is not supported"));
    }
  }
  BpeModel m;
  if (!model.contains("vocab") || !model["vocab"].is_object()) return error("vocab is missing or not an object");
  for (const auto& [token, id_json] : model["vocab"].items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 || id_json.get<int64_t>() > (1 << 30)) {
      return error(absl::StrCat("vocab[\"", token, "\"] is not a valid id"));
    }
    const int id = id_json.get<int>();
    if (static_cast<size_t>(id) >= m.id_to_token_.size()) m.id_to_token_.resize(id + 1);
    m.id_to_token_[id] = token;
    m.vocab_[token] = id;
  }
  if (!model.contains("merges") || !model["merges"].is_array()) return error("merges is missing or not an array");
  int rank = 0;
  for (const auto& merge : model["merges"]) {
    std::string left, right;
    if (merge.is_string()) {  // "a b"
      const std::string s = merge.get<std::string>();
      const size_t space = s.find(' ', 1);
      if (space == std::string::npos) return error(absl::StrCat("merges[", rank, "] \"", s, "\" has no space"));
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return error(absl::StrCat("merges[", rank, "] is neither \"a b\" nor [a, b]"));
    }
    auto l = m.vocab_.find(left), r = m.vocab_.find(right), n = m.vocab_.find(left + right);
    if (l == m.vocab_.end() || r == m.vocab_.end() || n == m.vocab_.end()) {
      return error(absl::StrCat("merges[", rank, "] (\"", left, "\", \"", right, "\") uses a token not in the vocab"));
    }
    m.merges_.try_emplace(PairKey(l->second, r->second), Merge{rank, n->second});
    ++rank;
  }
  auto flag = [&](const char* name) { return model.contains(name) && model[name].is_boolean() && model[name].get<bool>(); };
  m.ignore_merges_ = flag("ignore_merges");
  m.byte_fallback_ = flag("byte_fallback");
  m.fuse_unk_ = flag("fuse_unk");
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = m.vocab_.find(model["unk_token"].get<std::string>());
    if (it == m.vocab_.end()) return error("unk_token is not in the vocab");
    m.unk_id_ = it->second;
  }
  m.byte_ids_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    auto it = m.vocab_.find(absl::StrFormat("<0x%02X>", b));
    if (it != m.vocab_.end()) m.byte_ids_[b] = it->second;
  }
  return m;
}

std::optional<int> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(AbslView(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int id) const {
  if (id < 0 || id >= size()) return nullptr;
  auto it = vocab_.find(id_to_token_[id]);
  if (it == vocab_.end() || it->second != id) return nullptr;  // a hole in the id range
  return &id_to_token_[id];
}

void BpeModel::Encode(std::string_view word, std::vector<int>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(AbslView(word)); it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedLen;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (auto it = cache_->words.find(AbslView(word)); it != cache_->words.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int> result = MergeWord(word);
  ids->insert(ids->end(), result.begin(), result.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->words.size() >= kMaxCacheEntries) cache_->words.clear();
    cache_->words.emplace(std::string(word), std::move(result));
  }
}

std::vector<int> BpeModel::MergeWord(std::string_view word) const {
  // Symbols of a doubly linked list; a merged-away symbol has alive == false.
  struct Symbol {
    int id;
    int prev;
    int next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  auto add = [&](int id) {
    const int n = static_cast<int>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
  };
  // Initial symbols: one per character; unknown characters become <0xXX> tokens (byte_fallback) or unk
  // (consecutive unknowns fused with fuse_unk), as the tokenizers library does.
  int pending_unk = -1;  // unk id waiting to be added (fuse_unk extends it), -1 for none
  for (std::string_view ch : SplitChars(word)) {
    if (auto it = vocab_.find(AbslView(ch)); it != vocab_.end()) {
      if (pending_unk >= 0) add(pending_unk);
      pending_unk = -1;
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : ch) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : ch) add(byte_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) add(pending_unk);
  if (symbols.empty()) return {};
  symbols.back().next = -1;

  // Lowest rank first; ties go to the leftmost position.
  struct Candidate {
    int rank;
    int pos;
    int new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](int pos) {
    const int next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  std::vector<int> ids;
  for (int i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

}  // namespace layerskip::tokenizer_internal
