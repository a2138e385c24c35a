// Per-element math of the focal-loss family, shared by the CPU and CUDA kernels.
//
// Sigmoid focal loss of a logit x with target t in [0, 1] (soft labels allowed), as torchvision:
//   p = sigmoid(x), ce = -[pw t log p + (1 - t) log(1 - p)]   (pw: BCEWithLogits' pos_weight)
//   m = 1 - p_t = t (1 - p) + (1 - t) p,  alpha_t = alpha t + (1 - alpha)(1 - t)  (alpha < 0: 1)
//   loss = alpha_t ce m^gamma
// gamma = 0, alpha < 0 is binary cross-entropy. Stable forms: softplus through log1p(exp(-|x|)),
// 1 - p as sigmoid(-x) (no cancellation), and the gradient written as
//   d loss / dx = alpha_t [m^gamma ce' + gamma ce (1 - 2t) p (1 - p) m^(gamma - 1)],
// with m^(gamma - 1) p (1 - p) formed as m^gamma (p (1 - p) / m), p (1 - p) / m <= 1, for a
// gamma other than 1 or 2: no power of m below zero is ever formed, so the loss and the gradient
// stay finite for any finite logit and gamma >= 0 (torchvision's gradient is NaN where m
// underflows to 0 and gamma < 1; the limit there is 0, which is what this gives).
// The hot loops run this per element, forward and backward: it uses the cheap exp_neg_ and
// log1p_unit_ (exp(-|x|) is clamped at 1.2e-38, so terms below that are off by less than 1.2e-38),
// and every fused multiply-add is written out so every instruction set gives the same bits.
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
  const T ax = abs_(x);
  const T e = exp_neg_(ax);  // exp(-|x|) in (0, 1]
  const T inv = one / (one + e);
  const T lg = log1p_unit_(e);  // softplus(-|x|)
  const T ei = e * inv;
  const bool neg = x < zero;
  const T p = neg ? ei : inv;               // sigmoid(x)
  const T q = neg ? inv : ei;               // 1 - p, without cancellation
  const T sp_neg = (neg ? ax : zero) + lg;  // softplus(-x) = -log(p)
  const T sp_pos = sp_neg + x;              // softplus(x)  = -log(1 - p)
  const T omt = one - t;
  const T pwt = pw * t;
  const T ce = fma_(pwt, sp_neg, omt * sp_pos);
  const T m = fma_(t, q, omt * p);
  const T mg = pow_nonneg<kGamma>(m, gamma);
  // alpha_t = alpha t + (1 - alpha)(1 - t) = (1 - alpha) + (2 alpha - 1) t; 1 when alpha < 0
  const T a = alpha < zero ? one : fma_(alpha + alpha - one, t, one - alpha);
  const T dce = fma_(omt, p, -(pwt * q));
  // gamma (1 - 2t) ce p q m^(gamma - 1): for gamma in {1, 2} without the division by m
  const T g12t = fma_(-(gamma + gamma), t, gamma);  // gamma (1 - 2t)
  T focal_term;
  if constexpr (kGamma == 0) {
    focal_term = zero;
  } else if constexpr (kGamma == 1) {
    focal_term = g12t * ce * (p * q);
  } else if constexpr (kGamma == 2) {
    focal_term = g12t * ce * (p * q) * m;
  } else {
    focal_term = g12t * ce * mg * (m > zero ? p * q / m : zero);
  }
  SigmoidTerms<T> r;
  r.loss = a * ce * mg;
  r.grad = a * fma_(mg, dce, focal_term);
  return r;
}

// Softmax focal loss of one row, from the row's max mx, the sum of exp(x_k - mx) over all classes
// (sum_all) and over the others (sum_other), and the target's logit xy. Returns the loss; sets
// coef so that d loss / dx_k = coef (p_k - delta_ky) and py = p_y.
template <int kGamma, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T softmax_focal_row(T mx, T sum_all, T sum_other, T xy, T w, T gamma, T& coef,
                                                            T& py) {
  const T one(1);
  const T m = sum_other / sum_all;  // 1 - p_y
  // log p_y: log1p(-m) is accurate when p_y is near 1, xy - logsumexp when it is small
  const T lp = m < T(0.5) ? log1p_(-m) : xy - (mx + log_(sum_all));
  py = exp_neg_(mx - xy) / sum_all;
  const T mg = pow_nonneg<kGamma>(m, gamma);
  const T ratio = m > T(0) ? lp / m : -one;  // log(p_y) / m, -> -1 as m -> 0
  coef = w * mg * (one - gamma * py * ratio);
  return -w * mg * lp;
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::focal_loss
