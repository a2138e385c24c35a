// Per-box and per-pixel math of paste_masks, shared by the CPU and CUDA kernels.
//
// paste_masks computes torchvision's paste_masks_in_image(masks, boxes, (H, W), padding):
//  1. expand_masks: each mh x mw mask is zero-padded by `padding` on every side, to ph x pw
//     (ph = mh + 2 padding, pw = mw + 2 padding); scale = pw / mw, in double (torchvision's
//     float(M + 2 padding) / M with M = mask.shape[-1]).
//  2. expand_boxes: in the boxes' dtype, each operation rounded to it, as torch's elementwise ops
//     round: half sides (x2 - x1) * 0.5 times scale (scale rounded to float for float16, bfloat16
//     and float32 boxes, as torch passes a Python float to a float kernel), centres
//     (x2 + x1) * 0.5, corners centre -/+ half side; then truncated to int64 (.to(torch.int64)).
//  3. paste_mask_in_image: the padded mask is resized to h x w = max(y2 - y1 + 1, 1) x
//     max(x2 - x1 + 1, 1) by torch's bilinear interpolation (align_corners=False) and written at
//     (y1, x1) into zeros, clipped to the image: image pixel (y, x) is resized pixel (y - y1, x - x1)
//     for y1 <= y <= y2, x1 <= x <= x2 inside the image, and 0 elsewhere.
//
// The resize reproduces torch's kernels operation for operation, including the fused multiply-adds
// their builds contain (torch's CPU kernels are compiled with FMA contraction in their AVX2 and
// AVX-512 copies, nvcc contracts by default), so results are bitwise torchvision's:
//  - CPU (ATen's UpSampleKernel.cpp, C = 1 planes): when h + w <= 128 its channels-last kernel
//    (weights are products of the two axes' lambdas), otherwise its generic kernel (lambdas
//    rounded to the mask dtype, rows interpolated first); see cpu_small_value / cpu_large_value.
//  - CUDA (ATen's upsample_bilinear2d_out_frame): cuda_value, compiled by nvcc like torch's.
//
// Beyond torchvision (which raises there, or misreads negative slice bounds): a box whose image
// rectangle is empty (wholly outside the image) pastes nothing; a box with a NaN or infinite
// expanded coordinate pastes nothing; finite coordinates beyond +-2^40 are clamped to it before
// truncation (no image reaches them, so only the resize's step changes, negligibly). NaN or
// infinite mask values propagate as torch's arithmetic propagates them (0 * inf is NaN).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "common/fast_math.h"
#include "common/macros.h"

