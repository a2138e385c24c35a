// RLE mask functions, written after pycocotools' maskApi.c so that every result has the same
// bits: uint32 counts with their wrap-around, the polygon rasterizer's double math (this file is
// compiled with -ffp-contract=off, as a C compiler without fused multiply-adds computes it), and
// x86's conversions where the C code relies on them. Compiled once per instruction set
// (results identical; only speed differs).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "common/work_sharing.h"

#include "coco_eval/coco_eval_math.h"
#include "coco_eval/rle.h"

namespace fastops::coco_eval::rle {
namespace {

// One RLE of a batch.
struct View {
  const uint32_t* cnts;
  int64_t m, h, w;
};
FASTOPS_FORCEINLINE View at(const Batch& b, int64_t i) {
  return {b.counts + b.offsets[i], b.offsets[i + 1] - b.offsets[i], b.hw[2 * i], b.hw[2 * i + 1]};
}

// Runs f(begin, end, out) over [0, n) in chunks of `grain` items in parallel, each chunk into its own
// Out, then appends the chunks to `out` in order: the same result as one sequential pass.
template <typename F>
void chunked(int64_t n, int64_t grain, Out& out, F f) {
  const int64_t nchunks = (n + grain - 1) / grain;
  if (nchunks <= 1) {
    f(0, n, out);
    return;
  }
  std::vector<Out> parts(nchunks);
  share_work(nchunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) f(c * grain, std::min(n, (c + 1) * grain), parts[c]);
  });
  for (const Out& part : parts) {
    const int64_t base = static_cast<int64_t>(out.counts.size());
    out.counts.insert(out.counts.end(), part.counts.begin(), part.counts.end());
    for (size_t i = 1; i < part.offsets.size(); ++i) out.offsets.push_back(base + part.offsets[i]);
    out.hw.insert(out.hw.end(), part.hw.begin(), part.hw.end());
  }
}

void encode_impl(const uint8_t* masks, int64_t n, int64_t h, int64_t w, Out& out) {
  const int64_t a = h * w;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* T = masks + a * i;
    uint8_t p = 0;
    uint32_t c = 0;
    for (int64_t j = 0; j < a; ++j) {
      if (T[j] != p) {
        out.counts.push_back(c);
        c = 0;
        p = T[j];
      }
      ++c;
    }
    out.counts.push_back(c);
    out.close(h, w);
  }
}

// The number of counts rleFrString reads from one string (its loops, without the values).
int64_t string_count(const uint8_t* s, int64_t len) {
  int64_t p = 0, m = 0;
  while (p < len && s[p] != 0) {
    bool more = true;
    while (more) {
      const int8_t c = static_cast<int8_t>((p < len ? s[p] : 0) - 48);
      more = (c & 0x20) != 0;
      ++p;
    }
    ++m;
  }
  return m;
}

void string_counts_impl(const uint8_t* chars, const int64_t* char_offsets, int64_t n, int64_t* m) {
  share_work(n, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      m[i] = string_count(chars + char_offsets[i], char_offsets[i + 1] - char_offsets[i]);
  });
}

void from_string_impl(const uint8_t* chars, const int64_t* char_offsets, int64_t n, const int64_t* offsets,
                      uint32_t* counts) {
  share_work(n, 2048, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const uint8_t* s = chars + char_offsets[i];
      const int64_t len = char_offsets[i + 1] - char_offsets[i];
      uint32_t* out = counts + offsets[i];
      int64_t p = 0, m = 0;
      while (p < len && s[p] != 0) {
        int64_t x = 0;
        int k = 0;
        bool more = true;
        while (more) {
          const int8_t c = static_cast<int8_t>((p < len ? s[p] : 0) - 48);
          // (c & 0x1f) << 5k and -1 << 5k in C's int, as x86 computes them (shift count mod 32)
          x |= static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(c & 0x1f) << ((5 * k) & 31)));
          more = (c & 0x20) != 0;
          ++p;
          ++k;
          if (!more && (c & 0x10)) {
            x |= static_cast<int64_t>(static_cast<int32_t>(0xffffffffu << ((5 * k) & 31)));
          }
        }
        if (m > 2) x += static_cast<int64_t>(out[m - 2]);
        out[m++] = static_cast<uint32_t>(x);
      }
    }
  });
}

