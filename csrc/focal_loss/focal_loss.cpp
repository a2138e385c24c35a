// Schema, input checks and the Tensor-level steps shared by the focal-loss kernels
// (focal_loss_cpu.cpp, focal_loss_cuda.cu). Python API, fake kernels, autograd:
// fastops/ops/focal_loss.py.
#include <cmath>

#include <ATen/core/Tensor.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include "focal_loss/focal_loss.h"

namespace fastops::focal_loss {
namespace {

bool is_float(c10::ScalarType t) { return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16; }

// A weight vector of `len`, as given (checked) or ones.
at::Tensor weight_or_ones(const char* op, const char* name, const std::optional<at::Tensor>& w,
                          at::IntArrayRef expected, const at::Tensor& inputs) {
  const auto opts = inputs.options().dtype(acc_type(inputs));
  if (!w.has_value()) return at::ones(expected, opts);
  TORCH_CHECK_TYPE(w->is_floating_point(), op, ": ", name, " must be floating point, got ", w->scalar_type());
  TORCH_CHECK_VALUE(w->sizes() == expected, op, ": ", name, " must have shape ", expected, ", got ", w->sizes());
  TORCH_CHECK(w->device() == inputs.device(), op, ": ", name, " must be on ", inputs.device(), ", got ", w->device());
  return w->to(opts).contiguous();
}

int64_t reduction_of(const char* op, int64_t reduction) {
  TORCH_CHECK_VALUE(reduction == kNone || reduction == kMean || reduction == kSum, op,
                    ": reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  return reduction;
}

// Shared checks of the logits and the targets; returns the row shape (inputs' leading dims).
std::vector<int64_t> check_inputs(const char* op, const at::Tensor& inputs, const at::Tensor& targets, double gamma,
                                  bool& index_targets) {
  TORCH_CHECK_TYPE(is_float(inputs.scalar_type()), op, ": inputs must be float16, bfloat16, float32 or float64, got ",
                   inputs.scalar_type());
  TORCH_CHECK_VALUE(std::isfinite(gamma) && gamma >= 0, op, ": gamma must be finite and >= 0, got ", gamma);
  TORCH_CHECK(targets.device() == inputs.device(), op, ": targets must be on ", inputs.device(), ", got ",
              targets.device());
  std::vector<int64_t> row_shape = inputs.sizes().vec();
  if (!row_shape.empty()) row_shape.pop_back();
  index_targets = !targets.is_floating_point();
  if (index_targets) {
    TORCH_CHECK_TYPE(targets.scalar_type() == at::kLong, op, ": class-index targets must be int64, got ",
                     targets.scalar_type());
    TORCH_CHECK_VALUE(inputs.dim() >= 1 && targets.sizes() == at::IntArrayRef(row_shape), op,
                      ": class-index targets must have the inputs' shape without its last (class) dimension, ",
                      at::IntArrayRef(row_shape), ", got ", targets.sizes());
  } else {
    TORCH_CHECK_VALUE(targets.sizes() == inputs.sizes(), op, ": dense targets must have the inputs' shape ",
                      inputs.sizes(), ", got ", targets.sizes());
  }
  return row_shape;
}

}  // namespace

c10::ScalarType acc_type(const at::Tensor& inputs) {
  return inputs.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

SigmoidArgs sigmoid_args(const Operands& o, const at::Tensor& x, const at::Tensor& t, const at::Tensor& cw,
                         const at::Tensor& pw, const at::Tensor& sw, double alpha, double gamma,
                         int64_t background_index, int64_t ignore_index) {
  return {x.const_data_ptr(),  x.scalar_type(),     t.const_data_ptr(),  o.index_targets, o.rows, o.classes,
          cw.const_data_ptr(), pw.const_data_ptr(), sw.const_data_ptr(), alpha,           gamma,  background_index,
          ignore_index,        o.weighted};
}

SoftmaxArgs softmax_args(const Operands& o, const at::Tensor& x, const at::Tensor& t, const at::Tensor& cw,
                         const at::Tensor& sw, double alpha, double gamma, int64_t ignore_index) {
  return {x.const_data_ptr(),
          x.scalar_type(),
          t.const_data_ptr<int64_t>(),
          o.rows,
          o.classes,
          cw.const_data_ptr(),
          sw.const_data_ptr(),
          alpha,
          gamma,
          ignore_index};
}

Operands prepare_sigmoid(const at::Tensor& inputs, const at::Tensor& targets,
                         const std::optional<at::Tensor>& class_weight, const std::optional<at::Tensor>& pos_weight,
                         const std::optional<at::Tensor>& sample_weight, double alpha, double gamma, int64_t reduction,
                         at::Tensor& x, at::Tensor& t, at::Tensor& cw, at::Tensor& pw, at::Tensor& sw) {
  const char* op = "sigmoid_focal_loss";
  Operands o;
  const std::vector<int64_t> row_shape = check_inputs(op, inputs, targets, gamma, o.index_targets);
  TORCH_CHECK_VALUE(!std::isnan(alpha) && alpha <= 1, op, ": alpha must be in [0, 1], or negative for none, got ",
                    alpha);
  o.reduction = static_cast<Reduction>(reduction_of(op, reduction));
  o.classes = inputs.dim() == 0 ? 1 : inputs.size(-1);
  o.rows = o.classes == 0 ? 0 : inputs.numel() / o.classes;
  x = inputs.contiguous();
  t = o.index_targets ? targets.contiguous() : targets.to(inputs.scalar_type()).contiguous();
  o.weighted = class_weight.has_value() || pos_weight.has_value() || sample_weight.has_value();
  cw = weight_or_ones(op, "class_weight", class_weight, {o.classes}, inputs);
  pw = weight_or_ones(op, "pos_weight", pos_weight, {o.classes}, inputs);
  sw = weight_or_ones(op, "sample_weight", sample_weight, row_shape, inputs);
  return o;
}

Operands prepare_softmax(const at::Tensor& inputs, const at::Tensor& targets,
                         const std::optional<at::Tensor>& class_weight, const std::optional<at::Tensor>& sample_weight,
                         double gamma, int64_t reduction, at::Tensor& x, at::Tensor& t, at::Tensor& cw,
                         at::Tensor& sw) {
  const char* op = "softmax_focal_loss";
  Operands o;
  TORCH_CHECK_VALUE(inputs.dim() >= 1 && inputs.size(-1) >= 1, op,
                    ": inputs must have shape [..., C] with C >= 1 classes, got ", inputs.sizes());
  const std::vector<int64_t> row_shape = check_inputs(op, inputs, targets, gamma, o.index_targets);
  TORCH_CHECK_TYPE(o.index_targets, op, ": targets must be int64 class indices, got ", targets.scalar_type());
  o.reduction = static_cast<Reduction>(reduction_of(op, reduction));
  o.classes = inputs.size(-1);
  o.rows = inputs.numel() / o.classes;
  x = inputs.contiguous();
  t = targets.contiguous();
  cw = weight_or_ones(op, "class_weight", class_weight, {o.classes}, inputs);
  sw = weight_or_ones(op, "sample_weight", sample_weight, row_shape, inputs);
  return o;
}

at::Tensor mean_count(const Operands& o, const at::Tensor& t, int64_t ignore_index, bool per_element) {
  const int64_t per_row = per_element ? o.classes : 1;
  if (!o.index_targets) return at::scalar_tensor(static_cast<double>(o.rows * per_row), t.options().dtype(at::kDouble));
  return t.ne(ignore_index).sum().to(at::kDouble).mul(static_cast<double>(per_row));
}

at::Tensor finish_reduction(const at::Tensor& row_sums, const Operands& o, const at::Tensor& t, int64_t ignore_index,
                            bool per_element, c10::ScalarType dtype) {
  at::Tensor total = row_sums.sum();
  if (o.reduction == kMean) total = total.div(mean_count(o, t, ignore_index, per_element));
  return total.to(dtype);
}

at::Tensor upstream_grad(const char* op, const at::Tensor& grad, const Operands& o, const at::Tensor& t,
                         int64_t ignore_index, bool per_element, at::IntArrayRef shape, c10::ScalarType acc) {
  if (o.reduction == kNone) {
    TORCH_CHECK_VALUE(grad.sizes() == shape, op, ": grad must have shape ", shape, ", got ", grad.sizes());
    return grad.to(acc).contiguous();
  }
  at::Tensor g = grad.to(at::kDouble).reshape({1});
  if (o.reduction == kMean) g = g.div(mean_count(o, t, ignore_index, per_element));
  return g.to(acc).contiguous();
}

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  m.def(
      "sigmoid_focal_loss(Tensor inputs, Tensor targets, Tensor? class_weight, Tensor? pos_weight, "
      "Tensor? sample_weight, float alpha, float gamma, int reduction, int background_index, int ignore_index) "
      "-> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "sigmoid_focal_loss_backward(Tensor grad, Tensor inputs, Tensor targets, Tensor? class_weight, "
      "Tensor? pos_weight, Tensor? sample_weight, float alpha, float gamma, int reduction, int background_index, "
      "int ignore_index) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "softmax_focal_loss(Tensor inputs, Tensor targets, Tensor? class_weight, Tensor? sample_weight, float alpha, "
      "float gamma, int reduction, int ignore_index) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "softmax_focal_loss_backward(Tensor grad, Tensor inputs, Tensor targets, Tensor? class_weight, "
      "Tensor? sample_weight, float alpha, float gamma, int reduction, int ignore_index) -> Tensor",
      {at::Tag::pt2_compliant_tag});
}

}  // namespace fastops::focal_loss
