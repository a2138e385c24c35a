// Raw CPU loops of the NMS ops, compiled once per instruction set (csrc/common/cpu_dispatch.h);
// everything here has internal linkage.
//
// Greedy NMS, exact and in O(N) memory: boxes in decreasing score order live in a structure of
// arrays of the still-undecided boxes. A block of the first 256 is resolved in order among
// itself; then the block's kept boxes test every later box at once (a vector loop over the later
// boxes, in parallel tiles), and the survivors are compacted to the front. Each later box is thus
// compared only with kept boxes, and suppressed boxes drop out of all further work; the pass ends
// when no box is left undecided.
//
// That costs O(N x kept), which only matters when most boxes survive (many boxes spread over a
// large image). Once the blocks have kept kGridKept boxes and kGridMin are still undecided, the
// rest runs through KeptGrid: each undecided box, in order, is tested only against the kept boxes that
// share a grid cell with it, then kept and added to the grid. The keep list is the same: with a
// threshold >= 0, boxes whose rectangles do not overlap never suppress each other (their IoU is
// 0 or NaN), and two overlapping rectangles share a cell.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>

#include "common/cpu_reduce.h"
#include "common/dtype_dispatch.h"
#include "nms/nms.h"

namespace fastops::nms {
namespace {

constexpr int64_t kBlock = 256;          // boxes resolved among themselves before they suppress the rest
constexpr int64_t kTile = 2048;          // later boxes per task when the block suppresses them
constexpr int64_t kParallelMin = 16384;  // fewer later boxes than this: one thread
constexpr int64_t kGridKept = 128;       // kept boxes before the grid takes over ...
constexpr int64_t kGridMin = 16384;      // ... the undecided boxes, if at least this many remain
constexpr int64_t kGridMaxCells = int64_t(1) << 22;
constexpr int64_t kGridBigCells = 64;  // a box covering more cells is tested against every kept box

// Undecided boxes in priority order: coordinates, area, the caller's id and a class label.
template <typename T>
struct BoxSoA {
  std::vector<T> buf;
  std::vector<int64_t> id, label;
  T *x1, *y1, *x2, *y2, *area;