void to_string_impl(const Batch& b, std::vector<uint8_t>& chars, std::vector<int64_t>& char_offsets) {
  char_offsets.assign(1, 0);
  for (int64_t r = 0; r < b.n; ++r) {
    const View v = at(b, r);
    for (int64_t i = 0; i < v.m; ++i) {
      int64_t x = static_cast<int64_t>(v.cnts[i]);
      if (i > 2) x -= static_cast<int64_t>(v.cnts[i - 2]);
      bool more = true;
      while (more) {
        uint8_t c = static_cast<uint8_t>(x & 0x1f);
        x >>= 5;
        more = (c & 0x10) ? x != -1 : x != 0;
        if (more) c |= 0x20;
        chars.push_back(static_cast<uint8_t>(c + 48));
      }
    }
    char_offsets.push_back(static_cast<int64_t>(chars.size()));
  }
}

// One point of maskApi.c's walk along a polygon edge at 5x resolution: step d (0..D) of the edge
// from (xs, ys) to (xe, ye) after its flip, as rleFrPoly computes it (u the column, v the row).
struct EdgeWalk {
  int64_t xs, ys, dx, dy, D;
  bool flip;
  double s;
  FASTOPS_FORCEINLINE void point(int64_t d, int64_t& u, int64_t& v) const {
    const int64_t t = flip ? D - d : d;
    if (D == 0) {  // a repeated vertex: maskApi.c's slope is 0 / 0 and its row (int)NaN = INT_MIN
      u = xs;
      v = std::numeric_limits<int32_t>::min();
    } else if (dx >= dy) {
      u = t + xs;
      v = static_cast<int64_t>(static_cast<double>(ys) + s * static_cast<double>(t) + .5);
    } else {
      v = t + ys;
      u = static_cast<int64_t>(static_cast<double>(xs) + s * static_cast<double>(t) + .5);
    }
  }
  FASTOPS_FORCEINLINE int64_t column(int64_t d) const {
    int64_t u, v;
    point(d, u, v);
    return u;
  }
};

