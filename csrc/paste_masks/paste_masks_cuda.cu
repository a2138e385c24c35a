// CUDA implementation of paste_masks: one thread per box expands it (expand_box), then one thread
// per output pixel writes the background or its resized mask value (cuda_value: torch's CUDA
// bilinear kernel's expressions, paste_masks_math.h). No host synchronization.
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

// rect[i] = the box's PasteRect, as 8 int64: out_h, out_w, row_begin, row_end, col_begin, col_end,
// row_origin, col_origin.
template <typename B>
__global__ void expand_boxes_kernel(const B* __restrict__ boxes, int64_t n, double scale, int64_t image_h,
                                    int64_t image_w, int64_t* __restrict__ rects) {
  FASTOPS_GRID_STRIDE_LOOP(i, n) {
    const PasteRect r = paste_rect(expand_box(boxes + 4 * i, scale), image_h, image_w);
    int64_t* o = rects + 8 * i;
    o[0] = r.out_h, o[1] = r.out_w, o[2] = r.row_begin, o[3] = r.row_end;
    o[4] = r.col_begin, o[5] = r.col_end, o[6] = r.row_origin, o[7] = r.col_origin;
  }
}

template <typename S, typename T, typename O>
__global__ void paste_kernel(const S* __restrict__ masks, const int64_t* __restrict__ rects, int64_t total,
                             int64_t image_h, int64_t image_w, int64_t mh, int64_t mw, int64_t padding, T threshold,
                             O* __restrict__ out) {
  const int64_t ph = mh + 2 * padding, pw = mw + 2 * padding;
  const int64_t plane = image_h * image_w;
  FASTOPS_GRID_STRIDE_LOOP(idx, total) {
    const int64_t n = idx / plane, rem = idx - n * plane;
    const int64_t y = rem / image_w, x = rem - y * image_w;
    const int64_t* r = rects + 8 * n;
    T v = T(0);
    bool inside = y >= r[2] && y < r[3] && x >= r[4] && x < r[5];
    if (inside) {
      const int64_t out_h = r[0], out_w = r[1];
      const T rh = static_cast<T>(ph) / static_cast<T>(out_h);
      const T rw = static_cast<T>(pw) / static_cast<T>(out_w);
      v = cuda_value<S, T>(masks + n * mh * mw, mh, mw, padding, ph, pw, out_h, out_w, rh, rw, y - r[6], x - r[7]);
    }
    if constexpr (std::is_same_v<O, bool>) {
      out[idx] = static_cast<T>(static_cast<S>(v)) > threshold;
    } else {
      out[idx] = static_cast<S>(v);
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
  at::Tensor rects = at::empty({p.n, 8}, b.options().dtype(at::kLong));
  with_float_dtype(p.box_dtype, "paste_masks", [&](auto box_type, auto) {
    using B = decltype(box_type);
    expand_boxes_kernel<B><<<blocks_for(p.n), kThreadsPerBlock, 0, stream>>>(
        b.const_data_ptr<B>(), p.n, p.scale, p.image_h, p.image_w, rects.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  with_float_dtype(p.mask_dtype, "paste_masks", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    with_threshold(threshold.has_value(), [&](auto thresholded) {
      using O = std::conditional_t<decltype(thresholded)::value, bool, S>;
      // Thresholded: compare with the threshold rounded to the masks' dtype, as `pasted > threshold`.
      const T thr = threshold.has_value() ? static_cast<T>(static_cast<S>(static_cast<T>(*threshold))) : T(0);
      paste_kernel<S, T, O><<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(
          m.const_data_ptr<S>(), rects.const_data_ptr<int64_t>(), total, p.image_h, p.image_w, p.mh, p.mw, p.padding,
          thr, static_cast<O*>(out.mutable_data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CUDA, m) { m.impl("paste_masks", &paste_masks_cuda); }

}  // namespace fastops::paste_masks
