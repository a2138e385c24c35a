// Raw CPU loops of RoIAlign and RoIPool (single- and multi-level), compiled once per instruction
// set; internal linkage.
//
// Work is split in channel blocks of 16, so that a bilinear sample is one vector per corner:
//  - NCHW forward: one task per (channel block, level, image). The block's planes are copied into
//    a pixel-major tile (16 channels per pixel; a 16x16 register transpose for float), only the
//    16-pixel chunks that the group's RoIs sample, and every RoI of that image and level is pooled
//    from it (in bands of rows). The tile's memory stays with its thread between calls.
//  - NHWC forward: read in place, 64 channels per vector; one task per RoI.
//  - Backward, either layout: one task per (channel block, level, image) accumulates into a zeroed
//    tile in RoI index order, then writes it out. The task owns those gradient values: no atomics,
//    a fixed order of additions (torchvision's: RoI, bin, sample, corner), so float32/float64
//    results are torchvision's bits for any thread count.
// Bilinear weights are separable: each RoI's sample rows and columns are computed once (only the
// samples inside the map) and shared by all channels.
// RoIPool: forward through the same tiles, 16-lane max/argmax; backward one task per (channel,
// level, image) plane (NCHW) or per (64-channel block, level, image) (NHWC).
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

constexpr int64_t kChannelBlock = 64;  // RoIPool's channel block (NHWC)

// x / count, as a multiplication when count is a power of two (then the two are the same bits).
template <typename T>
struct Divider {
  T count, inverse;
  bool exact;
  Divider() : count(1), inverse(1), exact(true) {}
  explicit Divider(T c) : count(c), inverse(T(1) / c) {
    int e = 0;
    exact = std::frexp(c, &e) == T(0.5);
  }
};

// The samples of one RoI inside its map, per bin row (ph) and bin column (pw): bin ph's rows are
// rows[row_begin[ph]] .. rows[row_begin[ph + 1] - 1]. low/high are element offsets: pixel index
// times the axis stride of the layout. A view into SampleTables' flat storage.
template <typename T>
struct SampleTable {
  const Axis<T>* rows = nullptr;
  const Axis<T>* cols = nullptr;
  const int64_t* row_begin = nullptr;  // [PH + 1]
  const int64_t* col_begin = nullptr;  // [PW + 1]
  Divider<T> divide;                   // by the RoI's sample count per bin
};

// Every RoI's sample table in four flat arrays (no allocation per RoI). Each RoI gets a slot as
// large as its candidate samples (sample_range); the valid ones fill it from the start.
template <typename T>
class SampleTables {
 public:
  template <typename S>  // S: the boxes' stored type
  SampleTables(std::in_place_type_t<S>, const Plan& p, int64_t pixel_stride);
  const SampleTable<T>& operator[](int64_t k) const { return views_[k]; }

 private:
  std::vector<Axis<T>> axes_;
  std::vector<int64_t> begins_;
  std::vector<SampleTable<T>> views_;
};

// Fills bin p's valid samples along one axis into out (from out[first]); writes the running
// end of each bin into begin[1..pooled]. Returns the end.
template <typename T>
int64_t fill_axis(Axis<T>* out, int64_t first, int64_t* begin, T start, T bin, int64_t pooled, int64_t grid,
                  int64_t size, int64_t stride) {
  int64_t n = first;
  begin[0] = first;
  for (int64_t p = 0; p < pooled; ++p) {
    int64_t i0, i1;
    sample_range(start, bin, p, grid, size, i0, i1);
    for (int64_t i = i0; i < i1; ++i) {
      Axis<T> a = axis_interp(sample_coord(start, bin, p, i, grid), size);
      if (!a.valid) continue;
      a.low *= stride;
      a.high *= stride;
      out[n++] = a;
    }
    begin[p + 1] = n;
  }
  return n;
}

template <typename T>
int64_t candidate_samples(T start, T bin, int64_t pooled, int64_t grid, int64_t size) {
  int64_t total = 0;
  for (int64_t p = 0; p < pooled; ++p) {
    int64_t i0, i1;
    sample_range(start, bin, p, grid, size, i0, i1);
    total += i1 - i0;
  }
  return total;
}