// rleFrPoly (maskApi.c) of one polygon of k points, its counts appended to `cnts`. maskApi.c walks
// every edge at 5x resolution, one point per step (memory in proportion to the coordinates: a
// vertex at 1e8 needs gigabytes), and keeps the points where the column changes to a column of
// the image. Here the same points are computed by the same formulas, but along each edge only
// the column changes that can land inside the image are visited: the column along an edge is
// monotone, so the walk jumps (binary search) to where it enters the image's columns and stops
// where it leaves them. Coordinates are integers of the 5x grid in int64 (maskApi.c's int32
// overflows past |5x| = 2^31; within that range the results are the same).
void poly_to_rle(const double* xy, int64_t k, int64_t h, int64_t w, std::vector<uint32_t>& cnts,
                 std::vector<int64_t>& x, std::vector<int64_t>& y, std::vector<uint32_t>& a) {
  const double scale = 5;
  x.resize(k + 1);
  y.resize(k + 1);
  // the caller checks |coordinate| <= kMaxPolygonCoordinate: these conversions are exact truncations
  for (int64_t j = 0; j < k; ++j) x[j] = static_cast<int64_t>(scale * xy[j * 2 + 0] + .5);
  for (int64_t j = 0; j < k; ++j) y[j] = static_cast<int64_t>(scale * xy[j * 2 + 1] + .5);
  if (k > 0) {
    x[k] = x[0];
    y[k] = y[0];
  }
  a.clear();
  const double w_max = static_cast<double>(static_cast<uint64_t>(w) - 1);  // size_t w - 1
  const double h_d = static_cast<double>(static_cast<uint64_t>(h));
  // maskApi.c's downsampling of one pair of consecutive walk points p, q: a boundary point when the
  // column changes to one whose (column - 2) / 5 is an image column.
  auto pair = [&](int64_t up, int64_t vp, int64_t uq, int64_t vq) {
    if (uq == up) return;
    double xd = static_cast<double>(uq < up ? uq : uq - 1);
    xd = (xd + .5) / scale - .5;
    if (std::floor(xd) != xd || xd < 0 || xd > w_max) return;
    double yd = static_cast<double>(vq < vp ? vq : vp);
    yd = (yd + .5) / scale - .5;
    if (yd < 0) {
      yd = 0;
    } else if (yd > h_d) {
      yd = h_d;
    }
    yd = std::ceil(yd);
    // (uint)(x * (siz)h + y)
    a.push_back(
        static_cast<uint32_t>(static_cast<uint64_t>(xd) * static_cast<uint64_t>(h) + static_cast<uint64_t>(yd)));
  };
  // A pair can give a point only when its smaller column is in [lo, hi]; consecutive columns of a
  // walk differ by at most 1.
  const int64_t lo = 2, hi = 5 * (w - 1) + 2;
  auto mod5 = [](int64_t v) { return ((v % 5) + 5) % 5; };
  int64_t pu = 0, pv = 0;  // the previous edge's last point: pycocotools walks all edges as one sequence
  // (an image of width 0 has no column, so no boundary point; maskApi.c's w - 1 wraps around there)
  for (int64_t j = 0; w > 0 && j < k; ++j) {
    EdgeWalk e;
    e.xs = x[j], e.ys = y[j];
    int64_t xe = x[j + 1], ye = y[j + 1];
    e.dx = std::abs(xe - e.xs), e.dy = std::abs(e.ys - ye);
    e.flip = (e.dx >= e.dy && e.xs > xe) || (e.dx < e.dy && e.ys > ye);
    if (e.flip) {
      std::swap(e.xs, xe);
      std::swap(e.ys, ye);
    }
    e.D = std::max(e.dx, e.dy);
    e.s = e.D == 0 ? 0.0
                   : (e.dx >= e.dy ? static_cast<double>(ye - e.ys) / static_cast<double>(e.dx)
                                   : static_cast<double>(xe - e.xs) / static_cast<double>(e.dy));
    int64_t u0, v0;
    e.point(0, u0, v0);
    if (j > 0) pair(pu, pv, u0, v0);
    const int64_t D = e.D;
    const bool inc = e.column(D) >= u0;  // the column is monotone along the walk
    // first step d >= d0 where pred(column(d)) holds (pred monotone along the walk), or D + 1
    auto first_where = [&](int64_t d0, auto pred) {
      int64_t step = 1, last = d0 - 1;  // gallop, then bisect
      int64_t d = d0;
      while (d <= D && !pred(e.column(d))) {
        last = d;
        d = d0 + step;
        step *= 2;
      }
      int64_t lo_d = last + 1, hi_d = std::min(d, D + 1);
      while (lo_d < hi_d) {
        const int64_t mid = lo_d + (hi_d - lo_d) / 2;
        if (pred(e.column(mid))) {
          hi_d = mid;
        } else {
          lo_d = mid + 1;
        }
      }
      return lo_d;
    };
    // enter the image's columns: pairs before it have both columns <= lo (rising) or >= hi + 1
    int64_t d =
        inc ? first_where(1, [&](int64_t u) { return u > lo; }) : first_where(1, [&](int64_t u) { return u <= hi; });
    while (d <= D) {
      int64_t ua, va, ub, vb;
      e.point(d - 1, ua, va);
      e.point(d, ub, vb);
      pair(ua, va, ub, vb);
      if (inc ? ub >= hi + 1 : ub <= lo) break;  // every later pair's smaller column is outside
      // Only a pair whose smaller column c is 2 mod 5 gives a point: (c + .5) / 5 - .5 is an integer
      // then and only then for every column of the grid (|c| < 2^50). The next such pair is where
      // the column first passes the next such c (it moves by at most 1 per step).
      if (inc) {
        const int64_t c = ub + mod5(2 - ub);  // the smallest >= ub
        d = first_where(d + 1, [&](int64_t u) { return u > c; });
      } else {
        const int64_t c = ub - 1 - mod5(ub - 3);  // the largest <= ub - 1
        d = first_where(d + 1, [&](int64_t u) { return u <= c; });
      }
    }
    e.point(D, pu, pv);
  }
  a.push_back(static_cast<uint32_t>(h * w));
  std::sort(a.begin(), a.end());
  uint32_t p = 0;
  for (auto& q : a) {
    const uint32_t t = q;
    q -= p;
    p = t;
  }
  size_t j = 0;
  cnts.push_back(a[j++]);
  while (j < a.size()) {
    if (a[j] > 0) {
      cnts.push_back(a[j++]);
    } else {
      ++j;
      if (j < a.size()) cnts.back() += a[j++];
    }
  }
}

