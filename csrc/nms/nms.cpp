// Schema and input checks of the NMS ops. Kernels: nms_cpu.cpp, nms_cuda.cu. Python API and fake
// kernels: fastops/ops/nms.py.
#include <cmath>
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/where.h>
#include <torch/library.h>

#include "nms/nms.h"

namespace fastops::nms {
namespace {

bool is_float(c10::ScalarType t) { return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16; }

}  // namespace

void check_boxes_scores(const char* op, const at::Tensor& boxes, const at::Tensor& scores,
                        const std::optional<at::Tensor>& idxs) {
  TORCH_CHECK_TYPE(is_float(boxes.scalar_type()), op, ": boxes must be float16, bfloat16, float32 or float64, got ",
                   boxes.scalar_type());
  TORCH_CHECK_TYPE(is_float(scores.scalar_type()), op, ": scores must be float16, bfloat16, float32 or float64, got ",
                   scores.scalar_type());
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4, op, ": boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK_VALUE(scores.dim() == 1, op, ": scores must be 1-D [N], got shape ", scores.sizes());
  TORCH_CHECK_VALUE(scores.size(0) == boxes.size(0), op, ": boxes and scores must have the same length, got ",
                    boxes.size(0), " and ", scores.size(0));
  TORCH_CHECK(scores.device() == boxes.device(), op, ": boxes and scores must be on the same device, got ",
              boxes.device(), " and ", scores.device());
  if (idxs.has_value()) {
    const at::Tensor& i = *idxs;
    TORCH_CHECK_TYPE(at::isIntegralType(i.scalar_type(), /*includeBool=*/false), op,
                     ": idxs must be an integer tensor, got ", i.scalar_type());
    TORCH_CHECK_VALUE(i.dim() == 1 && i.size(0) == boxes.size(0), op, ": idxs must have shape [N] = [", boxes.size(0),
                      "], got ", i.sizes());
    TORCH_CHECK(i.device() == boxes.device(), op, ": idxs must be on ", boxes.device(), ", got ", i.device());
  }
}

void check_iou_threshold(const char* op, double iou_threshold) {
  TORCH_CHECK_VALUE(!std::isnan(iou_threshold) && iou_threshold >= 0, op, ": iou_threshold must be >= 0, got ",
                    iou_threshold);
}

SoftMethod check_soft_args(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                           double iou_threshold, double sigma, double score_threshold, std::string_view method) {
  check_boxes_scores("soft_nms", boxes, scores, idxs);
  check_iou_threshold("soft_nms", iou_threshold);
  TORCH_CHECK_VALUE(sigma > 0, "soft_nms: sigma must be > 0, got ", sigma);
  TORCH_CHECK_VALUE(!std::isnan(score_threshold), "soft_nms: score_threshold must be a number, got NaN");
  if (method == "linear") return SoftMethod::Linear;
  if (method == "gaussian") return SoftMethod::Gaussian;
  TORCH_CHECK_VALUE(false, "soft_nms: method must be 'linear' or 'gaussian', got '", method, "'");
}

MatrixKernel check_matrix_args(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                               double sigma, double score_threshold, std::string_view kernel) {
  check_boxes_scores("matrix_nms", boxes, scores, idxs);
  TORCH_CHECK_VALUE(sigma > 0, "matrix_nms: sigma must be > 0, got ", sigma);
  TORCH_CHECK_VALUE(!std::isnan(score_threshold), "matrix_nms: score_threshold must be a number, got NaN");
  if (kernel == "linear") return MatrixKernel::Linear;
  if (kernel == "gaussian") return MatrixKernel::Gaussian;
  TORCH_CHECK_VALUE(false, "matrix_nms: kernel must be 'linear' or 'gaussian', got '", kernel, "'");
}

bool check_multiclass_args(const at::Tensor& boxes, const at::Tensor& scores, double score_threshold,
                           double iou_threshold, int64_t topk, int64_t max_detections) {
  const char* op = "multiclass_nms";
  TORCH_CHECK_TYPE(is_float(scores.scalar_type()), op, ": scores must be floating point, got ", scores.scalar_type());
  TORCH_CHECK_TYPE(boxes.scalar_type() == scores.scalar_type(), op, ": boxes and scores must have the same dtype, got ",
                   boxes.scalar_type(), " and ", scores.scalar_type());
  TORCH_CHECK_VALUE(scores.dim() == 3, op, ": scores must have shape [B, N, C], got ", scores.sizes());
  const bool per_class = boxes.dim() == 4;
  TORCH_CHECK_VALUE((boxes.dim() == 3 || per_class) && boxes.size(-1) == 4 && boxes.size(0) == scores.size(0) &&
                        boxes.size(1) == scores.size(1) && (!per_class || boxes.size(2) == scores.size(2)),
                    op,
                    ": boxes must have shape [B, N, 4] or [B, N, C, 4] matching scores [B, N, C] = ", scores.sizes(),
                    ", got ", boxes.sizes());
  TORCH_CHECK(boxes.device() == scores.device(), op, ": boxes and scores must be on the same device, got ",
              boxes.device(), " and ", scores.device());
  TORCH_CHECK_VALUE(!std::isnan(score_threshold), op, ": score_threshold must be a number, got NaN");
  check_iou_threshold(op, iou_threshold);
  TORCH_CHECK_VALUE(topk >= 1, op, ": topk must be >= 1, got ", topk);
  TORCH_CHECK_VALUE(max_detections >= 1, op, ": max_detections must be >= 1, got ", max_detections);
  return per_class;
}

at::Tensor nan_as_lowest(const at::Tensor& scores) {
  return at::where(scores.isnan(), at::full_like(scores, -std::numeric_limits<double>::infinity()), scores);
}

std::tuple<at::Tensor, at::Tensor> matrix_nms_select(const at::Tensor& order, const at::Tensor& scores,
                                                     const at::Tensor& decay, double score_threshold) {
  const at::Tensor decayed = scores.index_select(0, order).to(decay.scalar_type()).mul(decay);
  const at::Tensor pos = decayed.ge(score_threshold).nonzero().squeeze(1);
  const at::Tensor by_score = std::get<1>(decayed.index_select(0, pos).sort(/*stable=*/true, 0, /*descending=*/true));
  const at::Tensor sel = pos.index_select(0, by_score);
  return {order.index_select(0, sel), decayed.index_select(0, sel).to(scores.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_outputs(const at::Tensor& boxes,
                                                                              const at::Tensor& scores,
                                                                              int64_t max_detections) {
  const int64_t batch = scores.size(0);
  return {at::zeros({batch, max_detections, 4}, boxes.options()), at::zeros({batch, max_detections}, scores.options()),
          at::full({batch, max_detections}, -1, scores.options().dtype(at::kLong)),
          at::zeros({batch}, scores.options().dtype(at::kLong))};
}

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  m.def("nms(Tensor boxes, Tensor scores, Tensor? idxs, float iou_threshold) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, Tensor? idxs, float iou_threshold, float sigma, "
      "float score_threshold, str method) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "matrix_nms(Tensor boxes, Tensor scores, Tensor? idxs, str kernel, float sigma, float score_threshold) "
      "-> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "multiclass_nms(Tensor boxes, Tensor scores, float score_threshold, float iou_threshold, int topk, "
      "int max_detections, bool class_agnostic) -> (Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

}  // namespace fastops::nms
