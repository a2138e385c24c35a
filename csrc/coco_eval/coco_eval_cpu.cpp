// CPU implementation of the COCO evaluation ops at the Tensor level: input checks (every one names
// its argument), output allocation, and the calls into coco_eval_cpu_kernel.cpp.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "coco_eval/coco_eval.h"
#include "common/cpu_alloc.h"
#include "common/work_sharing.h"

namespace fastops::coco_eval {

constinit cpu::KernelTable<EvaluateFn> evaluate_cpu{};
constinit cpu::KernelTable<AccumulateFn> accumulate_cpu{};
constinit cpu::KernelTable<VocFn> voc_cpu{};

namespace {

// A 1-D CPU tensor of the given dtype (and length), contiguous: the loops read it by pointer.
void check_1d(const char* op, const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t n = -1) {
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && (n < 0 || t.size(0) == n), op, ": ", name, " must have shape [",
                    n < 0 ? "N" : std::to_string(n), "], got ", t.sizes());
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// A new tensor filled with `value` on this thread: ATen's fill runs an OpenMP region past 32k
// elements, and on a busy machine a region waits a scheduler time slice for its other threads.
template <typename T>
at::Tensor filled(at::IntArrayRef sizes, const at::TensorOptions& options, T value) {
  at::Tensor t = at::empty(sizes, options);
  std::fill_n(t.mutable_data_ptr<T>(), t.numel(), value);
  return t;
}

template <typename T>
void fill(at::Tensor& t, T value) {
  std::fill_n(t.mutable_data_ptr<T>(), t.numel(), value);
}

void check_boxes(const char* op, const at::Tensor& t, const char* name, int64_t n) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kDouble, op, ": ", name, " must be float64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == n && t.size(1) == 4, op, ": ", name, " must have shape [", n,
                    ", 4], got ", t.sizes());
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got ", t.device());
}

// Offsets of P groups into n rows: nondecreasing, from 0 to n.
void check_offsets(const char* op, const at::Tensor& t, const char* name, int64_t groups, int64_t n) {
  check_1d(op, t, name, at::kLong, groups + 1);
  const int64_t* o = t.const_data_ptr<int64_t>();
  bool ok = o[0] == 0 && o[groups] == n;
  for (int64_t p = 0; ok && p < groups; ++p) ok = o[p] <= o[p + 1];
  TORCH_CHECK_VALUE(ok, op, ": ", name, " must be nondecreasing offsets from 0 to ", n);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> coco_evaluate_cpu(
    const at::Tensor& gt_offsets, const at::Tensor& gt_boxes, const at::Tensor& gt_area, const at::Tensor& gt_crowd,
    const at::Tensor& gt_ignore, const at::Tensor& gt_id, const at::Tensor& dt_offsets,
    const std::optional<at::Tensor>& dt_rows, const at::Tensor& dt_boxes, const at::Tensor& dt_area,
    const at::Tensor& dt_score, const at::Tensor& dt_id, const std::optional<at::Tensor>& ious,
    const std::optional<at::Tensor>& iou_offsets, const at::Tensor& iou_thrs, const at::Tensor& area_rng,
    int64_t max_det, bool with_matches) {
  const char* op = "coco_evaluate";
  TORCH_CHECK_VALUE(gt_offsets.dim() == 1 && gt_offsets.size(0) >= 1, op, ": gt_offsets must have shape [P + 1], got ",
                    gt_offsets.sizes());
  const int64_t P = gt_offsets.size(0) - 1;
  const int64_t G = gt_area.dim() == 1 ? gt_area.size(0) : -1;
  const int64_t N = dt_area.dim() == 1 ? dt_area.size(0) : -1;  // rows of the detections' columns
  check_1d(op, gt_area, "gt_area", at::kDouble);
  check_1d(op, dt_area, "dt_area", at::kDouble);
  check_offsets(op, gt_offsets, "gt_offsets", P, G);
  check_1d(op, gt_crowd, "gt_crowd", at::kBool, G);
  check_1d(op, gt_ignore, "gt_ignore", at::kBool, G);
  check_1d(op, gt_id, "gt_id", at::kLong, G);
  check_1d(op, dt_score, "dt_score", at::kDouble, N);
  check_1d(op, dt_id, "dt_id", at::kLong, N);
  // positions: the grouped detections, through dt_rows into the columns (or the columns' rows)
  int64_t D = N;
  if (dt_rows.has_value()) {
    check_1d(op, *dt_rows, "dt_rows", at::kLong);
    D = dt_rows->size(0);
    const int64_t* r = dt_rows->const_data_ptr<int64_t>();
    TORCH_CHECK_INDEX(std::all_of(r, r + D, [N](int64_t x) { return x >= 0 && x < N; }), op,
                      ": dt_rows entries must be in [0, ", N, ")");
  }
  check_offsets(op, dt_offsets, "dt_offsets", P, D);
  TORCH_CHECK_VALUE(ious.has_value() == iou_offsets.has_value(), op, ": ious and iou_offsets must be given together");
  if (ious.has_value()) {
    check_1d(op, *ious, "ious", at::kDouble);
    check_1d(op, *iou_offsets, "iou_offsets", at::kLong, P + 1);
    const int64_t* go = gt_offsets.const_data_ptr<int64_t>();
    const int64_t* dof = dt_offsets.const_data_ptr<int64_t>();
    const int64_t* io = iou_offsets->const_data_ptr<int64_t>();
    bool ok = io[0] == 0;
    for (int64_t p = 0; ok && p < P; ++p) ok = io[p + 1] - io[p] == (go[p + 1] - go[p]) * (dof[p + 1] - dof[p]);
    TORCH_CHECK_VALUE(ok && io[P] == ious->size(0), op,
                      ": iou_offsets must give each group n_dt * n_gt entries of ious");
  } else {
    check_boxes(op, gt_boxes, "gt_boxes", G);
    check_boxes(op, dt_boxes, "dt_boxes", N);
  }
  check_1d(op, iou_thrs, "iou_thrs", at::kDouble);
  TORCH_CHECK_TYPE(area_rng.scalar_type() == at::kDouble, op, ": area_rng must be float64, got ",
                   area_rng.scalar_type());
  TORCH_CHECK_VALUE(area_rng.dim() == 2 && area_rng.size(1) == 2, op, ": area_rng must have shape [A, 2], got ",
                    area_rng.sizes());
  const int64_t T = iou_thrs.size(0), A = area_rng.size(0);

  // Kept detections per group: Python's len(dt[0:max_det]).
  at::Tensor det_offsets = at::empty({P + 1}, gt_offsets.options());
  {
    const int64_t* dof = dt_offsets.const_data_ptr<int64_t>();
    int64_t* out = det_offsets.mutable_data_ptr<int64_t>();
    out[0] = 0;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t n = dof[p + 1] - dof[p];
      const int64_t kept = max_det >= 0 ? std::min(n, max_det) : std::max<int64_t>(0, n + max_det);
      out[p + 1] = out[p] + kept;
    }
  }
  const int64_t kept = det_offsets.const_data_ptr<int64_t>()[P];
  at::Tensor det_index = at::empty({kept}, gt_offsets.options());
  at::Tensor det_score = at::empty({kept}, dt_score.options());
  // every flag is written by the kernel
  at::Tensor det_flags = cpu::cached_output({kept, A, T}, gt_offsets.options().dtype(at::kByte));
  at::Tensor num_positive = filled<int32_t>({G, A}, gt_offsets.options().dtype(at::kInt), 0);
  // the matched GT of every kept detection, for COCOeval.evalImgs (only when asked)
  at::Tensor det_match = at::empty({with_matches ? kept : 0, A, T}, gt_offsets.options().dtype(at::kInt));
  const at::Tensor gb = ious.has_value() ? at::Tensor() : gt_boxes.contiguous();
  const at::Tensor db = ious.has_value() ? at::Tensor() : dt_boxes.contiguous();
  const at::Tensor io = ious.has_value() ? ious->contiguous() : at::Tensor();
  const at::Tensor ar = area_rng.contiguous();
  // the detections' columns gathered by position into one line each (independent loads: the
  // gather overlaps its cache misses, which the matching's dependent reads would not)
  std::unique_ptr<double[]> packed(new double[kPacked * std::max<int64_t>(D, 1)]);  // every read slot is written
  {
    const int64_t* r = dt_rows.has_value() ? dt_rows->const_data_ptr<int64_t>() : nullptr;
    const double* box = db.defined() ? db.const_data_ptr<double>() : nullptr;
    const double *area = dt_area.const_data_ptr<double>(), *score = dt_score.const_data_ptr<double>();
    const int64_t* id = dt_id.const_data_ptr<int64_t>();
    share_work(D, 8192, [&](int64_t lo, int64_t hi) {
      for (int64_t pos = lo; pos < hi; ++pos) {
        const int64_t row = r != nullptr ? r[pos] : pos;
        double* out = packed.get() + kPacked * pos;
        out[kPackedScore] = score[row];
        out[kPackedArea] = area[row];
        out[kPackedPositive] = id[row] > 0 ? 1.0 : 0.0;
        for (int c = 0; c < 4; ++c) out[kPackedBox + c] = box != nullptr ? box[4 * row + c] : 0.0;
      }
    });
  }
  if (P > 0) {
    evaluate_cpu.get()({P,
                        gt_offsets.const_data_ptr<int64_t>(),
                        gb.defined() ? gb.const_data_ptr<double>() : nullptr,
                        gt_area.const_data_ptr<double>(),
                        reinterpret_cast<const uint8_t*>(gt_crowd.const_data_ptr<bool>()),
                        reinterpret_cast<const uint8_t*>(gt_ignore.const_data_ptr<bool>()),
                        gt_id.const_data_ptr<int64_t>(),
                        dt_offsets.const_data_ptr<int64_t>(),
                        packed.get(),
                        io.defined() ? io.const_data_ptr<double>() : nullptr,
                        io.defined() ? iou_offsets->const_data_ptr<int64_t>() : nullptr,
                        T,
                        iou_thrs.const_data_ptr<double>(),
                        A,
                        ar.const_data_ptr<double>(),
                        max_det,
                        det_offsets.const_data_ptr<int64_t>(),
                        kept,
                        det_index.mutable_data_ptr<int64_t>(),
                        det_score.mutable_data_ptr<double>(),
                        det_flags.mutable_data_ptr<uint8_t>(),
                        num_positive.mutable_data_ptr<int32_t>(),
                        with_matches ? det_match.mutable_data_ptr<int32_t>() : nullptr});
  }
  return {det_offsets, det_index, det_score, det_flags, num_positive, det_match};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> coco_accumulate_cpu(
    const at::Tensor& det_offsets, const at::Tensor& gt_offsets, const at::Tensor& det_score,
    const at::Tensor& det_flags, const at::Tensor& num_positive, int64_t num_images, const at::Tensor& cat_list,
    const at::Tensor& area_list, const at::Tensor& max_dets, const at::Tensor& img_list, const at::Tensor& rec_thrs,
    int64_t num_iou_thrs, int64_t num_cats, int64_t num_areas, int64_t num_max_dets) {
  const char* op = "coco_accumulate";
  TORCH_CHECK_VALUE(det_offsets.dim() == 1 && det_offsets.size(0) >= 1, op,
                    ": det_offsets must have shape [P + 1], got ", det_offsets.sizes());
  const int64_t P = det_offsets.size(0) - 1;
  TORCH_CHECK_VALUE(num_images >= 0 && (num_images == 0 ? P == 0 : P % num_images == 0), op,
                    ": num_images must divide the number of groups ", P, ", got ", num_images);
  const int64_t N = det_score.dim() == 1 ? det_score.size(0) : -1;
  check_1d(op, det_score, "det_score", at::kDouble);
  check_offsets(op, det_offsets, "det_offsets", P, N);
  TORCH_CHECK_TYPE(det_flags.scalar_type() == at::kByte, op, ": det_flags must be uint8, got ",
                   det_flags.scalar_type());
  TORCH_CHECK_VALUE(det_flags.dim() == 3 && det_flags.size(0) == N, op, ": det_flags must have shape [", N,
                    ", A0, T], got ", det_flags.sizes());
  const int64_t A0 = det_flags.size(1), T = det_flags.size(2);
  TORCH_CHECK_VALUE(num_iou_thrs == T, op, ": num_iou_thrs must be det_flags.size(2) = ", T, ", got ", num_iou_thrs);
  TORCH_CHECK_TYPE(num_positive.scalar_type() == at::kInt, op, ": num_positive must be int32");
  TORCH_CHECK_VALUE(num_positive.dim() == 2 && num_positive.size(1) == A0, op, ": num_positive must have shape [G, ",
                    A0, "], got ", num_positive.sizes());
  check_offsets(op, gt_offsets, "gt_offsets", P, num_positive.size(0));
  check_1d(op, cat_list, "cat_list", at::kLong);
  check_1d(op, area_list, "area_list", at::kLong);
  check_1d(op, max_dets, "max_dets", at::kLong);
  check_1d(op, img_list, "img_list", at::kLong);
  check_1d(op, rec_thrs, "rec_thrs", at::kDouble);
  TORCH_CHECK_VALUE(num_cats >= cat_list.size(0) && num_areas >= area_list.size(0) && num_max_dets >= max_dets.size(0),
                    op, ": num_cats, num_areas, num_max_dets must be at least the list lengths");
  const int64_t K0 = num_images == 0 ? 0 : P / num_images;
  auto in_range = [](const at::Tensor& t, int64_t n) {
    const int64_t* v = t.const_data_ptr<int64_t>();
    return std::all_of(v, v + t.size(0), [n](int64_t x) { return x >= 0 && x < n; });
  };
  // (no evaluated image: the categories cannot be counted, and no cell has ground truth)
  TORCH_CHECK_INDEX(num_images == 0 || in_range(cat_list, K0), op, ": cat_list entries must be in [0, ", K0, ")");
  TORCH_CHECK_INDEX(in_range(area_list, A0), op, ": area_list entries must be in [0, ", A0, ")");
  TORCH_CHECK_INDEX(in_range(img_list, num_images), op, ": img_list entries must be in [0, ", num_images, ")");
  const int64_t R = rec_thrs.size(0);
  auto opts = det_score.options();
  // pycocotools' layout: precision and scores [T, R, K, A, M], recall [T, K, A, M]
  at::Tensor precision = cpu::cached_output({T, R, num_cats, num_areas, num_max_dets}, opts);
  at::Tensor recall = at::empty({T, num_cats, num_areas, num_max_dets}, opts);
  at::Tensor scores = cpu::cached_output({T, R, num_cats, num_areas, num_max_dets}, opts);
  const bool run = P > 0 && cat_list.size(0) > 0;
  // the kernel writes every cell of the listed categories, areas and maxDets; the others are -1
  if (!run || num_cats > cat_list.size(0) || num_areas > area_list.size(0) || num_max_dets > max_dets.size(0)) {
    fill(precision, -1.0);
    fill(recall, -1.0);
    fill(scores, -1.0);
  }
  if (run) {
    const at::Tensor flags = det_flags.contiguous(), npos = num_positive.contiguous();
    accumulate_cpu.get()({num_images,
                          det_offsets.const_data_ptr<int64_t>(),
                          det_score.const_data_ptr<double>(),
                          flags.const_data_ptr<uint8_t>(),
                          N,
                          A0,
                          gt_offsets.const_data_ptr<int64_t>(),
                          npos.const_data_ptr<int32_t>(),
                          P,
                          cat_list.size(0),
                          area_list.size(0),
                          max_dets.size(0),
                          img_list.size(0),
                          cat_list.const_data_ptr<int64_t>(),
                          area_list.const_data_ptr<int64_t>(),
                          max_dets.const_data_ptr<int64_t>(),
                          img_list.const_data_ptr<int64_t>(),
                          R,
                          rec_thrs.const_data_ptr<double>(),
                          T,
                          num_cats,
                          num_areas,
                          num_max_dets,
                          precision.mutable_data_ptr<double>(),
                          recall.mutable_data_ptr<double>(),
                          scores.mutable_data_ptr<double>()});
  }
  return {precision, recall, scores};
}

// Index of each id in the sorted unique `ids`, or -1: a lookup table when the ids are dense
// enough, binary search otherwise.
std::vector<int64_t> index_of(const int64_t* values, int64_t n, const int64_t* ids, int64_t m) {
  std::vector<int64_t> out(n, -1);
  if (m == 0) return out;
  const int64_t lo = ids[0], hi = ids[m - 1];
  const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (span <= static_cast<uint64_t>(8 * m + 4096)) {
    std::vector<int64_t> table(span + 1, -1);
    for (int64_t j = 0; j < m; ++j) table[ids[j] - lo] = j;
    for (int64_t r = 0; r < n; ++r) {
      const int64_t v = values[r];
      if (v >= lo && v <= hi) out[r] = table[v - lo];
    }
  } else {
    for (int64_t r = 0; r < n; ++r) {
      const int64_t* it = std::lower_bound(ids, ids + m, values[r]);
      if (it != ids + m && *it == values[r]) out[r] = it - ids;
    }
  }
  return out;
}

// Rows grouped by (category, image) for COCOeval: group k * I + i holds, in row order, the rows
// whose category is cat_ids[k] and image img_ids[i] (both sorted and unique); others dropped.
std::tuple<at::Tensor, at::Tensor> coco_group_cpu(const at::Tensor& image_id, const at::Tensor& category_id,
                                                  const at::Tensor& img_ids, const at::Tensor& cat_ids) {
  const char* op = "coco_group";
  check_1d(op, image_id, "image_id", at::kLong);
  check_1d(op, category_id, "category_id", at::kLong, image_id.size(0));
  check_1d(op, img_ids, "img_ids", at::kLong);
  check_1d(op, cat_ids, "cat_ids", at::kLong);
  const at::Tensor iid = image_id.contiguous(), cid = category_id.contiguous();
  const at::Tensor imgs = img_ids.contiguous(), cats = cat_ids.contiguous();
  const int64_t n = iid.size(0), I = imgs.size(0), K = cats.size(0);
  auto strictly_increasing = [](const at::Tensor& t) {
    const int64_t* v = t.const_data_ptr<int64_t>();
    for (int64_t j = 1; j < t.size(0); ++j) {
      if (v[j - 1] >= v[j]) return false;
    }
    return true;
  };
  TORCH_CHECK_VALUE(strictly_increasing(imgs), op, ": img_ids must be sorted and unique");
  TORCH_CHECK_VALUE(strictly_increasing(cats), op, ": cat_ids must be sorted and unique");
  const std::vector<int64_t> ii = index_of(iid.const_data_ptr<int64_t>(), n, imgs.const_data_ptr<int64_t>(), I);
  const std::vector<int64_t> kk = index_of(cid.const_data_ptr<int64_t>(), n, cats.const_data_ptr<int64_t>(), K);
  at::Tensor offsets = filled<int64_t>({K * I + 1}, iid.options(), 0);
  int64_t* off = offsets.mutable_data_ptr<int64_t>();
  int64_t kept = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (ii[r] >= 0 && kk[r] >= 0) {
      ++off[kk[r] * I + ii[r] + 1];
      ++kept;
    }
  }
  for (int64_t p = 0; p < K * I; ++p) off[p + 1] += off[p];
  at::Tensor rows = at::empty({kept}, iid.options());
  int64_t* out = rows.mutable_data_ptr<int64_t>();
  std::vector<int64_t> next(off, off + K * I);
  for (int64_t r = 0; r < n; ++r) {  // counting sort: stable
    if (ii[r] >= 0 && kk[r] >= 0) out[next[kk[r] * I + ii[r]]++] = r;
  }
  return {rows, offsets};
}

std::tuple<at::Tensor, at::Tensor> voc_match_cpu(const at::Tensor& gt_offsets, const at::Tensor& gt_boxes,
                                                 const at::Tensor& gt_difficult, const at::Tensor& dt_offsets,
                                                 const at::Tensor& dt_boxes, const at::Tensor& dt_image,
                                                 int64_t num_images, double iou_threshold, bool pixel_plus_one) {
  const char* op = "voc_match";
  TORCH_CHECK_VALUE(dt_offsets.dim() == 1 && dt_offsets.size(0) >= 1, op, ": dt_offsets must have shape [C + 1]");
  const int64_t C = dt_offsets.size(0) - 1;
  TORCH_CHECK_VALUE(num_images >= 0, op, ": num_images must be >= 0, got ", num_images);
  const int64_t G = gt_boxes.dim() == 2 ? gt_boxes.size(0) : -1, D = dt_boxes.dim() == 2 ? dt_boxes.size(0) : -1;
  check_boxes(op, gt_boxes, "gt_boxes", G);
  check_boxes(op, dt_boxes, "dt_boxes", D);
  check_offsets(op, gt_offsets, "gt_offsets", C * num_images, G);
  check_offsets(op, dt_offsets, "dt_offsets", C, D);
  check_1d(op, gt_difficult, "gt_difficult", at::kBool, G);
  check_1d(op, dt_image, "dt_image", at::kLong, D);
  const int64_t* im = dt_image.const_data_ptr<int64_t>();
  TORCH_CHECK_INDEX(std::all_of(im, im + D, [&](int64_t v) { return v >= 0 && v < num_images; }), op,
                    ": dt_image entries must be in [0, num_images)");
  TORCH_CHECK_VALUE(!std::isnan(iou_threshold), op, ": iou_threshold must be a number");
  at::Tensor tp = filled<uint8_t>({D}, dt_image.options().dtype(at::kByte), 0);
  at::Tensor fp = filled<uint8_t>({D}, dt_image.options().dtype(at::kByte), 0);
  const at::Tensor gb = gt_boxes.contiguous(), db = dt_boxes.contiguous();
  if (D > 0) {
    voc_cpu.get()({C, num_images, gt_offsets.const_data_ptr<int64_t>(), gb.const_data_ptr<double>(),
                   reinterpret_cast<const uint8_t*>(gt_difficult.const_data_ptr<bool>()),
                   dt_offsets.const_data_ptr<int64_t>(), db.const_data_ptr<double>(), im, iou_threshold, pixel_plus_one,
                   tp.mutable_data_ptr<uint8_t>(), fp.mutable_data_ptr<uint8_t>()});
  }
  return {tp, fp};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) {
  m.impl("voc_match", &voc_match_cpu);
  m.impl("coco_group", &coco_group_cpu);
  m.impl("coco_evaluate", &coco_evaluate_cpu);
  m.impl("coco_accumulate", &coco_accumulate_cpu);
}

}  // namespace fastops::coco_eval
