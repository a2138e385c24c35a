// Schemas of the RoIAlign / RoIPool ops, their Tensor-level flow shared by the backends (checks,
// layouts, allocation, the gradient's dtype), the CPU's level assignment and the autocast kernels.
#include <algorithm>
#include <cmath>

#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <ATen/DeviceGuard.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "common/cpu_alloc.h"
#include "common/dtype_dispatch.h"
#include "roi_align/roi_align.h"

namespace fastops::roi_align {

namespace {

// The features' shared shape and layout.
struct Checked {
  int64_t batch = 0, channels = 0;
  bool channels_last = false;
};

c10::ScalarType acc_dtype(c10::ScalarType dtype) {
  return dtype == c10::ScalarType::Double ? c10::ScalarType::Double : c10::ScalarType::Float;
}

Checked check_features(const char* op, c10::ArrayRef<at::Tensor> features, const at::Tensor& rois) {
  TORCH_CHECK_VALUE(!features.empty(), op, ": expected at least one feature map");
  TORCH_CHECK_VALUE(static_cast<int>(features.size()) <= kMaxLevels, op, ": at most ", kMaxLevels,
                    " feature levels are supported, got ", features.size());
  const at::Tensor& first = features[0];
  Checked out;
  for (size_t i = 0; i < features.size(); ++i) {
    const at::Tensor& f = features[i];
    TORCH_CHECK_VALUE(f.dim() == 4, op, ": input (feature level ", i, ") must be [N, C, H, W], got shape ", f.sizes());
    TORCH_CHECK_TYPE(at::isFloatingType(f.scalar_type()) && f.scalar_type() != at::kFloat8_e4m3fn, op,
                     ": input dtype must be float16, bfloat16, float32 or float64, got ", f.scalar_type());
    TORCH_CHECK_TYPE(f.scalar_type() == first.scalar_type(), op, ": every feature level must have the dtype ",
                     first.scalar_type(), ", level ", i, " is ", f.scalar_type());
    TORCH_CHECK(f.device() == first.device(), op, ": every feature level must be on ", first.device(), ", level ", i,
                " is on ", f.device());
    TORCH_CHECK_VALUE(f.size(0) == first.size(0) && f.size(1) == first.size(1), op,
                      ": every feature level must have the batch size and channels of the first, ", first.sizes(),
                      "; level ", i, " is ", f.sizes());
    TORCH_CHECK_VALUE(f.size(2) * f.size(3) <= INT32_MAX, op, ": a feature map plane of ", f.size(2), " x ", f.size(3),
                      " exceeds 2^31 pixels");
  }
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5, op,
                    ": boxes must be [K, 5] (batch index, x1, y1, x2, y2), got shape ", rois.sizes());
  TORCH_CHECK_TYPE(rois.scalar_type() == first.scalar_type(), op, ": boxes must have the input's dtype ",
                   first.scalar_type(), ", got ", rois.scalar_type());
  TORCH_CHECK(rois.device() == first.device(), op, ": boxes must be on the input's device ", first.device(), ", got ",
              rois.device());
  out.batch = first.size(0);
  out.channels = first.size(1);
  // channels_last when the memory is NHWC and not also NCHW (C == 1 or H == W == 1 are both).
  out.channels_last = first.is_contiguous(at::MemoryFormat::ChannelsLast) && !first.is_contiguous();
  return out;
}

void check_pooling(const char* op, int64_t pooled_h, int64_t pooled_w, c10::ArrayRef<double> spatial_scales) {
  TORCH_CHECK_VALUE(pooled_h > 0 && pooled_w > 0, op, ": output_size must be positive, got (", pooled_h, ", ", pooled_w,
                    ")");
  for (double s : spatial_scales) {
    TORCH_CHECK_VALUE(std::isfinite(s) && s > 0, op, ": spatial_scale must be finite and positive, got ", s);
  }
}

void check_grad(const char* op, const at::Tensor& grad, const at::Tensor& rois, int64_t channels, int64_t pooled_h,
                int64_t pooled_w) {
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5, op, ": boxes must be [K, 5], got shape ", rois.sizes());
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                        grad.size(2) == pooled_h && grad.size(3) == pooled_w,
                    op, ": grad must be [", rois.size(0), ", ", channels, ", ", pooled_h, ", ", pooled_w, "], got ",
                    grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == rois.scalar_type(), op, ": grad must have the boxes' dtype ",
                   rois.scalar_type(), ", got ", grad.scalar_type());
  TORCH_CHECK(grad.device() == rois.device(), op, ": grad must be on the boxes' device ", rois.device(), ", got ",
              grad.device());
}

