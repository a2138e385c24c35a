// Raw CPU loop of the convolution ops (conv.h): the weight's reorder between its own layout
// [C_out * C_in / groups, KH * KW] and the tap-major layout of the per-tap GEMMs. ATen's strided
// copy of the permuted weight reads each row's taps with a stride and runs at a third of the
// speed of a plain copy here; this loop reads and writes blocks of 64 rows that stay in L1.
#include <algorithm>
#include <cstdint>

#include <ATen/Parallel.h>

#include "common/macros.h"
#include "conv/conv.h"

namespace fastops::conv {
namespace {

constexpr int64_t kRowsPerBlock = 64;

template <typename T>
void reorder(const T* src, T* dst, int64_t rows, int64_t taps, bool to_tap_major) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t r0 = b * kRowsPerBlock, r1 = std::min(rows, r0 + kRowsPerBlock);
      for (int64_t t = 0; t < taps; ++t) {
        if (to_tap_major) {
          for (int64_t r = r0; r < r1; ++r) dst[t * rows + r] = src[r * taps + t];
        } else {
          for (int64_t r = r0; r < r1; ++r) dst[r * taps + t] = src[t * rows + r];
        }
      }
    }
  });
}

void tap_reorder(const void* src, void* dst, int64_t rows, int64_t taps, int64_t elem_size, bool to_tap_major) {
  switch (elem_size) {
    case 2: return reorder(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), rows, taps, to_tap_major);
    case 4: return reorder(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), rows, taps, to_tap_major);
    case 8: return reorder(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), rows, taps, to_tap_major);
    default: TORCH_CHECK(false, "conv: no tap reorder for ", elem_size, "-byte elements");
  }
}

FASTOPS_REGISTER_CPU_KERNEL(tap_reorder_cpu, &tap_reorder);

}  // namespace
}  // namespace fastops::conv
