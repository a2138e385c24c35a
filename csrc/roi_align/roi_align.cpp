// Schemas of the RoIAlign / RoIPool ops and the input checks every backend runs (through the
// shared Tensor-level flow, roi_align_ops.cpp).
#include <cmath>

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "roi_align/roi_align.h"

namespace fastops::roi_align {

c10::ScalarType accumulation_dtype(c10::ScalarType dtype) {
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

}  // namespace fastops::roi_align