// rleMerge of `n` RLEs given by views; the result appended to out (counts) with its h, w.
template <typename Get>
void merge_views(int64_t n, Get get, bool intersect, std::vector<uint32_t>& cnts, int64_t& out_h, int64_t& out_w,
                 std::vector<uint32_t>& acc, std::vector<uint32_t>& tmp) {
  if (n == 0) {
    out_h = out_w = 0;
    return;
  }
  View r0 = get(0);
  int64_t h = r0.h, w = r0.w;
  if (n == 1) {
    cnts.insert(cnts.end(), r0.cnts, r0.cnts + r0.m);
    out_h = h, out_w = w;
    return;
  }
  acc.assign(r0.cnts, r0.cnts + r0.m);
  for (int64_t i = 1; i < n; ++i) {
    const View B = get(i);
    if (B.h != h || B.w != w) {
      h = w = 0;
      acc.clear();
      break;
    }
    tmp.clear();
    const int64_t am = static_cast<int64_t>(acc.size());
    uint32_t ca = am ? acc[0] : 0, cb = B.m ? B.cnts[0] : 0, cc = 0, ct = 1;
    bool v = false, va = false, vb = false;
    int64_t ia = 1, ib = 1;
    while (ct > 0) {
      const uint32_t c = std::min(ca, cb);
      cc += c;
      ct = 0;
      ca -= c;
      if (!ca && ia < am) {
        ca = acc[ia++];
        va = !va;
      }
      ct += ca;
      cb -= c;
      if (!cb && ib < B.m) {
        cb = B.cnts[ib++];
        vb = !vb;
      }
      ct += cb;
      const bool vp = v;
      v = intersect ? (va && vb) : (va || vb);
      if (v != vp || ct == 0) {
        tmp.push_back(cc);
        cc = 0;
      }
    }
    acc.swap(tmp);
  }
  cnts.insert(cnts.end(), acc.begin(), acc.end());
  out_h = h, out_w = w;
}

void from_polygons_range(const double* xy, const int64_t* poly_offsets, const int64_t* ann_offsets, const int64_t* hw,
                         int64_t begin, int64_t end, Out& out) {
  std::vector<uint32_t> polys, acc, tmp;
  std::vector<int64_t> poly_start;
  std::vector<int64_t> x, y;
  std::vector<uint32_t> a;
  for (int64_t j = begin; j < end; ++j) {
    const int64_t h = hw[2 * j], w = hw[2 * j + 1];
    polys.clear();
    poly_start.assign(1, 0);
    for (int64_t q = ann_offsets[j]; q < ann_offsets[j + 1]; ++q) {
      const int64_t k = (poly_offsets[q + 1] - poly_offsets[q]) / 2;
      poly_to_rle(xy + poly_offsets[q], k, h, w, polys, x, y, a);
      poly_start.push_back(static_cast<int64_t>(polys.size()));
    }
    const int64_t n = ann_offsets[j + 1] - ann_offsets[j];
    auto get = [&](int64_t i) -> View {
      return {polys.data() + poly_start[i], poly_start[i + 1] - poly_start[i], h, w};
    };
    int64_t oh = 0, ow = 0;
    merge_views(n, get, false, out.counts, oh, ow, acc, tmp);
    out.close(oh, ow);
  }
}