Plan base_plan(c10::ScalarType dtype, const at::Tensor& rois, int64_t batch, int64_t channels, bool channels_last,
               c10::ArrayRef<double> spatial_scales, c10::IntArrayRef heights, c10::IntArrayRef widths,
               int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK_VALUE(spatial_scales.size() == heights.size() && heights.size() == widths.size(),
                    "roi_align: one spatial scale per feature level is needed, got ", spatial_scales.size(),
                    " scales for ", heights.size(), " levels");
  Plan p;
  p.dtype = dtype;
  p.batch = batch;
  p.channels = channels;
  p.channels_last = channels_last;
  p.num_levels = static_cast<int>(heights.size());
  for (int l = 0; l < p.num_levels; ++l) {
    p.levels[l].height = heights[l];
    p.levels[l].width = widths[l];
    p.levels[l].spatial_scale = spatial_scales[l];
  }
  p.rois = rois.const_data_ptr();
  p.num_rois = rois.size(0);
  p.pooled_h = pooled_h;
  p.pooled_w = pooled_w;
  p.sampling_ratio = sampling_ratio;
  p.aligned = aligned;
  return p;
}

void level_range(c10::ArrayRef<double> spatial_scales, int64_t& k_min, int64_t& k_max) {
  TORCH_CHECK_VALUE(!spatial_scales.empty(), "multi_scale_roi_align: expected at least one spatial scale");
  for (double s : spatial_scales) {
    TORCH_CHECK_VALUE(std::isfinite(s) && s > 0, "multi_scale_roi_align: spatial scales must be positive, got ", s);
  }
  // torchvision: int(-log2(scale)) of the first and last levels, in float32.
  k_min = static_cast<int64_t>(-std::log2(static_cast<float>(spatial_scales.front())));
  k_max = static_cast<int64_t>(-std::log2(static_cast<float>(spatial_scales.back())));
  TORCH_CHECK_VALUE(k_max - k_min + 1 == static_cast<int64_t>(spatial_scales.size()),
                    "multi_scale_roi_align: ", spatial_scales.size(),
                    " levels need scales 2^-k for consecutive k; got first 2^-", k_min, " and last 2^-", k_max);
}

at::Tensor empty_nchw_or_nhwc(c10::IntArrayRef sizes, const at::Tensor& like, c10::ScalarType dtype, bool channels_last,
                              bool zero) {
  const auto options = like.options().dtype(dtype).memory_format(channels_last ? at::MemoryFormat::ChannelsLast
                                                                               : at::MemoryFormat::Contiguous);
  return zero ? at::zeros(sizes, options) : cpu::cached_output(sizes, options);
}

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

GradStrides strides_of(const at::Tensor& grad) {
  return {grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
}

// A plan for the backend: shapes, levels, the RoIs' levels and groups (kept alive in keep).
Plan make_plan(const Backend& b, c10::ScalarType dtype, const at::Tensor& rois, int64_t batch, int64_t channels,
               bool channels_last, c10::ArrayRef<double> scales, c10::IntArrayRef heights, c10::IntArrayRef widths,
               int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned, double canonical_scale,
               int64_t canonical_level, std::vector<at::Tensor>& keep) {
  keep.push_back(rois.contiguous());
  Plan p = base_plan(dtype, keep.back(), batch, channels, channels_last, scales, heights, widths, pooled_h, pooled_w,
                     sampling_ratio, aligned);
  int64_t k_min = 0, k_max = 0;
  if (scales.size() > 1) level_range(scales, k_min, k_max);
  b.assign_levels(p, keep[0], canonical_scale, canonical_level, k_min, keep);
  return p;
}

}  // namespace

