// exp, log and log1p for float without library calls, so that loops calling them vectorize (GCC
// only calls libm one element at a time) and CPU and GPU kernels share one formula. Branch-free:
// every case is a select. double overloads call libm (double is for tests and gradcheck).
//
// Accuracy against the correctly rounded float result, over every float32 bit pattern
// (tests/native/fast_math_check.cpp; the test suite runs it on a sample): exp_ at most 1 ulp,
// log_ at most 1 ulp, log1p_ at most 2 ulp; specials (NaN, +-inf, 0, denormals) as libm's.
// exp_neg_ and log1p_unit_ are cheaper versions for a restricted domain (1 ulp there).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/macros.h"

namespace fastops {
inline namespace FASTOPS_ISA_NAMESPACE {

// a * b + c rounded once. With FMA hardware (the AVX2 and AVX-512 copies, CUDA) one instruction;
// the x86-64 baseline copy calls libm's fmaf (slow, but it runs only on CPUs older than AVX2).
// Exact everywhere, so every copy computes the same bits.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float fma_(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}

FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double fma_(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return __builtin_fma(a, b, c);
#endif
}

FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE int32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(f);
#else
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
#endif
}
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float bits_float(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
#endif
}

// e^r for |r| <= ln2 / 2 (the reduced argument of exp_ and exp_neg_): a degree-6 polynomial.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float exp_reduced_(float r) {
  float p = 1.9875691500e-4f;
  p = fma_(p, r, 1.3981999507e-3f);
  p = fma_(p, r, 8.3334519073e-3f);
  p = fma_(p, r, 4.1665795894e-2f);
  p = fma_(p, r, 1.6666665459e-1f);
  p = fma_(p, r, 5.0000001201e-1f);
  p = fma_(p * r, r, r) + 1.0f;
  return p;
}

// Cephes' degree-8 P(f) of log(1 + f) = f - f^2/2 + f^3 P(f), for f in [sqrt(1/2) - 1, sqrt(2) - 1]
// (log_ and log1p_unit_).
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float log_poly_(float f) {
  float p = 7.0376836292e-2f;
  p = fma_(p, f, -1.1514610310e-1f);
  p = fma_(p, f, 1.1676998740e-1f);
  p = fma_(p, f, -1.2420140846e-1f);
  p = fma_(p, f, 1.4249322787e-1f);
  p = fma_(p, f, -1.6668057665e-1f);
  p = fma_(p, f, 2.0000714765e-1f);
  p = fma_(p, f, -2.4999993993e-1f);
  p = fma_(p, f, 3.3333331174e-1f);
  return p;
}

// e^x: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two for an exact product), a degree-6
// polynomial for e^r, and 2^n applied in two halves so that results near the float range's ends
// (denormals included) come out right.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float exp_(float x) {
  const float xc = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);
  // round to the nearest integer by adding and removing 1.5 * 2^23 (vectorizes on every x86 level)
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = fma_(n, -0.693359375f, xc);  // ln2 = 0.693359375 - 2.12194440e-4, the first part exact in float
  r = fma_(n, 2.12194440e-4f, r);
  const float p = exp_reduced_(r);
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni / 2, n2 = ni - n1;  // 2^n = 2^n1 * 2^n2, each within the normal exponents
  float y = p * bits_float((n1 + 127) << 23) * bits_float((n2 + 127) << 23);
  y = x > 88.72283935546875f ? INFINITY : y;   // overflow
  y = x < -103.97208404541015625f ? 0.0f : y;  // underflow past the smallest denormal
  return x != x ? x : y;
}

