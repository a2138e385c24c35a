// CUDA implementation of the IoU-family ops: one thread per output element, calling the same
// per-pair math as the CPU loops (box_iou_math.h); only launch and indexing differ.
//
// Backward sums without atomics: one thread per box walks its row (boxes1) or column (boxes2) of
// pairs in order, so gradients are deterministic.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "box_iou/box_iou.h"
#include "common/cuda_launch.h"
#include "common/dtype_dispatch.h"

namespace fastops::box_iou {
namespace {

using cuda::blocks_for;
using cuda::kThreadsPerBlock;

// out[b, i, j] for row r = b * n + i.
template <Mode M, bool LF, typename T, typename S>
__global__ void pairwise_forward_kernel(const S* __restrict__ b1, const S* __restrict__ b2, int64_t n, int64_t m,
                                        int64_t total, Format fmt, T eps, T* __restrict__ out) {
  constexpr bool kAngle = M == Mode::CIoU;
  FASTOPS_GRID_STRIDE_LOOP(idx, total) {
    const int64_t r = idx / m, j = idx - r * m;
    const Geom<T> a = load_geom<T>(b1 + 4 * r, fmt, kAngle);
    const Geom<T> c = load_geom<T>(b2 + 4 * ((r / n) * m + j), fmt, kAngle);
    out[idx] = pair_value<M, LF>(a, c, eps);
  }
}

template <Mode M, bool LF, typename T, typename S>
__global__ void pairwise_backward_rows_kernel(const S* __restrict__ b1, const S* __restrict__ b2,
                                              const T* __restrict__ grad, int64_t n, int64_t m, int64_t rows,
                                              Format fmt, T eps, S* __restrict__ grad1) {
  constexpr bool kAngle = M == Mode::CIoU;
  FASTOPS_GRID_STRIDE_LOOP(r, rows) {
    const Geom<T> a = load_geom<T>(b1 + 4 * r, fmt, kAngle);
    const S* col = b2 + 4 * ((r / n) * m);
    GeomGrad<T> acc;
    for (int64_t j = 0; j < m; ++j) {
      GeomGrad<T> ga, unused;
      pair_grad<M, LF>(a, load_geom<T>(col + 4 * j, fmt, kAngle), eps, grad[r * m + j], ga, unused);
      acc += ga;
    }
    store_coord_grad(acc, fmt, grad1 + 4 * r);
  }
}

template <Mode M, bool LF, typename T, typename S>
__global__ void pairwise_backward_cols_kernel(const S* __restrict__ b1, const S* __restrict__ b2,
                                              const T* __restrict__ grad, int64_t n, int64_t m, int64_t cols,
                                              Format fmt, T eps, S* __restrict__ grad2) {
  constexpr bool kAngle = M == Mode::CIoU;
  FASTOPS_GRID_STRIDE_LOOP(c, cols) {  // c = b * m + j
    const int64_t b = c / m, j = c - b * m;
    const Geom<T> bx = load_geom<T>(b2 + 4 * c, fmt, kAngle);
    GeomGrad<T> acc;
    for (int64_t i = 0; i < n; ++i) {
      GeomGrad<T> unused, gb;
      const int64_t r = b * n + i;
      pair_grad<M, LF>(load_geom<T>(b1 + 4 * r, fmt, kAngle), bx, eps, grad[r * m + j], unused, gb);
      acc += gb;
    }
    store_coord_grad(acc, fmt, grad2 + 4 * c);
  }
}

template <Mode M, bool LF, typename T, typename S>
__global__ void aligned_forward_kernel(const S* __restrict__ b1, const S* __restrict__ b2, int64_t n, Format fmt, T eps,
                                       T* __restrict__ out) {
  constexpr bool kAngle = M == Mode::CIoU;
  FASTOPS_GRID_STRIDE_LOOP(i, n) {
    out[i] = pair_value<M, LF>(load_geom<T>(b1 + 4 * i, fmt, kAngle), load_geom<T>(b2 + 4 * i, fmt, kAngle), eps);
  }
}

template <Mode M, bool LF, typename T, typename S>
__global__ void aligned_backward_kernel(const S* __restrict__ b1, const S* __restrict__ b2, const T* __restrict__ grad,
                                        int64_t n, Format fmt, T eps, S* __restrict__ grad1, S* __restrict__ grad2) {
  constexpr bool kAngle = M == Mode::CIoU;
  FASTOPS_GRID_STRIDE_LOOP(i, n) {
    GeomGrad<T> ga, gb;
    pair_grad<M, LF>(load_geom<T>(b1 + 4 * i, fmt, kAngle), load_geom<T>(b2 + 4 * i, fmt, kAngle), eps, grad[i], ga,
                     gb);
    store_coord_grad(ga, fmt, grad1 + 4 * i);
    store_coord_grad(gb, fmt, grad2 + 4 * i);
  }
}

at::Tensor box_overlap_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2, std::string_view mode,
                            std::string_view fmt, bool aligned, double eps, bool loss_form) {
  const c10::cuda::CUDAGuard guard(boxes1.device());
  at::Tensor b1, b2, out;
  const OverlapProblem p = prepare_forward(boxes1, boxes2, mode, fmt, aligned, eps, loss_form, b1, b2, out);
  const int64_t total = out.numel();
  if (total == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(b1.scalar_type(), "box_overlap", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    const S* p1 = b1.const_data_ptr<S>();
    const S* p2 = b2.const_data_ptr<S>();
    T* o = out.mutable_data_ptr<T>();
    with_mode(p.mode, [&](auto mode_c) {
      with_loss_form(loss_form, [&](auto lf_c) {
        constexpr Mode M = decltype(mode_c)::value;
        constexpr bool LF = decltype(lf_c)::value;
        if (aligned) {
          aligned_forward_kernel<M, LF, T, S>
              <<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(p1, p2, total, p.fmt, static_cast<T>(eps), o);
        } else {
          pairwise_forward_kernel<M, LF, T, S><<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(
              p1, p2, p.n, p.m, total, p.fmt, static_cast<T>(eps), o);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> box_overlap_backward_cuda(const at::Tensor& grad, const at::Tensor& boxes1,
                                                             const at::Tensor& boxes2, std::string_view mode,
                                                             std::string_view fmt, bool aligned, double eps,
                                                             bool loss_form) {
  const c10::cuda::CUDAGuard guard(boxes1.device());
  at::Tensor b1, b2, g, grad1, grad2;
  const OverlapProblem p =
      prepare_backward(grad, boxes1, boxes2, mode, fmt, aligned, eps, loss_form, b1, b2, g, grad1, grad2);
  if (g.numel() == 0) return {grad1, grad2};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(b1.scalar_type(), "box_overlap_backward", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    const S* p1 = b1.const_data_ptr<S>();
    const S* p2 = b2.const_data_ptr<S>();
    const T* pg = g.const_data_ptr<T>();
    S* g1 = grad1.mutable_data_ptr<S>();
    S* g2 = grad2.mutable_data_ptr<S>();
    const T e = static_cast<T>(eps);
    with_mode(p.mode, [&](auto mode_c) {
      with_loss_form(loss_form, [&](auto lf_c) {
        constexpr Mode M = decltype(mode_c)::value;
        constexpr bool LF = decltype(lf_c)::value;
        if (aligned) {
          aligned_backward_kernel<M, LF, T, S>
              <<<blocks_for(p.n), kThreadsPerBlock, 0, stream>>>(p1, p2, pg, p.n, p.fmt, e, g1, g2);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        } else {
          const int64_t rows = p.batch * p.n, cols = p.batch * p.m;
          pairwise_backward_rows_kernel<M, LF, T, S>
              <<<blocks_for(rows), kThreadsPerBlock, 0, stream>>>(p1, p2, pg, p.n, p.m, rows, p.fmt, e, g1);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          pairwise_backward_cols_kernel<M, LF, T, S>
              <<<blocks_for(cols), kThreadsPerBlock, 0, stream>>>(p1, p2, pg, p.n, p.m, cols, p.fmt, e, g2);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
    });
  });
  return {grad1, grad2};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CUDA, m) {
  m.impl("box_overlap", &box_overlap_cuda);
  m.impl("box_overlap_backward", &box_overlap_backward_cuda);
}

}  // namespace fastops::box_iou
