// Run-length encoded masks as pycocotools' maskApi.c defines them, for batches: a batch of n RLEs
// is one flat uint32 array of counts (stored in an int32 tensor) with offsets [n + 1] and sizes
// [n, 2] (h, w). Counts alternate runs of 0s and 1s over the column-major (Fortran) pixels,
// starting with 0s. Every function reproduces maskApi.c's results, uint32 wrap-around included.
#pragma once

#include <cstdint>
#include <vector>

#include "common/cpu_dispatch.h"

namespace fastops::coco_eval::rle {

// Polygon coordinates (pixels) must be finite and at most this in magnitude: the rasterizer's 5x grid
// and its steps then stay exact in double and int64.
constexpr double kMaxPolygonCoordinate = 1e14;

struct Batch {
  const uint32_t* counts;
  const int64_t* offsets;  // [n + 1]
  const int64_t* hw;       // [n, 2]
  int64_t n;
};

// One growing output batch (counts and offsets).
struct Out {
  std::vector<uint32_t> counts;
  std::vector<int64_t> offsets{0};
  std::vector<int64_t> hw;
  void close(int64_t h, int64_t w) {
    offsets.push_back(static_cast<int64_t>(counts.size()));
    hw.push_back(h);
    hw.push_back(w);
  }
};

// Raw functions (rle_cpu_kernel.cpp; exact integer math and -ffp-contract=off double math).
struct Kernels {
  // rleEncode of n masks [n, w, h] (column-major per mask).
  void (*encode)(const uint8_t* masks, int64_t n, int64_t h, int64_t w, Out& out);
  // rleFrString of n strings chars[char_offsets[i]:char_offsets[i + 1]], in two passes so the counts
  // are written once, in place: string_counts gives each string's number of counts (m[i]), and
  // from_string decodes string i to counts[offsets[i]:offsets[i + 1]].
  void (*string_counts)(const uint8_t* chars, const int64_t* char_offsets, int64_t n, int64_t* m);
  void (*from_string)(const uint8_t* chars, const int64_t* char_offsets, int64_t n, const int64_t* offsets,
                      uint32_t* counts);
  // rleToString: chars and char offsets [n + 1].
  void (*to_string)(const Batch& b, std::vector<uint8_t>& chars, std::vector<int64_t>& char_offsets);
  // rleFrPoly of polygon i = xy[poly_offsets[i]:poly_offsets[i + 1]] (x, y pairs) in an h x w image,
  // then, per annotation j, rleMerge (union) of polygons [ann_offsets[j], ann_offsets[j + 1]).
  // Time and memory grow with the image and the number of vertices, not with the coordinates.
  void (*from_polygons)(const double* xy, const int64_t* poly_offsets, const int64_t* ann_offsets, const int64_t* hw,
                        int64_t n_ann, Out& out);
  // rleMerge of all n RLEs (union or intersection). The RLEs' runs must add up to h * w (checked
  // by the op: maskApi.c loops forever on two RLEs whose runs add up to different totals).
  void (*merge)(const Batch& b, bool intersect, Out& out);
  // rleArea
  void (*area)(const Batch& b, uint32_t* out);
  // rleToBbox: [n, 4] xywh
  void (*to_bbox)(const Batch& b, double* out);
  // rleIou of detections x ground truths: out [m, n] (m = dt.n, row-major).
  void (*iou)(const Batch& dt, const Batch& gt, const uint8_t* crowd, double* out);
  // rleDecode: false when the counts overrun n * h * w (h, w of the first RLE).
  bool (*decode)(const Batch& b, uint8_t* out);
  // The mask IoU of every (category, image) group of the evaluation: group p's detections
  // dt_rows[dt_groups[p] : dt_groups[p + 1]] (indices into dt) x its ground truths likewise,
  // row-major at out + iou_offsets[p]. crowd is per gt position (gt_groups order).
  void (*grouped_iou)(const Batch& dt, const int64_t* dt_rows, const int64_t* dt_groups, const Batch& gt,
                      const int64_t* gt_rows, const int64_t* gt_groups, const uint8_t* crowd, int64_t num_groups,
                      const int64_t* iou_offsets, double* out);
};

extern cpu::KernelTable<Kernels> kernels_cpu;

}  // namespace fastops::coco_eval::rle