  explicit BoxSoA(int64_t n) : buf(static_cast<size_t>(5 * n)), id(n), label(n) {
    T* f = buf.data();
    x1 = f, y1 = f + n, x2 = f + 2 * n, y2 = f + 3 * n, area = f + 4 * n;
  }
  FASTOPS_FORCEINLINE NmsBox<T> get(int64_t i) const { return {x1[i], y1[i], x2[i], y2[i], area[i]}; }
  FASTOPS_FORCEINLINE void set(int64_t i, const NmsBox<T>& b) {
    x1[i] = b.x1, y1[i] = b.y1, x2[i] = b.x2, y2[i] = b.y2, area[i] = b.area;
  }
  FASTOPS_FORCEINLINE void move(int64_t dst, int64_t src) {
    set(dst, get(src));
    id[dst] = id[src];
    label[dst] = label[src];
  }
};

// flag[j] |= box j is suppressed by `a` (IoU above threshold, and the same label when labeled).
template <typename T, bool kLabeled>
void suppress_by(const NmsBox<T> a, int64_t a_label, const BoxSoA<T>& s, int64_t lo, int64_t hi, T thr,
                 uint8_t* __restrict flag) {
  const int64_t* label = s.label.data();
#pragma GCC ivdep  // the arrays never alias
  for (int64_t j = lo; j < hi; ++j) {
    const bool over = nms_iou(a, s.get(j)) > thr;
    flag[j] |= static_cast<uint8_t>(kLabeled ? (over & (label[j] == a_label)) : over);
  }
}

// All boxes have w, h >= 0 and finite coordinates, so no IoU exceeds 1.
template <typename T>
bool all_regular(const BoxSoA<T>& s, int64_t n) {
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) {
    ok &= (s.x2[i] >= s.x1[i]) & (s.y2[i] >= s.y1[i]) & std::isfinite(s.area[i]);
  }
  return ok;
}

// Kept boxes indexed by a uniform grid whose cell is about the median box size. A kept box is
// listed in every cell it covers (or, when that is more than kGridBigCells, in the `big` list that
// every query reads); a query tests the kept boxes listed in its cells (or, when it covers more
// than kGridBigCells, every kept box). Entries hold their box, so a cell's list is read without
// visiting the kept boxes themselves. Requires regular boxes (finite, x2 >= x1, y2 >= y1).
template <typename T, bool kLabeled>
class KeptGrid {
 public:
  // Sized for the boxes at positions [lo, hi) of s, the ones still to be decided.
  KeptGrid(const BoxSoA<T>& s, int64_t lo, int64_t hi, T thr) : thr_(thr) {
    T x0 = s.x1[lo], y0 = s.y1[lo], x1 = s.x2[lo], y1 = s.y2[lo];
    std::vector<T> sizes;
    const int64_t step = std::max<int64_t>(1, (hi - lo) / 4096);
    for (int64_t i = lo; i < hi; ++i) {
      x0 = std::min(x0, s.x1[i]), y0 = std::min(y0, s.y1[i]), x1 = std::max(x1, s.x2[i]), y1 = std::max(y1, s.y2[i]);
      if ((i - lo) % step == 0) sizes.push_back(std::max(s.x2[i] - s.x1[i], s.y2[i] - s.y1[i]));
    }
    std::nth_element(sizes.begin(), sizes.begin() + sizes.size() / 2, sizes.end());
    const double extent_x = static_cast<double>(x1) - x0, extent_y = static_cast<double>(y1) - y0;
    // about one cell per box at most: the cell heads stay a small part of the memory touched
    const double max_cells = std::min<double>(kGridMaxCells, std::max<double>(hi - lo, 1));
    double cell = std::max<double>(sizes[sizes.size() / 2], 1e-30);
    while ((extent_x / cell + 1) * (extent_y / cell + 1) > max_cells) cell *= 2;
    x0_ = x0, y0_ = y0, inv_cell_ = 1.0 / cell;
    cols_ = static_cast<int64_t>(extent_x / cell) + 1;
    rows_ = static_cast<int64_t>(extent_y / cell) + 1;
    head_.assign(static_cast<size_t>(cols_ * rows_), -1);
  }

  // Whether a kept box suppresses b (label lb).
  bool suppressed(const NmsBox<T>& b, int64_t lb) const {
    const Cells c = cells_of(b);
    if (c.count() > kGridBigCells) return any_hit(b, lb, kept_);
    for (int64_t r = c.r0; r <= c.r1; ++r) {
      for (int64_t q = c.c0; q <= c.c1; ++q) {
        for (int64_t e = head_[r * cols_ + q]; e >= 0; e = entries_[e].next) {
          if (hits(b, lb, entries_[e].kept)) return true;
        }
      }
    }
    return any_hit(b, lb, big_);
  }

  void add(const NmsBox<T>& b, int64_t label) {
    const Kept k{b, label};
    kept_.push_back(k);
    const Cells c = cells_of(b);
    if (c.count() > kGridBigCells) {
      big_.push_back(k);
      return;
    }
    for (int64_t r = c.r0; r <= c.r1; ++r) {
      for (int64_t q = c.c0; q <= c.c1; ++q) {
        int64_t& head = head_[r * cols_ + q];
        entries_.push_back({k, head});
        head = static_cast<int64_t>(entries_.size()) - 1;
      }
    }
  }

