// Raw CPU loops of the IoU-family ops. This file is compiled once per instruction set (see
// csrc/common/cpu_dispatch.h); everything in it has internal linkage so the copies never mix.
//
// Pairwise: the boxes2 geometry is laid out once as one array per field (structure of arrays), so
// each output row is a loop over j that the compiler vectorizes; rows run in parallel. The
// backward pass sums each box's gradient in a fixed order (rows for boxes1, column blocks for
// boxes2), without atomics: results are bitwise reproducible and independent of the thread count.
#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>

#include "box_iou/box_iou.h"
#include "common/cpu_reduce.h"
#include "common/dtype_dispatch.h"

namespace fastops::box_iou {
namespace {

using cpu::lane_sum;

// Pairs per parallel task: enough work to amortize a task, small enough to balance 2-64 threads.
constexpr int64_t kPairsPerTask = 16384;
// boxes2 gradients are accumulated for this many columns at a time.
constexpr int64_t kColumnBlock = 256;

template <typename T>
struct GeomSoA {
  static constexpr int kFields = 12;
  std::vector<T> buf;
  T *x1, *y1, *x2, *y2, *w, *h, *cx, *cy, *area, *angle, *aspect, *poison;

  explicit GeomSoA(int64_t count) : buf(static_cast<size_t>(kFields * count)) {
    T* fields[kFields];
    for (int f = 0; f < kFields; ++f) fields[f] = buf.data() + f * count;
    x1 = fields[0], y1 = fields[1], x2 = fields[2], y2 = fields[3], w = fields[4], h = fields[5];
    cx = fields[6], cy = fields[7], area = fields[8], angle = fields[9], aspect = fields[10], poison = fields[11];
  }
  FASTOPS_FORCEINLINE Geom<T> get(int64_t i) const {
    return {x1[i], y1[i], x2[i], y2[i], w[i], h[i], cx[i], cy[i], area[i], angle[i], aspect[i], poison[i]};
  }
  FASTOPS_FORCEINLINE void set(int64_t i, const Geom<T>& g) {
    x1[i] = g.x1, y1[i] = g.y1, x2[i] = g.x2, y2[i] = g.y2, w[i] = g.w, h[i] = g.h;
    cx[i] = g.cx, cy[i] = g.cy, area[i] = g.area, angle[i] = g.angle, aspect[i] = g.aspect, poison[i] = g.poison;
  }
};

template <typename T, typename S>
GeomSoA<T> make_soa(const S* boxes, int64_t count, Format fmt, bool with_angle) {
  GeomSoA<T> soa(count);
  at::parallel_for(0, count, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) soa.set(i, load_geom<T>(boxes + 4 * i, fmt, with_angle));
  });
  return soa;
}

template <typename T>
struct GeomGradSoA {
  static constexpr int kFields = 8;
  std::vector<T> buf;
  T *x1, *y1, *x2, *y2, *w, *h, *cx, *cy;

  explicit GeomGradSoA(int64_t count) : buf(static_cast<size_t>(kFields * count)) {
    T* f = buf.data();
    x1 = f, y1 = f + count, x2 = f + 2 * count, y2 = f + 3 * count;
    w = f + 4 * count, h = f + 5 * count, cx = f + 6 * count, cy = f + 7 * count;
  }
  FASTOPS_FORCEINLINE void set(int64_t i, const GeomGrad<T>& g) {
    x1[i] = g.x1, y1[i] = g.y1, x2[i] = g.x2, y2[i] = g.y2, w[i] = g.w, h[i] = g.h, cx[i] = g.cx, cy[i] = g.cy;
  }
  FASTOPS_FORCEINLINE void add(int64_t i, const GeomGrad<T>& g) {
    x1[i] += g.x1, y1[i] += g.y1, x2[i] += g.x2, y2[i] += g.y2, w[i] += g.w, h[i] += g.h, cx[i] += g.cx, cy[i] += g.cy;
  }
  FASTOPS_FORCEINLINE GeomGrad<T> get(int64_t i) const {
    GeomGrad<T> g;
    g.x1 = x1[i], g.y1 = y1[i], g.x2 = x2[i], g.y2 = y2[i], g.w = w[i], g.h = h[i], g.cx = cx[i], g.cy = cy[i];
    return g;
  }
};

// ---- pairwise ------------------------------------------------------------------------------

template <Mode M, bool LF, typename T>
void pairwise_row(const Geom<T> a, const GeomSoA<T>& g2, int64_t off, int64_t m, T eps, T* __restrict out) {
  for (int64_t j = 0; j < m; ++j) out[j] = pair_value<M, LF>(a, g2.get(off + j), eps);
}

