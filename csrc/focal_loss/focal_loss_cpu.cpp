// CPU implementation of the focal-loss ops at the Tensor level: the shared preparation
// (focal_loss.cpp), then the raw loops of focal_loss_cpu_kernel.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/cpu_alloc.h"
#include "focal_loss/focal_loss.h"

namespace fastops::focal_loss {

constinit cpu::KernelTable<SigmoidForwardFn> sigmoid_forward_cpu{};
constinit cpu::KernelTable<SigmoidBackwardFn> sigmoid_backward_cpu{};
constinit cpu::KernelTable<SoftmaxForwardFn> softmax_forward_cpu{};
constinit cpu::KernelTable<SoftmaxBackwardFn> softmax_backward_cpu{};

namespace {

at::Tensor sigmoid_focal_loss_cpu(const at::Tensor& inputs, const at::Tensor& targets,
                                  const std::optional<at::Tensor>& class_weight,
                                  const std::optional<at::Tensor>& pos_weight,
                                  const std::optional<at::Tensor>& sample_weight, double alpha, double gamma,
                                  int64_t reduction, int64_t background_index, int64_t ignore_index) {
  at::Tensor x, t, cw, pw, sw;
  const Operands o = prepare_sigmoid(inputs, targets, class_weight, pos_weight, sample_weight, alpha, gamma, reduction,
                                     x, t, cw, pw, sw);
  const SigmoidArgs args = sigmoid_args(o, x, t, cw, pw, sw, alpha, gamma, background_index, ignore_index);
  if (o.reduction == kNone) {
    at::Tensor out = cpu::cached_output(inputs.sizes(), x.options());
    if (out.numel() > 0) sigmoid_forward_cpu.get()(args, out.mutable_data_ptr(), nullptr);
    return out;
  }
  at::Tensor row_sums = at::empty({o.rows}, x.options().dtype(at::kDouble));
  if (o.rows > 0) sigmoid_forward_cpu.get()(args, nullptr, row_sums.mutable_data_ptr<double>());
  return finish_reduction(row_sums, o, t, ignore_index, /*per_element=*/true, x.scalar_type());
}

at::Tensor sigmoid_focal_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& inputs, const at::Tensor& targets,
                                           const std::optional<at::Tensor>& class_weight,
                                           const std::optional<at::Tensor>& pos_weight,
                                           const std::optional<at::Tensor>& sample_weight, double alpha, double gamma,
                                           int64_t reduction, int64_t background_index, int64_t ignore_index) {
  at::Tensor x, t, cw, pw, sw;
  const Operands o = prepare_sigmoid(inputs, targets, class_weight, pos_weight, sample_weight, alpha, gamma, reduction,
                                     x, t, cw, pw, sw);
  at::Tensor grad_input = cpu::cached_output(inputs.sizes(), x.options());
  if (grad_input.numel() == 0) return grad_input;
  const SigmoidArgs args = sigmoid_args(o, x, t, cw, pw, sw, alpha, gamma, background_index, ignore_index);
  const at::Tensor g = upstream_grad("sigmoid_focal_loss_backward", grad, o, t, ignore_index, /*per_element=*/true,
                                     inputs.sizes(), acc_type(x));
  const bool elementwise = o.reduction == kNone;
  sigmoid_backward_cpu.get()(args, elementwise ? g.const_data_ptr() : nullptr,
                             elementwise ? nullptr : g.const_data_ptr(), grad_input.mutable_data_ptr());
  return grad_input;
}

at::Tensor softmax_focal_loss_cpu(const at::Tensor& inputs, const at::Tensor& targets,
                                  const std::optional<at::Tensor>& class_weight,
                                  const std::optional<at::Tensor>& sample_weight, double alpha, double gamma,
                                  int64_t reduction, int64_t ignore_index) {
  at::Tensor x, t, cw, sw;
  const Operands o = prepare_softmax(inputs, targets, class_weight, sample_weight, gamma, reduction, x, t, cw, sw);
  at::Tensor row_loss = at::empty({o.rows}, x.options().dtype(at::kDouble));
  if (o.rows > 0)
    softmax_forward_cpu.get()(softmax_args(o, x, t, cw, sw, alpha, gamma, ignore_index),
                              row_loss.mutable_data_ptr<double>());
  if (o.reduction == kNone) return row_loss.to(x.scalar_type()).reshape(targets.sizes());
  return finish_reduction(row_loss, o, t, ignore_index, /*per_element=*/false, x.scalar_type());
}

at::Tensor softmax_focal_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& inputs, const at::Tensor& targets,
                                           const std::optional<at::Tensor>& class_weight,
                                           const std::optional<at::Tensor>& sample_weight, double alpha, double gamma,
                                           int64_t reduction, int64_t ignore_index) {
  at::Tensor x, t, cw, sw;
  const Operands o = prepare_softmax(inputs, targets, class_weight, sample_weight, gamma, reduction, x, t, cw, sw);
  at::Tensor grad_input = cpu::cached_output(inputs.sizes(), x.options());
  if (grad_input.numel() == 0) return grad_input;
  const SoftmaxArgs args = softmax_args(o, x, t, cw, sw, alpha, gamma, ignore_index);
  const at::Tensor g = upstream_grad("softmax_focal_loss_backward", grad, o, t, ignore_index, /*per_element=*/false,
                                     targets.sizes(), acc_type(x));
  const bool elementwise = o.reduction == kNone;
  softmax_backward_cpu.get()(args, elementwise ? g.const_data_ptr() : nullptr,
                             elementwise ? nullptr : g.const_data_ptr(), grad_input.mutable_data_ptr());
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) {
  m.impl("sigmoid_focal_loss", &sigmoid_focal_loss_cpu);
  m.impl("sigmoid_focal_loss_backward", &sigmoid_focal_loss_backward_cpu);
  m.impl("softmax_focal_loss", &softmax_focal_loss_cpu);
  m.impl("softmax_focal_loss_backward", &softmax_focal_loss_backward_cpu);
}

}  // namespace fastops::focal_loss
