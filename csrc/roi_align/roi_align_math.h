// Per-RoI and per-sample math of RoIAlign and RoIPool, shared by the CPU and CUDA kernels.
//
// The formulas are torchvision's, operation for operation, in the accumulation type T (float for
// float16, bfloat16 and float32; double for float64), so float32 and float64 results are its bits:
//  - RoIAlign: the box (scaled, shifted by -0.5 when aligned) is split into PH x PW bins; each bin
//    averages grid_h x grid_w bilinear samples (grid = sampling_ratio, or ceil(bin size) when it is
//    <= 0). A sample outside [-1, H] x [-1, W] contributes 0; one in the border pixel is clamped.
//    Sample value ((w1 v1 + w2 v2) + w3 v3) + w4 v4, summed in (iy, ix) order, divided by count.
//  - RoIPool: the rounded box is split into bins by floor/ceil; each bin is a max (0 if empty).
// Differences from torchvision, by design: a box with a NaN or infinite coordinate, or whose
// batch index is invalid, gives zeros (torchvision reads out of bounds or hangs); samples that
// fall outside the map are skipped rather than added as 0 * input[0] (equal unless input[0] is
// non-finite); grid sizes are 64-bit and only samples inside the map are visited, so a huge box
// cannot hang.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace fastops::roi_align {

inline namespace FASTOPS_ISA_NAMESPACE {

// A RoIAlign box in feature-map coordinates.
template <typename T>
struct AlignBox {
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;  // samples per bin along each axis (0: none)
  T count;                 // samples per bin, at least 1 (the divisor)
};

// Largest grid the adaptive rule may produce: far above any real box, and a product of two that
// fits int64 (a huge box's samples outside the map are never visited; see sample_range).
constexpr int64_t kMaxGrid = int64_t(1) << 30;

// All four coordinates finite (x - x is NaN for NaN and +-Inf; no library call, host and device).
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE bool is_finite_box(T x1, T y1, T x2, T y2) {
  return (x1 - x1) == T(0) && (y1 - y1) == T(0) && (x2 - x2) == T(0) && (y2 - y2) == T(0);
}

template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE int64_t adaptive_grid(T size, int64_t pooled) {
  const T g = ::ceil(size / static_cast<T>(pooled));
  return g <= T(0) ? 0 : (g >= static_cast<T>(kMaxGrid) ? kMaxGrid : static_cast<int64_t>(g));
}

// box = (x1, y1, x2, y2) as stored (T); the caller has checked they are finite.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE AlignBox<T> align_box(T x1, T y1, T x2, T y2, T spatial_scale, int64_t pooled_h,
                                                              int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  const T offset = aligned ? T(0.5) : T(0);
  AlignBox<T> b;
  b.start_w = x1 * spatial_scale - offset;
  b.start_h = y1 * spatial_scale - offset;
  const T end_w = x2 * spatial_scale - offset;
  const T end_h = y2 * spatial_scale - offset;
  T width = end_w - b.start_w, height = end_h - b.start_h;
  if (!aligned) {  // malformed boxes become 1 x 1
    width = width > T(1) ? width : T(1);
    height = height > T(1) ? height : T(1);
  }
  b.bin_h = height / static_cast<T>(pooled_h);
  b.bin_w = width / static_cast<T>(pooled_w);
  b.grid_h = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(height, pooled_h);
  b.grid_w = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(width, pooled_w);
  const int64_t n = b.grid_h * b.grid_w;
  b.count = static_cast<T>(n > 1 ? n : 1);
  return b;
}

// Coordinate of sample i of bin p along one axis (torchvision's expression and order).
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T sample_coord(T start, T bin, int64_t p, int64_t i, int64_t grid) {
  return start + static_cast<T>(p) * bin + static_cast<T>(static_cast<float>(i) + 0.5f) * bin / static_cast<T>(grid);
}

// Bilinear interpolation along one axis: offsets (in elements, already times the axis stride) of
// the two neighbours and their weights. valid is false outside [-1, size].
template <typename T>
struct Axis {
  int64_t low, high;  // pixel indices
  T w_low, w_high;
  bool valid;
};

template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE Axis<T> axis_interp(T coord, int64_t size) {
  Axis<T> a{0, 0, T(0), T(0), false};
  if (!(coord >= T(-1) && coord <= static_cast<T>(size))) return a;
  if (coord <= T(0)) coord = T(0);
  int64_t low = static_cast<int64_t>(coord), high;
  if (low >= size - 1) {
    high = low = size - 1;
    coord = static_cast<T>(low);
  } else {
    high = low + 1;
  }
  const T l = coord - static_cast<T>(low);
  a.low = low;
  a.high = high;
  a.w_low = T(1) - l;
  a.w_high = l;
  a.valid = true;
  return a;
}

