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
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <numeric>
#include <vector>

#include "common/work_sharing.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "coco_eval/coco_eval.h"
#include "coco_eval/coco_eval_math.h"

namespace fastops::coco_eval {
namespace {

// Python's len(x[0:stop]) for a list of n items.
FASTOPS_FORCEINLINE int64_t slice_len(int64_t n, int64_t stop) {
  if (stop >= 0) return std::min(n, stop);
  return std::max<int64_t>(0, n + stop);
}

// An unsigned key whose ascending order is numpy's order of -score: -0.0 equal to 0.0, NaN
// after every number (all NaNs equal).
FASTOPS_FORCEINLINE uint64_t score_key(double score) {
  if (score != score) return ~uint64_t(0);
  double d = -score;
  if (d == 0) d = 0.0;
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  return (bits >> 63) ? ~bits : (bits | (uint64_t(1) << 63));
}

constexpr int kLanes = 16;  // IoU thresholds counted together in accumulate
// GCC vector types (SSE2, AVX2 or AVX-512 code per ISA copy): one detection's flags for kLanes
// thresholds, their comparison masks, and the per-threshold counters.
typedef uint8_t LaneFlags __attribute__((vector_size(kLanes)));
typedef int8_t LaneMask __attribute__((vector_size(kLanes)));
typedef int32_t LaneCounts __attribute__((vector_size(4 * kLanes)));

constexpr double kSpacing1 = 2.220446049250313e-16;  // np.spacing(1)

// Stable order of the positions [begin, end) by decreasing score (score[i]: position begin + i's),
// NaN last. Groups are small (a few detections of one category in one image): insertion sort,
// stable, no allocation.
void sort_by_score(const double* score, int64_t begin, int64_t end, std::vector<int64_t>& order) {
  const int64_t n = end - begin;
  order.resize(n);
  std::iota(order.begin(), order.end(), int64_t(0));  // indices into score, made positions at the end
  if (n > 32) {
    std::stable_sort(order.begin(), order.end(),
                     [score](int64_t a, int64_t b) { return score_before(score[a], score[b]); });
  } else {
    for (int64_t i = 1; i < n; ++i) {
      const int64_t v = order[i];
      int64_t j = i;
      while (j > 0 && score_before(score[v], score[order[j - 1]])) {
        order[j] = order[j - 1];
        --j;
      }
      order[j] = v;
    }
  }
  for (int64_t& o : order) o += begin;
}

void evaluate_impl(const EvaluateArgs& a) {
  // chunks of groups large enough that each chunk's scratch vectors are allocated few times
  share_work(
      a.num_groups, std::max<int64_t>(256, a.num_groups / (8 * at::get_num_threads())), [&](int64_t lo, int64_t hi) {
        // The arguments as this thread's locals: the flag bytes the loops store may alias anything, and
        // would make the compiler reload every field of `a` (and every captured variable) after each store.
        auto* const gt_offsets = a.gt_offsets;
        auto* const gt_boxes = a.gt_boxes;
        auto* const gt_area = a.gt_area;
        auto* const gt_crowd = a.gt_crowd;
        auto* const gt_ignore = a.gt_ignore;
        auto* const gt_id = a.gt_id;
        auto* const dt_offsets = a.dt_offsets;
        auto* const ious = a.ious;
        auto* const iou_offsets = a.iou_offsets;
        auto* const iou_thrs = a.iou_thrs;
        auto* const area_rng = a.area_rng;
        auto* const det_offsets = a.det_offsets;
        auto* const det_index = a.det_index;
        auto* const det_score = a.det_score;
        auto* const det_flags = a.det_flags;
        auto* const num_positive = a.num_positive;
        auto* const det_match = a.det_match;
        const double* const packed = a.dt_packed;  // [D, kPacked] by position
        const int64_t T = a.num_iou_thrs, A = a.num_area_rngs;
        std::vector<int64_t> order, gt_sorted;
        std::vector<double> iou, thr(T), score, det_area;
        std::vector<uint8_t> det_positive;  // dt id > 0: a match blocks the GT (pycocotools' gtm > 0)
        std::vector<uint8_t> ig_rng, blocked;
        std::vector<uint64_t> mask_rng;
        std::vector<int32_t> match;
        for (int64_t t = 0; t < T; ++t) thr[t] = match_floor(iou_thrs[t]);
        for (int64_t p = lo; p < hi; ++p) {
          const int64_t g0 = gt_offsets[p], G = gt_offsets[p + 1] - g0;
          const int64_t d0 = dt_offsets[p], n_dt = dt_offsets[p + 1] - d0;
          const int64_t out0 = det_offsets[p], D = det_offsets[p + 1] - out0;
          if (G == 0 && n_dt == 0) continue;  // most (category, image) pairs: nothing to do
          score.resize(n_dt);
          for (int64_t j = 0; j < n_dt; ++j) score[j] = packed[kPacked * (d0 + j) + kPackedScore];
          sort_by_score(score.data(), d0, d0 + n_dt, order);
          det_area.resize(D);
          det_positive.resize(D);
          for (int64_t j = 0; j < D; ++j) {
            const double* pk = packed + kPacked * order[j];
            det_index[out0 + j] = order[j];
            det_score[out0 + j] = pk[kPackedScore];
            det_area[j] = pk[kPackedArea];
            det_positive[j] = pk[kPackedPositive] != 0;
          }
          // IoU [D, G] of the kept detections (score order) and the ground truths (load order).
          iou.resize(D * G);
          gt_sorted.resize(G);
          blocked.resize(G);
          if (ious != nullptr) {
            const double* src = ious + iou_offsets[p];
            for (int64_t j = 0; j < D; ++j) {
              const double* row = src + (order[j] - d0) * G;
              std::copy(row, row + G, iou.data() + j * G);
            }
          } else {
            for (int64_t j = 0; j < D; ++j) {
              const double* db = packed + kPacked * order[j] + kPackedBox;
              for (int64_t g = 0; g < G; ++g) {
                iou[j * G + g] = bb_iou(db, gt_boxes + 4 * (g0 + g), gt_crowd[g0 + g] != 0);
              }
            }
          }
          // Per area range: the ground truths' ignore flags decide the matching. Ranges with the
          // same flags (e.g. "all" and the one range holding every GT of the group) share it.
          ig_rng.assign(A * G, 0);
          mask_rng.assign(A, 0);
          for (int64_t r = 0; r < A; ++r) {
            const double lo_area = area_rng[2 * r], hi_area = area_rng[2 * r + 1];
            int64_t npos = 0;
            uint64_t mask = 0;
            for (int64_t g = 0; g < G; ++g) {
              const double ar = gt_area[g0 + g];
              const bool ign = gt_ignore[g0 + g] || ar < lo_area || ar > hi_area;
              ig_rng[r * G + g] = ign;
              npos += !ign;
              if (g < 64) mask |= uint64_t(ign) << g;
            }
            mask_rng[r] = mask;
            if (G > 0) num_positive[g0 * A + r] = static_cast<int32_t>(npos);
          }
          if (D == 0) continue;
          const int64_t AT = A * T;
          uint8_t* flags_g = det_flags + out0 * AT;  // [D, A, T] of this group
          if (G == 0) {
            // No ground truth: every detection unmatched, ignored exactly when outside the range.
            for (int64_t j = 0; j < D; ++j) {
              const double dar = det_area[j];
              for (int64_t r = 0; r < A; ++r) {
                const uint8_t f = (dar < area_rng[2 * r] || dar > area_rng[2 * r + 1]) ? kFlagIgnored : 0;
                std::fill(flags_g + j * AT + r * T, flags_g + j * AT + (r + 1) * T, f);
                if (det_match)
                  std::fill(det_match + (out0 + j) * AT + r * T, det_match + (out0 + j) * AT + (r + 1) * T, -1);
              }
            }
            continue;
          }
          match.resize(A * T * D);
          for (int64_t r = 0; r < A; ++r) {
            int32_t* match_r = match.data() + r * T * D;  // matched GT (load-order index) or -1, per (t, j)
            int64_t same = -1;
            for (int64_t q = 0; G <= 64 && q < r; ++q) {
              if (mask_rng[q] == mask_rng[r]) {
                same = q;
                break;
              }
            }
            if (same >= 0) {
              std::copy(match.data() + same * T * D, match.data() + (same + 1) * T * D, match_r);
            } else {
              // Ground truths sorted ignore-last (stable), with their ignore flags in that order.
              const uint8_t* ig_g = ig_rng.data() + r * G;
              int64_t npos = 0;
              for (int64_t g = 0; g < G; ++g) {
                if (!ig_g[g]) gt_sorted[npos++] = g;
              }
              for (int64_t g = 0, q = npos; g < G; ++g) {
                if (ig_g[g]) gt_sorted[q++] = g;
              }
              for (int64_t t = 0; t < T; ++t) {
                std::fill(blocked.begin(), blocked.begin() + G, uint8_t(0));
                for (int64_t j = 0; j < D; ++j) {
                  int64_t m = -1;
                  double best = thr[t];
                  const double* iou_row = iou.data() + j * G;
                  for (int64_t s = 0; s < G; ++s) {
                    const int64_t g = gt_sorted[s];
                    if (blocked[s] && !gt_crowd[g0 + g]) continue;  // matched, and not a crowd
                    if (m > -1 && m < npos && s >= npos) break;     // matched a regular gt; the rest are ignored
                    const double v = iou_row[g];
                    if (v < best) continue;
                    best = v;
                    m = s;
                  }
                  if (m > -1) blocked[m] = det_positive[j];  // gtm > 0
                  match_r[t * D + j] = m > -1 ? static_cast<int32_t>(gt_sorted[m]) : -1;
                }
              }
            }
          }
          // dtIgnore: the matched GT's ignore flag, or, unmatched (dtm == 0), outside the range
          for (int64_t j = 0; j < D; ++j) {
            const double dar = det_area[j];
            uint8_t* fj = flags_g + j * AT;
            for (int64_t r = 0; r < A; ++r) {
              const bool outside = dar < area_rng[2 * r] || dar > area_rng[2 * r + 1];
              const uint8_t* ig_g = ig_rng.data() + r * G;
              const int32_t* match_r = match.data() + r * T * D;
              for (int64_t t = 0; t < T; ++t) {
                const int32_t g = match_r[t * D + j];
                const bool matched = g >= 0;
                const bool nonzero = matched && gt_id[g0 + g] != 0;  // a match on gt id 0 reads as unmatched
                const bool ignored = (matched && ig_g[g]) || (!nonzero && outside);
                fj[r * T + t] = static_cast<uint8_t>((nonzero ? kFlagMatched : 0) | (ignored ? kFlagIgnored : 0));
                if (det_match) det_match[(out0 + j) * AT + r * T + t] = g;
              }
            }
          }
        }
      });
}

// Bits of the lanes set in a comparison mask (-1 / 0 per lane).
FASTOPS_FORCEINLINE uint32_t lane_bits(LaneMask m) {
#if defined(__SSE2__)
  __m128i v;
  std::memcpy(&v, &m, sizeof v);
  return static_cast<uint32_t>(_mm_movemask_epi8(v));
#else
  uint32_t bits = 0;
  for (int l = 0; l < kLanes; ++l) bits |= uint32_t(m[l] != 0) << l;
  return bits;
#endif
}

void accumulate_impl(const AccumulateArgs& a) {
  const int64_t T = a.T, R = a.num_rec_thrs, K = a.K, A = a.A, M = a.M;
  const int64_t I0 = a.num_images, A0 = a.num_area_rngs;
  const int64_t AL = a.num_area_list, ML = a.num_max_dets;
  // A category's cells are computed cell-major in a local buffer (precision / scores [a, m, t, r],
  // recall [a, m, t]: each cell's R values contiguous), then written to pycocotools' layout
  // ([t, r, k, a, m] and [t, k, a, m]), where a (t, r)'s cells of one category are contiguous.
  auto pidx = [&](int64_t t, int64_t r, int64_t k, int64_t ar, int64_t m) {
    (void)k;
    return ((ar * ML + m) * T + t) * R + r;
  };
  auto ridx = [&](int64_t t, int64_t k, int64_t ar, int64_t m) {
    (void)k;
    return (ar * ML + m) * T + t;
  };
  // maxDets from the largest: a smaller one that keeps as many detections keeps the same ones
  // (each image's first max_det), so its cells are a copy.
  std::vector<int64_t> m_order(a.num_max_dets);
  std::iota(m_order.begin(), m_order.end(), 0);
  std::stable_sort(m_order.begin(), m_order.end(), [&](int64_t x, int64_t y) { return a.max_dets[x] > a.max_dets[y]; });
  share_work(
      a.num_cat_list, std::max<int64_t>(1, a.num_cat_list / (4 * at::get_num_threads())), [&](int64_t lo, int64_t hi) {
        std::vector<int64_t> rows, rank, order, sel, npig, tp_pos, fp_at, need;
        std::vector<std::pair<int64_t, int64_t>> done;  // (kept detections, m) of the maxDets computed
        std::vector<double> tp_pr, precision(AL * ML * T * R), scores(AL * ML * T * R), recall(AL * ML * T);
        AccumulateArgs out = a;  // the loops below write this category's cells into the local buffers
        out.precision = precision.data();
        out.scores = scores.data();
        out.recall = recall.data();
        std::vector<uint8_t> local;
        std::vector<std::pair<uint64_t, int64_t>> keyed;
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
          // Stable sort by decreasing score, NaN last: sort (score key, position) pairs, whose
          // positions make every key unique, so the order is the stable one.
          keyed.resize(rows.size());
          for (size_t x = 0; x < rows.size(); ++x)
            keyed[x] = {score_key(a.det_score[rows[x]]), static_cast<int64_t>(x)};
          std::sort(keyed.begin(), keyed.end());
          order.resize(rows.size());
          for (size_t x = 0; x < rows.size(); ++x) order[x] = keyed[x].second;
          npig.assign(a.num_area_list, 0);
          for (int64_t ii = 0; ii < a.num_img_list; ++ii) {
            const int64_t p = k0 * I0 + a.img_list[ii];
            if (a.gt_offsets[p + 1] == a.gt_offsets[p]) continue;  // no ground truth in this group
            const int32_t* counts = a.num_positive + a.gt_offsets[p] * A0;
            for (int64_t ar = 0; ar < a.num_area_list; ++ar) npig[ar] += counts[a.area_list[ar]];
          }
          // np.searchsorted(rc, recThrs, 'left') with rc[i] = tp_i / npig is the first position whose
          // true-positive count reaches need = the least c with c / npig >= thr (rc is that very
          // division); it depends on npig and the threshold only.
          need.resize(a.num_area_list * R);
          for (int64_t ar = 0; ar < a.num_area_list; ++ar) {
            const double npig_d = static_cast<double>(npig[ar]);
            for (int64_t ri = 0; ri < R; ++ri) {
              const double v = a.rec_thrs[ri];
              int64_t c = std::numeric_limits<int64_t>::max();  // NaN sorts after every recall
              if (npig[ar] > 0 && v == v) {
                const double guess = std::ceil(v * npig_d);
                c = guess <= 0
                        ? 0
                        : (guess >= static_cast<double>(npig[ar] + 1) ? npig[ar] + 1 : static_cast<int64_t>(guess));
                while (c > 0 && !(static_cast<double>(c - 1) / npig_d < v)) --c;
                while (c <= npig[ar] && static_cast<double>(c) / npig_d < v) ++c;
              }
              need[ar * R + ri] = c;
            }
          }
          done.clear();
          for (const int64_t m : m_order) {
            // the detections each image keeps at this maxDet, in the category's score order
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
            int64_t same = -1;
            for (const auto& [n_prev, m_prev] : done) {
              if (n_prev == nd) same = m_prev;
            }
            if (same >= 0) {
              for (int64_t ar = 0; ar < a.num_area_list; ++ar) {
                std::memcpy(&out.precision[pidx(0, 0, k, ar, m)], &out.precision[pidx(0, 0, k, ar, same)],
                            T * R * sizeof(double));
                std::memcpy(&out.scores[pidx(0, 0, k, ar, m)], &out.scores[pidx(0, 0, k, ar, same)],
                            T * R * sizeof(double));
                std::memcpy(&out.recall[ridx(0, k, ar, m)], &out.recall[ridx(0, k, ar, same)], T * sizeof(double));
              }
              continue;
            }
            done.emplace_back(nd, m);
            // This maxDet's flags, det-major, each (detection, area range) padded to a block of
            // kLanes IoU thresholds (padding reads as ignored) so one pass counts 16 thresholds.
            const int64_t AT = A0 * T;
            local.resize(nd * AT + kLanes);  // + kLanes: the last 16-lane load stays inside
            for (int64_t i = 0; i < nd; ++i) {
              std::memcpy(local.data() + i * AT, a.det_flags + sel[i] * AT, AT);
            }
            tp_pos.resize(kLanes * (nd + 1));
            fp_at.resize(kLanes * (nd + 1));
            tp_pr.resize(nd + 1);
            for (int64_t ar = 0; ar < a.num_area_list; ++ar) {
              if (npig[ar] == 0) {  // no ground truth: the cells are -1
                std::fill_n(&out.precision[pidx(0, 0, k, ar, m)], T * R, -1.0);
                std::fill_n(&out.scores[pidx(0, 0, k, ar, m)], T * R, -1.0);
                std::fill_n(&out.recall[ridx(0, k, ar, m)], T, -1.0);
                continue;
              }
              const int64_t a0 = a.area_list[ar];
              const double npig_d = static_cast<double>(npig[ar]);
              for (int64_t t0 = 0; t0 < T; t0 += kLanes) {
                // One pass over the detections for kLanes thresholds: true positive and false
                // positive counts (a vector add each), and, at each true positive, its position and
                // the false positives before it. Ignored detections change nothing.
                LaneFlags pad;
                for (int l = 0; l < kLanes; ++l) pad[l] = t0 + l < T ? 0 : kFlagIgnored;
                LaneCounts tpv = {}, fpv = {};
                int32_t tpc[kLanes], fpc[kLanes];
                for (int64_t i = 0; i < nd; ++i) {
                  LaneFlags f;
                  std::memcpy(&f, local.data() + (i * A0 + a0) * T + t0, sizeof f);
                  f |= pad;  // lanes past the last threshold read as ignored
                  const LaneMask is_tp = f == kFlagMatched, is_fp = f == 0;
                  tpv -= __builtin_convertvector(is_tp, LaneCounts);  // masks are -1 / 0
                  fpv -= __builtin_convertvector(is_fp, LaneCounts);
                  uint32_t bits = lane_bits(is_tp);
                  if (bits) {
                    std::memcpy(tpc, &tpv, sizeof tpc);
                    std::memcpy(fpc, &fpv, sizeof fpc);
                    do {
                      const int l = __builtin_ctz(bits);
                      bits &= bits - 1;
                      tp_pos[l * (nd + 1) + tpc[l] - 1] = i;
                      fp_at[l * (nd + 1) + tpc[l] - 1] = fpc[l];
                    } while (bits);
                  }
                }
                std::memcpy(tpc, &tpv, sizeof tpc);
                for (int64_t t = t0; t < std::min(T, t0 + kLanes); ++t) {
                  const int l = static_cast<int>(t - t0);
                  const int64_t tp = tpc[l];
                  const int64_t* pos_l = tp_pos.data() + l * (nd + 1);
                  const int64_t* fp_l = fp_at.data() + l * (nd + 1);
                  // Precision changes upward only at a true positive (between two, tp is fixed and
                  // fp grows), so the envelope (suffix maximum) anywhere is the suffix maximum over
                  // the true positives from there on: only those precisions are computed.
                  for (int64_t c = 0; c < tp; ++c) {  // tp / (fp + tp + np.spacing(1))
                    const double tpd = static_cast<double>(c + 1), fpd = static_cast<double>(fp_l[c]);
                    tp_pr[c] = tpd / ((fpd + tpd) + kSpacing1);
                  }
                  out.recall[ridx(t, k, ar, m)] = nd ? static_cast<double>(tp) / npig_d : 0.0;
                  for (int64_t c = tp - 1; c > 0; --c) {
                    if (tp_pr[c] > tp_pr[c - 1]) tp_pr[c - 1] = tp_pr[c];
                  }
                  double* prec_out = &out.precision[pidx(t, 0, k, ar, m)];
                  double* score_out = &out.scores[pidx(t, 0, k, ar, m)];
                  int64_t ri = 0;
                  for (; ri < R && nd > 0; ++ri) {
                    const int64_t c = need[ar * R + ri];
                    if (c > tp) break;  // pycocotools' try/except stops at the first index past the end
                    const int64_t pi = c == 0 ? 0 : pos_l[c - 1];
                    prec_out[ri] = c == 0 ? (tp > 0 ? tp_pr[0] : 0.0) : tp_pr[c - 1];
                    score_out[ri] = a.det_score[sel[pi]];
                  }
                  for (; ri < R; ++ri) {
                    prec_out[ri] = 0.0;
                    score_out[ri] = 0.0;
                  }
                }
              }
            }
          }
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t r = 0; r < R; ++r) {
              double* dp = a.precision + ((t * R + r) * K + k) * A * M;
              double* ds = a.scores + ((t * R + r) * K + k) * A * M;
              for (int64_t ar = 0; ar < AL; ++ar) {
                for (int64_t m = 0; m < ML; ++m) {
                  dp[ar * M + m] = precision[pidx(t, r, k, ar, m)];
                  ds[ar * M + m] = scores[pidx(t, r, k, ar, m)];
                }
              }
            }
            double* dr = a.recall + (t * K + k) * A * M;
            for (int64_t ar = 0; ar < AL; ++ar) {
              for (int64_t m = 0; m < ML; ++m) dr[ar * M + m] = recall[ridx(t, k, ar, m)];
            }
          }
        }
      });
}