template <typename T>
template <typename S>
SampleTables<T>::SampleTables(std::in_place_type_t<S>, const Plan& p, int64_t pixel_stride) {
  const int64_t k_n = p.num_rois, PH = p.pooled_h, PW = p.pooled_w;
  const S* rois = static_cast<const S*>(p.rois);
  std::vector<AlignBox<T>> boxes(k_n);
  std::vector<int64_t> slot(k_n + 1, 0);
  at::parallel_for(0, k_n, 256, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int level = p.roi_level[k];
      if (level < 0) continue;
      const Level& lv = p.levels[level];
      const S* r = rois + k * 5;
      boxes[k] = align_box<T>(static_cast<T>(r[1]), static_cast<T>(r[2]), static_cast<T>(r[3]), static_cast<T>(r[4]),
                              static_cast<T>(lv.spatial_scale), PH, PW, p.sampling_ratio, p.aligned);
      const AlignBox<T>& b = boxes[k];
      slot[k + 1] = candidate_samples(b.start_h, b.bin_h, PH, b.grid_h, lv.height) +
                    candidate_samples(b.start_w, b.bin_w, PW, b.grid_w, lv.width);
    }
  });
  for (int64_t k = 0; k < k_n; ++k) slot[k + 1] += slot[k];
  axes_.resize(slot[k_n]);
  begins_.assign(k_n * (PH + PW + 2), 0);
  views_.resize(k_n);
  at::parallel_for(0, k_n, 256, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      SampleTable<T>& t = views_[k];
      int64_t* row_begin = begins_.data() + k * (PH + PW + 2);
      int64_t* col_begin = row_begin + PH + 1;
      t.rows = t.cols = axes_.data();
      t.row_begin = row_begin;
      t.col_begin = col_begin;
      const int level = p.roi_level[k];
      if (level < 0) continue;  // never read: the RoI is in no group
      const Level& lv = p.levels[level];
      const AlignBox<T>& b = boxes[k];
      const int64_t end = fill_axis(axes_.data(), slot[k], row_begin, b.start_h, b.bin_h, PH, b.grid_h, lv.height,
                                    lv.width * pixel_stride);
      fill_axis(axes_.data(), end, col_begin, b.start_w, b.bin_w, PW, b.grid_w, lv.width, pixel_stride);
      t.divide = Divider<T>(b.count);
    }
  });
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

// ---- RoIAlign: one RoI over a block of channels -------------------------------------------------
//
// `image` points at the block's first channel of pixel (0, 0) of the RoI's image; the sample
// tables' offsets already include the pixel strides. kW channels are processed as one vector
// (cn <= kW are valid); the order of additions per channel is the scalar order of torchvision.

template <typename T, typename V, int kW>
FASTOPS_FORCEINLINE void align_bin_forward(const SampleTable<T>& t, int64_t ph, int64_t pw, const V* image, T* out) {
  if constexpr (std::is_same_v<T, V> && kW > 1) {
    using Vec = typename Lanes<T, kW>::type;
    Vec acc = {};
    for (int64_t ri = t.row_begin[ph]; ri < t.row_begin[ph + 1]; ++ri) {
      const Axis<T>& y = t.rows[ri];
      for (int64_t ci = t.col_begin[pw]; ci < t.col_begin[pw + 1]; ++ci) {
        const Axis<T>& x = t.cols[ci];
        const T w1 = y.w_low * x.w_low, w2 = y.w_low * x.w_high, w3 = y.w_high * x.w_low, w4 = y.w_high * x.w_high;
        acc += w1 * load_lanes<Vec>(image + y.low + x.low) + w2 * load_lanes<Vec>(image + y.low + x.high) +
               w3 * load_lanes<Vec>(image + y.high + x.low) + w4 * load_lanes<Vec>(image + y.high + x.high);
      }
    }
    acc = t.divide.exact ? acc * t.divide.inverse : acc / t.divide.count;  // the same bits either way
    std::memcpy(out, &acc, sizeof(Vec));
  } else {  // float16 / bfloat16 storage: convert per element
    for (int c = 0; c < kW; ++c) out[c] = T(0);
    for (int64_t ri = t.row_begin[ph]; ri < t.row_begin[ph + 1]; ++ri) {
      const Axis<T>& y = t.rows[ri];
      for (int64_t ci = t.col_begin[pw]; ci < t.col_begin[pw + 1]; ++ci) {
        const Axis<T>& x = t.cols[ci];
        const T w1 = y.w_low * x.w_low, w2 = y.w_low * x.w_high, w3 = y.w_high * x.w_low, w4 = y.w_high * x.w_high;
        const V* __restrict v1 = image + y.low + x.low;
        const V* __restrict v2 = image + y.low + x.high;
        const V* __restrict v3 = image + y.high + x.low;
        const V* __restrict v4 = image + y.high + x.high;
#pragma GCC ivdep
        for (int c = 0; c < kW; ++c) {
          out[c] += w1 * static_cast<T>(v1[c]) + w2 * static_cast<T>(v2[c]) + w3 * static_cast<T>(v3[c]) +
                    w4 * static_cast<T>(v4[c]);
        }
      }
    }
    for (int c = 0; c < kW; ++c) out[c] /= t.divide.count;
  }
}

