// CPU implementation of the RoIAlign / RoIPool ops at the Tensor level: checks (roi_align.cpp),
// the RoIs' levels and (level, image) groups, then the raw loops of roi_align_cpu_kernel.cpp.
// Batch indices are checked here (ValueError), before any read.
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "roi_align/roi_align.h"

namespace fastops::roi_align {

namespace cpu_kernels {
constinit cpu::KernelTable<AlignForwardFn> align_forward{};
constinit cpu::KernelTable<AlignBackwardFn> align_backward{};
constinit cpu::KernelTable<PoolForwardFn> pool_forward{};
constinit cpu::KernelTable<PoolBackwardFn> pool_backward{};
}  // namespace cpu_kernels

namespace {

// A plan plus the host arrays it points into.
struct CpuPlan {
  Plan plan;
  at::Tensor rois;
  std::vector<int32_t> levels;
  std::vector<int64_t> order, group_begin;
};

CpuPlan cpu_plan(const at::Tensor& rois, c10::ScalarType dtype, int64_t batch, int64_t channels, bool channels_last,
                 c10::ArrayRef<double> scales, c10::IntArrayRef heights, c10::IntArrayRef widths, int64_t pooled_h,
                 int64_t pooled_w, int64_t sampling_ratio, bool aligned, double canonical_scale,
                 int64_t canonical_level) {
  CpuPlan c;
  c.rois = rois.contiguous();
  c.plan = base_plan(dtype, c.rois, batch, channels, channels_last, scales, heights, widths, pooled_h, pooled_w,
                     sampling_ratio, aligned);
  int64_t k_min = 0, k_max = 0;
  if (scales.size() > 1) level_range(scales, k_min, k_max);
  c.levels = cpu_roi_levels(c.rois, batch, c.plan.num_levels, canonical_scale, canonical_level, k_min);
  group_rois(c.levels, c.rois, batch, c.plan.num_levels, c.order, c.group_begin);
  c.plan.roi_level = c.levels.data();
  c.plan.order = c.order.data();
  c.plan.group_begin = c.group_begin.data();
  return c;
}

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

at::Tensor align_forward_impl(const char* op, at::TensorList features, const at::Tensor& rois,
                              c10::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                              int64_t sampling_ratio, bool aligned, double canonical_scale, int64_t canonical_level) {
  check_pooling(op, pooled_h, pooled_w, scales);
  const Checked ck = check_features(op, features, rois);
  TORCH_CHECK_VALUE(scales.size() == features.size(), op, ": one spatial scale per feature level is needed, got ",
                    scales.size(), " for ", features.size());
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
  CpuPlan c = cpu_plan(rois, features[0].scalar_type(), ck.batch, ck.channels, ck.channels_last, scales, heights,
                       widths, pooled_h, pooled_w, sampling_ratio, aligned, canonical_scale, canonical_level);
  for (size_t l = 0; l < inputs.size(); ++l) c.plan.levels[l].input = inputs[l].const_data_ptr();
  cpu_kernels::align_forward.get()(c.plan, out.mutable_data_ptr());
  return out;
}

std::vector<at::Tensor> align_backward_impl(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                                            c10::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                                            int64_t batch, int64_t channels, c10::IntArrayRef heights,
                                            c10::IntArrayRef widths, int64_t sampling_ratio, bool aligned,
                                            double canonical_scale, int64_t canonical_level, bool channels_last) {
  check_pooling(op, pooled_h, pooled_w, scales);
  check_grad(op, grad, rois, channels, pooled_h, pooled_w);
  const c10::ScalarType dtype = grad.scalar_type(), acc = acc_dtype(dtype);
  std::vector<at::Tensor> grads;
  for (size_t l = 0; l < heights.size(); ++l) {
    grads.push_back(empty_nchw_or_nhwc({batch, channels, heights[l], widths[l]}, grad, acc, channels_last,
                                       /*zero=*/rois.size(0) == 0 || grad.numel() == 0));
  }
  if (rois.size(0) > 0 && grad.numel() > 0) {
    CpuPlan c = cpu_plan(rois, dtype, batch, channels, channels_last, scales, heights, widths, pooled_h, pooled_w,
                         sampling_ratio, aligned, canonical_scale, canonical_level);
    for (size_t l = 0; l < grads.size(); ++l) c.plan.levels[l].grad = grads[l].mutable_data_ptr();
    const GradStrides gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
    cpu_kernels::align_backward.get()(c.plan, grad.const_data_ptr(), gs);
  }
  if (acc != dtype) {
    for (at::Tensor& g : grads) g = g.to(dtype);
  }
  return grads;
}

at::Tensor roi_align_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_h,
                         int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  return align_forward_impl("roi_align", {input}, rois, {spatial_scale}, pooled_h, pooled_w, sampling_ratio, aligned,
                            224.0, 4);
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                  int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels, int64_t height,
                                  int64_t width, int64_t sampling_ratio, bool aligned, bool channels_last) {
  return align_backward_impl("roi_align_backward", grad, rois, {spatial_scale}, pooled_h, pooled_w, batch, channels,
                             {height}, {width}, sampling_ratio, aligned, 224.0, 4, channels_last)[0];
}

at::Tensor multi_scale_roi_align_cpu(at::TensorList features, const at::Tensor& rois, at::ArrayRef<double> scales,
                                     int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                                     double canonical_scale, int64_t canonical_level) {
  return align_forward_impl("multi_scale_roi_align", features, rois, scales, pooled_h, pooled_w, sampling_ratio,
                            aligned, canonical_scale, canonical_level);
}

std::vector<at::Tensor> multi_scale_roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
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

std::tuple<at::Tensor, at::Tensor> roi_pool_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                                int64_t pooled_h, int64_t pooled_w) {
  check_pooling("roi_pool", pooled_h, pooled_w, {spatial_scale});
  const Checked ck = check_features("roi_pool", {input}, rois);
  const at::Tensor x = input.contiguous(format_of(ck.channels_last));
  at::Tensor out = empty_nchw_or_nhwc({rois.size(0), ck.channels, pooled_h, pooled_w}, input, input.scalar_type(),
                                      ck.channels_last, false);
  at::Tensor argmax = empty_nchw_or_nhwc(out.sizes(), input, at::kInt, ck.channels_last, false);
  if (out.numel() == 0) return {out, argmax};
  CpuPlan c = cpu_plan(rois, input.scalar_type(), ck.batch, ck.channels, ck.channels_last, {spatial_scale},
                       {input.size(2)}, {input.size(3)}, pooled_h, pooled_w, 0, false, 224.0, 4);
  c.plan.levels[0].input = x.const_data_ptr();
  cpu_kernels::pool_forward.get()(c.plan, out.mutable_data_ptr(), argmax.mutable_data_ptr<int32_t>());
  return {out, argmax};
}