at::Tensor align_forward_op(const Backend& b, const char* op, c10::ArrayRef<at::Tensor> features,
                            const at::Tensor& rois, c10::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio, bool aligned, double canonical_scale, int64_t canonical_level) {
  check_pooling(op, pooled_h, pooled_w, scales);
  const Checked ck = check_features(op, features, rois);
  TORCH_CHECK_VALUE(scales.size() == features.size(), op, ": one spatial scale per feature level is needed, got ",
                    scales.size(), " for ", features.size());
  const at::OptionalDeviceGuard guard(at::device_of(features[0]));
  std::vector<at::Tensor> inputs;
  std::vector<int64_t> heights, widths;
  for (const at::Tensor& f : features) {
    inputs.push_back(f.contiguous(format_of(ck.channels_last)));  // a no-op for NCHW or NHWC memory
    heights.push_back(f.size(2));
    widths.push_back(f.size(3));
  }
  at::Tensor out = empty_nchw_or_nhwc({rois.size(0), ck.channels, pooled_h, pooled_w}, features[0],
                                      features[0].scalar_type(), ck.channels_last, false);
  if (out.numel() == 0) return out;
  std::vector<at::Tensor> keep;
  Plan p = make_plan(b, features[0].scalar_type(), rois, ck.batch, ck.channels, ck.channels_last, scales, heights,
                     widths, pooled_h, pooled_w, sampling_ratio, aligned, canonical_scale, canonical_level, keep);
  for (size_t l = 0; l < inputs.size(); ++l) p.levels[l].input = inputs[l].const_data_ptr();
  b.align_forward(p, out.mutable_data_ptr());
  return out;
}

std::vector<at::Tensor> align_backward_op(const Backend& b, const char* op, const at::Tensor& grad,
                                          const at::Tensor& rois, c10::ArrayRef<double> scales, int64_t pooled_h,
                                          int64_t pooled_w, int64_t batch, int64_t channels, c10::IntArrayRef heights,
                                          c10::IntArrayRef widths, int64_t sampling_ratio, bool aligned,
                                          double canonical_scale, int64_t canonical_level, bool channels_last) {
  check_pooling(op, pooled_h, pooled_w, scales);
  check_grad(op, grad, rois, channels, pooled_h, pooled_w);
  const at::OptionalDeviceGuard guard(at::device_of(grad));
  const c10::ScalarType dtype = grad.scalar_type(), acc = acc_dtype(dtype);
  const bool empty = rois.size(0) == 0 || grad.numel() == 0;
  std::vector<at::Tensor> grads;  // in the accumulation type; the kernels write every element
  for (size_t l = 0; l < heights.size(); ++l) {
    grads.push_back(empty_nchw_or_nhwc({batch, channels, heights[l], widths[l]}, grad, acc, channels_last, empty));
  }
  if (!empty) {
    std::vector<at::Tensor> keep;
    Plan p = make_plan(b, dtype, rois, batch, channels, channels_last, scales, heights, widths, pooled_h, pooled_w,
                       sampling_ratio, aligned, canonical_scale, canonical_level, keep);
    for (size_t l = 0; l < grads.size(); ++l) p.levels[l].grad = grads[l].mutable_data_ptr();
    b.align_backward(p, grad.const_data_ptr(), strides_of(grad));
  }
  if (acc != dtype) {
    for (at::Tensor& g : grads) g = g.to(dtype);
  }
  return grads;
}

std::tuple<at::Tensor, at::Tensor> pool_forward_op(const Backend& b, const at::Tensor& input, const at::Tensor& rois,
                                                   double spatial_scale, int64_t pooled_h, int64_t pooled_w) {
  check_pooling("roi_pool", pooled_h, pooled_w, {spatial_scale});
  const Checked ck = check_features("roi_pool", {input}, rois);
  const at::OptionalDeviceGuard guard(at::device_of(input));
  const at::Tensor x = input.contiguous(format_of(ck.channels_last));
  at::Tensor out = empty_nchw_or_nhwc({rois.size(0), ck.channels, pooled_h, pooled_w}, input, input.scalar_type(),
                                      ck.channels_last, false);
  at::Tensor argmax = empty_nchw_or_nhwc(out.sizes(), input, at::kInt, ck.channels_last, false);
  if (out.numel() == 0) return {out, argmax};
  std::vector<at::Tensor> keep;
  Plan p = make_plan(b, input.scalar_type(), rois, ck.batch, ck.channels, ck.channels_last, {spatial_scale},
                     {input.size(2)}, {input.size(3)}, pooled_h, pooled_w, 0, false, 224.0, 4, keep);
  p.levels[0].input = x.const_data_ptr();
  b.pool_forward(p, out.mutable_data_ptr(), argmax.mutable_data_ptr<int32_t>());
  return {out, argmax};
}

