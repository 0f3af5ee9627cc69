#pragma once
// UTF-8 helpers for the tokenizer: code point iteration, lossy decoding, GPT-2 byte-level alphabet.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace layerskip::tokenizer_internal {

// std::string_view -> absl::string_view (Debian's Abseil keeps its own type) for hash-map lookups.
inline absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Reads the code point at s[*pos] and advances *pos. Invalid UTF-8 reads one byte and returns false.
bool NextCodePoint(std::string_view s, size_t* pos, char32_t* cp);

// Appends the UTF-8 encoding of cp.
void AppendUtf8(char32_t cp, std::string* out);

// Splits s into characters (UTF-8 sequences; a stray invalid byte is its own piece).
std::vector<std::string_view> SplitChars(std::string_view s);

// Bytes -> valid UTF-8: each maximal invalid subsequence becomes U+FFFD (as Rust's from_utf8_lossy).
std::string Utf8Lossy(std::string_view bytes);

// True when s is complete, valid UTF-8.
bool IsValidUtf8(std::string_view s);

// Unicode White_Space.
bool IsUnicodeSpace(char32_t cp);

// GPT-2 byte-level alphabet: byte -> the UTF-8 of its printable stand-in character.
const std::array<std::string, 256>& ByteToUnicode();
// Inverse of ByteToUnicode for one code point; false when cp is not a stand-in.
bool UnicodeToByte(char32_t cp, uint8_t* byte);

}  // namespace layerskip::tokenizer_internal
