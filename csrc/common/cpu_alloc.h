// Allocation of large CPU outputs.
#pragma once

#include <cstddef>

#include <ATen/core/Tensor.h>

namespace fastops::cpu {

// at::empty for an output the caller's kernel then fills. For CPU outputs of 4 MB and more, on
// Linux, it first asks for transparent huge pages: fresh memory is then faulted in 2 MB at a time
// instead of 4 KB, which halves the cost of the first touch (measured: 77 MB filled by 2 threads,
// 14.5 ms -> 7.3 ms). Memory already in use (reused by the allocator) is unaffected.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// at::empty for a large CPU output from a small cache of freed outputs: the memory of a freed
// output of 4 MB or more is kept, still mapped, and handed to the next output that fits (up to
// twice its size), so code that allocates the same outputs every iteration stops paying the page
// faults of fresh memory (a fresh 50 MB output costs 17 ms of faults on one core of the dev VM).
// At most kOutputCacheBytes are held while unused; release_output_cache() frees them, and the
// environment variable FASTOPS_OUTPUT_CACHE=0 turns the cache off. Other devices: at::empty.
// options may carry a memory format.
constexpr size_t kOutputCacheBytes = size_t(512) << 20;
at::Tensor cached_output(at::IntArrayRef sizes, const at::TensorOptions& options);
// Frees the cached blocks; returns the bytes released.
size_t release_output_cache();
// Bytes held by the cache now (unused blocks only).
size_t output_cache_bytes();

}  // namespace fastops::cpu
