// Per-element math of the COCO evaluation, written as pycocotools' C and Python compute it, so
// the results have the same bits (these files are compiled with -ffp-contract=off: no fused
// multiply-adds).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace fastops::coco_eval {
inline namespace FASTOPS_ISA_NAMESPACE {

// maskApi.c bbIou for one (detection, ground truth) pair of xywh boxes, in double:
// intersection over union, or over the detection's area for a crowd ground truth; 0 when the
// boxes do not overlap (w <= 0 or h <= 0). NaN coordinates give NaN, as in pycocotools.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double bb_iou(const double* d, const double* g, bool crowd) {
  const double ga = g[2] * g[3];
  const double da = d[2] * d[3];
  const double w = std::fmin(d[2] + d[0], g[2] + g[0]) - std::fmax(d[0], g[0]);
  if (w <= 0) return 0.0;
  const double h = std::fmin(d[3] + d[1], g[3] + g[1]) - std::fmax(d[1], g[1]);
  if (h <= 0) return 0.0;
  const double i = w * h;
  const double u = crowd ? da : da + ga - i;
  return i / u;
}

// numpy's sort order for the key -score (kind='mergesort'): ascending, NaN after every number.
// Returns whether detection a sorts strictly before b.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE bool score_before(double score_a, double score_b) {
  const double ka = -score_a, kb = -score_b;
  return ka < kb || (kb != kb && ka == ka);
}

// Python's min([t, 1 - 1e-10]) in evaluateImg: the starting IoU a match must reach.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double match_floor(double t) {
  const double cap = 1 - 1e-10;
  return cap < t ? cap : t;
}

// COCOeval.computeOks' exponent for one keypoint, before np.exp(-e):
// (dx**2 + dy**2) / vars / (gt['area'] + np.spacing(1)) / 2, in numpy's order.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double oks_term(double dx, double dy, double var, double area_eps) {
  return (dx * dx + dy * dy) / var / area_eps / 2;
}

// np.max((0, v)) of computeOks' distance to the doubled GT box: numpy's maximum, NaN propagating.
FASTOPS_HOST_DEVICE FASTOPS_FORCEINLINE double max0(double v) { return v != v ? v : (0.0 >= v ? 0.0 : v); }

// np.sum of a float64 array of n values: numpy's pairwise summation (DOUBLE_pairwise_sum: fewer than
// 8 values in order; up to 128 in 8 running sums combined as a tree, then the rest; beyond that,
// the two halves, split at a multiple of 8).
inline double numpy_sum(const double* a, int64_t n) {
  if (n < 8) {
    double r = -0.0;
    for (int64_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_sum(a, n2) + numpy_sum(a + n2, n - n2);
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::coco_eval
