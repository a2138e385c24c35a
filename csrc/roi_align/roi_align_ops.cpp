// The RoI ops' Tensor-level flow, shared by the backends (roi_align_register.h wraps it for each):
// checks, layout (NCHW or channels_last, kept by the output and the gradient), allocation, the
// plan the kernels read, the gradient's accumulation dtype. The backend assigns the RoIs' levels
// and runs its kernels (Backend, roi_align.h).
#include <cmath>

#include <ATen/core/Tensor.h>
#include <ATen/DeviceGuard.h>
#include <ATen/ops/zeros.h>

#include "common/cpu_alloc.h"
#include "roi_align/roi_align.h"

namespace fastops::roi_align {

namespace {

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
  const c10::ScalarType dtype = grad.scalar_type(), acc = accumulation_dtype(dtype);
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
  Plan p =
      make_plan(b, input.scalar_type(), rois, ck.batch, ck.channels, ck.channels_last, {spatial_scale}, {input.size(2)},
                {input.size(3)}, pooled_h, pooled_w, 0, false, kCanonicalScale, kCanonicalLevel, keep);
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
  const c10::ScalarType dtype = grad.scalar_type(), acc = accumulation_dtype(dtype);
  const bool empty = rois.size(0) == 0 || grad.numel() == 0;
  at::Tensor gi = empty_nchw_or_nhwc({batch, channels, height, width}, grad, acc, channels_last, empty);
  if (!empty) {
    const at::Tensor am = argmax.contiguous(format_of(channels_last));
    std::vector<at::Tensor> keep;
    Plan p = make_plan(b, dtype, rois, batch, channels, channels_last, {spatial_scale}, {height}, {width}, pooled_h,
                       pooled_w, 0, false, kCanonicalScale, kCanonicalLevel, keep);
    p.levels[0].grad = gi.mutable_data_ptr();
    b.pool_backward(p, grad.const_data_ptr(), strides_of(grad), am.const_data_ptr<int32_t>());
  }
  return acc == dtype ? gi : gi.to(dtype);
}

}  // namespace fastops::roi_align
