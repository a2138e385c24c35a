// Software prefetch for the *_cpu_kernel.cpp loops that stream rows of memory while doing enough
// arithmetic per element that the hardware prefetcher falls behind (it restarts at every 4 KB
// page). Prefetch instructions never fault, but the addresses given are kept inside the arrays.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace fastops::cpu {
inline namespace FASTOPS_ISA_NAMESPACE {

constexpr int64_t kCacheLine = 64;

// Asks for the cache lines of [p, p + bytes) (kWrite: for writing).
template <bool kWrite = false>
FASTOPS_FORCEINLINE void prefetch_bytes(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t k = 0; k < bytes; k += kCacheLine) __builtin_prefetch(c + k, kWrite ? 1 : 0);
  if (bytes > 0) __builtin_prefetch(c + bytes - 1, kWrite ? 1 : 0);  // the last line when p is unaligned
}

// Rows to prefetch ahead in a loop over rows of row_bytes each: about 2 KB ahead (measured on the
// focal-loss rows: 1.3-2.6 KB ahead best, 5 KB and more gains less).
inline int64_t prefetch_rows_ahead(int64_t row_bytes) {
  return row_bytes >= 2048 ? 1 : 2048 / (row_bytes > 0 ? row_bytes : 1);
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::cpu
