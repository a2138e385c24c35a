// Per-pair math of the IoU family (IoU, GIoU, DIoU, CIoU, IoF), shared by the CPU and CUDA kernels.
//
// Everything here works on one pair of boxes in the accumulation type T (float for float16,
// bfloat16 and float32 boxes; double for float64). The kernels differ only in how they walk the
// pairs (pairwise N x M, or aligned N with N).
//
// Two forms of the formulas, as torchvision has them:
//  - metric form (box_iou, generalized_box_iou, distance_box_iou, complete_box_iou): intersection
//    and enclosing sides clamped at 0, eps only in the DIoU/CIoU denominators;
//  - loss form (generalized/distance/complete_box_iou_loss): intersection only where the boxes
//    strictly overlap, eps added to the union and to the enclosing area.
// Gradients follow torch's conventions for the same expressions: max/min split the gradient
// equally at ties, clamp(min=0) passes it only where its input is > 0, CIoU's alpha is a constant.
//
// Documented edge values (where torchvision divides by zero):
//  - a ratio whose denominator is exactly 0 is 0 (IoU of two zero-area boxes is 0, not NaN);
//  - CIoU's aspect-ratio term is 0 when either box has zero width and zero height;
//  - NaN or +-Inf in any coordinate of either box gives NaN (value and gradients).
#pragma once

#include <cmath>

#include "common/macros.h"

namespace fastops::box_iou {

enum class Mode : int { IoU = 0, GIoU = 1, DIoU = 2, CIoU = 3, IoF = 4 };
enum class Format : int { XYXY = 0, XYWH = 1, CXCYWH = 2 };

inline namespace FASTOPS_ISA_NAMESPACE {

// One box in every form the formulas use, derived once from its stored format.
template <typename T>
struct Geom {
  T x1, y1, x2, y2;  // corners
  T w, h;            // sides: x2 - x1 for xyxy, the stored values for xywh and cxcywh
  T cx, cy;          // centre
  T area;            // w * h
  T angle;           // atan(w / h) (CIoU only); 0 for a point box
  T aspect;          // 1, or 0 for a point box (w = h = 0), whose aspect ratio is undefined
  T poison;          // 0, or NaN when any coordinate is NaN or infinite
};

// Gradient with respect to the fields of Geom that come from the coordinates (area and angle are
// folded into w and h).
template <typename T>
struct GeomGrad {
  T x1 = 0, y1 = 0, x2 = 0, y2 = 0, w = 0, h = 0, cx = 0, cy = 0;

  FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE GeomGrad& operator+=(const GeomGrad& g) {
    x1 += g.x1, y1 += g.y1, x2 += g.x2, y2 += g.y2, w += g.w, h += g.h, cx += g.cx, cy += g.cy;
    return *this;
  }
};

// atan for float without a library call, so loops calling it vectorize (and CPU and GPU round
// alike): Cephes' atanf reduction and polynomial, written with selects instead of branches.
// Error against float(atan(double(x))): at most 3 ulp over every float32 value
// (tests/native/fast_math_check.cpp).
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float atan_(float t) {
  const float x = t < 0.0f ? -t : t;
  const bool inverse = x > 2.414213562373095f;               // tan(3 pi / 8): atan(x) = pi / 2 - atan(1 / x)
  const bool shifted = !inverse && x > 0.4142135623730950f;  // tan(pi / 8): pi / 4 + atan((x - 1) / (x + 1))
  const float z = inverse ? -1.0f / (x > 0.0f ? x : 1.0f) : (shifted ? (x - 1.0f) / (x + 1.0f) : x);
  const float z2 = z * z;
  const float poly =
      (((8.05374449538e-2f * z2 - 1.38776856032e-1f) * z2 + 1.99777106478e-1f) * z2 - 3.33329491539e-1f) * z2 * z + z;
  const float r = (inverse ? 1.5707963267948966f : (shifted ? 0.7853981633974483f : 0.0f)) + poly;
  return t < 0.0f ? -r : r;
}
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double atan_(double x) { return ::atan(x); }
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T max_(T a, T b) {
  return a > b ? a : b;
}
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T min_(T a, T b) {
  return a < b ? a : b;
}
// n / d, and 0 where d is exactly 0. Divides unconditionally and then selects, so that n is always
// evaluated: a conditional use lets the compiler sink n's load into a branch, which stops it from
// vectorizing the loop around.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T safe_div(T n, T d) {
  const bool ok = d != T(0);
  const T q = n / (ok ? d : T(1));
  return ok ? q : T(0);
}
// d max(p, q) / dp and d min(p, q) / dp as torch's maximum/minimum define them (ties split).
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T dmax(T p, T q) {
  return p > q ? T(1) : (p == q ? T(0.5) : T(0));
}
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T dmin(T p, T q) {
  return p < q ? T(1) : (p == q ? T(0.5) : T(0));
}

// 4 / pi^2, rounded once to T as torch rounds the Python constant.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T ciou_k() {
  return T(0.40528473456935108578);
}

