// Per-element math of the focal-loss family, shared by the CPU and CUDA kernels.
//
// Sigmoid focal loss of a logit x with target t in [0, 1] (soft labels allowed), as torchvision:
//   p = sigmoid(x), ce = -[pw t log p + (1 - t) log(1 - p)]   (pw: BCEWithLogits' pos_weight)
//   m = 1 - p_t = t (1 - p) + (1 - t) p,  alpha_t = alpha t + (1 - alpha)(1 - t)  (alpha < 0: 1)
//   loss = alpha_t ce m^gamma
// gamma = 0, alpha < 0 is binary cross-entropy. Stable forms: softplus through log1p(exp(-|x|)),
// 1 - p as sigmoid(-x) (no cancellation), and the gradient written as
//   d loss / dx = alpha_t m^gamma [ce' + gamma ce (1 - 2t) p (1 - p) / m],
// where p (1 - p) / m <= 1 always, so no power of m below zero is ever formed: the loss and the
// gradient stay finite for any finite logit and gamma >= 0 (torchvision's gradient is NaN where
// m underflows to 0 and gamma < 1; the limit there is 0, which is what this gives).
//
// Softmax focal loss of a row of logits with target class y: loss = -w (1 - p_y)^gamma log p_y,
// with 1 - p_y summed from the other classes' probabilities (no cancellation) and
//   d loss / dx_k = -w (delta_ky - p_k) m^gamma (1 - gamma p_y log(p_y) / m),   m = 1 - p_y,
// where log(p_y) / m -> -1 as m -> 0.
#pragma once

#include "common/fast_math.h"
#include "common/macros.h"

namespace fastops::focal_loss {
inline namespace FASTOPS_ISA_NAMESPACE {

template <typename T>
struct SigmoidTerms {
  T loss, grad;
};

// Loss and gradient for one logit. alpha < 0 disables alpha_t. kGamma: gamma when it is 0, 1 or
// 2 (see pow_nonneg), else -1.
template <int kGamma, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE SigmoidTerms<T> sigmoid_focal(T x, T t, T pw, T alpha, T gamma) {
  const T zero(0), one(1);
  const T e = exp_(-(x < zero ? -x : x));  // exp(-|x|) in (0, 1]
  const T u = one + e;
  const T inv = one / u;
  // softplus(-|x|) = log1p(e): log(u) plus the part of e that rounding u dropped (Goldberg's
  // log1p, with the division already done in inv)
  const T lg = log_(u) + (e - (u - one)) * inv;
  const T p = x >= zero ? inv : e * inv;   // sigmoid(x)
  const T q = x >= zero ? e * inv : inv;   // 1 - p, without cancellation
  const T sp_pos = (x > zero ? x : zero) + lg;   // softplus(x)  = -log(1 - p)
  const T sp_neg = (x < zero ? -x : zero) + lg;  // softplus(-x) = -log(p)
  const T ce = pw * t * sp_neg + (one - t) * sp_pos;
  const T dce = (one - t) * p - pw * t * q;
  const T m = t * q + (one - t) * p;
  const T mg = pow_nonneg<kGamma>(m, gamma);
  const T a = alpha < zero ? one : alpha * t + (one - alpha) * (one - t);
  const T pq_over_m = m > zero ? p * q / m : zero;
  SigmoidTerms<T> r;
  r.loss = a * ce * mg;
  r.grad = a * mg * (dce + gamma * ce * (one - (t + t)) * pq_over_m);
  return r;
}

// Softmax focal loss of one row, from the row's max mx, the sum of exp(x_k - mx) over all classes
// (sum_all) and over the others (sum_other), and the target's logit xy. Returns the loss; sets
// coef so that d loss / dx_k = coef (p_k - delta_ky) and py = p_y.
template <int kGamma, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T softmax_focal_row(T mx, T sum_all, T sum_other, T xy, T w, T gamma,
                                                            T& coef, T& py) {
  const T one(1);
  const T m = sum_other / sum_all;  // 1 - p_y
  // log p_y: log1p(-m) is accurate when p_y is near 1, xy - logsumexp when it is small
  const T lp = m < T(0.5) ? log1p_(-m) : xy - (mx + log_(sum_all));
  py = exp_(xy - mx) / sum_all;
  const T mg = pow_nonneg<kGamma>(m, gamma);
  const T ratio = m > T(0) ? lp / m : -one;  // log(p_y) / m, -> -1 as m -> 0
  coef = w * mg * (one - gamma * py * ratio);
  return -w * mg * lp;
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::focal_loss