 private:
  struct Kept {
    NmsBox<T> box;
    int64_t label;
  };
  struct Entry {
    Kept kept;
    int64_t next;  // the cell's next entry, -1 at the end
  };
  struct Cells {
    int64_t c0, c1, r0, r1;
    int64_t count() const { return (c1 - c0 + 1) * (r1 - r0 + 1); }
  };
  // Monotone in each coordinate, clamped to the grid: overlapping rectangles share a cell.
  int64_t index(T v, T origin, int64_t size) const {
    const double f = (static_cast<double>(v) - origin) * inv_cell_;
    return f <= 0 ? 0 : (f >= static_cast<double>(size - 1) ? size - 1 : static_cast<int64_t>(f));
  }
  Cells cells_of(const NmsBox<T>& b) const {
    return {index(b.x1, x0_, cols_), index(b.x2, x0_, cols_), index(b.y1, y0_, rows_), index(b.y2, y0_, rows_)};
  }
  bool hits(const NmsBox<T>& b, int64_t lb, const Kept& k) const {
    return nms_iou(k.box, b) > thr_ && (!kLabeled || k.label == lb);
  }
  bool any_hit(const NmsBox<T>& b, int64_t lb, const std::vector<Kept>& list) const {
    for (const Kept& k : list) {
      if (hits(b, lb, k)) return true;
    }
    return false;
  }

  T thr_;
  T x0_ = 0, y0_ = 0;
  double inv_cell_ = 1;
  int64_t cols_ = 1, rows_ = 1;
  std::vector<Kept> kept_, big_;
  std::vector<Entry> entries_;
  std::vector<int64_t> head_;
};

// Greedy NMS on positions [0, n) of `cur`, in priority order (cur is consumed). Calls
// keep(id) for each kept box in order; keep returns false to stop early.
template <typename T, bool kLabeled, typename Keep>
void greedy(BoxSoA<T>& cur, int64_t n, T thr, bool parallel, Keep&& keep) {
  if (thr >= T(1) && all_regular(cur, n)) {  // nothing can be suppressed
    for (int64_t i = 0; i < n; ++i) {
      if (!keep(cur.id[i])) return;
    }
    return;
  }
  std::vector<uint8_t> flag(n);
  std::vector<int64_t> kept;
  kept.reserve(kBlock);
  // The grid's precondition; the boxes kept so far, for the grid (only when it may take over).
  const bool grid_ok = n >= kGridMin && thr >= T(0) && all_regular(cur, n);
  std::vector<std::pair<NmsBox<T>, int64_t>> kept_boxes;
  int64_t cnt = n;
  while (cnt > 0) {
    const int64_t b = std::min(kBlock, cnt);
    std::fill(flag.begin(), flag.begin() + b, uint8_t(0));
    kept.clear();
    for (int64_t t = 0; t < b; ++t) {
      if (flag[t]) continue;
      if (!keep(cur.id[t])) return;
      kept.push_back(t);
      if (grid_ok) kept_boxes.emplace_back(cur.get(t), cur.label[t]);
      suppress_by<T, kLabeled>(cur.get(t), cur.label[t], cur, t + 1, b, thr, flag.data());
    }
    if (cnt == b) return;
    if (grid_ok && static_cast<int64_t>(kept_boxes.size()) >= kGridKept && cnt - b >= kGridMin) {
      KeptGrid<T, kLabeled> grid(cur, b, cnt, thr);
      for (const auto& [box, label] : kept_boxes) grid.add(box, label);
      for (int64_t j = b; j < cnt; ++j) {
        const NmsBox<T> box = cur.get(j);
        if (grid.suppressed(box, cur.label[j])) continue;
        if (!keep(cur.id[j])) return;
        grid.add(box, cur.label[j]);
      }
      return;
    }
    auto body = [&](int64_t lo, int64_t hi) {
      for (int64_t j0 = lo; j0 < hi; j0 += kTile) {
        const int64_t j1 = std::min(hi, j0 + kTile);
        std::fill(flag.begin() + j0, flag.begin() + j1, uint8_t(0));
        for (const int64_t k : kept) suppress_by<T, kLabeled>(cur.get(k), cur.label[k], cur, j0, j1, thr, flag.data());
      }
    };
    if (parallel && cnt - b >= kParallelMin) {
      at::parallel_for(b, cnt, kTile, body);
    } else {
      body(b, cnt);
    }
    int64_t m = 0;
    for (int64_t j = b; j < cnt; ++j) {
      if (!flag[j]) cur.move(m++, j);
    }
    cnt = m;
  }
}

// ---- nms / batched_nms ---------------------------------------------------------------------

template <typename T, typename S>
void greedy_impl(const GreedyArgs& a) {
  const S* boxes = static_cast<const S*>(a.boxes);
  const T thr = threshold_below<T>(a.iou_threshold);
  // class runs: [starts[s], starts[s + 1])
  std::vector<int64_t> starts{0};
  if (a.group != nullptr) {
    for (int64_t p = 1; p < a.n; ++p) {
      if (a.group[p] != a.group[p - 1]) starts.push_back(p);
    }
  }
  starts.push_back(a.n);
  const int64_t runs = static_cast<int64_t>(starts.size()) - 1;
  auto run = [&](int64_t r, bool parallel) {
    const int64_t p0 = starts[r], len = starts[r + 1] - p0;
    BoxSoA<T> soa(len);
    for (int64_t i = 0; i < len; ++i) {
      soa.set(i, load_nms_box<T>(boxes + 4 * a.order[p0 + i]));
      soa.id[i] = p0 + i;
    }
    greedy<T, false>(soa, len, thr, parallel, [&](int64_t p) {
      a.keep_by_rank[a.rank != nullptr ? a.rank[p] : p] = 1;
      return true;
    });
  };
  if (runs == 1) {
    run(0, true);
  } else {
    // a few thousand boxes in all take less time than waking the thread pool
    at::parallel_for(0, runs, a.n < kParallelMin ? runs : 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) run(r, false);
    });
  }
}