at::Tensor pool_backward_op(const Backend& b, const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                            double spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels,
                            int64_t height, int64_t width, bool channels_last) {
  check_pooling("roi_pool_backward", pooled_h, pooled_w, {spatial_scale});
  check_grad("roi_pool_backward", grad, rois, channels, pooled_h, pooled_w);
  TORCH_CHECK_VALUE(argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kInt, "roi_pool_backward: argmax ",
                    "must be int32 of the grad's shape ", grad.sizes(), ", got ", argmax.scalar_type(), " ",
                    argmax.sizes());
  TORCH_CHECK(argmax.device() == grad.device(), "roi_pool_backward: argmax must be on ", grad.device());
  const at::OptionalDeviceGuard guard(at::device_of(grad));
  const c10::ScalarType dtype = grad.scalar_type(), acc = acc_dtype(dtype);
  const bool empty = rois.size(0) == 0 || grad.numel() == 0;
  at::Tensor gi = empty_nchw_or_nhwc({batch, channels, height, width}, grad, acc, channels_last, empty);
  if (!empty) {
    const at::Tensor am = argmax.contiguous(format_of(channels_last));
    std::vector<at::Tensor> keep;
    Plan p = make_plan(b, dtype, rois, batch, channels, channels_last, {spatial_scale}, {height}, {width}, pooled_h,
                       pooled_w, 0, false, 224.0, 4, keep);
    p.levels[0].grad = gi.mutable_data_ptr();
    b.pool_backward(p, grad.const_data_ptr(), strides_of(grad), am.const_data_ptr<int32_t>());
  }
  return acc == dtype ? gi : gi.to(dtype);
}

std::vector<int32_t> cpu_roi_levels(const at::Tensor& rois, int64_t batch, int num_levels, double canonical_scale,
                                    int64_t canonical_level, int64_t k_min) {
  const int64_t k_n = rois.size(0);
  std::vector<int32_t> levels(k_n, 0);
  const at::Tensor r = rois.contiguous();
  with_float_dtype(r.scalar_type(), "roi_align", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    const S* data = r.const_data_ptr<S>();
    for (int64_t k = 0; k < k_n; ++k) {
      const T b = static_cast<T>(data[k * 5]);
      TORCH_CHECK_VALUE(b >= 0 && b < static_cast<T>(batch) && b == std::floor(b), "roi_align: boxes[", k,
                        ", 0] (the batch index) must be an integer in [0, ", batch, "), got ", static_cast<double>(b));
      const T x1 = static_cast<T>(data[k * 5 + 1]), y1 = static_cast<T>(data[k * 5 + 2]);
      const T x2 = static_cast<T>(data[k * 5 + 3]), y2 = static_cast<T>(data[k * 5 + 4]);
      if (!is_finite_box(x1, y1, x2, y2)) {
        levels[k] = -1;
      } else if (num_levels > 1) {
        levels[k] = static_cast<int32_t>(fpn_level<T>(x1, y1, x2, y2, static_cast<T>(canonical_scale), canonical_level,
                                                      k_min, k_min + num_levels - 1));
      }
    }
  });
  return levels;
}