template <Mode M, bool LF, typename T, typename S>
void pairwise_forward(const OverlapKernelArgs& args, T* out) {
  const S* b1 = static_cast<const S*>(args.boxes1);
  const S* b2 = static_cast<const S*>(args.boxes2);
  constexpr bool kAngle = M == Mode::CIoU;
  const GeomSoA<T> g2 = make_soa<T>(b2, args.batch * args.m, args.fmt, kAngle);
  const T eps = static_cast<T>(args.eps);
  const int64_t n = args.n, m = args.m;
  const int64_t grain = std::max<int64_t>(1, kPairsPerTask / std::max<int64_t>(m, 1));
  at::parallel_for(0, args.batch * n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const Geom<T> a = load_geom<T>(b1 + 4 * r, args.fmt, kAngle);
      pairwise_row<M, LF>(a, g2, (r / n) * m, m, eps, out + r * m);
    }
  });
}

// Gradients of the pairs (a, g2[off + j]), j < count: with respect to a into out[j] (kOfA), or
// with respect to g2[off + j] added to out[j]. One vector loop over j either way.
template <Mode M, bool LF, bool kOfA, typename T>
void pair_grads(const Geom<T> a, const GeomSoA<T>& g2, int64_t off, int64_t count, T eps, const T* __restrict grad_row,
                GeomGradSoA<T>& out) {
#pragma GCC ivdep  // the buffers never alias; without this GCC gives up on its run-time alias checks
  for (int64_t j = 0; j < count; ++j) {
    GeomGrad<T> ga, gb;
    pair_grad<M, LF>(a, g2.get(off + j), eps, grad_row[j], ga, gb);
    if constexpr (kOfA) {
      out.set(j, ga);
    } else {
      out.add(j, gb);
    }
  }
}

template <Mode M, bool LF, typename T, typename S>
void pairwise_backward(const OverlapKernelArgs& args, const T* grad, S* grad1, S* grad2) {
  constexpr bool kAngle = M == Mode::CIoU;
  const int64_t batch = args.batch, n = args.n, m = args.m;
  const GeomSoA<T> g1 = make_soa<T>(static_cast<const S*>(args.boxes1), batch * n, args.fmt, kAngle);
  const GeomSoA<T> g2 = make_soa<T>(static_cast<const S*>(args.boxes2), batch * m, args.fmt, kAngle);
  const T eps = static_cast<T>(args.eps);

  // boxes1: row r's gradient is the sum over its m pairs: per-pair gradients into a row buffer
  // (a vector loop), then fixed-order lane sums.
  if (m > 0) {
    const int64_t grain = std::max<int64_t>(1, kPairsPerTask / m);
    at::parallel_for(0, batch * n, grain, [&](int64_t begin, int64_t end) {
      GeomGradSoA<T> pair(m);
      for (int64_t r = begin; r < end; ++r) {
        pair_grads<M, LF, true>(g1.get(r), g2, (r / n) * m, m, eps, grad + r * m, pair);
        GeomGrad<T> sum;
        sum.x1 = lane_sum(pair.x1, m), sum.y1 = lane_sum(pair.y1, m);
        sum.x2 = lane_sum(pair.x2, m), sum.y2 = lane_sum(pair.y2, m);
        sum.w = lane_sum(pair.w, m), sum.h = lane_sum(pair.h, m);
        sum.cx = lane_sum(pair.cx, m), sum.cy = lane_sum(pair.cy, m);
        store_coord_grad(sum, args.fmt, grad1 + 4 * r);
      }
    });
  }
  // boxes2: each block of columns accumulates over the rows in order.
  if (n > 0) {
    const int64_t blocks_per_batch = (m + kColumnBlock - 1) / kColumnBlock;
    at::parallel_for(0, batch * blocks_per_batch, 1, [&](int64_t begin, int64_t end) {
      GeomGradSoA<T> acc(kColumnBlock);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / blocks_per_batch;
        const int64_t j0 = (task % blocks_per_batch) * kColumnBlock;
        const int64_t width = std::min(kColumnBlock, m - j0);
        std::fill(acc.buf.begin(), acc.buf.end(), T(0));
        for (int64_t i = 0; i < n; ++i) {
          pair_grads<M, LF, false>(g1.get(b * n + i), g2, b * m + j0, width, eps, grad + (b * n + i) * m + j0, acc);
        }
        for (int64_t j = 0; j < width; ++j) store_coord_grad(acc.get(j), args.fmt, grad2 + 4 * (b * m + j0 + j));
      }
    });
  }
}