at::Tensor roi_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                 double spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t batch,
                                 int64_t channels, int64_t height, int64_t width, bool channels_last) {
  check_pooling("roi_pool_backward", pooled_h, pooled_w, {spatial_scale});
  check_grad("roi_pool_backward", grad, rois, channels, pooled_h, pooled_w);
  TORCH_CHECK_VALUE(argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kInt, "roi_pool_backward: argmax ",
                    "must be int32 of the grad's shape ", grad.sizes(), ", got ", argmax.scalar_type(), " ",
                    argmax.sizes());
  const c10::ScalarType dtype = grad.scalar_type(), acc = acc_dtype(dtype);
  const bool empty = rois.size(0) == 0 || grad.numel() == 0;
  at::Tensor gi = empty_nchw_or_nhwc({batch, channels, height, width}, grad, acc, channels_last, empty);
  if (!empty) {
    const at::Tensor am = argmax.contiguous(format_of(channels_last));
    CpuPlan c = cpu_plan(rois, dtype, batch, channels, channels_last, {spatial_scale}, {height}, {width}, pooled_h,
                         pooled_w, 0, false, 224.0, 4);
    c.plan.levels[0].grad = gi.mutable_data_ptr();
    const GradStrides gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
    cpu_kernels::pool_backward.get()(c.plan, grad.const_data_ptr(), gs, am.const_data_ptr<int32_t>());
  }
  return acc == dtype ? gi : gi.to(dtype);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) {
  m.impl("roi_align", &roi_align_cpu);
  m.impl("roi_align_backward", &roi_align_backward_cpu);
  m.impl("multi_scale_roi_align", &multi_scale_roi_align_cpu);
  m.impl("multi_scale_roi_align_backward", &multi_scale_roi_align_backward_cpu);
  m.impl("roi_pool", &roi_pool_cpu);
  m.impl("roi_pool_backward", &roi_pool_backward_cpu);
}

}  // namespace fastops::roi_align
