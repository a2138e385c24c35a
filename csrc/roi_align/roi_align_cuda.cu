// CUDA implementation of the RoIAlign / RoIPool ops with the CPU's per-sample math
// (roi_align_math.h). Simple kernels, one thread per output element (forward) or per gradient row
// (backward); no atomics, no shared memory:
//  - levels: one thread per RoI computes its FPN level (-1 for a non-finite box or an invalid batch
//    index, whose output is zeros); an invalid batch index also trips an asynchronous device-side
//    assertion (no host sync), and is never read out of bounds.
//  - forward: one thread per output element [K, C, PH, PW] (NCHW or NHWC order), all levels in one
//    launch.
//  - backward: one thread owns one row of one gradient plane (level, image, channel, y) and walks
//    the RoIs of its level and image in index order (grouped on the device by a stable sort), adding
//    the contributions that land in its row in torchvision's order (bin, sample, corner).
//    Deterministic without atomics, memory bounded by the gradient itself.
#include <cfloat>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/_assert_async.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda_launch.h"
#include "common/dtype_dispatch.h"
#include "roi_align/roi_align.h"
#include "roi_align/roi_align_register.h"

namespace fastops::roi_align {
namespace {

using cuda::blocks_for;
using cuda::kThreadsPerBlock;

// First gradient row of each level: rows of level l are [row_begin[l], row_begin[l + 1]).
struct RowMap {
  int64_t row_begin[kMaxLevels + 1];
};

template <typename T, typename S>
__global__ void levels_kernel(Plan p, double canonical_scale, int64_t canonical_level, int64_t k_min,
                              int32_t* __restrict__ level, bool* __restrict__ valid_batch,
                              int64_t* __restrict__ group_key) {
  const S* rois = static_cast<const S*>(p.rois);
  FASTOPS_GRID_STRIDE_LOOP(k, p.num_rois) {
    const T b = static_cast<T>(rois[k * 5]);
    const bool ok = valid_batch_index(b, p.batch);
    valid_batch[k] = ok;
    const T x1 = static_cast<T>(rois[k * 5 + 1]), y1 = static_cast<T>(rois[k * 5 + 2]);
    const T x2 = static_cast<T>(rois[k * 5 + 3]), y2 = static_cast<T>(rois[k * 5 + 4]);
    int32_t l = 0;
    if (!ok || !is_finite_box(x1, y1, x2, y2)) {
      l = -1;
    } else if (p.num_levels > 1) {
      l = static_cast<int32_t>(fpn_level<T>(x1, y1, x2, y2, static_cast<T>(canonical_scale), canonical_level, k_min,
                                            k_min + p.num_levels - 1));
    }
    level[k] = l;
    // (level, image) group of the RoI for the backward kernels; invalid RoIs sort last
    group_key[k] = l >= 0 ? int64_t(l) * p.batch + static_cast<int64_t>(b) : int64_t(p.num_levels) * p.batch;
  }
}

template <typename T, typename S>
__device__ __forceinline__ AlignBox<T> box_of(const Plan& p, int64_t k, const Level& lv) {
  const S* r = static_cast<const S*>(p.rois) + k * 5;
  return align_box<T>(static_cast<T>(r[1]), static_cast<T>(r[2]), static_cast<T>(r[3]), static_cast<T>(r[4]),
                      static_cast<T>(lv.spatial_scale), p.pooled_h, p.pooled_w, p.sampling_ratio, p.aligned);
}

__device__ __forceinline__ int64_t batch_index(const Plan& p, int64_t k) {
  int64_t n = 0;
  switch (p.dtype) {
    case c10::ScalarType::Double: n = static_cast<int64_t>(static_cast<const double*>(p.rois)[k * 5]); break;
    case c10::ScalarType::Float: n = static_cast<int64_t>(static_cast<const float*>(p.rois)[k * 5]); break;
    case c10::ScalarType::Half:
      n = static_cast<int64_t>(static_cast<float>(static_cast<const c10::Half*>(p.rois)[k * 5]));
      break;
    default: n = static_cast<int64_t>(static_cast<float>(static_cast<const c10::BFloat16*>(p.rois)[k * 5])); break;
  }
  return n;
}

// Output element o of [K, C, PH, PW] in the plan's layout -> (k, c, ph, pw).
__device__ __forceinline__ void decompose(const Plan& p, int64_t o, int64_t& k, int64_t& c, int64_t& ph, int64_t& pw) {
  if (p.channels_last) {
    c = o % p.channels;
    o /= p.channels;
    pw = o % p.pooled_w;
    o /= p.pooled_w;
    ph = o % p.pooled_h;
    k = o / p.pooled_h;
  } else {
    pw = o % p.pooled_w;
    o /= p.pooled_w;
    ph = o % p.pooled_h;
    o /= p.pooled_h;
    c = o % p.channels;
    k = o / p.channels;
  }
}

// Element offset of pixel (n, c, y, x) in a level, either layout.
__device__ __forceinline__ int64_t pixel_offset(const Plan& p, const Level& lv, int64_t n, int64_t c, int64_t y,
                                                int64_t x) {
  return p.channels_last ? ((n * lv.height + y) * lv.width + x) * p.channels + c
                         : ((n * p.channels + c) * lv.height + y) * lv.width + x;
}

template <typename T, typename S>
__global__ void align_forward_kernel(Plan p, S* __restrict__ out) {
  const int64_t total = p.num_rois * p.channels * p.pooled_h * p.pooled_w;
  FASTOPS_GRID_STRIDE_LOOP(o, total) {
    int64_t k, c, ph, pw;
    decompose(p, o, k, c, ph, pw);
    const int level = p.roi_level[k];
    T acc = T(0), count = T(1);
    if (level >= 0) {
      const Level& lv = p.levels[level];
      const AlignBox<T> b = box_of<T, S>(p, k, lv);
      count = b.count;
      const S* in = static_cast<const S*>(lv.input);
      const int64_t n = batch_index(p, k);
      // element strides of a row and a column in this layout, from pixel (n, c, 0, 0)
      const int64_t base = pixel_offset(p, lv, n, c, 0, 0);
      const int64_t rs = p.channels_last ? lv.width * p.channels : lv.width, cs = p.channels_last ? p.channels : 1;
      int64_t iy0, iy1, ix0, ix1;
      sample_range(b.start_h, b.bin_h, ph, b.grid_h, lv.height, iy0, iy1);
      sample_range(b.start_w, b.bin_w, pw, b.grid_w, lv.width, ix0, ix1);
      for (int64_t iy = iy0; iy < iy1; ++iy) {
        const Axis<T> y = axis_interp(sample_coord(b.start_h, b.bin_h, ph, iy, b.grid_h), lv.height);
        if (!y.valid) continue;
        for (int64_t ix = ix0; ix < ix1; ++ix) {
          const Axis<T> x = axis_interp(sample_coord(b.start_w, b.bin_w, pw, ix, b.grid_w), lv.width);
          if (!x.valid) continue;
          acc += bilinear(y, x, static_cast<T>(in[base + y.low * rs + x.low * cs]),
                          static_cast<T>(in[base + y.low * rs + x.high * cs]),
                          static_cast<T>(in[base + y.high * rs + x.low * cs]),
                          static_cast<T>(in[base + y.high * rs + x.high * cs]));
        }
      }
    }
    out[o] = static_cast<S>(acc / count);
  }
}

// Gradient row r -> (level, image, channel, y).
__device__ __forceinline__ void decompose_row(const Plan& p, const RowMap& rows, int64_t r, int& level, int64_t& n,
                                              int64_t& c, int64_t& y) {
  level = 0;
  while (level + 1 < p.num_levels && r >= rows.row_begin[level + 1]) ++level;
  int64_t i = r - rows.row_begin[level];
  const int64_t h = p.levels[level].height;
  if (p.channels_last) {  // (n, y, c): neighbouring threads write neighbouring channels
    c = i % p.channels;
    i /= p.channels;
    y = i % h;
    n = i / h;
  } else {
    y = i % h;
    i /= h;
    c = i % p.channels;
    n = i / p.channels;
  }
}

template <typename T, typename S>
__global__ void align_backward_kernel(Plan p, RowMap rows, const S* __restrict__ grad, GradStrides gs) {
  FASTOPS_GRID_STRIDE_LOOP(r, rows.row_begin[p.num_levels]) {
    int level;
    int64_t n, c, row;
    decompose_row(p, rows, r, level, n, c, row);
    const Level& lv = p.levels[level];
    T* g_in = static_cast<T*>(lv.grad);
    const int64_t base = pixel_offset(p, lv, n, c, row, 0), cs = p.channels_last ? p.channels : 1;
    for (int64_t x = 0; x < lv.width; ++x) g_in[base + x * cs] = T(0);
    const int64_t g = level * p.batch + n;
    for (int64_t j = p.group_begin[g]; j < p.group_begin[g + 1]; ++j) {  // this plane's RoIs, in index order
      const int64_t k = p.order[j];
      const AlignBox<T> b = box_of<T, S>(p, k, lv);
      // Rows this RoI can touch (sample y in [start, start + PH * bin], clamped to the map).
      const T y_a = b.start_h, y_b = b.start_h + static_cast<T>(p.pooled_h) * b.bin_h;
      const T lo = y_a < y_b ? y_a : y_b, hi = y_a < y_b ? y_b : y_a;
      if (static_cast<T>(row) < ::floor(lo > T(0) ? lo : T(0)) - T(1) ||
          (static_cast<T>(row) > ::ceil(hi) + T(1) && row < lv.height - 1) || hi < T(-1) ||
          lo > static_cast<T>(lv.height)) {
        continue;
      }
      for (int64_t ph = 0; ph < p.pooled_h; ++ph) {
        int64_t iy0, iy1;
        sample_range(b.start_h, b.bin_h, ph, b.grid_h, lv.height, iy0, iy1);
        if (iy0 >= iy1) continue;
        // Skip the bin row unless its first or last sample lands within a row of this one (the
        // samples in between lie between them; the exact test is per sample below).
        const T ya = sample_coord(b.start_h, b.bin_h, ph, iy0, b.grid_h);
        const T yb = sample_coord(b.start_h, b.bin_h, ph, iy1 - 1, b.grid_h);
        const T y_min = ya < yb ? ya : yb, y_max = ya < yb ? yb : ya;
        if (static_cast<T>(row) < ::floor(y_min) - T(1) ||
            (static_cast<T>(row) > ::floor(y_max) + T(1) && row < lv.height - 1)) {
          continue;
        }
        for (int64_t pw = 0; pw < p.pooled_w; ++pw) {
          const T g = static_cast<T>(grad[k * gs.k + c * gs.c + ph * gs.h + pw * gs.w]);
          int64_t ix0, ix1;
          sample_range(b.start_w, b.bin_w, pw, b.grid_w, lv.width, ix0, ix1);
          for (int64_t iy = iy0; iy < iy1; ++iy) {
            const Axis<T> y = axis_interp(sample_coord(b.start_h, b.bin_h, ph, iy, b.grid_h), lv.height);
            if (!y.valid || (y.low != row && y.high != row)) continue;
            for (int64_t ix = ix0; ix < ix1; ++ix) {
              const Axis<T> x = axis_interp(sample_coord(b.start_w, b.bin_w, pw, ix, b.grid_w), lv.width);
              if (!x.valid) continue;
              T* dst = g_in + pixel_offset(p, lv, n, c, row, 0);
              if (y.low == row) {
                dst[x.low * cs] += g * (y.w_low * x.w_low) / b.count;
                dst[x.high * cs] += g * (y.w_low * x.w_high) / b.count;
              }
              if (y.high == row) {
                dst[x.low * cs] += g * (y.w_high * x.w_low) / b.count;
                dst[x.high * cs] += g * (y.w_high * x.w_high) / b.count;
              }
            }
          }
        }
      }
    }
  }
}

template <typename T, typename S>
__global__ void pool_forward_kernel(Plan p, S* __restrict__ out, int32_t* __restrict__ argmax) {
  const int64_t total = p.num_rois * p.channels * p.pooled_h * p.pooled_w;
  FASTOPS_GRID_STRIDE_LOOP(o, total) {
    int64_t k, c, ph, pw;
    decompose(p, o, k, c, ph, pw);
    T best = T(0);
    int64_t best_idx = -1;
    if (p.roi_level[k] >= 0) {
      const Level& lv = p.levels[0];
      const S* r = static_cast<const S*>(p.rois) + k * 5;
      const PoolBox b = pool_box<T>(static_cast<T>(r[1]), static_cast<T>(r[2]), static_cast<T>(r[3]),
                                    static_cast<T>(r[4]), static_cast<T>(lv.spatial_scale));
      int64_t h0, h1, w0, w1;
      pool_bin<T>(b.start_h, b.height, p.pooled_h, ph, lv.height, h0, h1);
      pool_bin<T>(b.start_w, b.width, p.pooled_w, pw, lv.width, w0, w1);
      if (h1 > h0 && w1 > w0) best = static_cast<T>(-FLT_MAX);
      const S* in = static_cast<const S*>(lv.input);
      const int64_t n = batch_index(p, k);
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t w = w0; w < w1; ++w) {
          const T v = static_cast<T>(in[pixel_offset(p, lv, n, c, h, w)]);
          if (v > best) best = v, best_idx = h * lv.width + w;
        }
      }
    }
    out[o] = static_cast<S>(best);
    argmax[o] = static_cast<int32_t>(best_idx);
  }
}