// ---- aligned -------------------------------------------------------------------------------

template <Mode M, bool LF, Format F, typename T, typename S>
void aligned_forward(const OverlapKernelArgs& args, T* __restrict out) {
  const S* __restrict b1 = static_cast<const S*>(args.boxes1);
  const S* __restrict b2 = static_cast<const S*>(args.boxes2);
  constexpr bool kAngle = M == Mode::CIoU;
  const T eps = static_cast<T>(args.eps);
  at::parallel_for(0, args.n, kPairsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      out[i] = pair_value<M, LF>(load_geom<T>(b1 + 4 * i, F, kAngle), load_geom<T>(b2 + 4 * i, F, kAngle), eps);
    }
  });
}

template <Mode M, bool LF, Format F, typename T, typename S>
void aligned_backward(const OverlapKernelArgs& args, const T* __restrict grad, S* __restrict grad1,
                      S* __restrict grad2) {
  const S* __restrict b1 = static_cast<const S*>(args.boxes1);
  const S* __restrict b2 = static_cast<const S*>(args.boxes2);
  constexpr bool kAngle = M == Mode::CIoU;
  const T eps = static_cast<T>(args.eps);
  at::parallel_for(0, args.n, kPairsPerTask / 2, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      GeomGrad<T> ga, gb;
      pair_grad<M, LF>(load_geom<T>(b1 + 4 * i, F, kAngle), load_geom<T>(b2 + 4 * i, F, kAngle), eps, grad[i], ga, gb);
      store_coord_grad(ga, F, grad1 + 4 * i);
      store_coord_grad(gb, F, grad2 + 4 * i);
    }
  });
}

// ---- dispatch ------------------------------------------------------------------------------

// Resolves dtype, mode and loss form (and, for the aligned loops, the format) at compile time and
// calls body with them as template arguments.
template <typename Body>
void dispatch(const OverlapKernelArgs& args, Body&& body) {
  with_float_dtype(args.dtype, "box_overlap", [&](auto s, auto t) {
    with_mode(args.mode, [&](auto mode) { with_loss_form(args.loss_form, [&](auto lf) { body(s, t, mode, lf); }); });
  });
}

void pairwise_forward_entry(const OverlapKernelArgs& args, void* out) {
  dispatch(args, [&](auto s, auto t, auto mode, auto lf) {
    using S = decltype(s);
    using T = decltype(t);
    pairwise_forward<decltype(mode)::value, decltype(lf)::value, T, S>(args, static_cast<T*>(out));
  });
}

void pairwise_backward_entry(const OverlapKernelArgs& args, const void* grad, void* grad1, void* grad2) {
  dispatch(args, [&](auto s, auto t, auto mode, auto lf) {
    using S = decltype(s);
    using T = decltype(t);
    pairwise_backward<decltype(mode)::value, decltype(lf)::value, T, S>(args, static_cast<const T*>(grad),
                                                                        static_cast<S*>(grad1), static_cast<S*>(grad2));
  });
}

void aligned_forward_entry(const OverlapKernelArgs& args, void* out) {
  dispatch(args, [&](auto s, auto t, auto mode, auto lf) {
    using S = decltype(s);
    using T = decltype(t);
    with_format(args.fmt, [&](auto fmt) {
      aligned_forward<decltype(mode)::value, decltype(lf)::value, decltype(fmt)::value, T, S>(args,
                                                                                              static_cast<T*>(out));
    });
  });
}

void aligned_backward_entry(const OverlapKernelArgs& args, const void* grad, void* grad1, void* grad2) {
  dispatch(args, [&](auto s, auto t, auto mode, auto lf) {
    using S = decltype(s);
    using T = decltype(t);
    with_format(args.fmt, [&](auto fmt) {
      aligned_backward<decltype(mode)::value, decltype(lf)::value, decltype(fmt)::value, T, S>(
          args, static_cast<const T*>(grad), static_cast<S*>(grad1), static_cast<S*>(grad2));
    });
  });
}

FASTOPS_REGISTER_CPU_KERNEL(pairwise_forward_cpu, &pairwise_forward_entry);
FASTOPS_REGISTER_CPU_KERNEL(pairwise_backward_cpu, &pairwise_backward_entry);
FASTOPS_REGISTER_CPU_KERNEL(aligned_forward_cpu, &aligned_forward_entry);
FASTOPS_REGISTER_CPU_KERNEL(aligned_backward_cpu, &aligned_backward_entry);

}  // namespace
}  // namespace fastops::box_iou
