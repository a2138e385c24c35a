// CPU implementation of the IoU-family ops at the Tensor level: checks, allocation, and a call into
// the raw loops of box_iou_cpu_kernel.cpp (the copy for the best instruction set available).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "box_iou/box_iou.h"

namespace fastops::box_iou {

constinit cpu::KernelTable<OverlapForwardFn> pairwise_forward_cpu{};
constinit cpu::KernelTable<OverlapBackwardFn> pairwise_backward_cpu{};
constinit cpu::KernelTable<OverlapForwardFn> aligned_forward_cpu{};
constinit cpu::KernelTable<OverlapBackwardFn> aligned_backward_cpu{};

namespace {

OverlapKernelArgs kernel_args(const OverlapProblem& p, const at::Tensor& b1, const at::Tensor& b2) {
  return {b1.const_data_ptr(), b2.const_data_ptr(), b1.scalar_type(), p.batch, p.n, p.m,
          p.mode, p.fmt, p.eps, p.loss_form};
}

at::Tensor box_overlap_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view mode,
                           std::string_view fmt, bool aligned, double eps, bool loss_form) {
  const OverlapProblem p = check_overlap_args(boxes1, boxes2, mode, fmt, aligned, eps, loss_form);
  const at::Tensor b1 = boxes1.contiguous(), b2 = boxes2.contiguous();
  at::Tensor out = at::empty(p.out_sizes, b1.options().dtype(p.out_dtype));
  if (out.numel() == 0) return out;
  const auto& table = aligned ? aligned_forward_cpu : pairwise_forward_cpu;
  table.get()(kernel_args(p, b1, b2), out.mutable_data_ptr());
  return out;
}

std::tuple<at::Tensor, at::Tensor> box_overlap_backward_cpu(const at::Tensor& grad, const at::Tensor& boxes1,
                                                            const at::Tensor& boxes2, std::string_view mode,
                                                            std::string_view fmt, bool aligned, double eps,
                                                            bool loss_form) {
  const OverlapProblem p = check_overlap_args(boxes1, boxes2, mode, fmt, aligned, eps, loss_form);
  check_overlap_grad(grad, p);
  TORCH_CHECK(grad.device() == boxes1.device(), "box_overlap_backward: grad must be on ", boxes1.device(),
              ", got ", grad.device());
  const at::Tensor b1 = boxes1.contiguous(), b2 = boxes2.contiguous();
  const at::Tensor g = grad.to(p.out_dtype).contiguous();
  if (g.numel() == 0) return {at::zeros(b1.sizes(), b1.options()), at::zeros(b2.sizes(), b2.options())};
  // Every element is written below: with no pairs we returned above, and otherwise each box has
  // at least one pair.
  at::Tensor grad1 = at::empty(b1.sizes(), b1.options());
  at::Tensor grad2 = at::empty(b2.sizes(), b2.options());
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