// dst[c] += g[c] * w / count for one corner of one sample.
template <typename T, int kW>
FASTOPS_FORCEINLINE void add_corner(T* dst, const typename Lanes<T, kW>::type& g, T w, const Divider<T>& d) {
  using Vec = typename Lanes<T, kW>::type;
  Vec v = load_lanes<Vec>(dst);
  if (d.exact) {
    v += g * w * d.inverse;
  } else {
    v += g * w / d.count;
  }
  std::memcpy(dst, &v, sizeof(Vec));
}

template <typename T, int kW>
FASTOPS_FORCEINLINE void align_bin_backward(const SampleTable<T>& t, int64_t ph, int64_t pw, const T* g_in, T* image) {
  using Vec = typename Lanes<T, kW>::type;
  const Vec g = load_lanes<Vec>(g_in);
  const Divider<T>& d = t.divide;
  for (int64_t ri = t.row_begin[ph]; ri < t.row_begin[ph + 1]; ++ri) {
    const Axis<T>& y = t.rows[ri];
    for (int64_t ci = t.col_begin[pw]; ci < t.col_begin[pw + 1]; ++ci) {
      const Axis<T>& x = t.cols[ci];
      // One corner after the other: the corners may be the same pixel (clamped at the border),
      // and each channel must receive them in torchvision's order.
      add_corner<T, kW>(image + y.low + x.low, g, y.w_low * x.w_low, d);
      add_corner<T, kW>(image + y.low + x.high, g, y.w_low * x.w_high, d);
      add_corner<T, kW>(image + y.high + x.low, g, y.w_high * x.w_low, d);
      add_corner<T, kW>(image + y.high + x.high, g, y.w_high * x.w_high, d);
    }
  }
}

// Channel blocks: NCHW planes are copied kTile channels at a time into a pixel-major tile (the
// NHWC layout of those channels, in T), so every sample reads one vector; NHWC inputs are read in
// place kBlock channels at a time (a last, partial block goes through a padded copy).
constexpr int kTile = 16;
constexpr int kBlock = 64;

// A tile of pixels x kTile values (a pixel's 16 floats are one cache line: a misaligned tile makes
// every vector load touch two). Uninitialized, and kept by its thread between calls (see
// for_each_tile_task): a fresh multi-MB tile per call cost its page faults and zeroing every time
// (1 ms per thread in the 14x14 mask-head forward).
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