template <typename T, typename S>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE Geom<T> make_geom(S s0, S s1, S s2, S s3, Format fmt, bool with_angle) {
  const T a = static_cast<T>(s0), b = static_cast<T>(s1), c = static_cast<T>(s2), d = static_cast<T>(s3);
  Geom<T> g;
  if (fmt == Format::XYXY) {
    g.x1 = a, g.y1 = b, g.x2 = c, g.y2 = d;
    g.w = c - a, g.h = d - b;
    g.cx = (a + c) / T(2), g.cy = (b + d) / T(2);
  } else if (fmt == Format::XYWH) {
    g.x1 = a, g.y1 = b, g.x2 = a + c, g.y2 = b + d;
    g.w = c, g.h = d;
    g.cx = (g.x1 + g.x2) / T(2), g.cy = (g.y1 + g.y2) / T(2);
  } else {  // CXCYWH
    g.x1 = a - c / T(2), g.y1 = b - d / T(2), g.x2 = a + c / T(2), g.y2 = b + d / T(2);
    g.w = c, g.h = d;
    g.cx = a, g.cy = b;
  }
  g.area = g.w * g.h;
  g.poison = (a - a) + (b - b) + (c - c) + (d - d);  // x - x is 0, or NaN for NaN and +-Inf
  const bool point = (g.w == T(0)) & (g.h == T(0));
  g.aspect = point ? T(0) : T(1);
  g.angle = (with_angle && !point) ? atan_(g.w / g.h) : T(0);
  return g;
}

template <typename T, typename S>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE Geom<T> load_geom(const S* p, Format fmt, bool with_angle) {
  return make_geom<T>(p[0], p[1], p[2], p[3], fmt, with_angle);
}

// The value for one pair; a is the box from boxes1 (IoF divides by its area). LossForm selects
// torchvision's loss formulas (a template parameter: a run-time flag keeps compilers from
// vectorizing the pair loops).
template <Mode M, bool LossForm, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T pair_value(const Geom<T>& a, const Geom<T>& b, T eps) {
  constexpr bool loss_form = LossForm;
  const T zero(0);
  const T e = loss_form ? eps : zero;
  const T poison = a.poison + b.poison;
  const T iw = min_(a.x2, b.x2) - max_(a.x1, b.x1);
  const T ih = min_(a.y2, b.y2) - max_(a.y1, b.y1);
  const bool overlap = (iw > zero) & (ih > zero);  // no short circuit: keeps the loop vectorizable
  const T inter = loss_form ? (overlap ? iw * ih : zero) : max_(iw, zero) * max_(ih, zero);
  if constexpr (M == Mode::IoF) {
    return safe_div(inter, a.area + e) + poison;
  } else {
    const T uni = (a.area + b.area) - inter;
    const T iou = safe_div(inter, uni + e);
    if constexpr (M == Mode::IoU) {
      return iou + poison;
    } else {
      T cw = max_(a.x2, b.x2) - min_(a.x1, b.x1);
      T ch = max_(a.y2, b.y2) - min_(a.y1, b.y1);
      if constexpr (!loss_form) cw = max_(cw, zero), ch = max_(ch, zero);
      if constexpr (M == Mode::GIoU) {
        const T area_c = cw * ch;
        return iou - safe_div(area_c - uni, area_c + e) + poison;
      } else {
        const T dx = a.cx - b.cx, dy = a.cy - b.cy;
        const T diou = iou - safe_div(dx * dx + dy * dy, (cw * cw + ch * ch) + eps);
        if constexpr (M == Mode::DIoU) {
          return diou + poison;
        } else {
          const T da = a.angle - b.angle;
          const T v = ciou_k<T>() * (da * da) * (a.aspect * b.aspect);
          const T alpha = safe_div(v, ((T(1) - iou) + v) + eps);
          return diou - alpha * v + poison;
        }
      }
    }
  }
}

