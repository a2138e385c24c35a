// Building blocks of the *_cpu_kernel.cpp loops: fixed-width GCC vectors, the 16 x 16 float
// transpose in registers, and the aligned per-thread scratch buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include <c10/util/Exception.h>

#include "common/macros.h"

namespace fastops::cpu {
// Compiled once per instruction set (see cpu_prefetch.h): each copy's inline functions stay its own.
inline namespace FASTOPS_ISA_NAMESPACE {

// kW values of T as one GCC vector: the compiler splits it into the instruction set's registers
// (one zmm for 16 floats with AVX-512, four xmm with SSE2), and keeps accumulators in registers.
template <typename T, int kW>
struct Lanes {
  typedef T type __attribute__((vector_size(kW * sizeof(T)), aligned(sizeof(T))));
};

template <typename Vec, typename T>
FASTOPS_FORCEINLINE Vec load_lanes(const T* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(Vec));
  return v;
}

// 16 x 16 float transpose in registers: four stages, each swapping the off-diagonal B x B blocks
// of every 2B x 2B block with two-source shuffles (one vpermt2ps each with AVX-512). Exact.
using Float16Lanes = Lanes<float, 16>::type;

namespace detail {
template <int B, bool kUpper, size_t... I>
FASTOPS_FORCEINLINE Float16Lanes swap_blocks(const Float16Lanes& a, const Float16Lanes& b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, (kUpper ? ((I & B) == 0 ? I + B : 16 + I) : ((I & B) == 0 ? I : 16 + I - B))...);
}

template <int B>
FASTOPS_FORCEINLINE void transpose_stage(Float16Lanes* r) {
  for (int i = 0; i < 16; ++i) {
    if (i & B) continue;
    const Float16Lanes lo = r[i], hi = r[i + B];
    r[i] = swap_blocks<B, false>(lo, hi, std::make_index_sequence<16>{});
    r[i + B] = swap_blocks<B, true>(lo, hi, std::make_index_sequence<16>{});
  }
}
}  // namespace detail

FASTOPS_FORCEINLINE void transpose16(Float16Lanes* r) {
  detail::transpose_stage<8>(r);
  detail::transpose_stage<4>(r);
  detail::transpose_stage<2>(r);
  detail::transpose_stage<1>(r);
}

// An uninitialized buffer aligned to 64 bytes (so that 16 floats are one cache line), grown on
// demand. Kernels keep one per thread (thread_local) between calls: a fresh multi-MB buffer per
// call costs its page faults every time. `what` names the buffer in the out-of-memory error.
template <typename T>
class AlignedScratch {
 public:
  T* get(int64_t count, const char* what) {
    const size_t bytes = (static_cast<size_t>(count) * sizeof(T) + 63) & ~size_t(63);
    if (bytes > bytes_) {
      data_.reset();
      data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      TORCH_CHECK(data_ != nullptr, what, ": out of memory for a ", bytes, "-byte buffer");
      bytes_ = bytes;
    }
    return data_.get();
  }
  T* data() const { return data_.get(); }
  size_t bytes() const { return bytes_; }
  // Frees the buffer when it holds more than max_bytes (what a thread keeps between calls).
  void trim(size_t max_bytes) {
    if (bytes_ > max_bytes) {
      data_.reset();
      bytes_ = 0;
    }
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  size_t bytes_ = 0;
};

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::cpu