void from_polygons_impl(const double* xy, const int64_t* poly_offsets, const int64_t* ann_offsets, const int64_t* hw,
                        int64_t n_ann, Out& out) {
  chunked(n_ann, 512, out,
          [&](int64_t b, int64_t e, Out& o) { from_polygons_range(xy, poly_offsets, ann_offsets, hw, b, e, o); });
}

void merge_impl(const Batch& b, bool intersect, Out& out) {
  std::vector<uint32_t> acc, tmp;
  int64_t h = 0, w = 0;
  merge_views(b.n, [&](int64_t i) { return at(b, i); }, intersect, out.counts, h, w, acc, tmp);
  out.close(h, w);
}

void area_impl(const Batch& b, uint32_t* out) {
  for (int64_t i = 0; i < b.n; ++i) {
    const View v = at(b, i);
    uint32_t s = 0;
    for (int64_t j = 1; j < v.m; j += 2) s += v.cnts[j];
    out[i] = s;
  }
}

void bbox_of(const View& r, double* bb) {
  const uint32_t h = static_cast<uint32_t>(r.h), w = static_cast<uint32_t>(r.w);
  const int64_t m = (r.m / 2) * 2;
  uint32_t xs = w, ys = h, xe = 0, ye = 0, cc = 0;
  if (m == 0 || h == 0) {
    bb[0] = bb[1] = bb[2] = bb[3] = 0;
    return;
  }
  for (int64_t j = 0; j < m; ++j) {
    const uint32_t start = cc;
    cc += r.cnts[j];
    if (j % 2 == 0) continue;      // background run
    if (r.cnts[j] == 0) continue;  // empty foreground run
    const uint32_t y_start = start % h, x_start = (start - y_start) / h;
    const uint32_t y_end = (cc - 1) % h, x_end = (cc - 1 - y_end) / h;
    xs = std::min(xs, x_start);
    xe = std::max(xe, x_end);
    if (x_start < x_end) {  // the run crosses a column
      ys = 0;
      ye = h - 1;
    } else {
      ys = std::min(ys, y_start);
      ye = std::max(ye, y_end);
    }
  }
  bb[0] = xs;
  bb[2] = static_cast<uint32_t>(xe - xs + 1);
  bb[1] = ys;
  bb[3] = static_cast<uint32_t>(ye - ys + 1);
}

void to_bbox_impl(const Batch& b, double* out) {
  for (int64_t i = 0; i < b.n; ++i) bbox_of(at(b, i), out + 4 * i);
}

// rleIou of one pair after its bounding-box IoU `o` (> 0 needed for the exact count).
FASTOPS_FORCEINLINE double pair_iou(const View& d, const View& g, bool crowd, double o) {
  if (!(o > 0)) return o;
  if (d.h != g.h || d.w != g.w) return -1;
  uint32_t ca = d.m ? d.cnts[0] : 0, cb = g.m ? g.cnts[0] : 0, ct = 1, i = 0, u = 0;
  bool va = false, vb = false;
  int64_t a = 1, b = 1;
  while (ct > 0) {
    const uint32_t c = std::min(ca, cb);
    if (va || vb) {
      u += c;
      if (va && vb) i += c;
    }
    ct = 0;
    ca -= c;
    if (!ca && a < d.m) {
      ca = d.cnts[a++];
      va = !va;
    }
    ct += ca;
    cb -= c;
    if (!cb && b < g.m) {
      cb = g.cnts[b++];
      vb = !vb;
    }
    ct += cb;
  }
  if (i == 0) {
    u = 1;
  } else if (crowd) {
    u = 0;
    for (int64_t j = 1; j < d.m; j += 2) u += d.cnts[j];
  }
  return static_cast<double>(i) / static_cast<double>(u);
}