template <typename T, typename S>
__global__ void pool_backward_kernel(Plan p, RowMap rows, const S* __restrict__ grad, GradStrides gs,
                                     const int32_t* __restrict__ argmax) {
  FASTOPS_GRID_STRIDE_LOOP(r, rows.row_begin[1]) {
    int level;
    int64_t n, c, row;
    decompose_row(p, rows, r, level, n, c, row);
    const Level& lv = p.levels[0];
    T* g_in = static_cast<T*>(lv.grad);
    const int64_t base = pixel_offset(p, lv, n, c, row, 0), cs = p.channels_last ? p.channels : 1;
    for (int64_t x = 0; x < lv.width; ++x) g_in[base + x * cs] = T(0);
    for (int64_t j = p.group_begin[n]; j < p.group_begin[n + 1]; ++j) {  // this image's RoIs, in index order
      const int64_t k = p.order[j];
      for (int64_t ph = 0; ph < p.pooled_h; ++ph) {
        for (int64_t pw = 0; pw < p.pooled_w; ++pw) {
          const int64_t o = p.channels_last ? ((k * p.pooled_h + ph) * p.pooled_w + pw) * p.channels + c
                                            : ((k * p.channels + c) * p.pooled_h + ph) * p.pooled_w + pw;
          const int32_t a = argmax[o];
          if (a < 0 || a / lv.width != row) continue;
          g_in[base + (a % lv.width) * cs] += static_cast<T>(grad[k * gs.k + c * gs.c + ph * gs.h + pw * gs.w]);
        }
      }
    }
  }
}

