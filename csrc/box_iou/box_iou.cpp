// Schema and input checks of the IoU-family ops. Kernels: box_iou_cpu.cpp, box_iou_cuda.cu.
// Python API, fake kernels and autograd: fastops/ops/box_iou.py.
#include <cmath>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "box_iou/box_iou.h"
#include "common/cpu_alloc.h"

namespace fastops::box_iou {
namespace {

Mode parse_mode(std::string_view s) {
  if (s == "iou") return Mode::IoU;
  if (s == "giou") return Mode::GIoU;
  if (s == "diou") return Mode::DIoU;
  if (s == "ciou") return Mode::CIoU;
  if (s == "iof") return Mode::IoF;
  TORCH_CHECK_VALUE(false, "box_overlap: mode must be one of 'iou', 'giou', 'diou', 'ciou', 'iof'; got '", s, "'");
}

Format parse_fmt(std::string_view s) {
  if (s == "xyxy") return Format::XYXY;
  if (s == "xywh") return Format::XYWH;
  if (s == "cxcywh") return Format::CXCYWH;
  TORCH_CHECK_VALUE(false, "box_overlap: fmt must be one of 'xyxy', 'xywh', 'cxcywh'; got '", s, "'");
}

void check_box_tensor(const at::Tensor& t, const char* name, bool aligned) {
  const auto dt = t.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16,
                   "box_overlap: ", name, " must be float16, bfloat16, float32 or float64, got ", dt);
  TORCH_CHECK_VALUE(t.dim() >= (aligned ? 1 : 2) && t.size(-1) == 4, "box_overlap: ", name,
                    aligned ? " must have shape [..., 4]" : " must have shape [..., N, 4]", ", got ", t.sizes());
}

}  // namespace

OverlapProblem check_overlap_args(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view mode,
                                  std::string_view fmt, bool aligned, double eps, bool loss_form) {
  OverlapProblem p;
  p.mode = parse_mode(mode);
  p.fmt = parse_fmt(fmt);
  p.aligned = aligned;
  p.loss_form = loss_form;
  p.eps = eps;
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "box_overlap: eps must be finite and >= 0, got ", eps);
  check_box_tensor(boxes1, "boxes1", aligned);
  check_box_tensor(boxes2, "boxes2", aligned);
  TORCH_CHECK_TYPE(boxes1.scalar_type() == boxes2.scalar_type(),
                   "box_overlap: boxes1 and boxes2 must have the same dtype, got ", boxes1.scalar_type(), " and ",
                   boxes2.scalar_type());
  TORCH_CHECK(boxes1.device() == boxes2.device(), "box_overlap: boxes1 and boxes2 must be on the same device, got ",
              boxes1.device(), " and ", boxes2.device());
  p.out_dtype = boxes1.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (aligned) {
    TORCH_CHECK_VALUE(boxes1.sizes() == boxes2.sizes(),
                      "box_overlap: aligned boxes1 and boxes2 must have the same shape, got ", boxes1.sizes(), " and ",
                      boxes2.sizes());
    p.batch = 1;
    p.n = p.m = boxes1.numel() / 4;
    p.out_sizes = boxes1.sizes().vec();
    p.out_sizes.pop_back();
  } else {
    const auto lead1 = boxes1.sizes().slice(0, boxes1.dim() - 2);
    const auto lead2 = boxes2.sizes().slice(0, boxes2.dim() - 2);
    TORCH_CHECK_VALUE(lead1 == lead2,
                      "box_overlap: boxes1 [..., N, 4] and boxes2 [..., M, 4] must have the same leading "
                      "dimensions, got ",
                      boxes1.sizes(), " and ", boxes2.sizes());
    p.batch = 1;
    for (auto s : lead1) p.batch *= s;
    p.n = boxes1.size(-2);
    p.m = boxes2.size(-2);
    p.out_sizes = lead1.vec();
    p.out_sizes.push_back(p.n);
    p.out_sizes.push_back(p.m);
  }
  return p;
}

OverlapProblem prepare_forward(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view mode,
                               std::string_view fmt, bool aligned, double eps, bool loss_form, at::Tensor& b1,
                               at::Tensor& b2, at::Tensor& out) {
  OverlapProblem p = check_overlap_args(boxes1, boxes2, mode, fmt, aligned, eps, loss_form);
  b1 = boxes1.contiguous();
  b2 = boxes2.contiguous();
  out = cpu::cached_output(p.out_sizes, b1.options().dtype(p.out_dtype));
  return p;
}

OverlapProblem prepare_backward(const at::Tensor& grad, const at::Tensor& boxes1, const at::Tensor& boxes2,
                                std::string_view mode, std::string_view fmt, bool aligned, double eps, bool loss_form,
                                at::Tensor& b1, at::Tensor& b2, at::Tensor& g, at::Tensor& grad1, at::Tensor& grad2) {
  OverlapProblem p = check_overlap_args(boxes1, boxes2, mode, fmt, aligned, eps, loss_form);
  TORCH_CHECK_VALUE(grad.sizes() == at::IntArrayRef(p.out_sizes), "box_overlap_backward: grad must have shape ",
                    at::IntArrayRef(p.out_sizes), ", got ", grad.sizes());
  TORCH_CHECK_TYPE(grad.is_floating_point(), "box_overlap_backward: grad must be floating point, got ",
                   grad.scalar_type());
  TORCH_CHECK(grad.device() == boxes1.device(), "box_overlap_backward: grad must be on ", boxes1.device(), ", got ",
              grad.device());
  b1 = boxes1.contiguous();
  b2 = boxes2.contiguous();
  g = grad.to(p.out_dtype).contiguous();
  if (g.numel() == 0) {
    grad1 = at::zeros(b1.sizes(), b1.options());
    grad2 = at::zeros(b2.sizes(), b2.options());
  } else {  // every box has at least one pair, so the kernels write every element
    grad1 = at::empty(b1.sizes(), b1.options());
    grad2 = at::empty(b2.sizes(), b2.options());
  }
  return p;
}

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  m.def(
      "box_overlap(Tensor boxes1, Tensor boxes2, str mode, str fmt, bool aligned, float eps, "
      "bool loss_form) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "box_overlap_backward(Tensor grad, Tensor boxes1, Tensor boxes2, str mode, str fmt, "
      "bool aligned, float eps, bool loss_form) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

}  // namespace fastops::box_iou
