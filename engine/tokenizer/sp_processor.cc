// sentencepiece wrapper (see sp_processor.h). Must not include Abseil headers.
#include "engine/tokenizer/sp_processor.h"

#include <sentencepiece_processor.h>

namespace layerskip::tokenizer_internal {

struct SpProcessor::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SpProcessor::SpProcessor() : impl_(std::make_unique<Impl>()) {}
SpProcessor::~SpProcessor() = default;

std::string SpProcessor::Load(const std::string& path) {
  const auto status = impl_->sp.Load(path);
  return status.ok() ? std::string() : status.ToString();
}

std::vector<int> SpProcessor::Encode(std::string_view text) const {
  std::vector<int> ids;
  impl_->sp.Encode(text, &ids).IgnoreError();
  return ids;
}

std::string SpProcessor::Decode(const std::vector<int>& ids) const {
  std::string text;
  impl_->sp.Decode(ids, &text).IgnoreError();
  return text;
}

int SpProcessor::PieceSize() const { return impl_->sp.GetPieceSize(); }
int SpProcessor::PieceToId(std::string_view piece) const { return impl_->sp.PieceToId(piece); }
std::string SpProcessor::IdToPiece(int id) const { return impl_->sp.IdToPiece(id); }
bool SpProcessor::IsControl(int id) const { return impl_->sp.IsControl(id); }
bool SpProcessor::IsUnknown(int id) const { return impl_->sp.IsUnknown(id); }
int SpProcessor::bos_id() const { return impl_->sp.bos_id(); }
int SpProcessor::eos_id() const { return impl_->sp.eos_id(); }

}  // namespace layerskip::tokenizer_internal
