// The focal-loss ops: declarations shared by the schema file (focal_loss.cpp), the CPU op
// (focal_loss_cpu.cpp), its raw loops (focal_loss_cpu_kernel.cpp) and the CUDA op (focal_loss_cuda.cu).
//
//   fastops::sigmoid_focal_loss(inputs, targets, class_weight?, pos_weight?, sample_weight?,
//       alpha, gamma, reduction, background_index, ignore_index) -> loss      (+ _backward)
//   fastops::softmax_focal_loss(inputs, targets, class_weight?, sample_weight?, alpha, gamma,
//       reduction, ignore_index) -> loss                                     (+ _backward)
//
// inputs are [..., C] logits (C = the last dimension); rows = the leading elements. Targets are
// dense (inputs' shape and dtype, values in [0, 1]) or class indices ([...], int64). reduction:
// 0 none, 1 mean, 2 sum (torch's numbering).
#pragma once

#include <cstdint>
#include <optional>

#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

#include "common/cpu_dispatch.h"
#include "focal_loss/focal_loss_math.h"

namespace at {
class Tensor;
}

namespace fastops::focal_loss {

enum Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2 };

// ---- Tensor-level preparation shared by every backend (focal_loss.cpp) ----

// Checked, contiguous operands: weights in the accumulation type (float, double for double
// inputs), filled with ones where not given; targets int64 when they are indices.
struct Operands {
  int64_t rows = 0, classes = 0;
  bool index_targets = false;
  bool weighted = true;  // a class, positive or sample weight was given
  Reduction reduction = kNone;
};
Operands prepare_sigmoid(const at::Tensor& inputs, const at::Tensor& targets,
                         const std::optional<at::Tensor>& class_weight, const std::optional<at::Tensor>& pos_weight,
                         const std::optional<at::Tensor>& sample_weight, double alpha, double gamma, int64_t reduction,
                         at::Tensor& x, at::Tensor& t, at::Tensor& cw, at::Tensor& pw, at::Tensor& sw);
Operands prepare_softmax(const at::Tensor& inputs, const at::Tensor& targets,
                         const std::optional<at::Tensor>& class_weight, const std::optional<at::Tensor>& sample_weight,
                         double gamma, int64_t reduction, at::Tensor& x, at::Tensor& t, at::Tensor& cw, at::Tensor& sw);
// Number of terms a mean divides by, as a tensor on the inputs' device (no host sync):
// elements (sigmoid) or rows (softmax) whose index target is not ignore_index.
at::Tensor mean_count(const Operands& o, const at::Tensor& t, int64_t ignore_index, bool per_element);
// The reduced loss from per-row sums (double): sum, or sum / count; in the inputs' dtype.
at::Tensor finish_reduction(const at::Tensor& row_sums, const Operands& o, const at::Tensor& t, int64_t ignore_index,
                            bool per_element, c10::ScalarType dtype);
// The upstream gradient as the backward kernels read it, in the accumulation type: elementwise
// (reduction none; checked to have `shape`), or for a reduced loss a 1-element scale, grad or
// grad / count.
at::Tensor upstream_grad(const char* op, const at::Tensor& grad, const Operands& o, const at::Tensor& t,
                         int64_t ignore_index, bool per_element, c10::IntArrayRef shape, c10::ScalarType acc);

// ---- raw kernels' arguments; the CPU loops (focal_loss_cpu_kernel.cpp) are compiled once per
// instruction set, the CUDA kernels take the same structs ----

struct SigmoidArgs {
  const void* inputs;
  c10::ScalarType dtype;
  const void* targets;  // dense: inputs' dtype; index: int64 [rows]
  bool index_targets;
  int64_t rows, classes;
  const void* class_weight;   // [C], accumulation type
  const void* pos_weight;     // [C], accumulation type
  const void* sample_weight;  // [rows], accumulation type
  double alpha, gamma;
  int64_t background_index, ignore_index;
  // false: the three weights are all ones (none given), and the CPU loop skips them (the same
  // bits: a product with 1 is exact).
  bool weighted;
};
// Forward: writes per-element losses to `out` (inputs' dtype) when it is not null, and each row's
// loss sum (double) to row_sums when that is not null.
using SigmoidForwardFn = void(const SigmoidArgs&, void* out, double* row_sums);
// Backward: d loss / d inputs into grad_input (inputs' dtype); the upstream gradient is
// grad_elementwise ([rows, C], accumulation type) or, when that is null, *grad_scale.
using SigmoidBackwardFn = void(const SigmoidArgs&, const void* grad_elementwise, const void* grad_scale,
                               void* grad_input);

struct SoftmaxArgs {
  const void* inputs;
  c10::ScalarType dtype;
  const int64_t* targets;  // [rows]
  int64_t rows, classes;
  const void* class_weight;   // [C]
  const void* sample_weight;  // [rows]
  double alpha, gamma;
  int64_t ignore_index;
};
// Forward: each row's loss (double) into row_loss.
using SoftmaxForwardFn = void(const SoftmaxArgs&, double* row_loss);
// Backward: upstream gradient per row (grad_rows, [rows], accumulation type) or *grad_scale.
using SoftmaxBackwardFn = void(const SoftmaxArgs&, const void* grad_rows, const void* grad_scale, void* grad_input);

// The structs for prepared operands (focal_loss.cpp).
c10::ScalarType acc_type(const at::Tensor& inputs);
SigmoidArgs sigmoid_args(const Operands& o, const at::Tensor& x, const at::Tensor& t, const at::Tensor& cw,
                         const at::Tensor& pw, const at::Tensor& sw, double alpha, double gamma,
                         int64_t background_index, int64_t ignore_index);
SoftmaxArgs softmax_args(const Operands& o, const at::Tensor& x, const at::Tensor& t, const at::Tensor& cw,
                         const at::Tensor& sw, double alpha, double gamma, int64_t ignore_index);

extern cpu::KernelTable<SigmoidForwardFn> sigmoid_forward_cpu;
extern cpu::KernelTable<SigmoidBackwardFn> sigmoid_backward_cpu;
extern cpu::KernelTable<SoftmaxForwardFn> softmax_forward_cpu;
extern cpu::KernelTable<SoftmaxBackwardFn> softmax_backward_cpu;

}  // namespace fastops::focal_loss
