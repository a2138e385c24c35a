// Allocation of large CPU outputs.
#pragma once

#include <cstddef>

#include <ATen/core/Tensor.h>

namespace fastops::cpu {

// at::empty for a large CPU output from a small cache of freed outputs: the memory of a freed
// output of 4 MB or more is kept, still mapped, and handed to the next output that fits (up to
// twice its size), so code that allocates the same outputs every iteration stops paying the page
// faults of fresh memory (a fresh 50 MB output costs 17 ms of faults on one core of the dev VM).
// Every large CPU output of fastops comes from here. (Asking for transparent huge pages instead,
// with madvise, halved the cost of the faults but made some calls stall for ~60 ms more, in
// streaks, on the dev VM.)
// At most kOutputCacheBytes are held while unused (past that, the blocks freed longest ago go
// first); release_output_cache() frees them, and the environment variable FASTOPS_OUTPUT_CACHE=0
// turns the cache off. Other devices: at::empty. options may carry a memory format.
constexpr size_t kOutputCacheBytes = size_t(512) << 20;
at::Tensor cached_output(at::IntArrayRef sizes, const at::TensorOptions& options);
// Frees the cached blocks; returns the bytes released.
size_t release_output_cache();
// Bytes held by the cache now (unused blocks only).
size_t output_cache_bytes();

}  // namespace fastops::cpu