// Adds g * d pair_value / d (geometry of a, of b) to ga and gb.
template <Mode M, bool LossForm, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE void pair_grad(const Geom<T>& a, const Geom<T>& b, T eps, T g, GeomGrad<T>& ga,
                                                       GeomGrad<T>& gb) {
  constexpr bool loss_form = LossForm;
  const T zero(0), one(1), two(2);
  const T e = loss_form ? eps : zero;
  // intersection
  const T iw = min_(a.x2, b.x2) - max_(a.x1, b.x1);
  const T ih = min_(a.y2, b.y2) - max_(a.y1, b.y1);
  const bool overlap = (iw > zero) & (ih > zero);
  const T iwc = max_(iw, zero), ihc = max_(ih, zero);
  const T inter = loss_form ? (overlap ? iw * ih : zero) : iwc * ihc;

  T g_inter = zero, g_area_a = zero, g_area_b = zero, g_cw = zero, g_ch = zero;
  T g_cx = zero, g_cy = zero, g_angle = zero;  // for a; b gets the negatives
  if constexpr (M == Mode::IoF) {
    const T den = a.area + e;
    const T val = safe_div(inter, den);
    g_inter = safe_div(g, den);
    g_area_a = -safe_div(g * val, den);
  } else {
    const T uni = (a.area + b.area) - inter;
    const T den = uni + e;
    const T iou = safe_div(inter, den);
    T g_uni = zero;
    if constexpr (M != Mode::IoU) {
      const T cw_raw = max_(a.x2, b.x2) - min_(a.x1, b.x1);
      const T ch_raw = max_(a.y2, b.y2) - min_(a.y1, b.y1);
      const T cw = loss_form ? cw_raw : max_(cw_raw, zero);
      const T ch = loss_form ? ch_raw : max_(ch_raw, zero);
      if constexpr (M == Mode::GIoU) {
        const T area_c = cw * ch;
        const T c_den = area_c + e;
        const T q = safe_div(area_c - uni, c_den);  // giou = iou - q
        const T g_area_c = safe_div(-g * (one - q), c_den);
        g_uni = safe_div(g, c_den);
        g_cw = g_area_c * ch, g_ch = g_area_c * cw;
      } else {
        const T dx = a.cx - b.cx, dy = a.cy - b.cy;
        const T diag = (cw * cw + ch * ch) + eps;
        const T r = safe_div(dx * dx + dy * dy, diag);  // diou = iou - r
        const T g_cd = safe_div(-g, diag);
        const T g_diag = safe_div(g * r, diag);
        g_cw = g_diag * two * cw, g_ch = g_diag * two * ch;
        g_cx = g_cd * two * dx, g_cy = g_cd * two * dy;
        if constexpr (M == Mode::CIoU) {
          const T da = a.angle - b.angle;
          const T mask = a.aspect * b.aspect;
          const T k = ciou_k<T>();
          const T v = k * (da * da) * mask;
          const T alpha = safe_div(v, ((one - iou) + v) + eps);  // a constant, as in torchvision
          g_angle = -g * alpha * k * two * da * mask;
        }
      }
      if constexpr (!loss_form) {  // clamp(min=0) passes the gradient where its input is > 0
        g_cw = cw_raw > zero ? g_cw : zero;
        g_ch = ch_raw > zero ? g_ch : zero;
      }
      // cw = max(a.x2, b.x2) - min(a.x1, b.x1)
      ga.x2 += g_cw * dmax(a.x2, b.x2), gb.x2 += g_cw * dmax(b.x2, a.x2);
      ga.x1 -= g_cw * dmin(a.x1, b.x1), gb.x1 -= g_cw * dmin(b.x1, a.x1);
      ga.y2 += g_ch * dmax(a.y2, b.y2), gb.y2 += g_ch * dmax(b.y2, a.y2);
      ga.y1 -= g_ch * dmin(a.y1, b.y1), gb.y1 -= g_ch * dmin(b.y1, a.y1);
    }
    const T g_iou = g;
    g_inter = safe_div(g_iou, den);
    g_uni -= safe_div(g_iou * iou, den);
    // uni = area_a + area_b - inter
    g_area_a = g_uni, g_area_b = g_uni;
    g_inter -= g_uni;
  }
  // inter = clamp(iw) * clamp(ih), or iw * ih where both are > 0
  const T g_iw = loss_form ? (overlap ? g_inter * ih : zero) : (iw > zero ? g_inter * ihc : zero);
  const T g_ih = loss_form ? (overlap ? g_inter * iw : zero) : (ih > zero ? g_inter * iwc : zero);
  // iw = min(a.x2, b.x2) - max(a.x1, b.x1)
  ga.x2 += g_iw * dmin(a.x2, b.x2), gb.x2 += g_iw * dmin(b.x2, a.x2);
  ga.x1 -= g_iw * dmax(a.x1, b.x1), gb.x1 -= g_iw * dmax(b.x1, a.x1);
  ga.y2 += g_ih * dmin(a.y2, b.y2), gb.y2 += g_ih * dmin(b.y2, a.y2);
  ga.y1 -= g_ih * dmax(a.y1, b.y1), gb.y1 -= g_ih * dmax(b.y1, a.y1);
  // area = w * h; angle = atan(w / h): d/dw = h / (w^2 + h^2), d/dh = -w / (w^2 + h^2)
  const T s_a = a.w * a.w + a.h * a.h, s_b = b.w * b.w + b.h * b.h;
  ga.w += g_area_a * a.h + safe_div(g_angle * a.h, s_a);
  ga.h += g_area_a * a.w - safe_div(g_angle * a.w, s_a);
  gb.w += g_area_b * b.h - safe_div(g_angle * b.h, s_b);
  gb.h += g_area_b * b.w + safe_div(g_angle * b.w, s_b);
  ga.cx += g_cx, ga.cy += g_cy;
  gb.cx -= g_cx, gb.cy -= g_cy;
  // NaN/Inf coordinates poison both boxes' gradients.
  const T poison = a.poison + b.poison;
  ga.x1 += poison, ga.y1 += poison, ga.x2 += poison, ga.y2 += poison;
  gb.x1 += poison, gb.y1 += poison, gb.x2 += poison, gb.y2 += poison;
}