// ---- soft-NMS ------------------------------------------------------------------------------

template <typename T, typename S>
int64_t soft_impl(const SoftArgs& a) {
  const S* boxes = static_cast<const S*>(a.boxes);
  const T* scores = static_cast<const T*>(a.scores);
  const T thr = static_cast<T>(a.iou_threshold), sigma = static_cast<T>(a.sigma);
  const T min_score = static_cast<T>(a.score_threshold);
  T* keep_scores = static_cast<T*>(a.keep_scores);
  // Undecided boxes in index order (so the first maximum is the lowest index); NaN scores never
  // take part.
  BoxSoA<T> cur(a.n);
  std::vector<T> score(a.n);
  int64_t cnt = 0;
  for (int64_t i = 0; i < a.n; ++i) {
    if (std::isnan(scores[i])) continue;
    cur.set(cnt, load_nms_box<T>(boxes + 4 * i));
    cur.id[cnt] = i;
    cur.label[cnt] = a.idxs != nullptr ? a.idxs[i] : 0;
    score[cnt++] = scores[i];
  }
  int64_t out = 0;
  while (cnt > 0) {
    int64_t best = 0;
    for (int64_t j = 1; j < cnt; ++j) {
      if (score[j] > score[best]) best = j;
    }
    a.keep[out] = cur.id[best];
    keep_scores[out++] = score[best];
    const NmsBox<T> sel = cur.get(best);
    const int64_t sel_label = cur.label[best];
    T* __restrict s = score.data();
    const int64_t* __restrict label = cur.label.data();
    for (int64_t j = 0; j < cnt; ++j) {
      const T w = soft_weight(nms_iou_or_zero(sel, cur.get(j)), a.method, thr, sigma);
      s[j] *= label[j] == sel_label ? w : T(1);
    }
    // Drop the selected box and those now below min_score (mmcv's rule: a box is tested only
    // after a decay round, so the first selection is never tested).
    int64_t m = 0;
    for (int64_t j = 0; j < cnt; ++j) {
      if (j == best || s[j] < min_score) continue;
      cur.move(m, j);
      s[m++] = s[j];
    }
    cnt = m;
  }
  return out;
}

// ---- Matrix NMS ----------------------------------------------------------------------------

