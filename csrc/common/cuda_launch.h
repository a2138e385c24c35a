// Launch helpers shared by the CUDA kernels: one thread per output element, in a grid-stride loop
// with 64-bit indices (sizes past 2^31 elements are valid).
#pragma once

#include <algorithm>
#include <cstdint>

namespace fastops::cuda {

constexpr int kThreadsPerBlock = 256;

// Blocks for `work` threads, capped: the grid-stride loop covers the rest.
inline unsigned int blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned int>(std::clamp<int64_t>(blocks, 1, int64_t(1) << 20));
}

}  // namespace fastops::cuda

#define FASTOPS_GRID_STRIDE_LOOP(i, n)                                                                                 \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, _stride = int64_t(blockDim.x) * gridDim.x; i < (n); \
       i += _stride)
