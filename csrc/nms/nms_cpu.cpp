// CPU implementation of the NMS ops at the Tensor level: checks, sorting (ATen's stable sort),
// and calls into the raw loops of nms_cpu_kernel.cpp.
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "nms/nms.h"

namespace fastops::nms {

constinit cpu::KernelTable<GreedyFn> greedy_cpu{};
constinit cpu::KernelTable<SoftFn> soft_cpu{};
constinit cpu::KernelTable<MatrixFn> matrix_cpu{};
constinit cpu::KernelTable<MulticlassFn> multiclass_cpu{};

namespace {

at::ScalarType acc_dtype(const at::Tensor& boxes) {
  return boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// Positions of the boxes in decreasing score order; equal scores keep index order (a stable
// sort, as torchvision's); NaN scores rank last.
at::Tensor score_order(const at::Tensor& scores) {
  return std::get<1>(nan_as_lowest(scores).sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
}

at::Tensor empty_keep(const at::Tensor& boxes) { return at::empty({0}, boxes.options().dtype(at::kLong)); }

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                   double iou_threshold) {
  check_boxes_scores("nms", boxes, scores, idxs);
  check_iou_threshold("nms", iou_threshold);
  const int64_t n = boxes.size(0);
  if (n == 0) return empty_keep(boxes);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor order1 = score_order(scores);
  at::Tensor order = order1, rank, group;
  if (idxs.has_value()) {  // group by class (stable: each class stays in score order)
    auto [sorted_classes, order2] = idxs->to(at::kLong).index_select(0, order1).sort(/*stable=*/true, 0, false);
    order = order1.index_select(0, order2);
    rank = order2;
    group = sorted_classes;
  }
  at::Tensor keep_by_rank = at::zeros({n}, boxes.options().dtype(at::kByte));
  greedy_cpu.get()({b.const_data_ptr(), b.scalar_type(), n, order.const_data_ptr<int64_t>(),
                    rank.defined() ? rank.const_data_ptr<int64_t>() : nullptr,
                    group.defined() ? group.const_data_ptr<int64_t>() : nullptr, iou_threshold,
                    keep_by_rank.mutable_data_ptr<uint8_t>()});
  return order1.masked_select(keep_by_rank.to(at::kBool));
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                const std::optional<at::Tensor>& idxs, double iou_threshold,
                                                double sigma, double score_threshold, std::string_view method) {
  const SoftMethod m = check_soft_args(boxes, scores, idxs, iou_threshold, sigma, score_threshold, method);
  const int64_t n = boxes.size(0);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor s = scores.to(acc_dtype(boxes)).contiguous();
  const at::Tensor classes = idxs.has_value() ? idxs->to(at::kLong).contiguous() : at::Tensor();
  at::Tensor keep = at::empty({n}, boxes.options().dtype(at::kLong));
  at::Tensor keep_scores = at::empty({n}, s.options());
  const int64_t count =
      n == 0 ? 0
             : soft_cpu.get()({b.const_data_ptr(), b.scalar_type(), s.const_data_ptr(),
                               classes.defined() ? classes.const_data_ptr<int64_t>() : nullptr, n, iou_threshold, sigma,
                               score_threshold, m, keep.mutable_data_ptr<int64_t>(), keep_scores.mutable_data_ptr()});
  return {keep.slice(0, 0, count), keep_scores.slice(0, 0, count).to(scores.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor> matrix_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                  const std::optional<at::Tensor>& idxs, std::string_view kernel,
                                                  double sigma, double score_threshold) {
  const MatrixKernel k = check_matrix_args(boxes, scores, idxs, sigma, score_threshold, kernel);
  const int64_t n = boxes.size(0);
  if (n == 0) return {empty_keep(boxes), at::empty({0}, scores.options())};
  const at::Tensor b = boxes.contiguous();
  const at::Tensor order = score_order(scores);
  const at::Tensor group = idxs.has_value() ? idxs->to(at::kLong).index_select(0, order) : at::Tensor();
  at::Tensor decay = at::empty({n}, boxes.options().dtype(acc_dtype(boxes)));
  matrix_cpu.get()({b.const_data_ptr(), b.scalar_type(), n, order.const_data_ptr<int64_t>(),
                    group.defined() ? group.const_data_ptr<int64_t>() : nullptr, k, sigma, decay.mutable_data_ptr()});
  return matrix_nms_select(order, scores, decay, score_threshold);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cpu(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold, int64_t topk,
    int64_t max_detections, bool class_agnostic) {
  const bool per_class = check_multiclass_args(boxes, scores, score_threshold, iou_threshold, topk, max_detections);
  const int64_t batch = scores.size(0), n = scores.size(1), classes = scores.size(2);
  auto [out_boxes, out_scores, out_labels, out_num] = multiclass_outputs(boxes, scores, max_detections);
  if (batch == 0 || n == 0 || classes == 0) return {out_boxes, out_scores, out_labels, out_num};
  const at::Tensor b = boxes.contiguous(), s = scores.contiguous();
  multiclass_cpu.get()({b.const_data_ptr(), s.const_data_ptr(), s.scalar_type(), batch, n, classes, per_class,
                        score_threshold, iou_threshold, topk, max_detections, class_agnostic,
                        out_boxes.mutable_data_ptr(), out_scores.mutable_data_ptr(),
                        out_labels.mutable_data_ptr<int64_t>(), out_num.mutable_data_ptr<int64_t>()});
  return {out_boxes, out_scores, out_labels, out_num};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) {
  m.impl("nms", &nms_cpu);
  m.impl("soft_nms", &soft_nms_cpu);
  m.impl("matrix_nms", &matrix_nms_cpu);
  m.impl("multiclass_nms", &multiclass_nms_cpu);
}

}  // namespace fastops::nms