// Levels of every RoI on the device and their (level, image) groups: a stable sort of the group
// keys (invalid RoIs last) and each group's first position. No host sync; an invalid batch index
// trips an asynchronous device-side assertion.
void assign_levels(Plan& p, const at::Tensor& rois, double canonical_scale, int64_t canonical_level, int64_t k_min,
                   std::vector<at::Tensor>& keep) {
  const auto options = rois.options();
  at::Tensor level = at::empty({p.num_rois}, options.dtype(at::kInt));
  at::Tensor valid = at::empty({p.num_rois}, options.dtype(at::kBool));
  at::Tensor key = at::empty({p.num_rois}, options.dtype(at::kLong));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(p.dtype, "roi_align", [&](auto s, auto t) {
    levels_kernel<decltype(t), decltype(s)><<<blocks_for(p.num_rois), kThreadsPerBlock, 0, stream>>>(
        p, canonical_scale, canonical_level, k_min, level.mutable_data_ptr<int32_t>(), valid.mutable_data_ptr<bool>(),
        key.mutable_data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::_assert_async(valid.all(), "roi_align: a box's batch index (boxes[:, 0]) is not an integer in [0, batch)");
  auto [sorted, order] = at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  at::Tensor begin = at::searchsorted(sorted, at::arange(p.num_levels * p.batch + 1, key.options()));
  keep.push_back(level);
  p.roi_level = level.const_data_ptr<int32_t>();
  keep.push_back(order.contiguous());
  p.order = keep.back().const_data_ptr<int64_t>();
  keep.push_back(begin.contiguous());
  p.group_begin = keep.back().const_data_ptr<int64_t>();
}

RowMap row_map(const Plan& p) {
  RowMap m{};
  for (int l = 0; l < p.num_levels; ++l) {
    m.row_begin[l + 1] = m.row_begin[l] + p.batch * p.channels * p.levels[l].height;
  }
  return m;
}

int64_t outputs(const Plan& p) { return p.num_rois * p.channels * p.pooled_h * p.pooled_w; }

void align_forward(const Plan& p, void* out) {
  with_float_dtype(p.dtype, "roi_align", [&](auto s, auto t) {
    using S = decltype(s);
    align_forward_kernel<decltype(t), S>
        <<<blocks_for(outputs(p)), kThreadsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(p, static_cast<S*>(out));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void align_backward(const Plan& p, const void* grad, GradStrides gs) {
  const RowMap rows = row_map(p);
  with_float_dtype(p.dtype, "roi_align_backward", [&](auto s, auto t) {
    using S = decltype(s);
    align_backward_kernel<decltype(t), S>
        <<<blocks_for(rows.row_begin[p.num_levels]), kThreadsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
            p, rows, static_cast<const S*>(grad), gs);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void pool_forward(const Plan& p, void* out, int32_t* argmax) {
  with_float_dtype(p.dtype, "roi_pool", [&](auto s, auto t) {
    using S = decltype(s);
    pool_forward_kernel<decltype(t), S>
        <<<blocks_for(outputs(p)), kThreadsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(p, static_cast<S*>(out),
                                                                                             argmax);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void pool_backward(const Plan& p, const void* grad, GradStrides gs, const int32_t* argmax) {
  const RowMap rows = row_map(p);
  with_float_dtype(p.dtype, "roi_pool_backward", [&](auto s, auto t) {
    using S = decltype(s);
    pool_backward_kernel<decltype(t), S>
        <<<blocks_for(rows.row_begin[1]), kThreadsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
            p, rows, static_cast<const S*>(grad), gs, argmax);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

constexpr Backend kCudaBackend{&assign_levels, &align_forward, &align_backward, &pool_forward, &pool_backward};

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CUDA, m) { BackendOps<kCudaBackend>::register_all(m); }

}  // namespace fastops::roi_align
