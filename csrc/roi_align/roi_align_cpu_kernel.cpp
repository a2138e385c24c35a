// Raw CPU loops of RoIAlign (single- and multi-level), compiled once per instruction set; internal
// linkage. RoIPool's loops are in roi_pool_cpu_kernel.cpp, the tiles both use in roi_align_cpu_tiles.h.
//
// Work is split in channel blocks of 16, so that a bilinear sample is one vector per corner:
//  - NCHW forward: one task per (channel block, level, image). The block's planes are copied into
//    a pixel-major tile (16 channels per pixel; a 16x16 register transpose for float), only the
//    16-pixel chunks that the group's RoIs sample, and every RoI of that image and level is pooled
//    from it (in bands of rows). The tile's memory stays with its thread between calls.
//  - NHWC forward: read in place, kNhwcBlock channels per vector; one task per RoI.
//  - Backward, either layout: one task per (channel block, level, image) accumulates into a zeroed
//    tile in RoI index order, then writes it out. The task owns those gradient values: no atomics,
//    a fixed order of additions (torchvision's: RoI, bin, sample, corner), so float32/float64
//    results are torchvision's bits for any thread count.
// Bilinear weights are separable: each RoI's sample rows and columns are computed once (only the
// samples inside the map) and shared by all channels.
#include "roi_align/roi_align_cpu_tiles.h"

namespace fastops::roi_align {
namespace {

// NHWC inputs are read in place this many channels at a time (a last, partial block goes through a
// padded copy).
constexpr int kNhwcBlock = 64;

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

// The chunks of kTile pixels (as planes_to_tile's `needed`) that the RoIs of each (level, image)
// group sample: for each RoI, every row of its samples' bounding box (bilinear corners included).
// With few RoIs most of a large level is never read, and copying it into the tile would dominate
// the forward.
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

// ---- RoIAlign forward -------------------------------------------------------------------------

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
          // scattered stores below otherwise wait for each line's read-for-ownership.
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
    T acc[kNhwcBlock];
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
          for (; c0 + kNhwcBlock <= C; c0 += kNhwcBlock) {
            align_bin_forward<T, S, kNhwcBlock>(t, ph, pw, image + c0, acc);
            for (int64_t c = 0; c < kNhwcBlock; ++c) o[c0 + c] = static_cast<S>(acc[c]);
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

}  // namespace

FASTOPS_REGISTER_CPU_KERNEL(cpu_kernels::align_forward, &align_forward);
FASTOPS_REGISTER_CPU_KERNEL(cpu_kernels::align_backward, &align_backward);

}  // namespace fastops::roi_align
