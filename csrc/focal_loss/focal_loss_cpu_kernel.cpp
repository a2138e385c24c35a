// Raw CPU loops of the focal-loss ops, compiled once per instruction set; internal linkage.
//
// One pass over the logits forward, one backward; each row's loop over its classes is a vector
// loop (the math of focal_loss_math.h has no library calls). Row sums use fixed-order lane sums;
// a reduced loss adds the rows' sums in double.
#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>

#include "common/cpu_prefetch.h"
#include "common/cpu_reduce.h"
#include "common/dtype_dispatch.h"
#include "focal_loss/focal_loss.h"

namespace fastops::focal_loss {
namespace {

constexpr int64_t kElementsPerTask = 32768;

int64_t row_grain(int64_t classes) { return std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(classes, 1)); }

// The label of a row with class-index targets, checked: a class, background or ignore.
inline int64_t checked_label(const int64_t* labels, int64_t r, int64_t classes, int64_t background, int64_t ignore) {
  const int64_t y = labels[r];
  TORCH_CHECK_VALUE((y >= 0 && y < classes) || y == background || y == ignore, "focal loss: target ", y, " at row ", r,
                    " is not a class in [0, ", classes, "), the background index ", background, " or the ignore index ",
                    ignore);
  return y;
}

// ---- sigmoid ----------------------------------------------------------------------------------

// Per-class losses (kGrad false) or gradients (kGrad true) of row r into `row`. Target of class
// c: dense t[r, c], or (label == c) for index targets (none for background; the caller skips
// ignored rows).
// Each value is multiplied by the class weight and the row's sample weight (when kWeighted; else
// all weights are 1 and skipped: 2-3 of ~70 instructions per vector, and the same bits), then by
// elementwise[c] when kElementwise (the backward's upstream gradient), else by `scale`, in the
// CUDA kernel's order, and stored as O.
template <typename T, typename S, typename O, bool kIndex, bool kGrad, bool kElementwise, int kGamma, bool kWeighted>
FASTOPS_FORCEINLINE void sigmoid_row(const SigmoidArgs& a, int64_t r, int64_t label, T scale,
                                     const T* __restrict elementwise, O* __restrict row, T* __restrict one_hot) {
  const int64_t c_n = a.classes;
  const S* __restrict x = static_cast<const S*>(a.inputs) + r * c_n;
  const S* __restrict dense = kIndex ? nullptr : static_cast<const S*>(a.targets) + r * c_n;
  const T* __restrict cw = static_cast<const T*>(a.class_weight);
  const T* __restrict pw = static_cast<const T*>(a.pos_weight);
  const T ws = static_cast<const T*>(a.sample_weight)[r];
  const T alpha = static_cast<T>(a.alpha), gamma = static_cast<T>(a.gamma);
  // Index targets: a one-hot row (one_hot is all zeros between rows), so the loop below reads a
  // target array either way; comparing the 64-bit class index per element would slow it down.
  const bool has_pos = kIndex && label != a.background_index;
  if (has_pos) one_hot[label] = T(1);
#pragma GCC ivdep  // the arrays never alias; without this GCC gives up on its run-time alias checks
  for (int64_t c = 0; c < c_n; ++c) {
    const T t = kIndex ? one_hot[c] : static_cast<T>(dense[c]);
    const SigmoidTerms<T> v = sigmoid_focal<kGamma>(static_cast<T>(x[c]), t, kWeighted ? pw[c] : T(1), alpha, gamma);
    const T value = kWeighted ? cw[c] * ws * (kGrad ? v.grad : v.loss) : (kGrad ? v.grad : v.loss);
    row[c] = static_cast<O>(value * (kElementwise ? elementwise[c] : scale));
  }
  if (has_pos) one_hot[label] = T(0);
}

// Prefetches row r + ahead of the logits, the dense targets and the output (if any):
// the per-element math is heavy enough that the hardware prefetcher alone leaves the loop
// waiting on memory once the rows no longer fit in cache.
template <typename S, bool kIndex>
FASTOPS_FORCEINLINE void prefetch_row(const SigmoidArgs& a, int64_t r, int64_t ahead, S* out) {
  const int64_t next = r + ahead;
  if (next >= a.rows) return;
  const int64_t bytes = a.classes * static_cast<int64_t>(sizeof(S));
  cpu::prefetch_bytes(static_cast<const S*>(a.inputs) + next * a.classes, bytes);
  if (!kIndex) cpu::prefetch_bytes(static_cast<const S*>(a.targets) + next * a.classes, bytes);
  if (out != nullptr) cpu::prefetch_bytes<true>(out + next * a.classes, bytes);
}

template <typename T, typename S, bool kIndex, int kGamma, bool kWeighted>
void sigmoid_forward(const SigmoidArgs& a, S* out, double* row_sums) {
  const int64_t* labels = static_cast<const int64_t*>(a.targets);
  at::parallel_for(0, a.rows, row_grain(a.classes), [&](int64_t begin, int64_t end) {
    std::vector<T> buf(a.classes), one_hot(a.classes);
    const int64_t ahead = cpu::prefetch_rows_ahead(a.classes * static_cast<int64_t>(sizeof(S)));
    for (int64_t r = begin; r < end; ++r) {
      prefetch_row<S, kIndex>(a, r, ahead, out);
      const int64_t label = kIndex ? checked_label(labels, r, a.classes, a.background_index, a.ignore_index) : 0;
      if (kIndex && label == a.ignore_index) {
        std::fill(buf.begin(), buf.end(), T(0));
      } else {
        sigmoid_row<T, S, T, kIndex, false, false, kGamma, kWeighted>(a, r, label, T(1), nullptr, buf.data(),
                                                                      one_hot.data());
      }
      if (out != nullptr) {
        for (int64_t c = 0; c < a.classes; ++c) out[r * a.classes + c] = static_cast<S>(buf[c]);
      }
      if (row_sums != nullptr) row_sums[r] = static_cast<double>(cpu::lane_sum(buf.data(), a.classes));
    }
  });
}

template <typename T, typename S, bool kIndex, int kGamma, bool kWeighted>
void sigmoid_backward(const SigmoidArgs& a, const T* grad_elementwise, const T* grad_scale, S* grad_input) {
  const int64_t* labels = static_cast<const int64_t*>(a.targets);
  at::parallel_for(0, a.rows, row_grain(a.classes), [&](int64_t begin, int64_t end) {
    std::vector<T> one_hot(a.classes);
    const int64_t ahead = cpu::prefetch_rows_ahead(a.classes * static_cast<int64_t>(sizeof(S)));
    for (int64_t r = begin; r < end; ++r) {
      prefetch_row<S, kIndex>(a, r, ahead, grad_input);
      S* __restrict gi = grad_input + r * a.classes;
      const int64_t label = kIndex ? checked_label(labels, r, a.classes, a.background_index, a.ignore_index) : 0;
      if (kIndex && label == a.ignore_index) {
        std::fill(gi, gi + a.classes, S(0));
        continue;
      }
      if (grad_elementwise != nullptr) {
        sigmoid_row<T, S, S, kIndex, true, true, kGamma, kWeighted>(a, r, label, T(1), grad_elementwise + r * a.classes,
                                                                    gi, one_hot.data());
      } else {
        sigmoid_row<T, S, S, kIndex, true, false, kGamma, kWeighted>(a, r, label, *grad_scale, nullptr, gi,
                                                                     one_hot.data());
      }
    }
  });
}

// ---- softmax ----------------------------------------------------------------------------------

// Row statistics: max, sum of exp(x - max) over all classes and over the non-target ones.
template <typename T, typename S>
FASTOPS_FORCEINLINE void softmax_stats(const S* __restrict x, int64_t c_n, int64_t y, T* __restrict e, T& mx,
                                       T& sum_all, T& sum_other) {
  for (int64_t c = 0; c < c_n; ++c) e[c] = static_cast<T>(x[c]);
  const T m = cpu::lane_reduce(e, c_n, static_cast<T>(x[0]), [](T p, T q) { return q > p ? q : p; });
  for (int64_t c = 0; c < c_n; ++c) e[c] = exp_neg_(m - e[c]);  // x - max <= 0: the cheap exp
  sum_all = cpu::lane_sum(e, c_n);
  const T ey = e[y];
  e[y] = T(0);
  sum_other = cpu::lane_sum(e, c_n);
  e[y] = ey;
  mx = m;
}

// One row's label, statistics (softmax_stats; e holds the exps) and focal terms; false for an
// ignored row.
template <typename T>
struct SoftmaxRow {
  int64_t y;
  T sum_all, loss, coef;
};

template <typename T, typename S, int kGamma>
FASTOPS_FORCEINLINE bool softmax_row(const SoftmaxArgs& a, int64_t r, T* e, SoftmaxRow<T>& row) {
  row.y = checked_label(a.targets, r, a.classes, a.ignore_index, a.ignore_index);
  if (row.y == a.ignore_index) return false;
  const S* x = static_cast<const S*>(a.inputs) + r * a.classes;
  const T w = static_cast<T>(a.alpha) * static_cast<const T*>(a.class_weight)[row.y] *
              static_cast<const T*>(a.sample_weight)[r];
  T mx, sum_other, py;
  softmax_stats<T, S>(x, a.classes, row.y, e, mx, row.sum_all, sum_other);
  row.loss = softmax_focal_row<kGamma>(mx, row.sum_all, sum_other, static_cast<T>(x[row.y]), w, static_cast<T>(a.gamma),
                                       row.coef, py);
  return true;
}

template <typename T, typename S, int kGamma>
void softmax_forward(const SoftmaxArgs& a, double* row_loss) {
  at::parallel_for(0, a.rows, row_grain(a.classes), [&](int64_t begin, int64_t end) {
    std::vector<T> e(a.classes);
    for (int64_t r = begin; r < end; ++r) {
      SoftmaxRow<T> row;
      row_loss[r] = softmax_row<T, S, kGamma>(a, r, e.data(), row) ? static_cast<double>(row.loss) : 0.0;
    }
  });
}

template <typename T, typename S, int kGamma>
void softmax_backward(const SoftmaxArgs& a, const T* grad_rows, const T* grad_scale, S* grad_input) {
  at::parallel_for(0, a.rows, row_grain(a.classes), [&](int64_t begin, int64_t end) {
    std::vector<T> e(a.classes);
    for (int64_t r = begin; r < end; ++r) {
      S* __restrict gi = grad_input + r * a.classes;
      SoftmaxRow<T> row;
      if (!softmax_row<T, S, kGamma>(a, r, e.data(), row)) {
        std::fill(gi, gi + a.classes, S(0));
        continue;
      }
      const T g = (grad_rows != nullptr ? grad_rows[r] : *grad_scale) * row.coef;
      const T inv = T(1) / row.sum_all;
      for (int64_t c = 0; c < a.classes; ++c) gi[c] = static_cast<S>(g * (e[c] * inv));
      gi[row.y] = static_cast<S>(g * (e[row.y] * inv - T(1)));
    }
  });
}

// ---- dispatch ----------------------------------------------------------------------------------

// fn(S{}, T{}, index_targets, gamma_kind, weighted) with the last three as integral constants.
template <typename Fn>
void dispatch_sigmoid(const SigmoidArgs& a, Fn&& fn) {
  with_float_dtype(a.dtype, "sigmoid_focal_loss", [&](auto s, auto t) {
    with_exponent(a.gamma, [&](auto g) {
      auto with_weights = [&](auto index) {
        if (a.weighted) {
          fn(s, t, index, g, std::true_type{});
        } else {
          fn(s, t, index, g, std::false_type{});
        }
      };
      if (a.index_targets) {
        with_weights(std::true_type{});
      } else {
        with_weights(std::false_type{});
      }
    });
  });
}

void sigmoid_forward_entry(const SigmoidArgs& a, void* out, double* row_sums) {
  dispatch_sigmoid(a, [&](auto s, auto t, auto index, auto g, auto weighted) {
    using S = decltype(s);
    sigmoid_forward<decltype(t), S, decltype(index)::value, decltype(g)::value, decltype(weighted)::value>(
        a, static_cast<S*>(out), row_sums);
  });
}

void sigmoid_backward_entry(const SigmoidArgs& a, const void* grad_elementwise, const void* grad_scale,
                            void* grad_input) {
  dispatch_sigmoid(a, [&](auto s, auto t, auto index, auto g, auto weighted) {
    using S = decltype(s);
    using T = decltype(t);
    sigmoid_backward<T, S, decltype(index)::value, decltype(g)::value, decltype(weighted)::value>(
        a, static_cast<const T*>(grad_elementwise), static_cast<const T*>(grad_scale), static_cast<S*>(grad_input));
  });
}

void softmax_forward_entry(const SoftmaxArgs& a, double* row_loss) {
  with_float_dtype(a.dtype, "softmax_focal_loss", [&](auto s, auto t) {
    with_exponent(a.gamma, [&](auto g) { softmax_forward<decltype(t), decltype(s), decltype(g)::value>(a, row_loss); });
  });
}

void softmax_backward_entry(const SoftmaxArgs& a, const void* grad_rows, const void* grad_scale, void* grad_input) {
  with_float_dtype(a.dtype, "softmax_focal_loss", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    with_exponent(a.gamma, [&](auto g) {
      softmax_backward<T, S, decltype(g)::value>(a, static_cast<const T*>(grad_rows), static_cast<const T*>(grad_scale),
                                                 static_cast<S*>(grad_input));
    });
  });
}

FASTOPS_REGISTER_CPU_KERNEL(sigmoid_forward_cpu, &sigmoid_forward_entry);
FASTOPS_REGISTER_CPU_KERNEL(sigmoid_backward_cpu, &sigmoid_backward_entry);
FASTOPS_REGISTER_CPU_KERNEL(softmax_forward_cpu, &softmax_forward_entry);
FASTOPS_REGISTER_CPU_KERNEL(softmax_backward_cpu, &softmax_backward_entry);

}  // namespace
}  // namespace fastops::focal_loss
