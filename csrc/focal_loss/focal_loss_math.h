// Per-element math of the focal-loss family, shared by the CPU and CUDA kernels.
//
// Sigmoid focal loss of a logit x with target t in [0, 1] (soft labels allowed), as torchvision:
//   p = sigmoid(x), m = 1 - p_t = t (1 - p) + (1 - t) p,  alpha_t = alpha t + (1 - alpha)(1 - t)
//   loss = alpha_t (ce m^gamma)                                (alpha < 0: alpha_t = 1)
// gamma = 0, alpha < 0 is binary cross-entropy. The cross-entropy term is torch's
// binary_cross_entropy_with_logits, operation for operation,
//   ls = min(x, 0) - L,  L = log1p(exp(-|x|))       (log sigmoid(x))
//   ce = (1 - t) x - lw ls,  lw = (pw - 1) t + 1    (pw: BCEWithLogits' pos_weight; lw = 1 without)
// each operation rounded once in the inputs' storage type, as torch's elementwise ops on such
// tensors round (no fused multiply-add), with one difference: L is computed a few ulp low, so that
// it never exceeds the value of torch's own exp and log1p (each within 1 ulp; see kBelowTorch).
// ce increases with L through every rounded operation, so ce never exceeds torch's cross-entropy
// of the same element; with m and m^gamma clamped to at most 1 and alpha_t <= 1, the loss never
// exceeds ce, hence never exceeds torch's binary_cross_entropy_with_logits (exactly, every
// element, every dtype; tested).
//
// The gradient, with dce = d ce / dx = (1 - t) p - pw t (1 - p):
//   d loss / dx = alpha_t [m^gamma dce + gamma ce (1 - 2t) p (1 - p) m^(gamma - 1)],
// with m^(gamma - 1) p (1 - p) formed as m^gamma (p (1 - p) / m), p (1 - p) / m <= 1, for a
// gamma other than 1 or 2: no power of m below zero is ever formed, so the loss and the gradient
// stay finite for any finite logit and gamma >= 0 (torchvision's gradient is NaN where m
// underflows to 0 and gamma < 1; the limit there is 0, which is what this gives). 1 - p is formed
// as sigmoid(-x) (no cancellation).
// The hot loops run this per element, forward and backward: it uses the cheap exp_neg_ and
// log1p_unit_ (1 ulp each), and every fused multiply-add is written out so every instruction set
// gives the same bits.
//
// Softmax focal loss of a row of logits with target class y: loss = -w (1 - p_y)^gamma log p_y,
// with 1 - p_y summed from the other classes' probabilities (no cancellation) and
//   d loss / dx_k = -w (delta_ky - p_k) m^gamma (1 - gamma p_y log(p_y) / m),   m = 1 - p_y,
// where log(p_y) / m -> -1 as m -> 0.
#pragma once

#include <type_traits>

#include "common/fast_math.h"
#include "common/macros.h"

