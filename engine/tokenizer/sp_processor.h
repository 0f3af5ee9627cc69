#pragma once
// Thin wrapper over sentencepiece::SentencePieceProcessor. sentencepiece's header declares its own
// absl::string_view, which clashes with Abseil's, so it is included only in sp_processor.cc and this
// header uses the standard library alone.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace layerskip::tokenizer_internal {

class SpProcessor {
 public:
  SpProcessor();
  ~SpProcessor();
  // Loads a tokenizer.model; returns "" on success, else sentencepiece's error message.
  std::string Load(const std::string& path);
  std::vector<int> Encode(std::string_view text) const;
  std::string Decode(const std::vector<int>& ids) const;
  int PieceSize() const;
  int PieceToId(std::string_view piece) const;
  std::string IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int bos_id() const;  // -1 when none
  int eos_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerskip::tokenizer_internal
