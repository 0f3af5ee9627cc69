#pragma once
// Memory read bandwidth of this machine, measured the way decoding reads weights: AVX2 streaming reads
// of a buffer much larger than the caches, split over the thread pool.
#include "engine/util/thread_pool.h"

namespace layerskip::cli {

// The median of `repeats` full passes over a `bytes` buffer; returns bytes per second.
double MeasureReadBandwidth(ThreadPool* pool, size_t bytes = size_t{1} << 30, int repeats = 5);

}  // namespace layerskip::cli