// The chunks of kTile pixels (as planes_to_tile's `needed`) that the RoIs of each (level, image)
// group sample: for each RoI, every row of its samples' bounding box (bilinear corners included).
// With few RoIs most of a large level is never read (the benchmark's 14x14 mask head: about a
// third of the pixels), and copying it into the tile was 40% of the forward.
class NeededChunks {
 public:
  template <typename T>
  NeededChunks(const Plan& p, const SampleTables<T>& tables) : begin_(p.num_levels * p.batch + 1, 0) {
    const int64_t groups = p.num_levels * p.batch;
    for (int64_t g = 0; g < groups; ++g) {
      const Level& lv = p.levels[g / p.batch];
      begin_[g + 1] = begin_[g] + (lv.height * lv.width + kTile - 1) / kTile;
    }
    flags_.assign(begin_[groups], 0);
    at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t width = p.levels[g / p.batch].width;
        uint8_t* flags = flags_.data() + begin_[g];
        for (int64_t j = p.group_begin[g]; j < p.group_begin[g + 1]; ++j) {
          const SampleTable<T>& t = tables[p.order[j]];
          const int64_t r0 = t.row_begin[0], r1 = t.row_begin[p.pooled_h];
          const int64_t c0 = t.col_begin[0], c1 = t.col_begin[p.pooled_w];
          if (r0 == r1 || c0 == c1) continue;  // no sample inside the map
          int64_t y_lo = INT64_MAX, y_hi = -1, x_lo = INT64_MAX, x_hi = -1;
          for (int64_t r = r0; r < r1; ++r) y_lo = std::min(y_lo, t.rows[r].low), y_hi = std::max(y_hi, t.rows[r].high);
          for (int64_t c = c0; c < c1; ++c) x_lo = std::min(x_lo, t.cols[c].low), x_hi = std::max(x_hi, t.cols[c].high);
          // table offsets are in tile elements: pixel x * kTile, pixel row y * width * kTile
          y_lo /= width * kTile, y_hi /= width * kTile, x_lo /= kTile, x_hi /= kTile;
          for (int64_t y = y_lo; y <= y_hi; ++y) {
            std::fill(flags + (y * width + x_lo) / kTile, flags + (y * width + x_hi) / kTile + 1, uint8_t(1));
          }
        }
      }
    });
  }
  const uint8_t* operator[](int64_t group) const { return flags_.data() + begin_[group]; }

 private:
  std::vector<int64_t> begin_;
  std::vector<uint8_t> flags_;
};

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

// ---- RoIAlign forward -------------------------------------------------------------------------

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

template <typename T, typename S>
void align_forward_nchw(const Plan& p, S* out, const SampleTables<T>& tables) {
  const int64_t PH = p.pooled_h, PW = p.pooled_w, C = p.channels;
  // Forward outputs are independent, so each group's RoIs are visited in bands of kBandRows rows,
  // left to right within a band: neighbours read overlapping parts of the tile, which then stay in
  // cache.
  constexpr int64_t kBandRows = 16;
  std::vector<int64_t> spatial(p.order, p.order + p.group_begin[p.num_levels * p.batch]);
  std::vector<std::pair<int64_t, int64_t>> key(p.num_rois, {0, 0});
  for (int64_t g = 0; g < p.num_levels * p.batch; ++g) {
    const int64_t row_stride = p.levels[g / p.batch].width * kTile;
    for (int64_t j = p.group_begin[g]; j < p.group_begin[g + 1]; ++j) {
      const SampleTable<T>& t = tables[spatial[j]];
      const int64_t y = t.row_begin[0] < t.row_begin[PH] ? t.rows[t.row_begin[0]].low / row_stride : 0;
      const int64_t x = t.col_begin[0] < t.col_begin[PW] ? t.cols[t.col_begin[0]].low : 0;
      key[spatial[j]] = {y / kBandRows, x};
    }
    std::sort(spatial.begin() + p.group_begin[g], spatial.begin() + p.group_begin[g + 1],
              [&](int64_t a, int64_t b) { return key[a] < key[b] || (key[a] == key[b] && a < b); });
  }
  const NeededChunks needed(p, tables);
  for_each_tile_task<T>(
      p, [&](TileBuffer<T>& tile, int level, int64_t n, int64_t c0, int64_t cn, int64_t first, int64_t last) {
        if (first == last) return;
        const Level& lv = p.levels[level];
        const int64_t pixels = lv.height * lv.width;
        planes_to_tile(static_cast<const S*>(lv.input) + (n * C + c0) * pixels, pixels, cn, tile.get(pixels),
                       needed[level * p.batch + n]);
        T acc[kTile];
        for (int64_t j = first; j < last; ++j) {
          const int64_t k = spatial[j];
          const SampleTable<T>& t = tables[k];
          S* o = out + (k * C + c0) * PH * PW;
          // The next RoI's output block (cn planes of PH * PW values, contiguous) is asked for now: the
          // scattered stores below otherwise wait for each line's read-for-ownership (the 14x14 mask
          // head's forward: 19.8 -> 17.2 ms).
          if (j + 1 < last)
            cpu::prefetch_bytes<true>(out + (spatial[j + 1] * C + c0) * PH * PW, cn * PH * PW * sizeof(S));
          for (int64_t ph = 0; ph < PH; ++ph) {
            for (int64_t pw = 0; pw < PW; ++pw) {
              align_bin_forward<T, T, kTile>(t, ph, pw, tile.data(), acc);
              for (int64_t c = 0; c < cn; ++c) o[c * PH * PW + ph * PW + pw] = static_cast<S>(acc[c]);
            }
          }
        }
      });
}

