// UTF-8 helpers for the tokenizer (see unicode_util.h).
#include "engine/tokenizer/unicode_util.h"

namespace layerskip::tokenizer_internal {
namespace {

// Length of a valid sequence led by b and the allowed range of its second byte; 0 when b cannot lead.
int SequenceInfo(uint8_t b, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b == 0xE0) { *lo = 0xA0; return 3; }
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return 3;
  if (b == 0xED) { *hi = 0x9F; return 3; }
  if (b == 0xF0) { *lo = 0x90; return 4; }
  if (b >= 0xF1 && b <= 0xF3) return 4;
  if (b == 0xF4) { *hi = 0x8F; return 4; }
  return 0;
}

// Number of bytes of the valid sequence at s[pos] (1 for ASCII), or -(length of the maximal invalid
// subpart) when invalid.
int ValidSequenceLength(std::string_view s, size_t pos) {
  const uint8_t b = static_cast<uint8_t>(s[pos]);
  if (b < 0x80) return 1;
  uint8_t lo, hi;
  const int len = SequenceInfo(b, &lo, &hi);
  if (len == 0) return -1;
  for (int i = 1; i < len; ++i) {
    if (pos + i >= s.size()) return -i;
    const uint8_t c = static_cast<uint8_t>(s[pos + i]);
    const uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (c < l || c > h) return -i;
  }
  return len;
}

}  // namespace

bool NextCodePoint(std::string_view s, size_t* pos, char32_t* cp) {
  const int len = ValidSequenceLength(s, *pos);
  const uint8_t b = static_cast<uint8_t>(s[*pos]);
  if (len < 0) {
    *cp = b;
    *pos += 1;
    return false;
  }
  static constexpr uint8_t kLeadMask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  char32_t v = b & kLeadMask[len];
  for (int i = 1; i < len; ++i) v = (v << 6) | (static_cast<uint8_t>(s[*pos + i]) & 0x3F);
  *cp = v;
  *pos += len;
  return true;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<std::string_view> SplitChars(std::string_view s) {
  std::vector<std::string_view> chars;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    char32_t cp;
    NextCodePoint(s, &pos, &cp);
    chars.push_back(s.substr(start, pos - start));
  }
  return chars;
}

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    const int len = ValidSequenceLength(bytes, pos);
    if (len > 0) {
      out.append(bytes.substr(pos, len));
      pos += len;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += -len;
    }
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const int len = ValidSequenceLength(s, pos);
    if (len < 0) return false;
    pos += len;
  }
  return true;
}

bool IsUnicodeSpace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

namespace {

// GPT-2's table: printable Latin-1 bytes stand for themselves, the rest map to U+0100 upwards in order.
struct ByteTables {
  std::array<std::string, 256> to_unicode;
  std::array<int, 512> to_byte;  // code point (< 512) -> byte, -1 if none
  ByteTables() {
    to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? b : next++;
      AppendUtf8(cp, &to_unicode[b]);
      to_byte[cp] = b;
    }
  }
};

const ByteTables& Tables() {
  static const ByteTables* tables = new ByteTables();
  return *tables;
}

}  // namespace

const std::array<std::string, 256>& ByteToUnicode() { return Tables().to_unicode; }

bool UnicodeToByte(char32_t cp, uint8_t* byte) {
  if (cp >= 512 || Tables().to_byte[cp] < 0) return false;
  *byte = static_cast<uint8_t>(Tables().to_byte[cp]);
  return true;
}

}  // namespace layerskip::tokenizer_internal
