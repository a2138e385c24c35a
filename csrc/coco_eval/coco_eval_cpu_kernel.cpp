// Raw CPU loops of the COCO evaluation, compiled once per instruction set (the results do not
// depend on it: the code is scalar double math with -ffp-contract=off, as pycocotools' own).
//
// evaluate: one task per (category, image) group: sort the detections by score (stable, NaN
// last), keep the first max_det, IoU against the ground truths, then per area range the ground
// truths sorted ignore-last (stable) and COCOeval.evaluateImg's greedy matching per IoU threshold.
// accumulate: one task per output category: that category's kept detections over the listed
// images are sorted by score once (stable: pycocotools' mergesort); each (area range, maxDet,
// IoU threshold) is then one pass of cumulative sums, the precision envelope and the recall
// thresholds' lower bounds (np.searchsorted(..., 'left')).
#include <algorithm>
#include <numeric>
#include <vector>

#include <ATen/Parallel.h>

#include "coco_eval/coco_eval.h"
#include "coco_eval/coco_eval_math.h"

namespace fastops::coco_eval {
namespace {

// Python's len(x[0:stop]) for a list of n items.
FASTOPS_FORCEINLINE int64_t slice_len(int64_t n, int64_t stop) {
  if (stop >= 0) return std::min(n, stop);
  return std::max<int64_t>(0, n + stop);
}

// numpy's NaN-aware less-than (NaN after every number), as its sorts and searchsorted use.
FASTOPS_FORCEINLINE bool npy_less(double a, double b) { return a < b || (b != b && a == a); }

// Stable order of detection rows [begin, end) by decreasing score, NaN last.
void sort_by_score(const double* score, int64_t begin, int64_t end, std::vector<int64_t>& order) {
  order.resize(end - begin);
  std::iota(order.begin(), order.end(), begin);
  std::stable_sort(order.begin(), order.end(),
                   [score](int64_t a, int64_t b) { return score_before(score[a], score[b]); });
}

void evaluate_impl(const EvaluateArgs& a) {
  const int64_t T = a.num_iou_thrs, A = a.num_area_rngs, N = a.num_kept;
  at::parallel_for(0, a.num_groups, 64, [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> order, gt_sorted;
    std::vector<double> iou, thr(T);
    std::vector<uint8_t> ig, blocked;
    for (int64_t t = 0; t < T; ++t) thr[t] = match_floor(a.iou_thrs[t]);
    for (int64_t p = lo; p < hi; ++p) {
      const int64_t g0 = a.gt_offsets[p], G = a.gt_offsets[p + 1] - g0;
      const int64_t d0 = a.dt_offsets[p], n_dt = a.dt_offsets[p + 1] - d0;
      const int64_t out0 = a.det_offsets[p], D = a.det_offsets[p + 1] - out0;
      sort_by_score(a.dt_score, d0, d0 + n_dt, order);
      for (int64_t j = 0; j < D; ++j) a.det_index[out0 + j] = order[j];
      // IoU [D, G] of the kept detections (score order) and the ground truths (load order).
      iou.resize(D * G);
      if (a.ious != nullptr) {
        const double* src = a.ious + a.iou_offsets[p];
        for (int64_t j = 0; j < D; ++j) {
          const double* row = src + (order[j] - d0) * G;
          std::copy(row, row + G, iou.data() + j * G);
        }
      } else {
        for (int64_t j = 0; j < D; ++j) {
          const double* db = a.dt_boxes + 4 * order[j];
          for (int64_t g = 0; g < G; ++g) {
            iou[j * G + g] = bb_iou(db, a.gt_boxes + 4 * (g0 + g), a.gt_crowd[g0 + g] != 0);
          }
        }
      }
      const bool any_iou = D > 0 && G > 0;  // pycocotools skips the matching when ious == []
      gt_sorted.resize(G);
      ig.resize(G);
      blocked.resize(G);
      for (int64_t r = 0; r < A; ++r) {
        const double lo_area = a.area_rng[2 * r], hi_area = a.area_rng[2 * r + 1];
        // Ground truths sorted ignore-last (stable), with their ignore flags in that order.
        int64_t npos = 0;
        for (int64_t g = 0; g < G; ++g) {
          const double ar = a.gt_area[g0 + g];
          if (!(a.gt_ignore[g0 + g] || ar < lo_area || ar > hi_area)) gt_sorted[npos++] = g;
        }
        a.num_positive[r * a.num_groups + p] = npos;
        for (int64_t g = 0, q = npos; g < G; ++g) {
          const double ar = a.gt_area[g0 + g];
          if (a.gt_ignore[g0 + g] || ar < lo_area || ar > hi_area) gt_sorted[q++] = g;
        }
        for (int64_t s = 0; s < G; ++s) ig[s] = s >= npos;
        for (int64_t t = 0; t < T; ++t) {
          uint8_t* flags = a.det_flags + (r * T + t) * N + out0;
          std::fill(blocked.begin(), blocked.end(), uint8_t(0));
          for (int64_t j = 0; j < D; ++j) {
            const int64_t row = order[j];
            int64_t m = -1;
            if (any_iou) {
              double best = thr[t];
              const double* iou_row = iou.data() + j * G;
              for (int64_t s = 0; s < G; ++s) {
                const int64_t g = gt_sorted[s];
                if (blocked[s] && !a.gt_crowd[g0 + g]) continue;  // matched, and not a crowd
                if (m > -1 && !ig[m] && ig[s]) break;          // matched a regular gt; the rest are ignored
                const double v = iou_row[g];
                if (v < best) continue;
                best = v;
                m = s;
              }
            }
            uint8_t f = 0;
            bool dtm_zero = true;
            if (m > -1) {
              if (ig[m]) f |= kFlagIgnored;
              dtm_zero = a.gt_id[g0 + gt_sorted[m]] == 0;  // a match on gt id 0 reads as unmatched
              if (!dtm_zero) f |= kFlagMatched;
              blocked[m] = a.dt_id[row] > 0;  // gtm > 0
            }
            const double dar = a.dt_area[row];
            if (dtm_zero && (dar < lo_area || dar > hi_area)) f |= kFlagIgnored;
            flags[j] = f;
          }
        }
      }
    }
  });
}

void accumulate_impl(const AccumulateArgs& a) {
  const int64_t T = a.T, R = a.num_rec_thrs, K = a.K, A = a.A, M = a.M;
  const int64_t I0 = a.num_images, N = a.num_kept;
  // precision/scores index [t, r, k, a, m]; recall [t, k, a, m]
  auto pidx = [&](int64_t t, int64_t r, int64_t k, int64_t ar, int64_t m) {
    return (((t * R + r) * K + k) * A + ar) * M + m;
  };
  auto ridx = [&](int64_t t, int64_t k, int64_t ar, int64_t m) { return ((t * K + k) * A + ar) * M + m; };
  at::parallel_for(0, a.num_cat_list, 1, [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> rows, rank, order, sel;
    std::vector<double> rc, pr;
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t k0 = a.cat_list[k];
      // The category's kept detections over the listed images, concatenated in list order, with
      // their rank within their image (to cut at maxDet) and their image's kept count.
      rows.clear();
      rank.clear();
      for (int64_t ii = 0; ii < a.num_img_list; ++ii) {
        const int64_t p = k0 * I0 + a.img_list[ii];
        const int64_t b = a.det_offsets[p], e = a.det_offsets[p + 1];
        for (int64_t j = b; j < e; ++j) {
          rows.push_back(j);
          rank.push_back(j - b);
        }
      }
      order.resize(rows.size());
      std::iota(order.begin(), order.end(), int64_t(0));
      std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
        return score_before(a.det_score[rows[x]], a.det_score[rows[y]]);
      });
      for (int64_t ar = 0; ar < a.num_area_list; ++ar) {
        const int64_t a0 = a.area_list[ar];
        int64_t npig = 0;
        for (int64_t ii = 0; ii < a.num_img_list; ++ii) {
          npig += a.num_positive[a0 * a.num_groups + k0 * I0 + a.img_list[ii]];
        }
        if (npig == 0) continue;
        for (int64_t m = 0; m < a.num_max_dets; ++m) {
          const int64_t max_det = a.max_dets[m];
          sel.clear();
          for (const int64_t o : order) {
            int64_t limit = max_det;
            if (max_det < 0) {  // Python slice [0:max_det] of the image's kept detections
              const int64_t j = rows[o];
              const int64_t* end = std::upper_bound(a.det_offsets, a.det_offsets + a.num_groups + 1, j);
              limit = slice_len(*end - *(end - 1), max_det);
            }
            if (rank[o] < limit) sel.push_back(rows[o]);
          }
          const int64_t nd = static_cast<int64_t>(sel.size());
          rc.resize(nd);
          pr.resize(nd);
          const double npig_d = static_cast<double>(npig);
          for (int64_t t = 0; t < T; ++t) {
            const uint8_t* flags = a.det_flags + (a0 * T + t) * N;
            int64_t tp = 0, fp = 0;
            for (int64_t i = 0; i < nd; ++i) {
              const uint8_t f = flags[sel[i]];
              const bool ign = f & kFlagIgnored, mat = f & kFlagMatched;
              tp += mat && !ign;
              fp += !mat && !ign;
              const double tpd = static_cast<double>(tp), fpd = static_cast<double>(fp);
              rc[i] = tpd / npig_d;
              pr[i] = tpd / ((fpd + tpd) + 2.220446049250313e-16);  // np.spacing(1)
            }
            a.recall[ridx(t, k, ar, m)] = nd ? rc[nd - 1] : 0.0;
            for (int64_t i = nd - 1; i > 0; --i) {
              if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
            }
            int64_t ri = 0;
            for (; ri < R; ++ri) {
              const double v = a.rec_thrs[ri];
              const int64_t pi = std::lower_bound(rc.begin(), rc.end(), v, npy_less) - rc.begin();
              if (pi >= nd) break;  // pycocotools' try/except stops at the first index past the end
              a.precision[pidx(t, ri, k, ar, m)] = pr[pi];
              a.scores[pidx(t, ri, k, ar, m)] = a.det_score[sel[pi]];
            }
            for (; ri < R; ++ri) {
              a.precision[pidx(t, ri, k, ar, m)] = 0.0;
              a.scores[pidx(t, ri, k, ar, m)] = 0.0;
            }
          }
        }
      }
    }
  });
}

FASTOPS_REGISTER_CPU_KERNEL(evaluate_cpu, &evaluate_impl);
FASTOPS_REGISTER_CPU_KERNEL(accumulate_cpu, &accumulate_impl);

}  // namespace
}  // namespace fastops::coco_eval