// IoU of detections dt_rows[0:nd] x ground truths gt_rows[0:ng] (rows into the batches; null
// rows: d0 + d and g0 + g), crowd flags per gt position.
void iou_block(const Batch& dt, const int64_t* dt_rows, int64_t d0, int64_t nd, const Batch& gt, const int64_t* gt_rows,
               int64_t g0, int64_t ng, const uint8_t* crowd, double* out, std::vector<double>& boxes) {
  auto drow = [&](int64_t d) { return dt_rows ? dt_rows[d0 + d] : d0 + d; };
  auto grow = [&](int64_t g) { return gt_rows ? gt_rows[g0 + g] : g0 + g; };
  boxes.resize(4 * (nd + ng));
  for (int64_t d = 0; d < nd; ++d) bbox_of(at(dt, drow(d)), boxes.data() + 4 * d);
  for (int64_t g = 0; g < ng; ++g) bbox_of(at(gt, grow(g)), boxes.data() + 4 * (nd + g));
  for (int64_t d = 0; d < nd; ++d) {
    const View dv = at(dt, drow(d));
    for (int64_t g = 0; g < ng; ++g) {
      const bool c = crowd != nullptr && crowd[g0 + g] != 0;
      const double o = bb_iou(boxes.data() + 4 * d, boxes.data() + 4 * (nd + g), c);
      out[d * ng + g] = pair_iou(dv, at(gt, grow(g)), c, o);
    }
  }
}

void iou_impl(const Batch& dt, const Batch& gt, const uint8_t* crowd, double* out) {
  share_work(dt.n, 64, [&](int64_t lo, int64_t hi) {
    std::vector<double> boxes;
    iou_block(dt, nullptr, lo, hi - lo, gt, nullptr, 0, gt.n, crowd, out + lo * gt.n, boxes);
  });
}

bool decode_impl(const Batch& b, uint8_t* out) {
  if (b.n == 0) return true;
  const uint64_t s = static_cast<uint64_t>(b.hw[0]) * static_cast<uint64_t>(b.hw[1]) * static_cast<uint64_t>(b.n);
  uint64_t c = 0;
  for (int64_t i = 0; i < b.n; ++i) {
    const View v = at(b, i);
    uint8_t val = 0;
    for (int64_t j = 0; j < v.m; ++j) {
      const uint64_t run = v.cnts[j];
      if (c + run > s) return false;  // the counts overrun the masks: an invalid RLE
      std::memset(out + c, val, run);
      c += run;
      val = !val;
    }
  }
  return true;
}

void grouped_iou_impl(const Batch& dt, const int64_t* dt_rows, const int64_t* dt_groups, const Batch& gt,
                      const int64_t* gt_rows, const int64_t* gt_groups, const uint8_t* crowd, int64_t num_groups,
                      const int64_t* iou_offsets, double* out) {
  share_work(num_groups, 256, [&](int64_t lo, int64_t hi) {
    std::vector<double> boxes;
    for (int64_t p = lo; p < hi; ++p) {
      const int64_t nd = dt_groups[p + 1] - dt_groups[p], ng = gt_groups[p + 1] - gt_groups[p];
      if (nd == 0 || ng == 0) continue;
      iou_block(dt, dt_rows, dt_groups[p], nd, gt, gt_rows, gt_groups[p], ng, crowd, out + iou_offsets[p], boxes);
    }
  });
}

Kernels kKernels{&encode_impl,        &string_counts_impl, &from_string_impl, &to_string_impl,
                 &from_polygons_impl, &merge_impl,         &area_impl,        &to_bbox_impl,
                 &iou_impl,           &decode_impl,        &grouped_iou_impl};

FASTOPS_REGISTER_CPU_KERNEL(kernels_cpu, &kKernels);

}  // namespace
}  // namespace fastops::coco_eval::rle
