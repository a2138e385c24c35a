// Schema of the COCO evaluation ops. CPU kernels: coco_eval_cpu.cpp (+ _cpu_kernel.cpp), coco_json.cpp.
// Python API: fastops/metrics/coco.py (COCO), cocoeval.py (COCOeval) and detection.py.
#include <torch/library.h>

namespace fastops::coco_eval {

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  m.def(
      "coco_evaluate(Tensor gt_offsets, Tensor gt_boxes, Tensor gt_area, Tensor gt_crowd, Tensor gt_ignore, "
      "Tensor gt_id, Tensor dt_offsets, Tensor? dt_rows, Tensor dt_boxes, Tensor dt_area, Tensor dt_score, "
      "Tensor dt_id, Tensor? ious, Tensor? iou_offsets, Tensor iou_thrs, Tensor area_rng, int max_det, "
      "bool with_matches) -> (Tensor det_offsets, Tensor det_index, Tensor det_score, Tensor det_flags, "
      "Tensor num_positive, Tensor det_match)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "voc_match(Tensor gt_offsets, Tensor gt_boxes, Tensor gt_difficult, Tensor dt_offsets, Tensor dt_boxes, "
      "Tensor dt_image, int num_images, float iou_threshold, bool pixel_plus_one) -> (Tensor tp, Tensor fp)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "coco_group(Tensor image_id, Tensor category_id, Tensor img_ids, Tensor cat_ids) -> (Tensor rows, Tensor "
      "offsets)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "coco_accumulate(Tensor det_offsets, Tensor gt_offsets, Tensor det_score, Tensor det_flags, Tensor num_positive, "
      "int num_images, Tensor cat_list, Tensor area_list, Tensor max_dets, Tensor img_list, Tensor rec_thrs, "
      "int num_iou_thrs, int num_cats, int num_areas, int num_max_dets) -> (Tensor precision, Tensor recall, Tensor "
      "scores)",
      {at::Tag::pt2_compliant_tag});
  // a COCO JSON file's bytes -> its columns (coco_json.cpp); eager only: the output sizes are the file's
  m.def("coco_json_read(Tensor data) -> Tensor[]");
  // keypoint similarity around numpy's exp (oks_cpu.cpp)
  m.def(
      "coco_oks_terms(Tensor gt_kpts, Tensor gt_kpt_offsets, Tensor gt_boxes, Tensor gt_area, Tensor gt_rows, "
      "Tensor gt_groups, Tensor dt_kpts, Tensor dt_kpt_offsets, Tensor dt_rows, Tensor dt_groups, Tensor kpt_vars) "
      "-> (Tensor terms, Tensor term_offsets, Tensor iou_offsets)");
  m.def("coco_oks_reduce(Tensor exp_terms, Tensor term_offsets) -> Tensor");
}

}  // namespace fastops::coco_eval