// Gradient with respect to the 4 stored coordinates, from the gradient with respect to Geom.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE void geom_grad_to_coords(const GeomGrad<T>& g, Format fmt, T out[4]) {
  const T half(0.5);
  if (fmt == Format::XYXY) {  // w = x2 - x1, cx = (x1 + x2) / 2
    out[0] = g.x1 - g.w + g.cx * half;
    out[1] = g.y1 - g.h + g.cy * half;
    out[2] = g.x2 + g.w + g.cx * half;
    out[3] = g.y2 + g.h + g.cy * half;
  } else if (fmt == Format::XYWH) {  // x2 = x + w, cx = (x + x2) / 2
    out[0] = g.x1 + g.x2 + g.cx;
    out[1] = g.y1 + g.y2 + g.cy;
    out[2] = g.x2 + g.w + g.cx * half;
    out[3] = g.y2 + g.h + g.cy * half;
  } else {  // CXCYWH: x1 = cx - w / 2, x2 = cx + w / 2
    out[0] = g.x1 + g.x2 + g.cx;
    out[1] = g.y1 + g.y2 + g.cy;
    out[2] = (g.x2 - g.x1) * half + g.w;
    out[3] = (g.y2 - g.y1) * half + g.h;
  }
}

// Writes the coordinate gradient of one box, in the boxes' own type S.
template <typename S, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE void store_coord_grad(const GeomGrad<T>& g, Format fmt, S* out) {
  T c[4];
  geom_grad_to_coords(g, fmt, c);
  for (int k = 0; k < 4; ++k) out[k] = static_cast<S>(c[k]);
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::box_iou