template <typename T, typename S>
void align_forward_nhwc(const Plan& p, S* out, const SampleTables<T>& tables) {
  const int64_t PH = p.pooled_h, PW = p.pooled_w, C = p.channels;
  at::parallel_for(0, p.num_rois, 1, [&](int64_t k0, int64_t k1) {
    T acc[kBlock];
    for (int64_t k = k0; k < k1; ++k) {
      const int level = p.roi_level[k];
      if (level < 0) continue;
      const Level& lv = p.levels[level];
      const SampleTable<T>& t = tables[k];
      const S* image = static_cast<const S*>(lv.input) + batch_of(p.rois, p.dtype, k) * lv.height * lv.width * C;
      for (int64_t ph = 0; ph < PH; ++ph) {
        for (int64_t pw = 0; pw < PW; ++pw) {
          S* o = out + ((k * PH + ph) * PW + pw) * C;
          int64_t c0 = 0;
          for (; c0 + kBlock <= C; c0 += kBlock) {
            align_bin_forward<T, S, kBlock>(t, ph, pw, image + c0, acc);
            for (int64_t c = 0; c < kBlock; ++c) o[c0 + c] = static_cast<S>(acc[c]);
          }
          for (; c0 < C; ++c0) {  // channels past the last full block, one at a time
            align_bin_forward<T, S, 1>(t, ph, pw, image + c0, acc);
            o[c0] = static_cast<S>(acc[0]);
          }
        }
      }
    }
  });
}

template <typename T, typename S>
void align_forward_typed(const Plan& p, void* out_raw) {
  S* out = static_cast<S*>(out_raw);
  // NCHW inputs are read through kTile-channel tiles: the tables' strides are the tile's.
  const int64_t pixel_stride = p.channels_last ? p.channels : kTile;
  const SampleTables<T> tables(std::in_place_type<S>, p, pixel_stride);
  zero_invalid(p, out);
  if (p.channels_last) {
    align_forward_nhwc<T, S>(p, out, tables);
  } else {
    align_forward_nchw<T, S>(p, out, tables);
  }
}

void align_forward(const Plan& p, void* out) {
  with_float_dtype(p.dtype, "roi_align",
                   [&](auto s, auto t) { align_forward_typed<decltype(t), decltype(s)>(p, out); });
}

// ---- RoIAlign backward ------------------------------------------------------------------------

// Backward, either layout: one task per (16-channel block, level, image) accumulates every RoI of
// that image and level into a zeroed tile, in RoI index order, then writes the tile out (NCHW:
// transposed into the planes; NHWC: each pixel's 16 values into its channel slot). The tile stays
// in cache where the gradient image would not.
// Asks for one RoI's upstream gradient of cn channels (cn planes of PH x PW, or PH x PW runs of cn
// channels) before its strided per-channel loads need it, as the forward does for its stores.
template <typename S>
void prefetch_grad_block(const S* block, GradStrides gs, int64_t cn, int64_t PH, int64_t PW) {
  if (gs.w == 1 && gs.h == PW) {
    for (int64_t c = 0; c < cn; ++c) cpu::prefetch_bytes(block + c * gs.c, PH * PW * sizeof(S));
  } else if (gs.c == 1) {
    for (int64_t ph = 0; ph < PH; ++ph) {
      for (int64_t pw = 0; pw < PW; ++pw) cpu::prefetch_bytes(block + ph * gs.h + pw * gs.w, cn * sizeof(S));
    }
  }
}

