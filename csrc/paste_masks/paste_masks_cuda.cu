// CUDA implementation of paste_masks: one thread per box expands it (expand_box) and plans its
// resize, then one thread per output pixel writes the background or its resized mask value
// (cuda_value: torch's CUDA bilinear kernel's expressions, paste_masks_math.h). No host
// synchronization.
#include <algorithm>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda_launch.h"
#include "common/dtype_dispatch.h"
#include "paste_masks/paste_masks.h"

namespace fastops::paste_masks {
namespace {

using cuda::blocks_for;
using cuda::kThreadsPerBlock;

// Per box: its PasteRect and the resize's steps rh = ph / out_h, rw = pw / out_w in T (torch
// computes them on the host, correctly rounded; so is this division).
template <typename T>
struct BoxPlan {
  PasteRect rect;
  T rh, rw;
};

template <typename B, typename T>
__global__ void plan_boxes_kernel(const B* __restrict__ boxes, int64_t n, double scale, int64_t image_h,
                                  int64_t image_w, int64_t ph, int64_t pw, BoxPlan<T>* __restrict__ plans) {
  FASTOPS_GRID_STRIDE_LOOP(i, n) {
    BoxPlan<T> plan;
    plan.rect = paste_rect(expand_box(boxes + 4 * i, scale), image_h, image_w);
    plan.rh = static_cast<T>(ph) / static_cast<T>(plan.rect.out_h);
    plan.rw = static_cast<T>(pw) / static_cast<T>(plan.rect.out_w);
    plans[i] = plan;
  }
}

// One thread per output pixel: blockIdx.y walks the n * image_h output rows, x the columns, so a
// pixel costs no 64-bit division.
template <typename S, typename T, typename O>
__global__ void paste_kernel(const S* __restrict__ masks, const BoxPlan<T>* __restrict__ plans, int64_t rows,
                             int64_t image_h, int64_t image_w, int64_t mh, int64_t mw, int64_t padding, T threshold,
                             O* __restrict__ out) {
  const int64_t ph = mh + 2 * padding, pw = mw + 2 * padding;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t n = row / image_h, y = row - n * image_h;
    const BoxPlan<T> plan = plans[n];
    const PasteRect& r = plan.rect;
    const bool row_inside = y >= r.row_begin && y < r.row_end;
    O* out_row = out + row * image_w;
    for (int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; x < image_w;
         x += int64_t(gridDim.x) * blockDim.x) {
      T v = T(0);
      if (row_inside && x >= r.col_begin && x < r.col_end) {
        v = cuda_value<S, T>(masks + n * mh * mw, mh, mw, padding, ph, pw, r.out_h, r.out_w, plan.rh, plan.rw,
                             y - r.row_origin, x - r.col_origin);
      }
      if constexpr (std::is_same_v<O, bool>) {
        out_row[x] = static_cast<T>(static_cast<S>(v)) > threshold;
      } else {
        out_row[x] = static_cast<S>(v);
      }
    }
  }
}

at::Tensor paste_masks_cuda(const at::Tensor& masks, const at::Tensor& boxes, c10::SymInt image_height,
                            c10::SymInt image_width, int64_t padding, std::optional<double> threshold) {
  const c10::cuda::CUDAGuard guard(masks.device());
  at::Tensor m, b, out;
  const PasteProblem p = prepare(masks, boxes, image_height.guard_int(__FILE__, __LINE__),
                                 image_width.guard_int(__FILE__, __LINE__), padding, threshold, m, b, out);
  const int64_t total = out.numel();
  if (total == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t rows = p.n * p.image_h;
  const dim3 grid(static_cast<unsigned int>(
                      std::min<int64_t>((p.image_w + kThreadsPerBlock - 1) / kThreadsPerBlock, int64_t(1) << 16)),
                  static_cast<unsigned int>(std::min<int64_t>(rows, 65535)));
  with_float_dtype(p.mask_dtype, "paste_masks", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    at::Tensor plans = at::empty({p.n, static_cast<int64_t>(sizeof(BoxPlan<T>))}, b.options().dtype(at::kByte));
    BoxPlan<T>* plan_ptr = reinterpret_cast<BoxPlan<T>*>(plans.mutable_data_ptr());
    with_float_dtype(p.box_dtype, "paste_masks", [&](auto box_type, auto) {
      using B = decltype(box_type);
      plan_boxes_kernel<B, T><<<blocks_for(p.n), kThreadsPerBlock, 0, stream>>>(
          b.const_data_ptr<B>(), p.n, p.scale, p.image_h, p.image_w, p.ph, p.pw, plan_ptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    with_threshold(threshold.has_value(), [&](auto thresholded) {
      using O = std::conditional_t<decltype(thresholded)::value, bool, S>;
      // Thresholded: compare with the threshold rounded to the masks' dtype, as `pasted > threshold`.
      const T thr = threshold.has_value() ? static_cast<T>(static_cast<S>(static_cast<T>(*threshold))) : T(0);
      paste_kernel<S, T, O><<<grid, kThreadsPerBlock, 0, stream>>>(m.const_data_ptr<S>(), plan_ptr, rows, p.image_h,
                                                                   p.image_w, p.mh, p.mw, p.padding, thr,
                                                                   static_cast<O*>(out.mutable_data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CUDA, m) { m.impl("paste_masks", &paste_masks_cuda); }

}  // namespace fastops::paste_masks
