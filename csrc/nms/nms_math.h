// Per-pair math of the NMS family, shared by the CPU and CUDA kernels.
//
// The IoU is torchvision's NMS formula, inter / ((area_a + area_b) - inter), in the accumulation
// type T (float for float16, bfloat16 and float32 boxes; double for float64), so keep decisions on
// float32/float64 boxes are identical to torchvision's. A NaN coordinate makes the IoU NaN, and a
// NaN IoU compares false: such a box never suppresses and is never suppressed.
#pragma once

#include <cmath>

#include "common/macros.h"

namespace fastops::nms {

enum class SoftMethod : int { Linear = 0, Gaussian = 1 };
enum class MatrixKernel : int { Linear = 0, Gaussian = 1 };

inline namespace FASTOPS_ISA_NAMESPACE {

// exp from the C library (expf / exp; CUDA's on the device): soft-NMS and Matrix NMS decay with it,
// as mmcv and mmdet do, rather than with fast_math.h's polynomial exp_.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float libm_exp(float x) { return ::expf(x); }
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double libm_exp(double x) { return ::exp(x); }

template <typename T>
struct NmsBox {
  T x1, y1, x2, y2, area;
};

template <typename T, typename S>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE NmsBox<T> load_nms_box(const S* p) {
  NmsBox<T> b;
  b.x1 = static_cast<T>(p[0]), b.y1 = static_cast<T>(p[1]);
  b.x2 = static_cast<T>(p[2]), b.y2 = static_cast<T>(p[3]);
  b.area = (b.x2 - b.x1) * (b.y2 - b.y1);
  return b;
}

template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T nms_iou(const NmsBox<T>& a, const NmsBox<T>& b) {
  const T zero(0);
  const T xx1 = a.x1 > b.x1 ? a.x1 : b.x1, yy1 = a.y1 > b.y1 ? a.y1 : b.y1;
  const T xx2 = a.x2 < b.x2 ? a.x2 : b.x2, yy2 = a.y2 < b.y2 ? a.y2 : b.y2;
  const T w = xx2 - xx1 > zero ? xx2 - xx1 : zero;
  const T h = yy2 - yy1 > zero ? yy2 - yy1 : zero;
  const T inter = w * h;
  return inter / ((a.area + b.area) - inter);
}

// The IoU, with NaN (a NaN coordinate, or two empty boxes) read as 0: no overlap. Soft-NMS and
// Matrix NMS use it, so a broken box neither decays others nor gets decayed.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T nms_iou_or_zero(const NmsBox<T>& a, const NmsBox<T>& b) {
  const T v = nms_iou(a, b);
  return v == v ? v : T(0);
}

// The largest T not above the double threshold t: for every T value x (NaN included),
// x > below(t) exactly when double(x) > t, which is how torchvision compares.
template <typename T>
inline T threshold_below(double t) {
  T r = static_cast<T>(t);
  if (static_cast<double>(r) > t) r = std::nextafter(r, -INFINITY);
  return r;
}

// Soft-NMS score factor for a box overlapping the selected one by iou (mmcv's rules: linear
// decays where iou >= threshold, gaussian everywhere).
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T soft_weight(T iou, SoftMethod method, T iou_threshold, T sigma) {
  if (method == SoftMethod::Linear) return iou >= iou_threshold ? T(1) - iou : T(1);
  return libm_exp(-(iou * iou) / sigma);
}

// Matrix NMS: box j's decay is min over higher-scored boxes i of its class of f(iou_ij) / f(comp_i),
// where comp_i is box i's own largest IoU with a higher-scored box of its class, f(x) = 1 - x
// (linear) or exp(-sigma x^2) (gaussian); 1 when no such box. The kernels reduce a key per pair:
// linear, the ratio itself; gaussian, comp_i^2 - iou_ij^2, since exp(-s a^2) / exp(-s b^2) =
// exp(s (b^2 - a^2)) and exp is increasing, so one exp per box replaces one per pair.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T matrix_key(T iou, T comp, MatrixKernel kernel) {
  if (kernel == MatrixKernel::Gaussian) return comp * comp - iou * iou;
  // A zero 1 - comp (box i duplicates an earlier box exactly) gives +inf: no decay from i, whose
  // duplicates the earlier box decays instead.
  const T den = T(1) - comp;
  return den != T(0) ? (T(1) - iou) / den : T(INFINITY);
}

// The decay from the smallest key over a box's predecessors (+inf when it has none).
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T matrix_decay(T min_key, MatrixKernel kernel, T sigma) {
  const T d = kernel == MatrixKernel::Gaussian ? libm_exp(sigma * min_key) : min_key;
  return d < T(1) ? d : T(1);
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::nms
