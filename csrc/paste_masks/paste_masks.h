// paste_masks: declarations shared by the schema file (paste_masks.cpp), the CPU op
// (paste_masks_cpu.cpp), its raw loops (paste_masks_cpu_kernel.cpp) and the CUDA op
// (paste_masks_cuda.cu).
//
//   fastops::paste_masks(masks, boxes, image_height, image_width, padding, threshold) -> Tensor
//
// masks [N, 1, mh, mw] or [N, mh, mw] (float16, bfloat16, float32, float64), boxes [N, 4] xyxy (any
// of the four float dtypes, independent of the masks'), output [N, 1, image_height, image_width]:
// the masks' dtype, or bool (value > threshold, threshold rounded to the masks' dtype) when a
// threshold is given. Semantics: paste_masks_math.h.
#pragma once

#include <cstdint>
#include <optional>

#include <c10/core/ScalarType.h>
#include <c10/core/SymInt.h>

#include "common/cpu_dispatch.h"
#include "paste_masks/paste_masks_math.h"

namespace at {
class Tensor;
}

namespace fastops::paste_masks {

// What the checks found.
struct PasteProblem {
  int64_t n;                 // masks
  int64_t mh, mw;            // mask size
  int64_t image_h, image_w;  // output plane
  int64_t padding;
  int64_t ph, pw;  // padded mask size: mh + 2 padding, mw + 2 padding
  double scale;    // expand_masks' scale: pw / mw
  std::optional<double> threshold;
  c10::ScalarType mask_dtype, box_dtype;
};

// Checks the arguments (ValueError / TypeError / RuntimeError naming the argument), then returns
// contiguous masks and boxes and the allocated, uninitialized output. Shared by every backend.
PasteProblem prepare(const at::Tensor& masks, const at::Tensor& boxes, int64_t image_h, int64_t image_w,
                     int64_t padding, std::optional<double> threshold, at::Tensor& masks_c, at::Tensor& boxes_c,
                     at::Tensor& out);

// Raw CPU loop (paste_masks_cpu_kernel.cpp, one copy per instruction set). masks and boxes
// contiguous; out [n, image_h, image_w] contiguous, of the masks' dtype or bool.
struct PasteKernelArgs {
  const void* masks;
  const void* boxes;
  PasteProblem p;
};
using PasteForwardFn = void(const PasteKernelArgs& args, void* out);
extern cpu::KernelTable<PasteForwardFn> paste_forward_cpu;

// Compile-time dispatch over the output: fn(std::false_type{}) writes the masks' dtype,
// fn(std::true_type{}) writes bool (thresholded).
template <typename Fn>
void with_threshold(bool thresholded, Fn&& fn) {
  if (thresholded) return fn(std::true_type{});
  return fn(std::false_type{});
}

}  // namespace fastops::paste_masks