template <typename T, typename S>
void align_backward_tiles(const Plan& p, const S* grad, GradStrides gs, const SampleTables<T>& tables) {
  const int64_t PH = p.pooled_h, PW = p.pooled_w, C = p.channels;
  const NeededChunks needed_chunks(p, tables);  // the rest of the tile gets no gradient
  for_each_tile_task<T>(
      p, [&](TileBuffer<T>& tile, int level, int64_t n, int64_t c0, int64_t cn, int64_t first, int64_t last) {
        const Level& lv = p.levels[level];
        const int64_t pixels = lv.height * lv.width;
        const uint8_t* needed = needed_chunks[level * p.batch + n];
        T* tile_data = tile.get(pixels);
        zero_tile(tile_data, pixels, needed);
        // A contiguous NCHW upstream gradient is transposed per RoI into bin-major vectors, 16x16 at a
        // time (gathering 16 strided values per bin, then reading them as one vector, cost a third of
        // the 14x14 mask head's backward); other strides are gathered per bin.
        const bool planar = gs.w == 1 && gs.h == PW && gs.c == PH * PW;
        TileBuffer<T> g_buffer;  // bins x kTile values (one bin when not planar)
        T* g_bins = g_buffer.get(planar ? PH * PW : 1);
        for (int64_t j = first; j < last; ++j) {
          const int64_t k = p.order[j];
          const SampleTable<T>& t = tables[k];
          if (j + 1 < last) prefetch_grad_block(grad + p.order[j + 1] * gs.k + c0 * gs.c, gs, cn, PH, PW);
          if (planar) planes_to_tile(grad + k * gs.k + c0 * gs.c, PH * PW, cn, g_bins, nullptr);
          for (int64_t ph = 0; ph < PH; ++ph) {
            for (int64_t pw = 0; pw < PW; ++pw) {
              if (!planar) {
                const S* go = grad + k * gs.k + c0 * gs.c + ph * gs.h + pw * gs.w;
                for (int64_t c = 0; c < kTile; ++c) g_bins[c] = c < cn ? static_cast<T>(go[c * gs.c]) : T(0);
              }
              align_bin_backward<T, kTile>(t, ph, pw, planar ? g_bins + (ph * PW + pw) * kTile : g_bins, tile_data);
            }
          }
        }
        if (p.channels_last) {
          T* image = static_cast<T*>(lv.grad) + n * pixels * C + c0;
          // each pixel's cn values are one line, C values apart: ask for the line kAhead pixels on
          // (the stores otherwise wait for every line's read-for-ownership in turn)
          constexpr int64_t kAhead = 16;
          for (int64_t px = 0; px < pixels; ++px) {
            if (px + kAhead < pixels) cpu::prefetch_bytes<true>(image + (px + kAhead) * C, cn * sizeof(T));
            if (needed[px / kTile]) {
              std::copy(tile_data + px * kTile, tile_data + px * kTile + cn, image + px * C);
            } else {
              std::fill(image + px * C, image + px * C + cn, T(0));
            }
          }
        } else {
          tile_to_planes(tile_data, pixels, cn, static_cast<T*>(lv.grad) + (n * C + c0) * pixels, needed);
        }
      });
}

template <typename T, typename S>
void align_backward_typed(const Plan& p, const void* grad, GradStrides gs) {
  const SampleTables<T> tables(std::in_place_type<S>, p, kTile);
  align_backward_tiles<T, S>(p, static_cast<const S*>(grad), gs, tables);
}

void align_backward(const Plan& p, const void* grad, GradStrides gs) {
  with_float_dtype(p.dtype, "roi_align_backward",
                   [&](auto s, auto t) { align_backward_typed<decltype(t), decltype(s)>(p, grad, gs); });
}

// ---- RoIPool ----------------------------------------------------------------------------------

// Pixel ranges of every bin of every valid RoI: [PH] row ranges then [PW] column ranges.
template <typename T, typename S>
std::vector<int64_t> pool_ranges(const Plan& p) {
  const int64_t PH = p.pooled_h, PW = p.pooled_w, per = 2 * (PH + PW);
  std::vector<int64_t> ranges(p.num_rois * per, 0);
  const S* rois = static_cast<const S*>(p.rois);
  for (int64_t k = 0; k < p.num_rois; ++k) {
    if (p.roi_level[k] < 0) continue;
    const Level& lv = p.levels[p.roi_level[k]];
    const S* r = rois + k * 5;
    const PoolBox b = pool_box<T>(static_cast<T>(r[1]), static_cast<T>(r[2]), static_cast<T>(r[3]),
                                  static_cast<T>(r[4]), static_cast<T>(lv.spatial_scale));
    int64_t* out = ranges.data() + k * per;
    for (int64_t ph = 0; ph < PH; ++ph)
      pool_bin<T>(b.start_h, b.height, PH, ph, lv.height, out[2 * ph], out[2 * ph + 1]);
    for (int64_t pw = 0; pw < PW; ++pw)
      pool_bin<T>(b.start_w, b.width, PW, pw, lv.width, out[2 * (PH + pw)], out[2 * (PH + pw) + 1]);
  }
  return ranges;
}

