// Allocation of large CPU outputs.
#pragma once

#include <cstddef>

#include <ATen/core/Tensor.h>

namespace fastops::cpu {

// at::empty for a large CPU output from a small cache of freed outputs: the memory of a freed
// output of 4 MB or more is kept, still mapped, and handed to the next output that fits (up to
// twice its size), so code that allocates the same outputs every iteration stops paying the page
// faults of fresh memory, which on one core cost about as much as writing the output. Every large
// CPU output of fastops comes from here. Transparent huge pages are not requested: they cut the
// faults' cost but make some calls stall far longer, in streaks.
// At most kOutputCacheBytes are held while unused (past that, the blocks freed longest ago go
// first); release_output_cache() frees them, and the environment variable FASTOPS_OUTPUT_CACHE=0
// turns the cache off. Other devices: at::empty. options may carry a memory format.
constexpr size_t kOutputCacheBytes = size_t(512) << 20;
at::Tensor cached_output(at::IntArrayRef sizes, const at::TensorOptions& options);
// cached_output filled with zeros.
at::Tensor cached_zeros(at::IntArrayRef sizes, const at::TensorOptions& options);
// t itself when it is contiguous in `format`, else a copy in that format in a cached_output (a
// kernel's temporary relayout of a large map pays no page faults either).
at::Tensor cached_contiguous(const at::Tensor& t, at::MemoryFormat format = at::MemoryFormat::Contiguous);
// Frees the cached blocks; returns the bytes released.
size_t release_output_cache();
// Bytes held by the cache now (unused blocks only).
size_t output_cache_bytes();

}  // namespace fastops::cpu
