"""Fake kernels of the COCO evaluation ops (csrc/coco_eval/), so torch.compile and opcheck can
trace them. The ops are CPU only; their output sizes depend on the data."""

import torch


@torch.library.register_fake("fastops::coco_evaluate")
def _coco_evaluate_fake(
    gt_offsets,
    gt_boxes,
    gt_area,
    gt_crowd,
    gt_ignore,
    gt_id,
    dt_offsets,
    dt_rows,
    dt_boxes,
    dt_area,
    dt_score,
    dt_id,
    ious,
    iou_offsets,
    iou_thrs,
    area_rng,
    max_det,
    with_matches,
):
    p = gt_offsets.shape[0] - 1
    kept = torch.library.get_ctx().new_dynamic_size()
    torch._check(kept <= (dt_rows if dt_rows is not None else dt_score).shape[0])
    return (
        gt_offsets.new_empty(p + 1),
        gt_offsets.new_empty(kept),
        dt_score.new_empty(kept),
        gt_offsets.new_empty(kept, area_rng.shape[0], iou_thrs.shape[0], dtype=torch.uint8),
        gt_offsets.new_empty(gt_area.shape[0], area_rng.shape[0], dtype=torch.int32),
        gt_offsets.new_empty(kept if with_matches else 0, area_rng.shape[0], iou_thrs.shape[0], dtype=torch.int32),
    )


@torch.library.register_fake("fastops::coco_group")
def _coco_group_fake(image_id, category_id, img_ids, cat_ids):
    kept = torch.library.get_ctx().new_dynamic_size()
    torch._check(kept <= image_id.shape[0])
    return image_id.new_empty(kept), image_id.new_empty(img_ids.shape[0] * cat_ids.shape[0] + 1)


@torch.library.register_fake("fastops::coco_accumulate")
def _coco_accumulate_fake(
    det_offsets,
    gt_offsets,
    det_score,
    det_flags,
    num_positive,
    num_images,
    cat_list,
    area_list,
    max_dets,
    img_list,
    rec_thrs,
    num_iou_thrs,
    num_cats,
    num_areas,
    num_max_dets,
):
    t, r = num_iou_thrs, rec_thrs.shape[0]
    return (
        det_score.new_empty(t, r, num_cats, num_areas, num_max_dets),
        det_score.new_empty(t, num_cats, num_areas, num_max_dets),
        det_score.new_empty(t, r, num_cats, num_areas, num_max_dets),
    )


@torch.library.register_fake("fastops::voc_match")
def _voc_match_fake(
    gt_offsets, gt_boxes, gt_difficult, dt_offsets, dt_boxes, dt_image, num_images, iou_threshold, pixel_plus_one
):
    n = dt_boxes.shape[0]
    return dt_image.new_empty(n, dtype=torch.uint8), dt_image.new_empty(n, dtype=torch.uint8)


@torch.library.register_fake("fastops::panoptic_quality_stats")
def _panoptic_quality_stats_fake(
    gt_maps,
    pred_maps,
    pixel_offsets,
    gt_segments,
    gt_segment_offsets,
    pred_segments,
    pred_segment_offsets,
    category_of,
    num_categories,
    label_divisor,
):
    return gt_maps.new_empty((num_categories, 4), dtype=torch.float64)