// The max of one bin over kTile channels: pixel (h, w) of the block is base[(h * width + w) *
// pixel_stride + c]. First maximum wins, NaN never does (torchvision's `>`); an empty bin is 0.
template <typename T>
FASTOPS_FORCEINLINE void pool_bin_max(const T* base, int64_t pixel_stride, int64_t width, int64_t h0, int64_t h1,
                                      int64_t w0, int64_t w1, T* best, int32_t* best_idx) {
  using Vec = typename Lanes<T, kTile>::type;
  using IdxVec = typename Lanes<int32_t, kTile>::type;
  Vec top = Vec{} + ((h1 <= h0 || w1 <= w0) ? T(0) : static_cast<T>(-FLT_MAX));
  IdxVec top_idx = IdxVec{} - 1;
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) {
      const int32_t idx = static_cast<int32_t>(h * width + w);
      const Vec v = load_lanes<Vec>(base + int64_t(idx) * pixel_stride);
      const auto more = v > top;
      top = more ? v : top;
      top_idx = __builtin_convertvector(more, IdxVec) ? IdxVec{} + idx : top_idx;
    }
  }
  std::memcpy(best, &top, sizeof(Vec));
  std::memcpy(best_idx, &top_idx, sizeof(IdxVec));
}

// Copies channels [0, cn) of an NHWC image (pixel stride `channels`, starting at the block's first
// channel) into a pixel-major tile, zeros past cn.
template <typename T, typename S>
void pixels_to_tile(const S* image, int64_t pixels, int64_t channels, int64_t cn, T* tile) {
  if (cn < kTile) std::fill(tile, tile + pixels * kTile, T(0));
  for (int64_t px = 0; px < pixels; ++px) {
    const S* __restrict src = image + px * channels;
    T* __restrict dst = tile + px * kTile;
    for (int64_t c = 0; c < cn; ++c) dst[c] = static_cast<T>(src[c]);
  }
}

// RoIPool forward, either layout: one task per (16-channel block, level, image) copies the block
// into a pixel-major tile, then takes every RoI's bin maxima with 16-lane compares.
template <typename T, typename S>
void pool_forward_typed(const Plan& p, void* out_raw, int32_t* argmax) {
  S* out = static_cast<S*>(out_raw);
  const int64_t PH = p.pooled_h, PW = p.pooled_w, C = p.channels, per = 2 * (PH + PW);
  const std::vector<int64_t> ranges = pool_ranges<T, S>(p);
  zero_invalid(p, out);
  const int64_t per_roi = C * PH * PW;
  for (int64_t k = 0; k < p.num_rois; ++k) {
    if (p.roi_level[k] < 0) std::fill(argmax + k * per_roi, argmax + (k + 1) * per_roi, -1);
  }
  auto bin_range = [&](int64_t k, int64_t ph, int64_t pw, int64_t r[4]) {
    const int64_t* rg = ranges.data() + k * per;
    r[0] = rg[2 * ph], r[1] = rg[2 * ph + 1], r[2] = rg[2 * (PH + pw)], r[3] = rg[2 * (PH + pw) + 1];
  };
  // element offsets of (k, c, ph, pw) in the output, either layout
  const int64_t s_c = p.channels_last ? 1 : PH * PW, s_h = p.channels_last ? PW * C : PW, s_w = p.channels_last ? C : 1;
  for_each_tile_task<T>(
      p, [&](TileBuffer<T>& tile, int level, int64_t n, int64_t c0, int64_t cn, int64_t first, int64_t last) {
        if (first == last) return;
        const Level& lv = p.levels[level];
        const int64_t pixels = lv.height * lv.width;
        T* data = tile.get(pixels);
        if (p.channels_last) {
          pixels_to_tile(static_cast<const S*>(lv.input) + n * pixels * C + c0, pixels, C, cn, data);
        } else {
          planes_to_tile(static_cast<const S*>(lv.input) + (n * C + c0) * pixels, pixels, cn, data, nullptr);
        }
        T best[kTile];
        int32_t best_idx[kTile];
        for (int64_t j = first; j < last; ++j) {
          const int64_t k = p.order[j];
          if (!p.channels_last && j + 1 < last) {  // as the RoIAlign forward: the next RoI's outputs, for writing
            const int64_t next = p.order[j + 1] * per_roi + c0 * s_c;
            cpu::prefetch_bytes<true>(out + next, cn * PH * PW * sizeof(S));
            cpu::prefetch_bytes<true>(argmax + next, cn * PH * PW * sizeof(int32_t));
          }
          for (int64_t ph = 0; ph < PH; ++ph) {
            for (int64_t pw = 0; pw < PW; ++pw) {
              int64_t r[4];
              bin_range(k, ph, pw, r);
              pool_bin_max<T>(data, kTile, lv.width, r[0], r[1], r[2], r[3], best, best_idx);
              const int64_t o = k * per_roi + c0 * s_c + ph * s_h + pw * s_w;
              for (int64_t c = 0; c < cn; ++c) {
                out[o + c * s_c] = static_cast<S>(best[c]);
                argmax[o + c * s_c] = best_idx[c];
              }
            }
          }
        }
      });
}