void group_rois(const std::vector<int32_t>& roi_level, const at::Tensor& rois, int64_t batch, int num_levels,
                std::vector<int64_t>& order, std::vector<int64_t>& group_begin) {
  const int64_t k_n = rois.size(0);
  const at::Tensor r = rois.contiguous();
  std::vector<int64_t> group(k_n, -1);
  group_begin.assign(num_levels * batch + 1, 0);
  with_float_dtype(r.scalar_type(), "roi_align", [&](auto s, auto) {
    using S = decltype(s);
    const S* data = r.const_data_ptr<S>();
    for (int64_t k = 0; k < k_n; ++k) {
      if (roi_level[k] < 0) continue;
      group[k] = roi_level[k] * batch + static_cast<int64_t>(static_cast<double>(data[k * 5]));
      ++group_begin[group[k] + 1];
    }
  });
  for (size_t g = 1; g < group_begin.size(); ++g) group_begin[g] += group_begin[g - 1];
  order.assign(group_begin.back(), 0);
  std::vector<int64_t> next(group_begin.begin(), group_begin.end() - 1);
  for (int64_t k = 0; k < k_n; ++k) {  // counting sort: index order within a group
    if (group[k] >= 0) order[next[group[k]]++] = k;
  }
}

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
      "int sampling_ratio, bool aligned) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
      "int batch_size, int channels, int height, int width, int sampling_ratio, bool aligned, bool channels_last) "
      "-> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "multi_scale_roi_align(Tensor[] features, Tensor rois, float[] spatial_scales, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned, float canonical_scale, int canonical_level) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "multi_scale_roi_align_backward(Tensor grad, Tensor rois, float[] spatial_scales, int pooled_height, "
      "int pooled_width, int batch_size, int channels, int[] heights, int[] widths, int sampling_ratio, "
      "bool aligned, float canonical_scale, int canonical_level, bool channels_last) -> Tensor[]",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "roi_pool(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width) "
      "-> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, int pooled_height, "
      "int pooled_width, int batch_size, int channels, int height, int width, bool channels_last) -> Tensor",
      {at::Tag::pt2_compliant_tag});
}

// ---- autocast: as torchvision, the ops run in float32 and return the features' dtype, so boxes in
// float32 (the usual case) work with float16 / bfloat16 features under torch.autocast ----

namespace {

template <c10::DeviceType kDevice>
struct Autocast {
  static at::Tensor cast(const at::Tensor& t) { return at::autocast::cached_cast(at::kFloat, t, kDevice); }

  static at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_h,
                              int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(kDevice));
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("fastops::roi_align", "")
            .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t, int64_t, int64_t, bool)>();
    return op.call(cast(input), cast(rois), spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
        .to(input.scalar_type());
  }

  static at::Tensor multi_scale(at::TensorList features, const at::Tensor& rois, at::ArrayRef<double> scales,
                                int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                                double canonical_scale, int64_t canonical_level) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(kDevice));
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastops::multi_scale_roi_align", "")
                               .typed<at::Tensor(at::TensorList, const at::Tensor&, at::ArrayRef<double>, int64_t,
                                                 int64_t, int64_t, bool, double, int64_t)>();
    TORCH_CHECK_VALUE(!features.empty(), "multi_scale_roi_align: expected at least one feature map");
    const std::vector<at::Tensor> cast_features = at::autocast::cached_cast(at::kFloat, features, kDevice);
    return op
        .call(cast_features, cast(rois), scales, pooled_h, pooled_w, sampling_ratio, aligned, canonical_scale,
              canonical_level)
        .to(features[0].scalar_type());
  }

  static std::tuple<at::Tensor, at::Tensor> roi_pool(const at::Tensor& input, const at::Tensor& rois,
                                                     double spatial_scale, int64_t pooled_h, int64_t pooled_w) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(kDevice));
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastops::roi_pool", "")
                               .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double,
                                                                         int64_t, int64_t)>();
    auto [out, argmax] = op.call(cast(input), cast(rois), spatial_scale, pooled_h, pooled_w);
    return {out.to(input.scalar_type()), argmax};
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastops, AutocastCPU, m) {
  m.impl("roi_align", &Autocast<c10::DeviceType::CPU>::roi_align);
  m.impl("multi_scale_roi_align", &Autocast<c10::DeviceType::CPU>::multi_scale);
  m.impl("roi_pool", &Autocast<c10::DeviceType::CPU>::roi_pool);
}

TORCH_LIBRARY_IMPL(fastops, AutocastCUDA, m) {
  m.impl("roi_align", &Autocast<c10::DeviceType::CUDA>::roi_align);
  m.impl("multi_scale_roi_align", &Autocast<c10::DeviceType::CUDA>::multi_scale);
  m.impl("roi_pool", &Autocast<c10::DeviceType::CUDA>::roi_pool);
}

}  // namespace fastops::roi_align
