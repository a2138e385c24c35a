// CPU implementation of paste_masks at the Tensor level: checks, allocation, and a call into the raw
// loop of paste_masks_cpu_kernel.cpp (the copy for the best instruction set available).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "paste_masks/paste_masks.h"

namespace fastops::paste_masks {

constinit cpu::KernelTable<PasteForwardFn> paste_forward_cpu{};

namespace {

at::Tensor paste_masks_cpu(const at::Tensor& masks, const at::Tensor& boxes, c10::SymInt image_height,
                           c10::SymInt image_width, int64_t padding, std::optional<double> threshold) {
  at::Tensor m, b, out;
  const PasteProblem p = prepare(masks, boxes, image_height.guard_int(__FILE__, __LINE__),
                                 image_width.guard_int(__FILE__, __LINE__), padding, threshold, m, b, out);
  if (out.numel() == 0) return out;
  paste_forward_cpu.get()({m.const_data_ptr(), b.const_data_ptr(), p}, out.mutable_data_ptr());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) { m.impl("paste_masks", &paste_masks_cpu); }

}  // namespace fastops::paste_masks
