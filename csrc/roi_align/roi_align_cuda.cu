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
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda_launch.h"
#include "common/dtype_dispatch.h"
#include "roi_align/roi_align.h"

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
    const bool ok = b >= T(0) && b < static_cast<T>(p.batch) && b == ::floor(b);
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
    case c10::ScalarType::Half: n = static_cast<int64_t>(static_cast<float>(static_cast<const c10::Half*>(p.rois)[k * 5])); break;
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

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// Levels of every RoI on the device (and each RoI's group key into *group_key when given), plus
// the asynchronous batch-index assertion.
at::Tensor device_levels(const Plan& p, const at::Tensor& rois, double canonical_scale, int64_t canonical_level,
                         int64_t k_min, at::Tensor* group_key = nullptr) {
  at::Tensor level = at::empty({p.num_rois}, rois.options().dtype(at::kInt));
  at::Tensor valid = at::empty({p.num_rois}, rois.options().dtype(at::kBool));
  at::Tensor key = at::empty({p.num_rois}, rois.options().dtype(at::kLong));
  if (group_key != nullptr) *group_key = key;
  if (p.num_rois == 0) return level;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(p.dtype, "roi_align", [&](auto s, auto t) {
    levels_kernel<decltype(t), decltype(s)><<<blocks_for(p.num_rois), kThreadsPerBlock, 0, stream>>>(
        p, canonical_scale, canonical_level, k_min, level.mutable_data_ptr<int32_t>(), valid.mutable_data_ptr<bool>(),
        key.mutable_data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::_assert_async(valid.all(), "roi_align: a box's batch index (boxes[:, 0]) is not an integer in [0, batch)");
  return level;
}

// RoI indices grouped by (level, image) on the device, index order within a group (a stable sort
// of the group keys; invalid RoIs last), and each group's first position: no host sync.
struct DeviceGroups {
  at::Tensor order, begin;
};
DeviceGroups device_groups(const Plan& p, const at::Tensor& group_key) {
  const int64_t groups = p.num_levels * p.batch;
  auto [sorted, order] = at::sort(group_key, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  at::Tensor begin = at::searchsorted(sorted, at::arange(groups + 1, group_key.options()));
  return {order.contiguous(), begin.contiguous()};
}

RowMap row_map(const Plan& p) {
  RowMap m{};
  for (int l = 0; l < p.num_levels; ++l) {
    m.row_begin[l + 1] = m.row_begin[l] + p.batch * p.channels * p.levels[l].height;
  }
  return m;
}

at::Tensor align_forward_impl(const char* op, at::TensorList features, const at::Tensor& rois_in,
                              c10::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                              int64_t sampling_ratio, bool aligned, double canonical_scale, int64_t canonical_level) {
  check_pooling(op, pooled_h, pooled_w, scales);
  const Checked ck = check_features(op, features, rois_in);
  TORCH_CHECK_VALUE(scales.size() == features.size(), op, ": one spatial scale per feature level is needed, got ",
                    scales.size(), " for ", features.size());
  c10::cuda::CUDAGuard guard(features[0].device());
  std::vector<at::Tensor> inputs;
  std::vector<int64_t> heights, widths;
  for (const at::Tensor& f : features) {
    inputs.push_back(f.contiguous(format_of(ck.channels_last)));
    heights.push_back(f.size(2));
    widths.push_back(f.size(3));
  }
  at::Tensor out = empty_nchw_or_nhwc({rois_in.size(0), ck.channels, pooled_h, pooled_w}, features[0],
                                      features[0].scalar_type(), ck.channels_last, false);
  if (out.numel() == 0) return out;
  const at::Tensor rois = rois_in.contiguous();
  Plan p = base_plan(features[0].scalar_type(), rois, ck.batch, ck.channels, ck.channels_last, scales, heights, widths,
                     pooled_h, pooled_w, sampling_ratio, aligned);
  int64_t k_min = 0, k_max = 0;
  if (scales.size() > 1) level_range(scales, k_min, k_max);
  const at::Tensor level = device_levels(p, rois, canonical_scale, canonical_level, k_min);
  p.roi_level = level.const_data_ptr<int32_t>();
  for (size_t l = 0; l < inputs.size(); ++l) p.levels[l].input = inputs[l].const_data_ptr();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(p.dtype, op, [&](auto s, auto t) {
    using S = decltype(s);
    align_forward_kernel<decltype(t), S><<<blocks_for(out.numel()), kThreadsPerBlock, 0, stream>>>(
        p, out.mutable_data_ptr<S>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<at::Tensor> align_backward_impl(const char* op, const at::Tensor& grad, const at::Tensor& rois_in,
                                            c10::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                                            int64_t batch, int64_t channels, c10::IntArrayRef heights,
                                            c10::IntArrayRef widths, int64_t sampling_ratio, bool aligned,
                                            double canonical_scale, int64_t canonical_level, bool channels_last) {
  check_pooling(op, pooled_h, pooled_w, scales);
  check_grad(op, grad, rois_in, channels, pooled_h, pooled_w);
  c10::cuda::CUDAGuard guard(grad.device());
  const c10::ScalarType dtype = grad.scalar_type(), acc = acc_dtype(dtype);
  const bool empty = rois_in.size(0) == 0 || grad.numel() == 0;
  std::vector<at::Tensor> grads;
  for (size_t l = 0; l < heights.size(); ++l) {
    grads.push_back(empty_nchw_or_nhwc({batch, channels, heights[l], widths[l]}, grad, acc, channels_last, empty));
  }
  if (!empty) {
    const at::Tensor rois = rois_in.contiguous();
    Plan p = base_plan(dtype, rois, batch, channels, channels_last, scales, heights, widths, pooled_h, pooled_w,
                       sampling_ratio, aligned);
    int64_t k_min = 0, k_max = 0;
    if (scales.size() > 1) level_range(scales, k_min, k_max);
    at::Tensor group_key;
    const at::Tensor level = device_levels(p, rois, canonical_scale, canonical_level, k_min, &group_key);
    p.roi_level = level.const_data_ptr<int32_t>();
    const DeviceGroups groups = device_groups(p, group_key);
    p.order = groups.order.const_data_ptr<int64_t>();
    p.group_begin = groups.begin.const_data_ptr<int64_t>();
    for (size_t l = 0; l < grads.size(); ++l) p.levels[l].grad = grads[l].mutable_data_ptr();
    const RowMap rows = row_map(p);
    const GradStrides gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
    const auto stream = c10::cuda::getCurrentCUDAStream();
    with_float_dtype(dtype, op, [&](auto s, auto t) {
      using S = decltype(s);
      align_backward_kernel<decltype(t), S><<<blocks_for(rows.row_begin[p.num_levels]), kThreadsPerBlock, 0, stream>>>(
          p, rows, grad.const_data_ptr<S>(), gs);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (acc != dtype) {
    for (at::Tensor& g : grads) g = g.to(dtype);
  }
  return grads;
}

at::Tensor roi_align_cuda(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_h,
                          int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  return align_forward_impl("roi_align", {input}, rois, {spatial_scale}, pooled_h, pooled_w, sampling_ratio, aligned,
                            224.0, 4);
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                   int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels, int64_t height,
                                   int64_t width, int64_t sampling_ratio, bool aligned, bool channels_last) {
  return align_backward_impl("roi_align_backward", grad, rois, {spatial_scale}, pooled_h, pooled_w, batch, channels,
                             {height}, {width}, sampling_ratio, aligned, 224.0, 4, channels_last)[0];
}

at::Tensor multi_scale_roi_align_cuda(at::TensorList features, const at::Tensor& rois, at::ArrayRef<double> scales,
                                      int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                                      double canonical_scale, int64_t canonical_level) {
  return align_forward_impl("multi_scale_roi_align", features, rois, scales, pooled_h, pooled_w, sampling_ratio,
                            aligned, canonical_scale, canonical_level);
}

std::vector<at::Tensor> multi_scale_roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                                            at::ArrayRef<double> scales, int64_t pooled_h,
                                                            int64_t pooled_w, int64_t batch, int64_t channels,
                                                            at::IntArrayRef heights, at::IntArrayRef widths,
                                                            int64_t sampling_ratio, bool aligned,
                                                            double canonical_scale, int64_t canonical_level,
                                                            bool channels_last) {
  return align_backward_impl("multi_scale_roi_align_backward", grad, rois, scales, pooled_h, pooled_w, batch,
                             channels, heights, widths, sampling_ratio, aligned, canonical_scale, canonical_level,
                             channels_last);
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cuda(const at::Tensor& input, const at::Tensor& rois_in,
                                                 double spatial_scale, int64_t pooled_h, int64_t pooled_w) {
  check_pooling("roi_pool", pooled_h, pooled_w, {spatial_scale});
  const Checked ck = check_features("roi_pool", {input}, rois_in);
  c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous(format_of(ck.channels_last));
  at::Tensor out = empty_nchw_or_nhwc({rois_in.size(0), ck.channels, pooled_h, pooled_w}, input, input.scalar_type(),
                                      ck.channels_last, false);
  at::Tensor argmax = empty_nchw_or_nhwc(out.sizes(), input, at::kInt, ck.channels_last, false);
  if (out.numel() == 0) return {out, argmax};
  const at::Tensor rois = rois_in.contiguous();
  Plan p = base_plan(input.scalar_type(), rois, ck.batch, ck.channels, ck.channels_last, {spatial_scale},
                     {input.size(2)}, {input.size(3)}, pooled_h, pooled_w, 0, false);
  const at::Tensor level = device_levels(p, rois, 224.0, 4, 0);
  p.roi_level = level.const_data_ptr<int32_t>();
  p.levels[0].input = x.const_data_ptr();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(p.dtype, "roi_pool", [&](auto s, auto t) {
    using S = decltype(s);
    pool_forward_kernel<decltype(t), S><<<blocks_for(out.numel()), kThreadsPerBlock, 0, stream>>>(
        p, out.mutable_data_ptr<S>(), argmax.mutable_data_ptr<int32_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, argmax};
}

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& rois_in, const at::Tensor& argmax,
                                  double spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t batch,
                                  int64_t channels, int64_t height, int64_t width, bool channels_last) {
  check_pooling("roi_pool_backward", pooled_h, pooled_w, {spatial_scale});
  check_grad("roi_pool_backward", grad, rois_in, channels, pooled_h, pooled_w);
  TORCH_CHECK_VALUE(argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kInt, "roi_pool_backward: argmax ",
                    "must be int32 of the grad's shape ", grad.sizes(), ", got ", argmax.scalar_type(), " ",
                    argmax.sizes());
  c10::cuda::CUDAGuard guard(grad.device());
  const c10::ScalarType dtype = grad.scalar_type(), acc = acc_dtype(dtype);
  const bool empty = rois_in.size(0) == 0 || grad.numel() == 0;
  at::Tensor gi = empty_nchw_or_nhwc({batch, channels, height, width}, grad, acc, channels_last, empty);
  if (!empty) {
    const at::Tensor rois = rois_in.contiguous();
    const at::Tensor am = argmax.contiguous(format_of(channels_last));
    Plan p = base_plan(dtype, rois, batch, channels, channels_last, {spatial_scale}, {height}, {width}, pooled_h,
                       pooled_w, 0, false);
    at::Tensor group_key;
    const at::Tensor level = device_levels(p, rois, 224.0, 4, 0, &group_key);
    p.roi_level = level.const_data_ptr<int32_t>();
    const DeviceGroups groups = device_groups(p, group_key);
    p.order = groups.order.const_data_ptr<int64_t>();
    p.group_begin = groups.begin.const_data_ptr<int64_t>();
    p.levels[0].grad = gi.mutable_data_ptr();
    const RowMap rows = row_map(p);
    const GradStrides gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
    const auto stream = c10::cuda::getCurrentCUDAStream();
    with_float_dtype(dtype, "roi_pool_backward", [&](auto s, auto t) {
      using S = decltype(s);
      pool_backward_kernel<decltype(t), S><<<blocks_for(rows.row_begin[1]), kThreadsPerBlock, 0, stream>>>(
          p, rows, grad.const_data_ptr<S>(), gs, am.const_data_ptr<int32_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return acc == dtype ? gi : gi.to(dtype);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CUDA, m) {
  m.impl("roi_align", &roi_align_cuda);
  m.impl("roi_align_backward", &roi_align_backward_cuda);
  m.impl("multi_scale_roi_align", &multi_scale_roi_align_cuda);
  m.impl("multi_scale_roi_align_backward", &multi_scale_roi_align_backward_cuda);
  m.impl("roi_pool", &roi_pool_cuda);
  m.impl("roi_pool_backward", &roi_pool_backward_cuda);
}

}  // namespace fastops::roi_align
