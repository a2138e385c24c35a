// Raw CPU loops of RoIPool (Fast R-CNN's max pooling over each bin of the rounded box), compiled
// once per instruction set; internal linkage. Forward, either layout: one task per (16-channel
// block, level, image) copies the block into a pixel-major tile (roi_align_cpu_tiles.h), then takes
// every RoI's bin maxima with 16-lane compares. Backward: one task per (channel, level, image)
// plane (NCHW) or per (kNhwcBlock-channel block, level, image) (NHWC) adds each bin's gradient at
// its argmax, RoIs in index order (deterministic, no atomics).
#include "roi_align/roi_align_cpu_tiles.h"

namespace fastops::roi_align {
namespace {

// NHWC gradients are accumulated this many channels per task.
constexpr int64_t kNhwcBlock = 64;

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
  const int64_t blocks = (C + kNhwcBlock - 1) / kNhwcBlock, groups = p.num_levels * p.batch;
  at::parallel_for(0, blocks * groups, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / groups, grp = task - b * groups;
      const int level = static_cast<int>(grp / p.batch);
      const int64_t n = grp % p.batch, c0 = b * kNhwcBlock, cn = std::min(kNhwcBlock, C - c0);
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

FASTOPS_REGISTER_CPU_KERNEL(cpu_kernels::pool_forward, &pool_forward);
FASTOPS_REGISTER_CPU_KERNEL(cpu_kernels::pool_backward, &pool_backward);

}  // namespace fastops::roi_align
