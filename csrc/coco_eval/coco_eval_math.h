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

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::coco_eval
