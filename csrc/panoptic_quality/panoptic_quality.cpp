// Schema of the panoptic quality op. CPU kernel: panoptic_quality_cpu.cpp. Python API:
// fastops/metrics/panoptic.py (fake kernel in fastops/metrics/_ops.py).
#include <torch/library.h>

namespace fastops::panoptic_quality {

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  // Per-category sums over N images of panoptic maps (flattened, image i's pixels at
  // pixel_offsets[i]:pixel_offsets[i + 1]): [K, 4] float64 of (true positives, false positives,
  // false negatives, sum of the true positives' IoU). With segment lists, gt_segments [S, 3] holds
  // (id, category index, iscrowd) and pred_segments [T, 2] (id, category index), each image's rows
  // at its offsets, and id 0 is void; without them every distinct map value v is one segment of
  // category category_of[v // label_divisor] (void where that is -1, v < 0 or past the table).
  m.def(
      "panoptic_quality_stats(Tensor gt_maps, Tensor pred_maps, Tensor pixel_offsets, Tensor? gt_segments, "
      "Tensor? gt_segment_offsets, Tensor? pred_segments, Tensor? pred_segment_offsets, Tensor category_of, "
      "int num_categories, int label_divisor) -> Tensor",
      {at::Tag::pt2_compliant_tag});
}

}  // namespace fastops::panoptic_quality
