// Fixed-order reductions for the *_cpu_kernel.cpp loops: kLanes independent partial results, one
// per vector lane, combined pairwise at the end. The order is written out in the code, so the
// compiler vectorizes without reassociating anything and every instruction-set copy gives the
// same bits.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace fastops::cpu {
inline namespace FASTOPS_ISA_NAMESPACE {

constexpr int kLanes = 16;

// Reduces v[0..n) with op (associative, applied in a fixed order) starting from `init`.
template <typename T, typename Op>
FASTOPS_FORCEINLINE T lane_reduce(const T* __restrict v, int64_t n, T init, Op op) {
  T lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = init;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] = op(lanes[l], v[j + l]);
  }
  for (int l = 0; j < n; ++j, ++l) lanes[l] = op(lanes[l], v[j]);
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) lanes[l] = op(lanes[l], lanes[l + width]);
  }
  return lanes[0];
}

template <typename T>
FASTOPS_FORCEINLINE T lane_sum(const T* __restrict v, int64_t n) {
  return lane_reduce(v, n, T(0), [](T a, T b) { return a + b; });
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::cpu
