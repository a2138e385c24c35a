// CUDA implementation of the focal-loss ops with the CPU's per-element math (focal_loss_math.h):
// one thread per element (sigmoid) or per row (sigmoid row sums, softmax). A reduced loss sums
// per-row double sums with ATen; mean divides by a count kept on the device: no host sync.
// Invalid class indices trip a device-side assertion (as torch's own losses on CUDA).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "common/cuda_launch.h"
#include "common/dtype_dispatch.h"
#include "focal_loss/focal_loss.h"

namespace fastops::focal_loss {
namespace {

using cuda::blocks_for;
using cuda::kThreadsPerBlock;

__device__ __forceinline__ int64_t checked_label(const int64_t* labels, int64_t r, int64_t classes, int64_t background,
                                                 int64_t ignore) {
  const int64_t y = labels[r];
  CUDA_KERNEL_ASSERT((y >= 0 && y < classes) || y == background || y == ignore);
  return y;
}

// The loss (kGrad false) or gradient of element (r, c), before the upstream gradient.
template <typename T, typename S, bool kIndex, bool kGrad, int kGamma>
__device__ __forceinline__ T sigmoid_element(const SigmoidArgs& a, int64_t r, int64_t c, int64_t label) {
  const S* x = static_cast<const S*>(a.inputs);
  const T* cw = static_cast<const T*>(a.class_weight);
  const T* pw = static_cast<const T*>(a.pos_weight);
  const T* sw = static_cast<const T*>(a.sample_weight);
  const int64_t idx = r * a.classes + c;
  const T t = kIndex ? ((label != a.background_index && label == c) ? T(1) : T(0))
                     : static_cast<T>(static_cast<const S*>(a.targets)[idx]);
  const SigmoidTerms<T> v = sigmoid_focal<kGamma, S, true>(static_cast<T>(x[idx]), t, pw[c], static_cast<T>(a.alpha),
                                                           static_cast<T>(1.0 - a.alpha), static_cast<T>(a.gamma));
  return cw[c] * sw[r] * (kGrad ? v.grad : v.loss);
}

template <typename T, typename S, bool kIndex, int kGamma>
__global__ void sigmoid_forward_kernel(SigmoidArgs a, S* __restrict__ out) {
  const int64_t* labels = static_cast<const int64_t*>(a.targets);
  FASTOPS_GRID_STRIDE_LOOP(idx, a.rows * a.classes) {
    const int64_t r = idx / a.classes, c = idx - r * a.classes;
    const int64_t label = kIndex ? checked_label(labels, r, a.classes, a.background_index, a.ignore_index) : 0;
    out[idx] = static_cast<S>(
        (kIndex && label == a.ignore_index) ? T(0) : sigmoid_element<T, S, kIndex, false, kGamma>(a, r, c, label));
  }
}

template <typename T, typename S, bool kIndex, int kGamma>
__global__ void sigmoid_row_sum_kernel(SigmoidArgs a, double* __restrict__ row_sums) {
  const int64_t* labels = static_cast<const int64_t*>(a.targets);
  FASTOPS_GRID_STRIDE_LOOP(r, a.rows) {
    const int64_t label = kIndex ? checked_label(labels, r, a.classes, a.background_index, a.ignore_index) : 0;
    double sum = 0;
    if (!(kIndex && label == a.ignore_index)) {
      for (int64_t c = 0; c < a.classes; ++c)
        sum += static_cast<double>(sigmoid_element<T, S, kIndex, false, kGamma>(a, r, c, label));
    }
    row_sums[r] = sum;
  }
}

template <typename T, typename S, bool kIndex, int kGamma>
__global__ void sigmoid_backward_kernel(SigmoidArgs a, const T* __restrict__ grad_elementwise,
                                        const T* __restrict__ grad_scale, S* __restrict__ grad_input) {
  const int64_t* labels = static_cast<const int64_t*>(a.targets);
  FASTOPS_GRID_STRIDE_LOOP(idx, a.rows * a.classes) {
    const int64_t r = idx / a.classes, c = idx - r * a.classes;
    const int64_t label = kIndex ? checked_label(labels, r, a.classes, a.background_index, a.ignore_index) : 0;
    T g = 0;
    if (!(kIndex && label == a.ignore_index)) {
      g = sigmoid_element<T, S, kIndex, true, kGamma>(a, r, c, label) *
          (grad_elementwise != nullptr ? grad_elementwise[idx] : *grad_scale);
    }
    grad_input[idx] = static_cast<S>(g);
  }
}

// Row statistics of the softmax (no buffer: the exps are recomputed).
template <typename T, typename S>
__device__ __forceinline__ void softmax_stats(const S* x, int64_t c_n, int64_t y, T& mx, T& sum_all, T& sum_other) {
  T m = static_cast<T>(x[0]);
  for (int64_t c = 1; c < c_n; ++c) m = static_cast<T>(x[c]) > m ? static_cast<T>(x[c]) : m;
  T all = 0, other = 0;
  for (int64_t c = 0; c < c_n; ++c) {
    const T e = exp_neg_(m - static_cast<T>(x[c]));
    all += e;
    other += c == y ? T(0) : e;
  }
  mx = m, sum_all = all, sum_other = other;
}

template <typename T, typename S, int kGamma>
__global__ void softmax_forward_kernel(SoftmaxArgs a, double* __restrict__ row_loss) {
  const T* cw = static_cast<const T*>(a.class_weight);
  const T* sw = static_cast<const T*>(a.sample_weight);
  FASTOPS_GRID_STRIDE_LOOP(r, a.rows) {
    const int64_t y = checked_label(a.targets, r, a.classes, a.ignore_index, a.ignore_index);
    if (y == a.ignore_index) {
      row_loss[r] = 0;
      continue;
    }
    const S* x = static_cast<const S*>(a.inputs) + r * a.classes;
    T mx, sum_all, sum_other, coef, py;
    softmax_stats<T, S>(x, a.classes, y, mx, sum_all, sum_other);
    row_loss[r] = static_cast<double>(softmax_focal_row<kGamma>(mx, sum_all, sum_other, static_cast<T>(x[y]),
                                                                static_cast<T>(a.alpha) * cw[y] * sw[r],
                                                                static_cast<T>(a.gamma), coef, py));
  }
}

template <typename T, typename S, int kGamma>
__global__ void softmax_backward_kernel(SoftmaxArgs a, const T* __restrict__ grad_rows,
                                        const T* __restrict__ grad_scale, S* __restrict__ grad_input) {
  const T* cw = static_cast<const T*>(a.class_weight);
  const T* sw = static_cast<const T*>(a.sample_weight);
  FASTOPS_GRID_STRIDE_LOOP(r, a.rows) {
    S* gi = grad_input + r * a.classes;
    const int64_t y = checked_label(a.targets, r, a.classes, a.ignore_index, a.ignore_index);
    if (y == a.ignore_index) {
      for (int64_t c = 0; c < a.classes; ++c) gi[c] = S(0);
      continue;
    }
    const S* x = static_cast<const S*>(a.inputs) + r * a.classes;
    T mx, sum_all, sum_other, coef, py;
    softmax_stats<T, S>(x, a.classes, y, mx, sum_all, sum_other);
    softmax_focal_row<kGamma>(mx, sum_all, sum_other, static_cast<T>(x[y]), static_cast<T>(a.alpha) * cw[y] * sw[r],
                              static_cast<T>(a.gamma), coef, py);
    const T g = (grad_rows != nullptr ? grad_rows[r] : *grad_scale) * coef;
    const T inv = T(1) / sum_all;
    for (int64_t c = 0; c < a.classes; ++c) {
      const T p = exp_neg_(mx - static_cast<T>(x[c])) * inv;
      gi[c] = static_cast<S>(g * (c == y ? p - T(1) : p));
    }
  }
}

template <typename Fn>
void with_index(bool index_targets, Fn&& fn) {
  if (index_targets) return fn(std::true_type{});
  return fn(std::false_type{});
}

at::Tensor sigmoid_focal_loss_cuda(const at::Tensor& inputs, const at::Tensor& targets,
                                   const std::optional<at::Tensor>& class_weight,
                                   const std::optional<at::Tensor>& pos_weight,
                                   const std::optional<at::Tensor>& sample_weight, double alpha, double gamma,
                                   int64_t reduction, int64_t background_index, int64_t ignore_index) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  at::Tensor x, t, cw, pw, sw;
  const Operands o = prepare_sigmoid(inputs, targets, class_weight, pos_weight, sample_weight, alpha, gamma, reduction,
                                     x, t, cw, pw, sw);
  const SigmoidArgs args = sigmoid_args(o, x, t, cw, pw, sw, alpha, gamma, background_index, ignore_index);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = o.reduction == kNone ? at::empty(inputs.sizes(), x.options())
                                        : at::empty({o.rows}, x.options().dtype(at::kDouble));
  if (out.numel() > 0) {
    with_float_dtype(x.scalar_type(), "sigmoid_focal_loss", [&](auto s, auto tt) {
      using S = decltype(s);
      using T = decltype(tt);
      with_index(o.index_targets, [&](auto index) {
        with_exponent(gamma, [&](auto g) {
          constexpr bool kIndex = decltype(index)::value;
          constexpr int kGamma = decltype(g)::value;
          if (o.reduction == kNone) {
            sigmoid_forward_kernel<T, S, kIndex, kGamma>
                <<<blocks_for(o.rows * o.classes), kThreadsPerBlock, 0, stream>>>(args, out.mutable_data_ptr<S>());
          } else {
            sigmoid_row_sum_kernel<T, S, kIndex, kGamma>
                <<<blocks_for(o.rows), kThreadsPerBlock, 0, stream>>>(args, out.mutable_data_ptr<double>());
          }
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
    });
  }
  if (o.reduction == kNone) return out;
  return finish_reduction(out, o, t, ignore_index, /*per_element=*/true, x.scalar_type());
}

at::Tensor sigmoid_focal_loss_backward_cuda(const at::Tensor& grad, const at::Tensor& inputs, const at::Tensor& targets,
                                            const std::optional<at::Tensor>& class_weight,
                                            const std::optional<at::Tensor>& pos_weight,
                                            const std::optional<at::Tensor>& sample_weight, double alpha, double gamma,
                                            int64_t reduction, int64_t background_index, int64_t ignore_index) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  at::Tensor x, t, cw, pw, sw;
  const Operands o = prepare_sigmoid(inputs, targets, class_weight, pos_weight, sample_weight, alpha, gamma, reduction,
                                     x, t, cw, pw, sw);
  at::Tensor grad_input = at::empty(inputs.sizes(), x.options());
  if (grad_input.numel() == 0) return grad_input;
  const SigmoidArgs args = sigmoid_args(o, x, t, cw, pw, sw, alpha, gamma, background_index, ignore_index);
  const at::Tensor g = upstream_grad("sigmoid_focal_loss_backward", grad, o, t, ignore_index, /*per_element=*/true,
                                     inputs.sizes(), acc_type(x));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(x.scalar_type(), "sigmoid_focal_loss", [&](auto s, auto tt) {
    using S = decltype(s);
    using T = decltype(tt);
    const T* ge = o.reduction == kNone ? g.const_data_ptr<T>() : nullptr;
    const T* gs = o.reduction == kNone ? nullptr : g.const_data_ptr<T>();
    with_index(o.index_targets, [&](auto index) {
      with_exponent(gamma, [&](auto g) {
        sigmoid_backward_kernel<T, S, decltype(index)::value, decltype(g)::value>
            <<<blocks_for(o.rows * o.classes), kThreadsPerBlock, 0, stream>>>(args, ge, gs,
                                                                              grad_input.mutable_data_ptr<S>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return grad_input;
}

at::Tensor softmax_focal_loss_cuda(const at::Tensor& inputs, const at::Tensor& targets,
                                   const std::optional<at::Tensor>& class_weight,
                                   const std::optional<at::Tensor>& sample_weight, double alpha, double gamma,
                                   int64_t reduction, int64_t ignore_index) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  at::Tensor x, t, cw, sw;
  const Operands o = prepare_softmax(inputs, targets, class_weight, sample_weight, gamma, reduction, x, t, cw, sw);
  at::Tensor row_loss = at::empty({o.rows}, x.options().dtype(at::kDouble));
  if (o.rows > 0) {
    const SoftmaxArgs args = softmax_args(o, x, t, cw, sw, alpha, gamma, ignore_index);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    with_float_dtype(x.scalar_type(), "softmax_focal_loss", [&](auto s, auto tt) {
      with_exponent(gamma, [&](auto g) {
        softmax_forward_kernel<decltype(tt), decltype(s), decltype(g)::value>
            <<<blocks_for(o.rows), kThreadsPerBlock, 0, stream>>>(args, row_loss.mutable_data_ptr<double>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  if (o.reduction == kNone) return row_loss.to(x.scalar_type()).reshape(targets.sizes());
  return finish_reduction(row_loss, o, t, ignore_index, /*per_element=*/false, x.scalar_type());
}

at::Tensor softmax_focal_loss_backward_cuda(const at::Tensor& grad, const at::Tensor& inputs, const at::Tensor& targets,
                                            const std::optional<at::Tensor>& class_weight,
                                            const std::optional<at::Tensor>& sample_weight, double alpha, double gamma,
                                            int64_t reduction, int64_t ignore_index) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  at::Tensor x, t, cw, sw;
  const Operands o = prepare_softmax(inputs, targets, class_weight, sample_weight, gamma, reduction, x, t, cw, sw);
  at::Tensor grad_input = at::empty(inputs.sizes(), x.options());
  if (grad_input.numel() == 0) return grad_input;
  const at::Tensor g = upstream_grad("softmax_focal_loss_backward", grad, o, t, ignore_index, /*per_element=*/false,
                                     targets.sizes(), acc_type(x));
  const SoftmaxArgs args = softmax_args(o, x, t, cw, sw, alpha, gamma, ignore_index);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(x.scalar_type(), "softmax_focal_loss", [&](auto s, auto tt) {
    using S = decltype(s);
    using T = decltype(tt);
    with_exponent(gamma, [&](auto gk) {
      softmax_backward_kernel<T, S, decltype(gk)::value><<<blocks_for(o.rows), kThreadsPerBlock, 0, stream>>>(
          args, o.reduction == kNone ? g.const_data_ptr<T>() : nullptr,
          o.reduction == kNone ? nullptr : g.const_data_ptr<T>(), grad_input.mutable_data_ptr<S>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CUDA, m) {
  m.impl("sigmoid_focal_loss", &sigmoid_focal_loss_cuda);
  m.impl("sigmoid_focal_loss_backward", &sigmoid_focal_loss_backward_cuda);
  m.impl("softmax_focal_loss", &softmax_focal_loss_cuda);
  m.impl("softmax_focal_loss_backward", &softmax_focal_loss_backward_cuda);
}

}  // namespace fastops::focal_loss
