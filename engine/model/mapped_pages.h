#pragma once
// Page management for tensor data in a read-only checkpoint mapping (zero-copy loading).
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace layerskip {

// Faults in the pages of every [begin, begin + size) range: MADV_WILLNEED (the kernel starts reading ahead),
// then one byte per page read by `threads` threads that split the bytes evenly.
void PageIn(const std::vector<std::pair<const uint8_t*, size_t>>& ranges, int threads);

// Drops the whole pages inside [begin, begin + size) from this process (MADV_DONTNEED): data already
// converted into a private copy stops counting towards the resident set; a later read would fault it in
// again from the file.
void ReleasePages(const uint8_t* begin, size_t size);

}  // namespace layerskip
