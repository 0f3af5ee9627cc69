#pragma once
// The data link's handshake: before any frame, the dialing stage and the listening stage prove to each
// other that they hold the cluster token, by challenge-response (HMAC-SHA256; the token never crosses the
// wire), and the dialer names the link it wants (from stage -> to stage).
//
//   dialer -> listener   Hello     "LSKH", version, from_stage, to_stage, dialer nonce[32]        (48 bytes)
//   listener -> dialer   Challenge listener nonce[32], HMAC(token, "listener" | Hello | nonce)    (64 bytes)
//   dialer -> listener   Response  HMAC(token, "dialer" | Hello | listener nonce)                 (32 bytes)
//   listener -> dialer   Verdict   status code u32, message length u32, message (<= 256 bytes)
//
// Each side checks the other's MAC in constant time. An empty token (--allow-unauthenticated on both
// sides) still runs the exchange with an empty key: it then names the link but proves nothing.
#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/link_socket.h"

namespace layerskip {

inline constexpr size_t kHelloBytes = 48;
inline constexpr size_t kLinkNonceBytes = 32;
inline constexpr size_t kLinkMacBytes = 32;

struct LinkHello {
  int32_t from_stage = -1;
  int32_t to_stage = -1;
  std::array<uint8_t, kLinkNonceBytes> nonce{};
};

std::array<uint8_t, kHelloBytes> EncodeHello(const LinkHello& h);
// UNAUTHENTICATED when the bytes are not a Hello of this version (a stranger or an old worker).
absl::StatusOr<LinkHello> ParseHello(const uint8_t* bytes);

// HMAC-SHA256(token, label | hello | nonce).
std::array<uint8_t, kLinkMacBytes> LinkMac(const std::string& token, absl::string_view label,
                                           const std::array<uint8_t, kHelloBytes>& hello, const uint8_t* nonce);

// Dialer side on a connected link (TLS already started when the cluster uses it; the caller sets the
// socket's I/O timeout): OK when the listener knew the token
// and accepted the link; UNAUTHENTICATED / FAILED_PRECONDITION with the listener's reason otherwise,
// UNAVAILABLE when the socket failed.
absl::Status DialHandshake(LinkSocket& link, const std::string& token, int from_stage, int to_stage);

// Listener side: runs the exchange up to checking the dialer's MAC and returns its Hello; the caller decides
// whether it wants this link and answers with SendVerdict.
absl::StatusOr<LinkHello> AcceptHandshake(LinkSocket& link, const std::string& token);
// The last message of the exchange; false when it could not be sent.
bool SendVerdict(LinkSocket& link, const absl::Status& verdict);

}  // namespace layerskip