// log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), f = m - 1, and log(m) = f - f^2/2 + f^3 P(f)
// with Cephes' degree-8 polynomial (no division); ln2 split in two for an exact product;
// denormals are scaled up first.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float log_(float x) {
  const bool tiny = x < 1.17549435e-38f;        // below the smallest normal (0 and negatives land here too)
  const float xs = tiny ? x * 33554432.0f : x;  // 2^25
  const int32_t bits = float_bits(xs);
  int32_t e = ((bits >> 23) & 0xff) - 127;
  float m = bits_float((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  const bool high = m > 1.41421356237f;
  m = high ? m * 0.5f : m;
  e = high ? e + 1 : e;
  const float f = m - 1.0f;
  const float z = f * f;
  const float p = log_poly_(f);
  const float ef = static_cast<float>(e) - (tiny ? 25.0f : 0.0f);
  float y = fma_(p * f, z, fma_(ef, -2.12194440e-4f, -0.5f * z));
  y = fma_(ef, 0.693359375f, f + y);
  y = x == 0.0f ? -INFINITY : y;
  y = x < 0.0f ? NAN : y;
  y = x == INFINITY ? INFINITY : y;
  return x != x ? x : y;
}

// log(1 + x), accurate for small x: with u = 1 + x rounded, log(u) * x / (u - 1) cancels the
// rounding of u (Goldberg's method); x itself where u == 1.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float log1p_(float x) {
  const float u = 1.0f + x;
  const float d = u - 1.0f;
  const float y = d == 0.0f ? x : log_(u) * (x / (d == 0.0f ? 1.0f : d));
  return u == INFINITY ? INFINITY : y;
}

// |x|: one AND (GCC turns x < 0 ? -x : x into a compare, a negation and a blend)
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float abs_(float x) { return bits_float(float_bits(x) & 0x7fffffff); }
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double abs_(double x) { return ::fabs(x); }

// e^-a for a >= 0, for the hot loops whose argument is -|x| (sigmoid-type losses): about half the
// instructions of exp_. a above 87.3 is taken as 87.3 (e^-87.3 ~ 1.2e-38, the smallest normal
// floats), so results below that are not flushed to 0 or made denormal; NaN gives NaN. At most
// 1 ulp for a in [0, 87.3].
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float exp_neg_(float a) {
  const float na = -87.3f > -a ? -87.3f : -a;  // NaN stays NaN
  // n = round(-a / ln2) by the float adder: s = 1.5 * 2^23 + 127 + n holds n + 127 in its low
  // mantissa bits, so s's bits shifted left by 23 are the float 2^n
  const float s = fma_(na, 1.44269504088896341f, 12583039.0f);
  const float n = s - 12583039.0f;
  float r = fma_(n, -0.693359375f, na);  // -a - n ln2, ln2 split as in exp_
  r = fma_(n, 2.12194440e-4f, r);
  const float p = exp_reduced_(r);
  return p * bits_float(static_cast<int32_t>(static_cast<uint32_t>(float_bits(s)) << 23));
}

// log(1 + e) for e in [0, 1] (the softplus of -|x|): log1p_'s polynomial without its range
// handling. Above sqrt(2) - 1, log(1 + e) = ln2 + log1p((e - 1) / 2). At most 1 ulp; NaN gives NaN.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float log1p_unit_(float e) {
  const bool high = e > 0.41421356f;
  const float f = high ? fma_(e, 0.5f, -0.5f) : e;
  // added unconditionally: a second select on `high` after the polynomial makes GCC evaluate
  // the polynomial once per branch
  const float k = high ? 0.693147182f : 0.0f;
  const float z = f * f;
  const float p = log_poly_(f);
  return (f + fma_(p * f, z, -0.5f * z)) + k;
}

FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double exp_(double x) { return ::exp(x); }
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double exp_neg_(double a) { return ::exp(-a); }
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double log1p_unit_(double e) { return ::log1p(e); }
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double log_(double x) { return ::log(x); }
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double log1p_(double x) { return ::log1p(x); }

// x^g for x >= 0 (0^g = 0 for g > 0, x^0 = 1). kExp, when 0, 1 or 2, is the exponent known at
// compile time (exact products, no branch in a vector loop); -1 means g, by exp(g log x).
template <int kExp, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T pow_nonneg(T x, T g) {
  if constexpr (kExp == 0) {
    return T(1);
  } else if constexpr (kExp == 1) {
    return x;
  } else if constexpr (kExp == 2) {
    return x * x;
  } else {
    const T y = exp_(g * log_(x > T(0) ? x : T(1)));
    return x > T(0) ? y : T(0);
  }
}

// Calls fn(std::integral_constant<int, k>{}) with k = g for g in {0, 1, 2}, else -1.
template <typename Fn>
void with_exponent(double g, Fn&& fn) {
  if (g == 0) return fn(std::integral_constant<int, 0>{});
  if (g == 1) return fn(std::integral_constant<int, 1>{});
  if (g == 2) return fn(std::integral_constant<int, 2>{});
  return fn(std::integral_constant<int, -1>{});
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops
