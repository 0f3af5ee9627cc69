#pragma once
// Blocking socket helpers for the data links: whole-buffer reads and writes (EINTR retried, SIGPIPE
// suppressed) and per-socket I/O timeouts.
#include <cstddef>

#include "absl/time/time.h"

namespace layerskip {

// false when the peer closed, the socket failed or its timeout (SetIoTimeout) expired.
bool WriteFull(int fd, const void* data, size_t n);
bool ReadFull(int fd, void* data, size_t n);
// SO_RCVTIMEO and SO_SNDTIMEO; absl::ZeroDuration(): no timeout.
void SetIoTimeout(int fd, absl::Duration timeout);
// TCP_NODELAY and keepalive (a vanished peer is noticed within about a minute).
void TuneDataSocket(int fd);

}  // namespace layerskip