namespace fastops::focal_loss {
inline namespace FASTOPS_ISA_NAMESPACE {

// One rounding each, never contracted into a fused multiply-add: nvcc contracts a * b - c by
// default, the CPU copies are built with -ffp-contract=off.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float mul_rn_(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float add_rn_(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double mul_rn_(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double add_rn_(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// v rounded to the storage type S, as a torch elementwise op on S tensors rounds its result
// (float16 and bfloat16 compute in float and round each result); no-op when S is T.
template <typename S, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T round_to_(T v) {
  if constexpr (std::is_same_v<S, T>) {
    return v;
  } else {
    return static_cast<T>(static_cast<S>(v));
  }
}

// Scale that keeps our L = log1p(exp(-|x|)) at or below torch's. Torch's exp and log1p (SLEEF's
// u10 functions, glibc's, CUDA's) are each within 1 ulp of the exact value (CUDA's expf: 2), so
// its L is at least L (1 - 3u), u = 2^-23 (2^-52 for double; an exp error of relative e moves
// log1p by at most e, since e^-a / (1 + e^-a) <= log1p(e^-a)). Ours are within 1 ulp of the
// correctly rounded value each (1.5 ulp of the exact one), so at most L (1 + 3u) before the scale
// and at most L (1 - 4.5u) after it (double: 1 - 5.5u). The price: ce is up to 2^-20 (relative)
// below torch's (8 to 16 ulp where ce = L).
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float below_torch_(float) { return 1.0f - 0x1p-20f; }
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double below_torch_(double) { return 1.0 - 0x1p-49; }
// Our scaled L where exp_neg_ is clamped (float: |x| >= 87.3; double: no clamp, 0).
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float l_clamped_(float) {
  return log1p_unit_(exp_neg_(87.3f)) * below_torch_(0.0f);
}
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double l_clamped_(double) { return 0.0; }

template <typename T>
struct SigmoidTerms {
  T loss, grad;
};

// Loss and gradient for one logit. S is the inputs' storage type (see round_to_), kPosWeight
// whether pw is read (else it is 1 and lw = 1 exactly). alpha < 0 disables alpha_t; a_neg is
// 1 - alpha rounded once from the double alpha, as torchvision's Python scalar. kGamma: gamma when
// it is 0, 1 or 2 (see pow_nonneg), else -1.
template <int kGamma, typename S, bool kPosWeight, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE SigmoidTerms<T> sigmoid_focal(T x, T t, T pw, T alpha, T a_neg, T gamma) {
  const T zero(0), one(1);
  const T ax = abs_(x);
  const T e = exp_neg_(ax);  // exp(-|x|) in (0, 1]
  const T inv = one / (one + e);
  const T lg = log1p_unit_(e);  // log1p(exp(-|x|))
  const T ei = e * inv;
  const bool neg = x < zero;
  const T p = neg ? ei : inv;  // sigmoid(x)
  const T q = neg ? inv : ei;  // 1 - p, without cancellation
  const T omt = one - t;
  // torch's cross-entropy (see the top of this file), with L lowered by the value it takes where
  // exp_neg_ is clamped (|x| >= 87.3, where torch's L is smaller still or 0): there it is exactly
  // 0; elsewhere the shift is below 1.2e-38. |.| instead of a clamp at 0 (a select here slows the
  // whole loop); it only matters if exp_neg_ dips an ulp below its clamped value before the clamp.
  const T l_low = abs_(lg * below_torch_(lg) - l_clamped_(lg));
  const T ls = round_to_<S>(add_rn_(neg ? x : zero, -l_low));
  T lw_ls = ls;
  if constexpr (kPosWeight) {
    const T lw = round_to_<S>(add_rn_(round_to_<S>(mul_rn_(round_to_<S>(pw - one), t)), one));
    lw_ls = round_to_<S>(mul_rn_(lw, ls));
  }
  const T ce = round_to_<S>(add_rn_(round_to_<S>(mul_rn_(round_to_<S>(omt), x)), -lw_ls));
  const T m_raw = fma_(t, q, omt * p);
  const T m = m_raw < one ? m_raw : one;  // <= 1 also where the soft-label mix rounds above it
  // m^gamma <= 1: exact for gamma 0, 1, 2 (1, m, m m), clamped for exp(gamma log m)
  const T mg_raw = pow_nonneg<kGamma>(m, gamma);
  const T mg = (kGamma >= 0 || mg_raw < one) ? mg_raw : one;
  // alpha_t = alpha t + (1 - alpha)(1 - t), 1 when alpha < 0; in this form (not (1 - alpha) +
  // (2 alpha - 1) t, which cancels) a hard target gives alpha or 1 - alpha exactly, however small
  const T a = alpha < zero ? one : fma_(alpha, t, a_neg * omt);
  const T pwt = pw * t;
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
  r.loss = a * (ce * mg);
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
