// CPU implementation of the IoU-family ops at the Tensor level: checks, allocation, and a call into
// the raw loops of box_iou_cpu_kernel.cpp (the copy for the best instruction set available).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "box_iou/box_iou.h"

namespace fastops::box_iou {

constinit cpu::KernelTable<OverlapForwardFn> pairwise_forward_cpu{};
constinit cpu::KernelTable<OverlapBackwardFn> pairwise_backward_cpu{};
constinit cpu::KernelTable<OverlapForwardFn> aligned_forward_cpu{};
constinit cpu::KernelTable<OverlapBackwardFn> aligned_backward_cpu{};

namespace {

OverlapKernelArgs kernel_args(const OverlapProblem& p, const at::Tensor& b1, const at::Tensor& b2) {
  return {b1.const_data_ptr(), b2.const_data_ptr(), b1.scalar_type(), p.batch, p.n, p.m, p.mode, p.fmt, p.eps,
          p.loss_form};
}

at::Tensor box_overlap_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view mode,
                           std::string_view fmt, bool aligned, double eps, bool loss_form) {
  at::Tensor b1, b2, out;
  const OverlapProblem p = prepare_forward(boxes1, boxes2, mode, fmt, aligned, eps, loss_form, b1, b2, out);
  if (out.numel() == 0) return out;
  const auto& table = aligned ? aligned_forward_cpu : pairwise_forward_cpu;
  table.get()(kernel_args(p, b1, b2), out.mutable_data_ptr());
  return out;
}

std::tuple<at::Tensor, at::Tensor> box_overlap_backward_cpu(const at::Tensor& grad, const at::Tensor& boxes1,
                                                            const at::Tensor& boxes2, std::string_view mode,
                                                            std::string_view fmt, bool aligned, double eps,
                                                            bool loss_form) {
  at::Tensor b1, b2, g, grad1, grad2;
  const OverlapProblem p =
      prepare_backward(grad, boxes1, boxes2, mode, fmt, aligned, eps, loss_form, b1, b2, g, grad1, grad2);
  if (g.numel() == 0) return {grad1, grad2};
  const auto& table = aligned ? aligned_backward_cpu : pairwise_backward_cpu;
  table.get()(kernel_args(p, b1, b2), g.const_data_ptr(), grad1.mutable_data_ptr(), grad2.mutable_data_ptr());
  return {grad1, grad2};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) {
  m.impl("box_overlap", &box_overlap_cpu);
  m.impl("box_overlap_backward", &box_overlap_backward_cpu);
}

}  // namespace fastops::box_iou
