// The RoI family's CPU tile machinery, shared by the RoIAlign and RoIPool loops
// (roi_align_cpu_kernel.cpp, roi_pool_cpu_kernel.cpp): per-thread pixel-major tiles of 16
// channels, the copies between NCHW planes and tiles (only the chunks some RoI reads), and the task
// loops over (channel block or channel, level, image). Included only by *_cpu_kernel.cpp files:
// everything here has internal linkage, one copy per instruction set.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <memory>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>

#include "common/cpu_lanes.h"
#include "common/cpu_prefetch.h"
#include "common/dtype_dispatch.h"
#include "roi_align/roi_align.h"

namespace fastops::roi_align {
namespace {

using cpu::Float16Lanes;
using cpu::Lanes;
using cpu::load_lanes;
using cpu::transpose16;

// NCHW planes are copied kTile channels at a time into a pixel-major tile (the NHWC layout of those
// channels, in T), so every bilinear sample or max reads one vector.
constexpr int kTile = 16;

// A tile of pixels x kTile values (a pixel's 16 floats are one cache line: a misaligned tile makes
// every vector load touch two). Uninitialized, and kept by its thread between calls (see
// for_each_tile_task): a fresh multi-MB tile per call would pay its page faults and zeroing every
// time.
template <typename T>
class TileBuffer : public cpu::AlignedScratch<T> {
 public:
  T* get(int64_t pixels) { return cpu::AlignedScratch<T>::get(pixels * kTile, "roi_align tile"); }
};

// Tiles up to this size stay with their thread after a call (an FPN's largest level for an
// 800 x 1333 image: 200 x 334 pixels, 4.3 MB), so a process keeps at most this much per thread.
constexpr size_t kKeptTileBytes = size_t(8) << 20;

// Copies between cn <= kTile NCHW planes and a pixel-major tile go in chunks of kTile pixels: for
// float, one 16x16 transpose in registers per chunk.

// Copies cn planes of `pixels` values into a pixel-major tile (zeros past cn). needed: one flag
// per chunk of kTile pixels (pixels [kTile i, kTile i + kTile)), or nullptr for all; the chunks
// not needed are left unwritten (no RoI samples them).
template <typename T, typename S>
void planes_to_tile(const S* planes, int64_t pixels, int64_t cn, T* tile, const uint8_t* needed) {
  const int64_t chunks = (pixels + kTile - 1) / kTile;
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float> && std::is_same_v<S, float>) {
    if (cn == kTile) {  // 16 pixels of 16 planes at a time, transposed in registers
      Float16Lanes r[kTile];
      const int64_t full = pixels / kTile;
      for (; i < full; ++i) {
        if (needed != nullptr && !needed[i]) continue;
        const int64_t p0 = i * kTile;
        for (int c = 0; c < kTile; ++c) r[c] = load_lanes<Float16Lanes>(planes + c * pixels + p0);
        transpose16(r);
        for (int q = 0; q < kTile; ++q) std::memcpy(tile + (p0 + q) * kTile, &r[q], sizeof(Float16Lanes));
      }
    }
  }
  for (; i < chunks; ++i) {
    if (needed != nullptr && !needed[i]) continue;
    const int64_t p0 = i * kTile, pn = std::min<int64_t>(kTile, pixels - p0);
    for (int64_t c = 0; c < kTile; ++c) {
      T* __restrict dst = tile + p0 * kTile + c;
      if (c >= cn) {
        for (int64_t q = 0; q < pn; ++q) dst[q * kTile] = T(0);
        continue;
      }
      const S* __restrict src = planes + c * pixels + p0;
      for (int64_t q = 0; q < pn; ++q) dst[q * kTile] = static_cast<T>(src[q]);
    }
  }
}

// Writes cn planes of `pixels` values from a pixel-major tile (the inverse of planes_to_tile). The
// chunks not `needed` (nullptr: all are) hold no gradient: they are written as zeros, in runs,
// without reading the tile.
template <typename T>
void tile_to_planes(const T* tile, int64_t pixels, int64_t cn, T* planes, const uint8_t* needed) {
  const int64_t chunks = (pixels + kTile - 1) / kTile;
  for (int64_t i = 0; i < chunks;) {
    const int64_t p0 = i * kTile;
    if (needed != nullptr && !needed[i]) {
      int64_t end = i + 1;
      while (end < chunks && !needed[end]) ++end;
      const int64_t p1 = std::min(end * kTile, pixels);
      for (int64_t c = 0; c < cn; ++c) std::fill(planes + c * pixels + p0, planes + c * pixels + p1, T(0));
      i = end;
      continue;
    }
    const int64_t pn = std::min<int64_t>(kTile, pixels - p0);
    bool done = false;
    if constexpr (std::is_same_v<T, float>) {
      if (cn == kTile && pn == kTile) {  // 16 pixels of 16 planes, transposed in registers
        Float16Lanes r[kTile];
        for (int q = 0; q < kTile; ++q) r[q] = load_lanes<Float16Lanes>(tile + (p0 + q) * kTile);
        transpose16(r);
        for (int c = 0; c < kTile; ++c) std::memcpy(planes + c * pixels + p0, &r[c], sizeof(Float16Lanes));
        done = true;
      }
    }
    if (!done) {
      for (int64_t c = 0; c < cn; ++c) {
        for (int64_t q = 0; q < pn; ++q) planes[c * pixels + p0 + q] = tile[(p0 + q) * kTile + c];
      }
    }
    ++i;
  }
}

// Zeroes the `needed` chunks of a tile of `pixels` pixels (nullptr: all of it), in runs.
template <typename T>
void zero_tile(T* tile, int64_t pixels, const uint8_t* needed) {
  if (needed == nullptr) {
    std::fill(tile, tile + pixels * kTile, T(0));
    return;
  }
  const int64_t chunks = (pixels + kTile - 1) / kTile;
  for (int64_t i = 0; i < chunks;) {
    if (!needed[i]) {
      ++i;
      continue;
    }
    int64_t end = i + 1;
    while (end < chunks && needed[end]) ++end;
    std::fill(tile + i * kTile * kTile, tile + std::min(end * kTile, pixels) * kTile, T(0));
    i = end;
  }
}

inline int64_t batch_of(const void* rois, c10::ScalarType dtype, int64_t k) {
  int64_t n = 0;
  with_float_dtype(dtype, "roi_align", [&](auto s, auto) {
    using S = decltype(s);
    n = static_cast<int64_t>(static_cast<double>(static_cast<const S*>(rois)[k * 5]));
  });
  return n;
}

// Zeroes the outputs of RoIs without a level (invalid boxes); [C * PH * PW] per RoI in either layout.
template <typename S>
void zero_invalid(const Plan& p, S* out) {
  const int64_t per_roi = p.channels * p.pooled_h * p.pooled_w;
  for (int64_t k = 0; k < p.num_rois; ++k) {
    if (p.roi_level[k] < 0) std::fill(out + k * per_roi, out + (k + 1) * per_roi, S(0));
  }
}

// Visits every (channel, level, image) plane as a task: fn(c, level, image, first, last) with the
// group's RoIs order[first..last). Channels vary slowest, so a thread's tasks mix levels and images.
template <typename Fn>
void for_each_plane(const Plan& p, Fn&& fn) {
  const int64_t groups = p.num_levels * p.batch;
  at::parallel_for(0, p.channels * groups, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t c = t / groups, g = t - c * groups;
      fn(c, static_cast<int>(g / p.batch), g % p.batch, p.group_begin[g], p.group_begin[g + 1]);
    }
  });
}

// Visits every (16-channel block, level, image) as a task, with a tile buffer per thread:
// fn(tile, level, image, c0, cn, first, last), the group's RoIs being order[first..last).
template <typename T, typename Fn>
void for_each_tile_task(const Plan& p, Fn&& fn) {
  const int64_t groups = p.num_levels * p.batch, blocks = (p.channels + kTile - 1) / kTile;
  at::parallel_for(0, blocks * groups, 1, [&](int64_t t0, int64_t t1) {
    thread_local TileBuffer<T> tile;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / groups, g = task - b * groups, c0 = b * kTile;
      fn(tile, static_cast<int>(g / p.batch), g % p.batch, c0, std::min<int64_t>(kTile, p.channels - c0),
         p.group_begin[g], p.group_begin[g + 1]);
    }
    tile.trim(kKeptTileBytes);
  });
}

}  // namespace
}  // namespace fastops::roi_align
