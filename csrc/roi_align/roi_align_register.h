// The RoI ops' dispatcher entries for one backend: thin wrappers over the shared Tensor-level flow
// (roi_align_ops.cpp) with the backend's hooks. Included by roi_align_cpu.cpp and roi_align_cuda.cu.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "roi_align/roi_align.h"

namespace fastops::roi_align {

template <const Backend& B>
struct BackendOps {
  static at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_h,
                              int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
    return align_forward_op(B, "roi_align", {input}, rois, {spatial_scale}, pooled_h, pooled_w, sampling_ratio, aligned,
                            kCanonicalScale, kCanonicalLevel);
  }
  static at::Tensor roi_align_backward(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                       int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels,
                                       int64_t height, int64_t width, int64_t sampling_ratio, bool aligned,
                                       bool channels_last) {
    return align_backward_op(B, "roi_align_backward", grad, rois, {spatial_scale}, pooled_h, pooled_w, batch, channels,
                             {height}, {width}, sampling_ratio, aligned, kCanonicalScale, kCanonicalLevel,
                             channels_last)[0];
  }
  static at::Tensor multi_scale(at::TensorList features, const at::Tensor& rois, at::ArrayRef<double> scales,
                                int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                                double canonical_scale, int64_t canonical_level) {
    return align_forward_op(B, "multi_scale_roi_align", features, rois, scales, pooled_h, pooled_w, sampling_ratio,
                            aligned, canonical_scale, canonical_level);
  }
  static std::vector<at::Tensor> multi_scale_backward(const at::Tensor& grad, const at::Tensor& rois,
                                                      at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                                                      int64_t batch, int64_t channels, at::IntArrayRef heights,
                                                      at::IntArrayRef widths, int64_t sampling_ratio, bool aligned,
                                                      double canonical_scale, int64_t canonical_level,
                                                      bool channels_last) {
    return align_backward_op(B, "multi_scale_roi_align_backward", grad, rois, scales, pooled_h, pooled_w, batch,
                             channels, heights, widths, sampling_ratio, aligned, canonical_scale, canonical_level,
                             channels_last);
  }
  static std::tuple<at::Tensor, at::Tensor> roi_pool(const at::Tensor& input, const at::Tensor& rois,
                                                     double spatial_scale, int64_t pooled_h, int64_t pooled_w) {
    return pool_forward_op(B, input, rois, spatial_scale, pooled_h, pooled_w);
  }
  static at::Tensor roi_pool_backward(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                      double spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t batch,
                                      int64_t channels, int64_t height, int64_t width, bool channels_last) {
    return pool_backward_op(B, grad, rois, argmax, spatial_scale, pooled_h, pooled_w, batch, channels, height, width,
                            channels_last);
  }

  static void register_all(torch::Library& m) {
    m.impl("roi_align", &roi_align);
    m.impl("roi_align_backward", &roi_align_backward);
    m.impl("multi_scale_roi_align", &multi_scale);
    m.impl("multi_scale_roi_align_backward", &multi_scale_backward);
    m.impl("roi_pool", &roi_pool);
    m.impl("roi_pool_backward", &roi_pool_backward);
  }
};

}  // namespace fastops::roi_align
