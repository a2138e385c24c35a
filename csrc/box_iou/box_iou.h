// The IoU-family ops: declarations shared by the schema file (box_iou.cpp), the CPU op
// (box_iou_cpu.cpp), its raw loops (box_iou_cpu_kernel.cpp) and the CUDA op (box_iou_cuda.cu).
//
//   fastops::box_overlap(boxes1, boxes2, mode, fmt, aligned, eps, loss_form) -> Tensor
//   fastops::box_overlap_backward(grad, boxes1, boxes2, mode, fmt, aligned, eps, loss_form)
//       -> (grad_boxes1, grad_boxes2)
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>
#include <vector>

#include <c10/core/ScalarType.h>

#include "box_iou/box_iou_math.h"
#include "common/cpu_dispatch.h"

namespace at {
class Tensor;
}

namespace fastops::box_iou {

// What the checks found: the parsed arguments and the problem's sizes.
struct OverlapProblem {
  Mode mode;
  Format fmt;
  bool aligned;
  bool loss_form;
  double eps;
  int64_t batch;  // product of the leading dims
  int64_t n;      // boxes1 per batch (aligned: pairs per batch, batch folded in)
  int64_t m;      // boxes2 per batch (aligned: == n)
  std::vector<int64_t> out_sizes;
  c10::ScalarType out_dtype;  // float64 for float64 boxes, else float32
};

// Checks the inputs of box_overlap and raises ValueError / TypeError naming the offending
// argument. Shared by every backend.
OverlapProblem check_overlap_args(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view mode,
                                  std::string_view fmt, bool aligned, double eps, bool loss_form);

// The preamble every backend's op runs: checks, contiguous boxes (b1, b2) and the outputs.
// Forward: `out` is allocated, uninitialized. Backward: `g` is grad in out_dtype, contiguous; when
// it is empty grad1 and grad2 are zeros and there is nothing to compute, otherwise they are
// allocated uninitialized (every pair loop writes every element).
OverlapProblem prepare_forward(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view mode,
                               std::string_view fmt, bool aligned, double eps, bool loss_form, at::Tensor& b1,
                               at::Tensor& b2, at::Tensor& out);
OverlapProblem prepare_backward(const at::Tensor& grad, const at::Tensor& boxes1, const at::Tensor& boxes2,
                                std::string_view mode, std::string_view fmt, bool aligned, double eps, bool loss_form,
                                at::Tensor& b1, at::Tensor& b2, at::Tensor& g, at::Tensor& grad1, at::Tensor& grad2);

// Raw CPU loops (box_iou_cpu_kernel.cpp, one copy per instruction set). Boxes are contiguous,
// `dtype` is theirs; outputs are contiguous and preallocated.
struct OverlapKernelArgs {
  const void* boxes1;
  const void* boxes2;
  c10::ScalarType dtype;
  int64_t batch, n, m;
  Mode mode;
  Format fmt;
  double eps;
  bool loss_form;
};
using OverlapForwardFn = void(const OverlapKernelArgs& args, void* out);  // out: out_dtype
using OverlapBackwardFn = void(const OverlapKernelArgs& args, const void* grad, void* grad1,
                               void* grad2);  // grad: out_dtype; grad1, grad2: dtype
extern cpu::KernelTable<OverlapForwardFn> pairwise_forward_cpu;
extern cpu::KernelTable<OverlapBackwardFn> pairwise_backward_cpu;
extern cpu::KernelTable<OverlapForwardFn> aligned_forward_cpu;
extern cpu::KernelTable<OverlapBackwardFn> aligned_backward_cpu;

// Compile-time dispatch: fn(std::integral_constant<Mode, ...>{}), and likewise for the loss form
// and the format.
template <typename Fn>
void with_mode(Mode mode, Fn&& fn) {
  switch (mode) {
    case Mode::IoU: return fn(std::integral_constant<Mode, Mode::IoU>{});
    case Mode::GIoU: return fn(std::integral_constant<Mode, Mode::GIoU>{});
    case Mode::DIoU: return fn(std::integral_constant<Mode, Mode::DIoU>{});
    case Mode::CIoU: return fn(std::integral_constant<Mode, Mode::CIoU>{});
    case Mode::IoF: return fn(std::integral_constant<Mode, Mode::IoF>{});
  }
}

template <typename Fn>
void with_loss_form(bool loss_form, Fn&& fn) {
  if (loss_form) return fn(std::true_type{});
  return fn(std::false_type{});
}

template <typename Fn>
void with_format(Format fmt, Fn&& fn) {
  switch (fmt) {
    case Format::XYXY: return fn(std::integral_constant<Format, Format::XYXY>{});
    case Format::XYWH: return fn(std::integral_constant<Format, Format::XYWH>{});
    case Format::CXCYWH: return fn(std::integral_constant<Format, Format::CXCYWH>{});
  }
}

}  // namespace fastops::box_iou
