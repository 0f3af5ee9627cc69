#include "transport/link_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace layerskip {
namespace {

constexpr uint32_t kHelloMagic = 0x48534b4c;  // "LSKH"
constexpr uint32_t kHelloVersion = 1;
constexpr uint32_t kMaxVerdictMessage = 256;

bool RandomNonce(uint8_t* out) { return RAND_bytes(out, static_cast<int>(kLinkNonceBytes)) == 1; }

}  // namespace

std::array<uint8_t, kHelloBytes> EncodeHello(const LinkHello& h) {
  std::array<uint8_t, kHelloBytes> out{};
  uint8_t* p = out.data();
  std::memcpy(p, &kHelloMagic, 4);
  std::memcpy(p + 4, &kHelloVersion, 4);
  std::memcpy(p + 8, &h.from_stage, 4);
  std::memcpy(p + 12, &h.to_stage, 4);
  std::memcpy(p + 16, h.nonce.data(), kLinkNonceBytes);
  return out;
}

absl::StatusOr<LinkHello> ParseHello(const uint8_t* bytes) {
  uint32_t magic, version;
  std::memcpy(&magic, bytes, 4);
  std::memcpy(&version, bytes + 4, 4);
  if (magic != kHelloMagic) return absl::UnauthenticatedError("not a layerskip data link (bad hello)");
  if (version != kHelloVersion)
    return absl::UnauthenticatedError(absl::StrCat("data link hello version ", version, ", this worker speaks ", kHelloVersion));
  LinkHello h;
  std::memcpy(&h.from_stage, bytes + 8, 4);
  std::memcpy(&h.to_stage, bytes + 12, 4);
  std::memcpy(h.nonce.data(), bytes + 16, kLinkNonceBytes);
  return h;
}

std::array<uint8_t, kLinkMacBytes> LinkMac(const std::string& token, absl::string_view label,
                                           const std::array<uint8_t, kHelloBytes>& hello, const uint8_t* nonce) {
  std::vector<uint8_t> msg(label.begin(), label.end());
  msg.insert(msg.end(), hello.begin(), hello.end());
  msg.insert(msg.end(), nonce, nonce + kLinkNonceBytes);
  std::array<uint8_t, kLinkMacBytes> mac{};
  unsigned int len = 0;
  static const char kEmpty = 0;  // HMAC wants a non-null key even when it is empty
  HMAC(EVP_sha256(), token.empty() ? &kEmpty : token.data(), static_cast<int>(token.size()), msg.data(), msg.size(),
       mac.data(), &len);
  return mac;
}

absl::Status DialHandshake(LinkSocket& link, const std::string& token, int from_stage, int to_stage) {
  LinkHello hello;
  hello.from_stage = from_stage;
  hello.to_stage = to_stage;
  if (!RandomNonce(hello.nonce.data())) return absl::InternalError("no random bytes for the link nonce");
  const std::array<uint8_t, kHelloBytes> h = EncodeHello(hello);
  if (!link.WriteFull(h.data(), h.size())) return absl::UnavailableError("data link: sending the hello failed");
  uint8_t challenge[kLinkNonceBytes + kLinkMacBytes];
  if (!link.ReadFull(challenge, sizeof(challenge)))
    return absl::UnavailableError("data link: the listener closed the connection during the handshake");
  const std::array<uint8_t, kLinkMacBytes> expect = LinkMac(token, "listener", h, challenge);
  if (CRYPTO_memcmp(expect.data(), challenge + kLinkNonceBytes, kLinkMacBytes) != 0)
    return absl::UnauthenticatedError("data link: the next stage does not hold this cluster token");
  const std::array<uint8_t, kLinkMacBytes> response = LinkMac(token, "dialer", h, challenge);
  if (!link.WriteFull(response.data(), response.size())) return absl::UnavailableError("data link: sending the response failed");
  uint32_t verdict[2];
  if (!link.ReadFull(verdict, sizeof(verdict)) || verdict[1] > kMaxVerdictMessage)
    return absl::UnavailableError("data link: no verdict from the next stage");
  std::string message(verdict[1], '\0');
  if (verdict[1] > 0 && !link.ReadFull(message.data(), message.size()))
    return absl::UnavailableError("data link: truncated verdict");
  if (verdict[0] == 0) return absl::OkStatus();
  const auto code = verdict[0] <= 16 ? static_cast<absl::StatusCode>(verdict[0]) : absl::StatusCode::kUnknown;
  return absl::Status(code, absl::StrCat("the next stage refused the data link: ", message));
}

absl::StatusOr<LinkHello> AcceptHandshake(LinkSocket& link, const std::string& token) {
  std::array<uint8_t, kHelloBytes> h{};
  if (!link.ReadFull(h.data(), h.size())) return absl::UnauthenticatedError("no hello within the handshake timeout");
  absl::StatusOr<LinkHello> hello = ParseHello(h.data());
  if (!hello.ok()) return hello.status();
  uint8_t challenge[kLinkNonceBytes + kLinkMacBytes];
  if (!RandomNonce(challenge)) return absl::InternalError("no random bytes for the link nonce");
  const std::array<uint8_t, kLinkMacBytes> mine = LinkMac(token, "listener", h, challenge);
  std::memcpy(challenge + kLinkNonceBytes, mine.data(), kLinkMacBytes);
  if (!link.WriteFull(challenge, sizeof(challenge))) return absl::UnauthenticatedError("the dialer left during the handshake");
  uint8_t response[kLinkMacBytes];
  if (!link.ReadFull(response, sizeof(response))) return absl::UnauthenticatedError("no response within the handshake timeout");
  const std::array<uint8_t, kLinkMacBytes> expect = LinkMac(token, "dialer", h, challenge);
  if (CRYPTO_memcmp(expect.data(), response, kLinkMacBytes) != 0) {
    const absl::Status wrong = absl::UnauthenticatedError("the dialer does not hold this cluster token");
    SendVerdict(link, wrong);
    return wrong;
  }
  return hello;
}

bool SendVerdict(LinkSocket& link, const absl::Status& verdict) {
  const std::string message(verdict.message().substr(0, kMaxVerdictMessage));
  const uint32_t head[2] = {static_cast<uint32_t>(verdict.code()), static_cast<uint32_t>(message.size())};
  return link.WriteFull(head, sizeof(head)) && (message.empty() || link.WriteFull(message.data(), message.size()));
}

}  // namespace layerskip
