// Object keypoint similarity (COCOeval.computeOks) for every (category, image) group, in two ops
// around numpy's exp, so the result has pycocotools' bits on any machine (numpy's exp is its own
// SIMD code on some CPUs, the C library's on others):
//
//   coco_oks_terms  -> the exponents e of every (detection, ground truth) pair: one per keypoint, or
//                      per visible GT keypoint when the GT has any (computeOks' e[vg > 0])
//   (Python)        -> np.exp(-e)
//   coco_oks_reduce -> per pair np.sum(...) / len(e), numpy's pairwise summation
//
// A group's pairs are [n_dt, n_gt] row-major, detections and ground truths in load order (the
// layout coco_evaluate's `ious` reads).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "coco_eval/coco_eval_math.h"
#include "common/work_sharing.h"

namespace fastops::coco_eval {
namespace {

constexpr double kSpacing1 = 2.220446049250313e-16;  // np.spacing(1)

void check_1d(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, "coco_oks: ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1, "coco_oks: ", name, " must be 1-D, got shape ", t.sizes());
  TORCH_CHECK(t.device().is_cpu(), "coco_oks: ", name, " must be a CPU tensor, got ", t.device());
}

// Nondecreasing offsets from 0 to n.
void check_offsets(const at::Tensor& t, const char* name, int64_t n) {
  check_1d(t, name, at::kLong);
  const int64_t* o = t.const_data_ptr<int64_t>();
  bool ok = t.size(0) >= 1 && o[0] == 0 && o[t.size(0) - 1] == n;
  for (int64_t i = 0; ok && i + 1 < t.size(0); ++i) ok = o[i] <= o[i + 1];
  TORCH_CHECK_VALUE(ok, "coco_oks: ", name, " must be nondecreasing offsets from 0 to ", n);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> coco_oks_terms_cpu(
    const at::Tensor& gt_kpts, const at::Tensor& gt_kpt_offsets, const at::Tensor& gt_boxes, const at::Tensor& gt_area,
    const at::Tensor& gt_rows, const at::Tensor& gt_groups, const at::Tensor& dt_kpts, const at::Tensor& dt_kpt_offsets,
    const at::Tensor& dt_rows, const at::Tensor& dt_groups, const at::Tensor& kpt_vars) {
  check_1d(gt_kpts, "gt_kpts", at::kDouble);
  check_1d(dt_kpts, "dt_kpts", at::kDouble);
  check_1d(gt_area, "gt_area", at::kDouble);
  check_1d(kpt_vars, "kpt_vars", at::kDouble);
  const int64_t G = gt_area.size(0), K = kpt_vars.size(0);
  check_offsets(gt_kpt_offsets, "gt_kpt_offsets", gt_kpts.size(0));
  check_offsets(dt_kpt_offsets, "dt_kpt_offsets", dt_kpts.size(0));
  TORCH_CHECK_VALUE(gt_kpt_offsets.size(0) == G + 1, "coco_oks: gt_kpt_offsets must have G + 1 = ", G + 1, " entries");
  TORCH_CHECK_TYPE(gt_boxes.scalar_type() == at::kDouble, "coco_oks: gt_boxes must be float64");
  TORCH_CHECK_VALUE(gt_boxes.dim() == 2 && gt_boxes.size(0) == G && gt_boxes.size(1) == 4,
                    "coco_oks: gt_boxes must have shape [", G, ", 4], got ", gt_boxes.sizes());
  check_1d(gt_rows, "gt_rows", at::kLong);
  check_1d(dt_rows, "dt_rows", at::kLong);
  check_offsets(gt_groups, "gt_groups", gt_rows.size(0));
  check_offsets(dt_groups, "dt_groups", dt_rows.size(0));
  const int64_t P = gt_groups.size(0) - 1, D = dt_kpt_offsets.size(0) - 1;
  TORCH_CHECK_VALUE(dt_groups.size(0) == P + 1, "coco_oks: gt_groups and dt_groups must have the same length");
  const at::Tensor gk = gt_kpts.contiguous(), dk = dt_kpts.contiguous(), gb = gt_boxes.contiguous();
  const at::Tensor gr = gt_rows.contiguous(), dr = dt_rows.contiguous(), vars = kpt_vars.contiguous();
  const int64_t *go = gt_groups.const_data_ptr<int64_t>(), *dgo = dt_groups.const_data_ptr<int64_t>();
  const int64_t *gro = gr.const_data_ptr<int64_t>(), *dro = dr.const_data_ptr<int64_t>();
  const int64_t *gko = gt_kpt_offsets.const_data_ptr<int64_t>(), *dko = dt_kpt_offsets.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < gt_rows.size(0); ++i)
    TORCH_CHECK_INDEX(gro[i] >= 0 && gro[i] < G, "coco_oks: gt_rows out of range");
  for (int64_t i = 0; i < dt_rows.size(0); ++i)
    TORCH_CHECK_INDEX(dro[i] >= 0 && dro[i] < D, "coco_oks: dt_rows out of range");
  // Pairs per group, each pair's term count (visible GT keypoints, or all K), and the layout.
  at::Tensor iou_offsets = at::empty({P + 1}, gt_groups.options());
  int64_t* io = iou_offsets.mutable_data_ptr<int64_t>();
  io[0] = 0;
  for (int64_t p = 0; p < P; ++p) io[p + 1] = io[p] + (go[p + 1] - go[p]) * (dgo[p + 1] - dgo[p]);
  const double* g = gk.const_data_ptr<double>();
  const double* d = dk.const_data_ptr<double>();
  std::vector<int64_t> visible(G, -1);  // k1 of each GT that is in a pair
  for (int64_t p = 0; p < P; ++p) {
    if (dgo[p + 1] == dgo[p]) continue;
    for (int64_t s = go[p]; s < go[p + 1]; ++s) {
      const int64_t r = gro[s];
      TORCH_CHECK_VALUE(gko[r + 1] - gko[r] == 3 * K, "coco_oks: ground truth row ", r, " has ", gko[r + 1] - gko[r],
                        " keypoint values; expected 3 * len(kpt_oks_sigmas) = ", 3 * K);
      int64_t k1 = 0;
      for (int64_t i = 0; i < K; ++i) k1 += g[gko[r] + 3 * i + 2] > 0;
      visible[r] = k1;
    }
    for (int64_t s = dgo[p]; s < dgo[p + 1]; ++s) {
      const int64_t r = dro[s];
      TORCH_CHECK_VALUE(dko[r + 1] - dko[r] == 3 * K, "coco_oks: detection row ", r, " has ", dko[r + 1] - dko[r],
                        " keypoint values; expected 3 * len(kpt_oks_sigmas) = ", 3 * K);
    }
  }
  at::Tensor term_offsets = at::empty({io[P] + 1}, gt_groups.options());
  int64_t* to = term_offsets.mutable_data_ptr<int64_t>();
  to[0] = 0;
  for (int64_t p = 0, q = 0; p < P; ++p) {
    for (int64_t a = dgo[p]; a < dgo[p + 1]; ++a) {
      for (int64_t s = go[p]; s < go[p + 1]; ++s, ++q) {
        const int64_t k1 = visible[gro[s]];
        to[q + 1] = to[q] + (k1 > 0 ? k1 : K);
      }
    }
  }
  at::Tensor terms = at::empty({to[io[P]]}, gt_kpts.options());
  double* out = terms.mutable_data_ptr<double>();
  const double* v = vars.const_data_ptr<double>();
  const double* box = gb.const_data_ptr<double>();
  const double* area = gt_area.const_data_ptr<double>();
  share_work(P, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      const int64_t ng = go[p + 1] - go[p];
      for (int64_t a = dgo[p]; a < dgo[p + 1]; ++a) {
        const double* xd = d + dko[dro[a]];
        for (int64_t s = go[p]; s < go[p + 1]; ++s) {
          const int64_t r = gro[s];
          const double* xg = g + gko[r];
          double* e = out + to[io[p] + (a - dgo[p]) * ng + (s - go[p])];
          const double area_eps = area[r] + kSpacing1;
          if (visible[r] > 0) {  // distances to the visible GT keypoints
            for (int64_t i = 0; i < K; ++i) {
              if (!(xg[3 * i + 2] > 0)) continue;
              *e++ = oks_term(xd[3 * i] - xg[3 * i], xd[3 * i + 1] - xg[3 * i + 1], v[i], area_eps);
            }
          } else {  // no visible keypoint: distance to the GT box doubled around it
            const double* bb = box + 4 * r;
            const double x0 = bb[0] - bb[2], x1 = bb[0] + bb[2] * 2;
            const double y0 = bb[1] - bb[3], y1 = bb[1] + bb[3] * 2;
            for (int64_t i = 0; i < K; ++i) {
              const double dx = max0(x0 - xd[3 * i]) + max0(xd[3 * i] - x1);
              const double dy = max0(y0 - xd[3 * i + 1]) + max0(xd[3 * i + 1] - y1);
              *e++ = oks_term(dx, dy, v[i], area_eps);
            }
          }
        }
      }
    }
  });
  return {terms, term_offsets, iou_offsets};
}

at::Tensor coco_oks_reduce_cpu(const at::Tensor& exp_terms, const at::Tensor& term_offsets) {
  check_1d(exp_terms, "exp_terms", at::kDouble);
  check_offsets(term_offsets, "term_offsets", exp_terms.size(0));
  const int64_t n = term_offsets.size(0) - 1;
  const at::Tensor x = exp_terms.contiguous();
  const int64_t* to = term_offsets.const_data_ptr<int64_t>();
  const double* e = x.const_data_ptr<double>();
  at::Tensor out = at::empty({n}, exp_terms.options());
  double* o = out.mutable_data_ptr<double>();
  share_work(n, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q) {
      const int64_t k = to[q + 1] - to[q];
      o[q] = numpy_sum(e + to[q], k) / static_cast<double>(k);  // np.sum(np.exp(-e)) / e.shape[0]
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) {
  m.impl("coco_oks_terms", &coco_oks_terms_cpu);
  m.impl("coco_oks_reduce", &coco_oks_reduce_cpu);
}

}  // namespace fastops::coco_eval