void voc_impl(const VocArgs& a) {
  const double one = a.pixel_plus_one ? 1.0 : 0.0;
  share_work(a.num_classes, 1, [&](int64_t lo, int64_t hi) {
    std::vector<uint8_t> detected;
    for (int64_t c = lo; c < hi; ++c) {
      const int64_t g_begin = a.gt_offsets[c * a.num_images], g_end = a.gt_offsets[(c + 1) * a.num_images];
      detected.assign(g_end - g_begin, 0);
      for (int64_t d = a.dt_offsets[c]; d < a.dt_offsets[c + 1]; ++d) {
        const int64_t p = c * a.num_images + a.dt_image[d];
        const double* bb = a.dt_boxes + 4 * d;
        double ovmax = -std::numeric_limits<double>::infinity();
        int64_t jmax = -1;
        for (int64_t j = a.gt_offsets[p]; j < a.gt_offsets[p + 1]; ++j) {
          const double* gt = a.gt_boxes + 4 * j;
          const double iw = std::min(bb[2], gt[2]) - std::max(bb[0], gt[0]) + one;
          const double ih = std::min(bb[3], gt[3]) - std::max(bb[1], gt[1]) + one;
          if (!(iw > 0 && ih > 0)) continue;
          const double inter = iw * ih;
          const double ua =
              (bb[2] - bb[0] + one) * (bb[3] - bb[1] + one) + (gt[2] - gt[0] + one) * (gt[3] - gt[1] + one) - inter;
          const double ov = inter / ua;
          if (ov > ovmax) {
            ovmax = ov;
            jmax = j;
          }
        }
        uint8_t tp = 0, fp = 0;
        if (jmax >= 0 && ovmax >= a.iou_threshold) {
          if (!a.gt_difficult[jmax]) {
            if (!detected[jmax - g_begin]) {
              tp = 1;
              detected[jmax - g_begin] = 1;
            } else {
              fp = 1;  // a duplicate detection
            }
          }
        } else {
          fp = 1;
        }
        a.tp[d] = tp;
        a.fp[d] = fp;
      }
    }
  });
}

FASTOPS_REGISTER_CPU_KERNEL(evaluate_cpu, &evaluate_impl);
FASTOPS_REGISTER_CPU_KERNEL(voc_cpu, &voc_impl);
FASTOPS_REGISTER_CPU_KERNEL(accumulate_cpu, &accumulate_impl);

}  // namespace
}  // namespace fastops::coco_eval