// The samples [begin, end) of bin p whose coordinate can lie in [-1, size]: every other sample
// contributes nothing. A cheap bound in double with a margin of 2; callers still test each sample
// (axis_interp's valid). This keeps a huge box's adaptive grid from being walked in full.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE void sample_range(T start, T bin, int64_t p, int64_t grid, int64_t size,
                                                          int64_t& begin, int64_t& end) {
  begin = 0;
  end = grid;
  if (grid <= 64) return;  // small grids: test every sample
  const double base = static_cast<double>(start) + static_cast<double>(p) * static_cast<double>(bin);
  const double step = static_cast<double>(bin) / static_cast<double>(grid);
  if (step == 0.0) return;
  double lo = (-1.0 - base) / step - 0.5, hi = (static_cast<double>(size) - base) / step - 0.5;
  if (lo > hi) {
    const double t = lo;
    lo = hi;
    hi = t;
  }
  const double b = ::floor(lo) - 2.0, e = ::ceil(hi) + 3.0;
  begin = b <= 0.0 ? 0 : (b >= static_cast<double>(grid) ? grid : static_cast<int64_t>(b));
  end = e <= 0.0 ? 0 : (e >= static_cast<double>(grid) ? grid : static_cast<int64_t>(e));
  if (end < begin) end = begin;
}

// One bilinear sample from four values.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T bilinear(const Axis<T>& y, const Axis<T>& x, T v1, T v2, T v3, T v4) {
  return y.w_low * x.w_low * v1 + y.w_low * x.w_high * v2 + y.w_high * x.w_low * v3 + y.w_high * x.w_high * v4;
}

// ---- RoIPool ------------------------------------------------------------------------------------

struct PoolBox {
  int64_t start_h, start_w;
  int64_t height, width;  // in pixels, at least 1
};

template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE int64_t round_coord(T v) {
  // std::round of a finite value; |v| beyond int64 saturates (such a box covers no pixel anyway).
  const T r = ::round(v);
  return r <= T(-9.0e18) ? int64_t(-9000000000000000000LL)
                         : (r >= T(9.0e18) ? int64_t(9000000000000000000LL) : static_cast<int64_t>(r));
}

template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE PoolBox pool_box(T x1, T y1, T x2, T y2, T spatial_scale) {
  PoolBox b;
  b.start_w = round_coord(x1 * spatial_scale);
  b.start_h = round_coord(y1 * spatial_scale);
  const int64_t end_w = round_coord(x2 * spatial_scale), end_h = round_coord(y2 * spatial_scale);
  const int64_t w = end_w - b.start_w + 1, h = end_h - b.start_h + 1;
  b.width = w > 1 ? w : 1;
  b.height = h > 1 ? h : 1;
  return b;
}

// Pixel range [begin, end) of bin p along one axis, clipped to [0, size).
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE void pool_bin(int64_t start, int64_t extent, int64_t pooled, int64_t p,
                                                      int64_t size, int64_t& begin, int64_t& end) {
  const T bin = static_cast<T>(extent) / static_cast<T>(pooled);
  int64_t b = static_cast<int64_t>(::floor(static_cast<T>(p) * bin)) + start;
  int64_t e = static_cast<int64_t>(::ceil(static_cast<T>(p + 1) * bin)) + start;
  begin = b < 0 ? 0 : (b > size ? size : b);
  end = e < 0 ? 0 : (e > size ? size : e);
}

// ---- RoIs ---------------------------------------------------------------------------------------

// Whether a box's batch index b (boxes[:, 0], in the boxes' dtype) names an image of a batch of
// `batch` images: an integer in [0, batch).
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE bool valid_batch_index(T b, int64_t batch) {
  return b >= T(0) && b < static_cast<T>(batch) && b == ::floor(b);
}

// ---- FPN level assignment (torchvision's LevelMapper) ------------------------------------------

// Level index in [0, levels) for a box (x1, y1, x2, y2) in image coordinates:
// clamp(floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6), k_min, k_max) - k_min,
// in T as torchvision computes it.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE int64_t fpn_level(T x1, T y1, T x2, T y2, T canonical_scale,
                                                          int64_t canonical_level, int64_t k_min, int64_t k_max) {
  const T area = (x2 - x1) * (y2 - y1);
  const T s = ::sqrt(area);
  const T target = ::floor(static_cast<T>(canonical_level) + ::log2(s / canonical_scale) + static_cast<T>(1e-6));
  // NaN (a negative area) clamps to k_min, as torch.clamp of NaN gives NaN -> int64 conversion is
  // not defined; torchvision's result there is platform-dependent, ours is the finest level.
  int64_t level = k_min;
  if (target >= static_cast<T>(k_max)) {
    level = k_max;
  } else if (target > static_cast<T>(k_min)) {
    level = static_cast<int64_t>(target);
  }
  return level - k_min;
}

}  // namespace FASTOPS_ISA_NAMESPACE

}  // namespace fastops::roi_align