void pool_forward(const Plan& p, void* out, int32_t* argmax) {
  with_float_dtype(p.dtype, "roi_pool",
                   [&](auto s, auto t) { pool_forward_typed<decltype(t), decltype(s)>(p, out, argmax); });
}

template <typename T, typename S>
void pool_backward_typed(const Plan& p, const S* grad, GradStrides gs, const int32_t* argmax) {
  const int64_t PH = p.pooled_h, PW = p.pooled_w, C = p.channels;
  if (!p.channels_last) {
    for_each_plane(p, [&](int64_t c, int level, int64_t n, int64_t first, int64_t last) {
      const Level& lv = p.levels[level];
      const int64_t plane_size = lv.height * lv.width;
      T* gp = static_cast<T*>(lv.grad) + (n * C + c) * plane_size;
      std::fill(gp, gp + plane_size, T(0));
      for (int64_t j = first; j < last; ++j) {
        const int64_t k = p.order[j];
        const int32_t* am = argmax + (k * C + c) * PH * PW;
        for (int64_t ph = 0; ph < PH; ++ph) {
          for (int64_t pw = 0; pw < PW; ++pw) {
            const int32_t a = am[ph * PW + pw];
            if (a >= 0) gp[a] += static_cast<T>(grad[k * gs.k + c * gs.c + ph * gs.h + pw * gs.w]);
          }
        }
      }
    });
    return;
  }
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock, groups = p.num_levels * p.batch;
  at::parallel_for(0, blocks * groups, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / groups, grp = task - b * groups;
      const int level = static_cast<int>(grp / p.batch);
      const int64_t n = grp % p.batch, c0 = b * kChannelBlock, cn = std::min(kChannelBlock, C - c0);
      const Level& lv = p.levels[level];
      const int64_t pixels = lv.height * lv.width;
      T* image = static_cast<T*>(lv.grad) + n * pixels * C + c0;
      for (int64_t px = 0; px < pixels; ++px) std::fill(image + px * C, image + px * C + cn, T(0));
      for (int64_t j = p.group_begin[grp]; j < p.group_begin[grp + 1]; ++j) {
        const int64_t k = p.order[j];
        for (int64_t ph = 0; ph < PH; ++ph) {
          for (int64_t pw = 0; pw < PW; ++pw) {
            const int32_t* am = argmax + ((k * PH + ph) * PW + pw) * C + c0;
            const S* go = grad + k * gs.k + ph * gs.h + pw * gs.w + c0 * gs.c;
            for (int64_t c = 0; c < cn; ++c) {
              if (am[c] >= 0) image[int64_t(am[c]) * C + c] += static_cast<T>(go[c * gs.c]);
            }
          }
        }
      }
    }
  });
}

void pool_backward(const Plan& p, const void* grad, GradStrides gs, const int32_t* argmax) {
  with_float_dtype(p.dtype, "roi_pool_backward", [&](auto s, auto t) {
    pool_backward_typed<decltype(t), decltype(s)>(p, static_cast<const decltype(s)*>(grad), gs, argmax);
  });
}

}  // namespace

FASTOPS_REGISTER_CPU_KERNEL(cpu_kernels::align_forward, &align_forward);
FASTOPS_REGISTER_CPU_KERNEL(cpu_kernels::align_backward, &align_backward);
FASTOPS_REGISTER_CPU_KERNEL(cpu_kernels::pool_forward, &pool_forward);
FASTOPS_REGISTER_CPU_KERNEL(cpu_kernels::pool_backward, &pool_backward);

}  // namespace fastops::roi_align