namespace fastops::paste_masks {
inline namespace FASTOPS_ISA_NAMESPACE {

// Coordinates are clamped to +-kCoordLimit before truncation to int64.
constexpr double kCoordLimit = 1099511627776.0;  // 2^40

// Arithmetic of torch's elementwise ops on dtype S: float16 and bfloat16 compute in float and round
// each result to S; float and double compute in their own type. Products are written with
// mul_rn so that nvcc cannot fuse them into a following add (torch runs each op as its own kernel).
template <typename S>
struct BoxArith {
  using T = S;
  static FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T round(T v) { return v; }
};
template <>
struct BoxArith<c10::Half> {
  using T = float;
  static FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float round(float v) {
    return static_cast<float>(static_cast<c10::Half>(v));
  }
};
template <>
struct BoxArith<c10::BFloat16> {
  using T = float;
  static FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float round(float v) {
    return static_cast<float>(static_cast<c10::BFloat16>(v));
  }
};

FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// A box after expand_boxes and truncation: inclusive integer corners, as torchvision's.
struct PasteBox {
  int64_t x1, y1, x2, y2;
  bool valid;  // false: a coordinate was NaN or infinite, nothing is pasted
};

template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE int64_t truncate_coord(T v, bool& valid) {
  if (!(v == v) || v - v != v - v) {  // NaN or +-inf (v - v is NaN for both)
    valid = false;
    return 0;
  }
  const T limit = static_cast<T>(kCoordLimit);
  v = v < -limit ? -limit : (v > limit ? limit : v);
  return static_cast<int64_t>(v);
}

// expand_boxes(box, scale).to(int64) for one box of stored type S.
template <typename S>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE PasteBox expand_box(const S* box, double scale) {
  using A = BoxArith<S>;
  using T = typename A::T;
  const T x1 = static_cast<T>(box[0]), y1 = static_cast<T>(box[1]);
  const T x2 = static_cast<T>(box[2]), y2 = static_cast<T>(box[3]);
  const T half = static_cast<T>(0.5), s = static_cast<T>(scale);
  const T w_half = A::round(mul_rn(A::round(mul_rn(A::round(x2 - x1), half)), s));
  const T h_half = A::round(mul_rn(A::round(mul_rn(A::round(y2 - y1), half)), s));
  const T x_c = A::round(mul_rn(A::round(x2 + x1), half));
  const T y_c = A::round(mul_rn(A::round(y2 + y1), half));
  PasteBox b;
  b.valid = true;
  b.x1 = truncate_coord(A::round(x_c - w_half), b.valid);
  b.y1 = truncate_coord(A::round(y_c - h_half), b.valid);
  b.x2 = truncate_coord(A::round(x_c + w_half), b.valid);
  b.y2 = truncate_coord(A::round(y_c + h_half), b.valid);
  return b;
}

// Where a box lands: the resized mask's size and the image rectangle [row_begin, row_end) x
// [col_begin, col_end) it covers (empty for an invalid box or one outside the image).
struct PasteRect {
  int64_t out_h, out_w;            // size of the resized mask
  int64_t row_begin, row_end;      // image rows covered
  int64_t col_begin, col_end;      // image columns covered
  int64_t row_origin, col_origin;  // image pixel of resized pixel (0, 0): the box's y1, x1
};

FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE PasteRect paste_rect(const PasteBox& b, int64_t image_h, int64_t image_w) {
  PasteRect r;
  r.out_h = max64(b.y2 - b.y1 + 1, 1);
  r.out_w = max64(b.x2 - b.x1 + 1, 1);
  r.row_origin = b.y1;
  r.col_origin = b.x1;
  r.row_begin = max64(b.y1, 0);
  r.row_end = min64(b.y2 + 1, image_h);
  r.col_begin = max64(b.x1, 0);
  r.col_end = min64(b.x2 + 1, image_w);
  if (!b.valid || r.row_begin >= r.row_end || r.col_begin >= r.col_end) {
    r.row_begin = r.row_end = r.col_begin = r.col_end = 0;
  }
  return r;
}

// ---- CPU form: ATen's upsample_bilinear2d CPU kernels ------------------------------------------

// torch's CPU kernels use the channels-last form for outputs with h + w <= 128.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE bool cpu_uses_small_form(int64_t out_h, int64_t out_w) {
  return out_h + out_w <= 128;
}

// One axis of one output pixel: the two source indices and their weights (lambda0 for i0), as
// ATen's compute_source_index_and_lambda computes them in opmath T (float or double).
template <typename T>
struct AxisTap {
  int64_t i0, i1;
  T l0, l1;
};

// scale = T(in) / T(out), computed once per axis.
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE AxisTap<T> cpu_axis_tap(int64_t in, int64_t out, T scale, int64_t o) {
  AxisTap<T> t;
  if (in == out) {
    t.i0 = t.i1 = o;
    t.l0 = T(1);
    t.l1 = T(0);
    return t;
  }
  T real = fma_(scale, static_cast<T>(o) + static_cast<T>(0.5), static_cast<T>(-0.5));
  if (real < T(0)) real = T(0);
  // floorf, as ATen's guard_index_and_lambda calls it (a double index is rounded to float first).
  const int64_t i0 = min64(static_cast<int64_t>(std::floor(static_cast<float>(real))), in - 1);
  T l1 = real - static_cast<T>(i0);
  l1 = l1 < T(0) ? T(0) : l1;
  l1 = T(1) < l1 ? T(1) : l1;
  t.i0 = i0;
  t.i1 = i0 + (i0 < in - 1 ? 1 : 0);
  t.l1 = l1;
  t.l0 = T(1) - l1;
  return t;
}

// The generic kernel stores its lambdas in the mask dtype S: lambda1 rounded, lambda0 = 1 - it
// (computed in float and rounded again for float16 / bfloat16).
template <typename S, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE AxisTap<T> round_tap(AxisTap<T> t) {
  using A = BoxArith<S>;
  t.l1 = A::round(t.l1);
  t.l0 = A::round(T(1) - t.l1);
  return t;
}

// Channels-last kernel (h + w <= 128): weights w_ij = hlambda_i * wlambda_j, then
// a*w00 + b*w01 + c*w10 + d*w11 left to right (a = p[h0][w0], b = p[h0][w1], c = p[h1][w0],
// d = p[h1][w1]), the adds fused as torch's build fuses them: for float16 the first pair as
// fma(b, w01, a * w00), for the other dtypes as fma(a, w00, b * w01).
template <typename S, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T cpu_small_value(T a, T b, T c, T d, T w00, T w01, T w10, T w11) {
  T v;
  if constexpr (std::is_same_v<S, c10::Half>) {
    v = fma_(b, w01, a * w00);
  } else {
    v = fma_(a, w00, b * w01);
  }
  v = fma_(c, w10, v);
  return fma_(d, w11, v);
}

// Generic kernel (h + w > 128), lambdas from round_tap: each source row is interpolated
// along the width, fma(a, wl0, b * wl1), then the two rows along the height, fma(t0, hl0, t1 * hl1).
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T cpu_row_value(T a, T b, T wl0, T wl1) {
  return fma_(a, wl0, b * wl1);
}
template <typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T cpu_large_value(T t0, T t1, T hl0, T hl1) {
  return fma_(t0, hl0, t1 * hl1);
}

// ---- CUDA form: ATen's upsample_bilinear2d_out_frame --------------------------------------------

// Padded-mask value at (i, j) of the ph x pw padded grid: mask[i - padding][j - padding] inside
// the mask, 0 in the padding.
template <typename S>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE S padded_at(const S* mask, int64_t mh, int64_t mw, int64_t padding, int64_t i,
                                                    int64_t j) {
  const int64_t mi = i - padding, mj = j - padding;
  return (mi >= 0 && mi < mh && mj >= 0 && mj < mw) ? mask[mi * mw + mj] : S(0.0f);
}

// Resized pixel (oy, ox) of the ph x pw padded mask at out_h x out_w, written as ATen's CUDA kernel
// writes it (same expressions, so nvcc fuses the same multiply-adds). rh = T(ph) / out_h,
// rw = T(pw) / out_w. torch copies the input when the sizes are equal. The source indices are
// capped at the last row / column, which torch's never pass.
template <typename S, typename T>
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE T cuda_value(const S* mask, int64_t mh, int64_t mw, int64_t padding, int64_t ph,
                                                     int64_t pw, int64_t out_h, int64_t out_w, T rh, T rw, int64_t oy,
                                                     int64_t ox) {
  if (ph == out_h && pw == out_w) return static_cast<T>(padded_at(mask, mh, mw, padding, oy, ox));
  T h1r = rh * (static_cast<T>(oy) + static_cast<T>(0.5)) - static_cast<T>(0.5);
  h1r = h1r < T(0) ? T(0) : h1r;
  const int64_t h1 = min64(static_cast<int64_t>(h1r), ph - 1);
  const int64_t h1p = h1 < ph - 1 ? 1 : 0;
  const T h1lambda = h1r - static_cast<T>(h1);
  const T h0lambda = static_cast<T>(1) - h1lambda;
  T w1r = rw * (static_cast<T>(ox) + static_cast<T>(0.5)) - static_cast<T>(0.5);
  w1r = w1r < T(0) ? T(0) : w1r;
  const int64_t w1 = min64(static_cast<int64_t>(w1r), pw - 1);
  const int64_t w1p = w1 < pw - 1 ? 1 : 0;
  const T w1lambda = w1r - static_cast<T>(w1);
  const T w0lambda = static_cast<T>(1) - w1lambda;
  const S a = padded_at(mask, mh, mw, padding, h1, w1);
  const S b = padded_at(mask, mh, mw, padding, h1, w1 + w1p);
  const S c = padded_at(mask, mh, mw, padding, h1 + h1p, w1);
  const S d = padded_at(mask, mh, mw, padding, h1 + h1p, w1 + w1p);
  return h0lambda * (w0lambda * a + w1lambda * b) + h1lambda * (w0lambda * c + w1lambda * d);
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::paste_masks
