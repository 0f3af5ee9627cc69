#pragma once
// Tokenizer interface: Hugging Face tokenizer.json (BPE: byte-level or Metaspace/byte-fallback) or a
// sentencepiece tokenizer.model. Matches the `tokenizers` library / transformers' encode and decode.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace layerskip {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text -> ids. Special (added) tokens written in the text are matched as single ids, as the
  // `tokenizers` library does. With add_special_tokens, BOS (and EOS) are added as the tokenizer's
  // post-processor / tokenizer_config.json say (add_bos_token, add_eos_token).
  virtual std::vector<int> Encode(std::string_view text, bool add_special_tokens = true) const = 0;

  // Ids -> text. skip_special_tokens drops special (added) tokens, as transformers' decode does.
  // Ids outside the vocabulary decode to "".
  virtual std::string Decode(const std::vector<int>& ids, bool skip_special_tokens = false) const = 0;

  virtual int vocab_size() const = 0;  // including added tokens
  virtual std::optional<int> bos_id() const = 0;
  virtual std::vector<int> eos_ids() const = 0;
  virtual std::optional<int> TokenToId(std::string_view token) const = 0;
};

// Loads the tokenizer of a model directory: tokenizer.json if present, else tokenizer.model
// (sentencepiece); tokenizer_config.json (if present) for add_bos_token / add_eos_token and special tokens.
// NotFound when neither file exists; InvalidArgument naming the file and field on malformed input.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::filesystem::path& dir);

// Makes LoadTokenizer refuse tokenizer.model (sentencepiece) with FailedPrecondition(`why`). Processes
// that also link libprotobuf (gRPC) call it: Debian's libsentencepiece carries its own protobuf 3.14, whose
// model parser aborts the process when it meets libprotobuf 3.21 there. tokenizer.json is unaffected.
void DisableSentencePiece(std::string why);

// Streaming detokenizer for one sequence: feed generated ids one at a time, get the newly completed text.
// Text that ends in an incomplete UTF-8 sequence (byte-level bytes or <0xXX> byte-fallback pieces, which
// decode to U+FFFD) is held back until later ids complete it, or until Flush(). The concatenation of all
// Feed() results and Flush() equals tokenizer.Decode(all ids, skip_special_tokens).
// It decodes a small window of recent ids (those since the last emitted text) so each call is cheap.
// The tokenizer must outlive the decoder.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);

  // Adds one id; returns the text it completes (often "", e.g. mid-character).
  std::string Feed(int id);
  // End of stream: returns whatever is still held back (incomplete bytes decode to U+FFFD).
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int> ids_;      // ids from prefix_offset_ on (earlier ones dropped)
  size_t prefix_offset_ = 0;  // window start, index into ids_: context for decoding
  size_t read_offset_ = 0;    // ids_[prefix_offset_, read_offset_) have been emitted
};

}  // namespace layerskip