template <typename T, typename S>
void matrix_impl(const MatrixArgs& a) {
  const S* boxes = static_cast<const S*>(a.boxes);
  const int64_t n = a.n;
  const T sigma = static_cast<T>(a.sigma);
  BoxSoA<T> soa(n);
  for (int64_t p = 0; p < n; ++p) {
    soa.set(p, load_nms_box<T>(boxes + 4 * a.order[p]));
    soa.label[p] = a.group != nullptr ? a.group[p] : 0;
  }
  const int64_t* label = soa.label.data();
  // compensate[i]: box i's largest IoU with a higher-scored box of its class.
  std::vector<T> comp(n);
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> row(n);
    for (int64_t i = begin; i < end; ++i) {
      const NmsBox<T> bi = soa.get(i);
      T* __restrict r = row.data();
      for (int64_t k = 0; k < i; ++k) r[k] = label[k] == label[i] ? nms_iou_or_zero(soa.get(k), bi) : T(0);
      comp[i] = cpu::lane_reduce(r, i, T(0), [](T x, T y) { return x > y ? x : y; });
    }
  });
  T* decay = static_cast<T*>(a.decay);
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> row(n);
    for (int64_t j = begin; j < end; ++j) {
      const NmsBox<T> bj = soa.get(j);
      T* __restrict r = row.data();
      for (int64_t i = 0; i < j; ++i) {
        r[i] = label[i] == label[j] ? matrix_key(nms_iou_or_zero(soa.get(i), bj), comp[i], a.kernel) : T(INFINITY);
      }
      const T min_key = cpu::lane_reduce(r, j, T(INFINITY), [](T x, T y) { return x < y ? x : y; });
      decay[j] = matrix_decay(min_key, a.kernel, sigma);
    }
  });
}

// ---- multiclass post-processing ----------------------------------------------------------------

constexpr int64_t kScanBlock = 256;  // scores tested at once (a vector loop) before the scalar pass

// Whether any of s[lo..hi) is above bar (NaN is not).
template <typename T, typename S>
bool any_above(const S* __restrict s, int64_t lo, int64_t hi, T bar) {
  int32_t above = 0;  // an integer sum: GCC vectorizes it, not a bool "or"
  for (int64_t f = lo; f < hi; ++f) above += static_cast<T>(s[f]) > bar ? 1 : 0;
  return above != 0;
}

