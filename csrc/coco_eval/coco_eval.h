// COCO detection evaluation (pycocotools' COCOeval, bit for bit) and the RLE mask API
// (pycocotools' maskApi.c): declarations shared by the schema file (coco_eval.cpp), the CPU op
// (coco_eval_cpu.cpp) and its raw loops (coco_eval_cpu_kernel.cpp, rle_cpu_kernel.cpp).
//
//   fastops::coco_evaluate(...)   COCOeval.computeIoU + evaluateImg for every (category, image)
//       group at once: per kept detection, per area range and IoU threshold, whether it is a true
//       positive candidate (matched to a ground truth of nonzero id) and whether it is ignored.
//   fastops::coco_accumulate(...) COCOeval.accumulate: precision, recall and scores arrays.
//   fastops::rle_* (...)          RLE encode/decode/merge/area/to_bbox/iou/from polygon, and the
//       grouped mask IoU the segm evaluation uses.
//
// Every op is CPU only: evaluation inputs are host data (JSON, lists of detections).
#pragma once

#include <cstdint>

#include "common/cpu_dispatch.h"

namespace fastops::coco_eval {

// A detection as coco_evaluate's loops read it: score, area, whether its id is > 0, box (xywh).
constexpr int64_t kPacked = 8, kPackedScore = 0, kPackedArea = 1, kPackedPositive = 2, kPackedBox = 3;

// Bits of coco_evaluate's det_flags.
constexpr uint8_t kFlagMatched = 1;  // matched to a ground truth whose id is nonzero (dtm != 0)
constexpr uint8_t kFlagIgnored = 2;  // dtIgnore

// ---- coco_evaluate ------------------------------------------------------------------------------
// Groups p = 0..P-1 are (category, image) pairs in category-major order; group p's ground truths
// are gt rows [gt_offsets[p], gt_offsets[p+1]) and its detections dt rows [dt_offsets[p],
// dt_offsets[p+1]), each in pycocotools' load order.
struct EvaluateArgs {
  int64_t num_groups;
  const int64_t* gt_offsets;  // [P + 1]
  const double* gt_boxes;     // [G, 4] xywh (bbox IoU), or null when `ious` is given
  const double* gt_area;      // [G]
  const uint8_t* gt_crowd;    // [G] int(iscrowd) != 0: crowd IoU rule, may match many detections
  const uint8_t* gt_ignore;   // [G] bool(iscrowd): the ignore flag before area ranges
  const int64_t* gt_id;       // [G]
  const int64_t* dt_offsets;  // [P + 1]: positions of the groups' detections
  // [D, kPacked] per position: what the matching reads of a detection, gathered by the op from the
  // columns into one cache line (the rows of a group's detections are scattered in the columns).
  const double* dt_packed;
  // Precomputed IoU (segm): group p's matrix [n_dt_p, n_gt_p] row-major in load order, at
  // ious + iou_offsets[p]. Null: bbox IoU from the boxes (maskApi.c bbIou).
  const double* ious;
  const int64_t* iou_offsets;  // [P + 1]
  int64_t num_iou_thrs;
  const double* iou_thrs;  // [T]
  int64_t num_area_rngs;
  const double* area_rng;  // [A, 2]
  int64_t max_det;
  // Outputs. det_offsets[p] = sum over earlier groups of min(n_dt, max_det) (caller computes).
  const int64_t* det_offsets;  // [P + 1]
  int64_t num_kept;            // det_offsets[P]
  int64_t* det_index;          // [num_kept] dt position of each kept detection, by decreasing score per group
  double* det_score;           // [num_kept] its score
  uint8_t* det_flags;          // [num_kept, A, T]
  int32_t* num_positive;       // [G, A]: row gt_offsets[p] holds group p's ground truths not ignored
  int32_t* det_match;          // [num_kept, A, T] matched GT (index within its group, load order) or -1; may be null
};
using EvaluateFn = void(const EvaluateArgs&);

// ---- coco_accumulate ----------------------------------------------------------------------------
// COCOeval.accumulate over the evaluated groups (P0 = K0 * I0 groups; A0 area ranges): for output
// (k, a, m), the evaluated images img_list of category cat_list[k] and area range area_list[a],
// each image's first max_dets[m] kept detections.
struct AccumulateArgs {
  int64_t num_images;          // I0
  const int64_t* det_offsets;  // [K0 * I0 + 1]
  const double* det_score;     // [num_kept]
  const uint8_t* det_flags;    // [num_kept, A0, T]
  int64_t num_kept;
  int64_t num_area_rngs;        // A0
  const int64_t* gt_offsets;    // [K0 * I0 + 1]
  const int32_t* num_positive;  // [G, A0], see EvaluateArgs
  int64_t num_groups;           // K0 * I0
  int64_t num_cat_list, num_area_list, num_max_dets, num_img_list;
  const int64_t* cat_list;   // evaluated category index per output k
  const int64_t* area_list;  // evaluated area-range index per output a
  const int64_t* max_dets;   // maxDet per output m
  const int64_t* img_list;   // evaluated image indices, in concatenation order
  int64_t num_rec_thrs;
  const double* rec_thrs;  // [R]
  int64_t T, K, A, M;      // output sizes
  double* precision;       // [T, R, K, A, M]: every cell of the listed (k, a, m) written, -1 without GT
  double* recall;          // [T, K, A, M]
  double* scores;          // [T, R, K, A, M]
};
using AccumulateFn = void(const AccumulateArgs&);

// ---- voc_match ----------------------------------------------------------------------------------
// The PASCAL VOC devkit's matching (VOCevaldet.m), per class: detections in decreasing confidence
// (stable); each is compared with the ground truths of its image and class, takes the one of
// largest IoU (the first on ties; boxes x1 y1 x2 y2 with the devkit's +1 pixel sizes when
// `pixel_plus_one`), and is a true positive when that IoU >= threshold, the GT is not difficult
// and not yet detected; a duplicate is a false positive; a difficult GT makes it neither.
struct VocArgs {
  int64_t num_classes, num_images;
  const int64_t* gt_offsets;  // [C * I + 1], group c * I + i
  const double* gt_boxes;     // [G, 4]
  const uint8_t* gt_difficult;
  const int64_t* dt_offsets;  // [C + 1]: class c's detections, already in decreasing confidence
  const double* dt_boxes;     // [D, 4]
  const int64_t* dt_image;    // [D] image index
  double iou_threshold;
  bool pixel_plus_one;
  uint8_t* tp;  // [D]
  uint8_t* fp;  // [D]
};
using VocFn = void(const VocArgs&);

extern cpu::KernelTable<EvaluateFn> evaluate_cpu;
extern cpu::KernelTable<VocFn> voc_cpu;
extern cpu::KernelTable<AccumulateFn> accumulate_cpu;

}  // namespace fastops::coco_eval
