// The NMS ops: declarations shared by the schema file (nms.cpp), the CPU op (nms_cpu.cpp), its raw
// loops (nms_cpu_kernel.cpp) and the CUDA op (nms_cuda.cu).
//
//   fastops::nms(boxes, scores, idxs?, iou_threshold) -> keep                  (plain and batched)
//   fastops::soft_nms(boxes, scores, idxs?, iou_threshold, sigma, score_threshold, method)
//       -> (keep, scores)
//   fastops::matrix_nms(boxes, scores, idxs?, kernel, sigma, score_threshold) -> (keep, scores)
//   fastops::multiclass_nms(boxes, scores, score_threshold, iou_threshold, topk, max_detections,
//       class_agnostic) -> (boxes, scores, labels, num_detections)              (padded, per image)
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>

#include <c10/core/ScalarType.h>

#include "common/cpu_dispatch.h"
#include "nms/nms_math.h"

namespace at {
class Tensor;
}

namespace fastops::nms {

// ---- checks (nms.cpp), shared by every backend; they raise naming the argument ----
void check_boxes_scores(const char* op, const at::Tensor& boxes, const at::Tensor& scores,
                        const std::optional<at::Tensor>& idxs);
void check_iou_threshold(const char* op, double iou_threshold);
// All of soft_nms's / matrix_nms's checks; return the parsed method / kernel.
SoftMethod check_soft_args(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                           double iou_threshold, double sigma, double score_threshold, std::string_view method);
MatrixKernel check_matrix_args(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                               double sigma, double score_threshold, std::string_view kernel);
// multiclass_nms: boxes [B, N, 4] or [B, N, C, 4], scores [B, N, C]; returns whether boxes are
// per class.
bool check_multiclass_args(const at::Tensor& boxes, const at::Tensor& scores, double score_threshold,
                           double iou_threshold, int64_t topk, int64_t max_detections);
// Sort keys with NaN scores placed as -inf (below every number).
at::Tensor nan_as_lowest(const at::Tensor& scores);

// Tensor-level steps shared by the CPU and CUDA ops (nms.cpp):
// Matrix NMS after its kernel: the scores of the boxes visited in `order` times their decay, kept
// where >= score_threshold (NaN never), sorted by decayed score (stable). Returns (keep, scores).
std::tuple<at::Tensor, at::Tensor> matrix_nms_select(const at::Tensor& order, const at::Tensor& scores,
                                                     const at::Tensor& decay, double score_threshold);
// multiclass_nms outputs filled with padding: boxes 0, scores 0, labels -1, num_detections 0.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_outputs(const at::Tensor& boxes,
                                                                              const at::Tensor& scores,
                                                                              int64_t max_detections);

// ---- raw CPU loops (nms_cpu_kernel.cpp, one copy per instruction set) ----

// Greedy NMS over boxes visited in `order` (n positions). Positions with equal group[] form one
// class; each class is a contiguous run of positions, in decreasing score order within it.
// Writes keep_by_rank[rank[p]] = 1 for each kept position p (rank: the position's place in the
// global score order; nullptr means rank[p] = p). keep_by_rank is zeroed by the caller.
struct GreedyArgs {
  const void* boxes;
  c10::ScalarType dtype;
  int64_t n;
  const int64_t* order;
  const int64_t* rank;   // may be null
  const int64_t* group;  // may be null: one class
  double iou_threshold;
  uint8_t* keep_by_rank;
};
using GreedyFn = void(const GreedyArgs&);

// Soft-NMS on n boxes: selects the highest current score (ties: lowest index), decays the others
// of its class, drops those falling below score_threshold. Writes the selected indices and their
// scores at selection (in `dtype`'s accumulation type: float or double) and returns how many.
struct SoftArgs {
  const void* boxes;
  c10::ScalarType dtype;
  const void* scores;   // same accumulation type as the boxes: float (float16/bfloat16/float32) or double
  const int64_t* idxs;  // may be null
  int64_t n;
  double iou_threshold, sigma, score_threshold;
  SoftMethod method;
  int64_t* keep;
  void* keep_scores;
};
using SoftFn = int64_t(const SoftArgs&);

// Matrix NMS on n boxes visited in `order` (decreasing score, stable): writes each position's decay
// factor (accumulation type) into decay[p].
struct MatrixArgs {
  const void* boxes;
  c10::ScalarType dtype;
  int64_t n;
  const int64_t* order;
  const int64_t* group;  // class per position, may be null
  MatrixKernel kernel;
  double sigma;
  void* decay;
};
using MatrixFn = void(const MatrixArgs&);

// Detector post-processing, per image: candidates with score > score_threshold, the topk best,
// class-aware (or agnostic) NMS, the first max_detections kept written in decreasing score order.
// Outputs are preallocated and filled with padding by the caller.
struct MulticlassArgs {
  const void* boxes;
  const void* scores;
  c10::ScalarType dtype;  // boxes and scores share it
  int64_t batch, n, classes;
  bool per_class_boxes;
  double score_threshold, iou_threshold;
  int64_t topk, max_detections;
  bool class_agnostic;
  void* out_boxes;   // [B, D, 4], dtype
  void* out_scores;  // [B, D], dtype
  int64_t* out_labels;
  int64_t* out_num;
};
using MulticlassFn = void(const MulticlassArgs&);

extern cpu::KernelTable<GreedyFn> greedy_cpu;
extern cpu::KernelTable<SoftFn> soft_cpu;
extern cpu::KernelTable<MatrixFn> matrix_cpu;
extern cpu::KernelTable<MulticlassFn> multiclass_cpu;

}  // namespace fastops::nms