template <typename T, typename S>
void multiclass_impl(const MulticlassArgs& a) {
  const S* boxes = static_cast<const S*>(a.boxes);
  const S* scores = static_cast<const S*>(a.scores);
  S* out_boxes = static_cast<S*>(a.out_boxes);
  S* out_scores = static_cast<S*>(a.out_scores);
  const int64_t nc = a.n * a.classes, d = a.max_detections;
  const T score_thr = static_cast<T>(a.score_threshold);
  const T iou_thr = threshold_below<T>(a.iou_threshold);
  using Cand = std::pair<T, int64_t>;  // (score, flat index n * C + c)
  const auto better = [](const Cand& x, const Cand& y) {
    return x.first > y.first || (x.first == y.first && x.second < y.second);
  };

  auto image = [&](int64_t b, bool parallel) {
    const S* sc = scores + b * nc;
    // 1. the topk candidates above the score threshold, sorted (ties: lower index first). Each
    // chunk keeps at most 4 topk; when it has more it keeps its topk best and raises its bar to
    // the worst of them, so a later score must beat that bar (a later index loses ties).
    auto collect = [&](int64_t lo, int64_t hi, std::vector<Cand>& into) {
      T bar = score_thr;
      for (int64_t f0 = lo; f0 < hi; f0 += kScanBlock) {
        const int64_t f1 = std::min(hi, f0 + kScanBlock);
        if (!any_above(sc, f0, f1, bar)) continue;  // the common case once the bar has risen
        for (int64_t f = f0; f < f1; ++f) {
          const T s = static_cast<T>(sc[f]);
          if (!(s > bar)) continue;
          into.emplace_back(s, f);
          if (static_cast<int64_t>(into.size()) >= 4 * a.topk) {
            std::nth_element(into.begin(), into.begin() + (a.topk - 1), into.end(), better);
            into.resize(a.topk);
            bar = std::max(bar, into[a.topk - 1].first);
          }
        }
      }
    };
    std::vector<Cand> cand;
    if (parallel && nc >= 65536) {
      const int64_t chunks = std::min<int64_t>(64, at::get_num_threads() * 4);
      std::vector<std::vector<Cand>> parts(chunks);
      at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) collect(nc * c / chunks, nc * (c + 1) / chunks, parts[c]);
      });
      for (auto& part : parts) cand.insert(cand.end(), part.begin(), part.end());
    } else {
      collect(0, nc, cand);
    }
    if (static_cast<int64_t>(cand.size()) > a.topk) {
      std::nth_element(cand.begin(), cand.begin() + a.topk, cand.end(), better);
      cand.resize(a.topk);
    }
    std::sort(cand.begin(), cand.end(), better);
    // 3. their boxes (also kept as stored, to write out) and labels
    const int64_t k = static_cast<int64_t>(cand.size());
    BoxSoA<T> soa(k);
    std::vector<S> stored(4 * k);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t anchor = cand[i].second / a.classes, label = cand[i].second % a.classes;
      const S* p = boxes + (a.per_class_boxes ? (b * a.n + anchor) * a.classes + label : b * a.n + anchor) * 4;
      soa.set(i, load_nms_box<T>(p));
      soa.id[i] = i;
      soa.label[i] = label;
      std::copy(p, p + 4, stored.begin() + 4 * i);
    }
    std::vector<int64_t> kept;
    kept.reserve(d);
    // 4. NMS, stopping at max_detections kept
    auto keep = [&](int64_t i) {
      kept.push_back(i);
      return static_cast<int64_t>(kept.size()) < d;
    };
    if (a.class_agnostic) {
      greedy<T, false>(soa, k, iou_thr, false, keep);
    } else {
      greedy<T, true>(soa, k, iou_thr, false, keep);
    }
    // 5. outputs (padding was written by the caller)
    for (int64_t r = 0; r < static_cast<int64_t>(kept.size()); ++r) {
      const int64_t i = kept[r];
      std::copy(stored.begin() + 4 * i, stored.begin() + 4 * i + 4, out_boxes + (b * d + r) * 4);
      out_scores[b * d + r] = static_cast<S>(cand[i].first);
      a.out_labels[b * d + r] = cand[i].second % a.classes;
    }
    a.out_num[b] = static_cast<int64_t>(kept.size());
  };
  if (a.batch >= at::get_num_threads()) {
    at::parallel_for(0, a.batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) image(b, false);
    });
  } else {
    for (int64_t b = 0; b < a.batch; ++b) image(b, true);
  }
}

// ---- dispatch ------------------------------------------------------------------------------

void greedy_entry(const GreedyArgs& a) {
  with_float_dtype(a.dtype, "nms", [&](auto s, auto t) { greedy_impl<decltype(t), decltype(s)>(a); });
}

int64_t soft_entry(const SoftArgs& a) {
  int64_t count = 0;
  with_float_dtype(a.dtype, "soft_nms", [&](auto s, auto t) { count = soft_impl<decltype(t), decltype(s)>(a); });
  return count;
}

void matrix_entry(const MatrixArgs& a) {
  with_float_dtype(a.dtype, "matrix_nms", [&](auto s, auto t) { matrix_impl<decltype(t), decltype(s)>(a); });
}

void multiclass_entry(const MulticlassArgs& a) {
  with_float_dtype(a.dtype, "multiclass_nms", [&](auto s, auto t) { multiclass_impl<decltype(t), decltype(s)>(a); });
}

FASTOPS_REGISTER_CPU_KERNEL(greedy_cpu, &greedy_entry);
FASTOPS_REGISTER_CPU_KERNEL(soft_cpu, &soft_entry);
FASTOPS_REGISTER_CPU_KERNEL(matrix_cpu, &matrix_entry);
FASTOPS_REGISTER_CPU_KERNEL(multiclass_cpu, &multiclass_entry);

}  // namespace
}  // namespace fastops::nms
