// CUDA implementation of the NMS ops with the same per-pair math as the CPU loops (nms_math.h).
//
// Greedy NMS: a bitmask kernel (one thread per row and 64-column word: bit b of mask[i][w] says
// box i, kept, would suppress box 64 w + b) and a scan kernel that walks the rows in score order
// on the device, one thread per problem (image). Nothing is copied to the host; the only sync is
// reading the number kept, which sizes the output. These are the simple kernels (no shared
// memory, no warp cooperation); see docs/ARCHITECTURE.md for when faster ones may replace them.
// Memory: the mask takes N * ceil(N / 64) * 8 bytes (50 MB at N = 20000).
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda_launch.h"
#include "common/dtype_dispatch.h"
#include "nms/nms.h"

namespace fastops::nms {
namespace {

using cuda::blocks_for;
using cuda::kThreadsPerBlock;

constexpr int64_t kMaxMaskBytes = int64_t(8) << 30;

at::ScalarType acc_dtype(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor score_order(const at::Tensor& scores) {
  return std::get<1>(nan_as_lowest(scores).sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
}

// mask[(p * n + i) * words + w]: bit b set when box j = 64 w + b (j > i, same label when labeled)
// has IoU with box i above thr. Boxes are [P, n, 4] in priority order.
template <typename T, typename S>
__global__ void mask_kernel(const S* __restrict__ boxes, const int64_t* __restrict__ labels, int64_t problems,
                            int64_t n, int64_t words, T thr, unsigned long long* __restrict__ mask) {
  FASTOPS_GRID_STRIDE_LOOP(t, problems * n * words) {
    const int64_t w = t % words, row = t / words;
    const int64_t i = row % n, base = row - i;  // base = p * n
    unsigned long long bits = 0;
    if (64 * w + 63 > i) {
      const NmsBox<T> a = load_nms_box<T>(boxes + 4 * row);
      const int64_t la = labels != nullptr ? labels[row] : 0;
      for (int b = 0; b < 64; ++b) {
        const int64_t j = 64 * w + b;
        if (j <= i || j >= n) continue;
        if (labels != nullptr && labels[base + j] != la) continue;
        if (nms_iou(a, load_nms_box<T>(boxes + 4 * (base + j))) > thr) bits |= 1ull << b;
      }
    }
    mask[t] = bits;
  }
}

// One thread per problem walks its rows in order: a row not yet removed (and valid) is kept and
// removes what its mask row marks. Stops after max_keep kept.
__global__ void scan_kernel(const unsigned long long* __restrict__ mask, const bool* __restrict__ valid,
                            int64_t problems, int64_t n, int64_t words, int64_t max_keep,
                            unsigned long long* __restrict__ removed, int64_t* __restrict__ keep,
                            int64_t* __restrict__ num) {
  FASTOPS_GRID_STRIDE_LOOP(p, problems) {
    unsigned long long* rem = removed + p * words;
    int64_t count = 0;
    for (int64_t i = 0; i < n && count < max_keep; ++i) {
      if (valid != nullptr && !valid[p * n + i]) continue;
      if ((rem[i >> 6] >> (i & 63)) & 1ull) continue;
      keep[p * max_keep + count++] = i;
      const unsigned long long* row = mask + (p * n + i) * words;
      for (int64_t w = i >> 6; w < words; ++w) rem[w] |= row[w];
    }
    num[p] = count;
  }
}

// Greedy NMS of P problems of n boxes each, [P, n, 4] in priority order. Returns keep [P, max_keep]
// (positions; the tail past num is unspecified) and num [P], both on the device, without a sync.
std::pair<at::Tensor, at::Tensor> greedy_device(const at::Tensor& sorted_boxes, const at::Tensor& labels,
                                                const at::Tensor& valid, int64_t problems, int64_t n,
                                                double iou_threshold, int64_t max_keep) {
  const int64_t words = (n + 63) / 64;
  TORCH_CHECK(n * words * 8 * problems <= kMaxMaskBytes, "nms (CUDA): ", n, " boxes need a suppression mask of ",
              n * words * 8 * problems,
              " bytes, above the 8 GiB this kernel allows; run NMS on fewer boxes or on the CPU (O(N) memory)");
  const auto opts = sorted_boxes.options();
  at::Tensor mask = at::empty({problems * n * words}, opts.dtype(at::kLong));
  at::Tensor removed = at::zeros({problems * words}, opts.dtype(at::kLong));
  at::Tensor keep = at::zeros({problems, max_keep}, opts.dtype(at::kLong));
  at::Tensor num = at::empty({problems}, opts.dtype(at::kLong));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(sorted_boxes.scalar_type(), "nms", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    mask_kernel<T, S><<<blocks_for(problems * n * words), kThreadsPerBlock, 0, stream>>>(
        sorted_boxes.const_data_ptr<S>(), labels.defined() ? labels.const_data_ptr<int64_t>() : nullptr, problems, n,
        words, threshold_below<T>(iou_threshold),
        reinterpret_cast<unsigned long long*>(mask.mutable_data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  scan_kernel<<<blocks_for(problems), kThreadsPerBlock, 0, stream>>>(
      reinterpret_cast<const unsigned long long*>(mask.const_data_ptr<int64_t>()),
      valid.defined() ? valid.const_data_ptr<bool>() : nullptr, problems, n, words, max_keep,
      reinterpret_cast<unsigned long long*>(removed.mutable_data_ptr<int64_t>()), keep.mutable_data_ptr<int64_t>(),
      num.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {keep, num};
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                    double iou_threshold) {
  check_boxes_scores("nms", boxes, scores, idxs);
  check_iou_threshold("nms", iou_threshold);
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::Tensor order = score_order(scores);
  const at::Tensor sorted = boxes.index_select(0, order).contiguous();
  const at::Tensor labels = idxs.has_value() ? idxs->to(at::kLong).index_select(0, order) : at::Tensor();
  auto [keep, num] = greedy_device(sorted, labels, at::Tensor(), 1, n, iou_threshold, n);
  const int64_t count = num.item<int64_t>();  // the one host sync: the output's size
  return order.index_select(0, keep[0].slice(0, 0, count));
}

// ---- soft-NMS: one thread, the CPU algorithm over device scratch arrays ----------------------

template <typename T, typename S>
__global__ void soft_kernel(const S* __restrict__ boxes, const T* __restrict__ scores, const int64_t* __restrict__ idxs,
                            int64_t n, SoftMethod method, T thr, T sigma, T min_score, T* __restrict__ work,
                            int64_t* __restrict__ ids, int64_t* __restrict__ labels, int64_t* __restrict__ keep,
                            T* __restrict__ keep_scores, int64_t* __restrict__ count_out) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  T *x1 = work, *y1 = work + n, *x2 = work + 2 * n, *y2 = work + 3 * n, *area = work + 4 * n, *sc = work + 5 * n;
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (scores[i] != scores[i]) continue;  // NaN scores take no part
    const NmsBox<T> b = load_nms_box<T>(boxes + 4 * i);
    x1[cnt] = b.x1, y1[cnt] = b.y1, x2[cnt] = b.x2, y2[cnt] = b.y2, area[cnt] = b.area;
    sc[cnt] = scores[i], ids[cnt] = i, labels[cnt] = idxs != nullptr ? idxs[i] : 0;
    ++cnt;
  }
  int64_t out = 0;
  while (cnt > 0) {
    int64_t best = 0;
    for (int64_t j = 1; j < cnt; ++j) {
      if (sc[j] > sc[best]) best = j;
    }
    keep[out] = ids[best];
    keep_scores[out++] = sc[best];
    const NmsBox<T> sel{x1[best], y1[best], x2[best], y2[best], area[best]};
    const int64_t sel_label = labels[best];
    int64_t m = 0;
    for (int64_t j = 0; j < cnt; ++j) {
      if (j == best) continue;
      const NmsBox<T> bj{x1[j], y1[j], x2[j], y2[j], area[j]};
      const T s = sc[j] * (labels[j] == sel_label ? soft_weight(nms_iou_or_zero(sel, bj), method, thr, sigma) : T(1));
      if (s < min_score) continue;
      x1[m] = bj.x1, y1[m] = bj.y1, x2[m] = bj.x2, y2[m] = bj.y2, area[m] = bj.area;
      sc[m] = s, ids[m] = ids[j], labels[m] = labels[j];
      ++m;
    }
    cnt = m;
  }
  *count_out = out;
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                 const std::optional<at::Tensor>& idxs, double iou_threshold,
                                                 double sigma, double score_threshold, std::string_view method) {
  const SoftMethod m = check_soft_args(boxes, scores, idxs, iou_threshold, sigma, score_threshold, method);
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor s = scores.to(acc_dtype(boxes)).contiguous();
  const at::Tensor classes = idxs.has_value() ? idxs->to(at::kLong).contiguous() : at::Tensor();
  at::Tensor work = at::empty({6 * n}, s.options());
  at::Tensor ids = at::empty({n}, s.options().dtype(at::kLong)), labels = at::empty({n}, ids.options());
  at::Tensor keep = at::empty({n}, ids.options()), count = at::zeros({1}, ids.options());
  at::Tensor keep_scores = at::empty({n}, s.options());
  if (n > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    with_float_dtype(b.scalar_type(), "soft_nms", [&](auto s_tag, auto t_tag) {
      using S = decltype(s_tag);
      using T = decltype(t_tag);
      soft_kernel<T, S><<<1, 1, 0, stream>>>(
          b.const_data_ptr<S>(), s.const_data_ptr<T>(), classes.defined() ? classes.const_data_ptr<int64_t>() : nullptr,
          n, m, static_cast<T>(iou_threshold), static_cast<T>(sigma), static_cast<T>(score_threshold),
          work.mutable_data_ptr<T>(), ids.mutable_data_ptr<int64_t>(), labels.mutable_data_ptr<int64_t>(),
          keep.mutable_data_ptr<int64_t>(), keep_scores.mutable_data_ptr<T>(), count.mutable_data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  const int64_t kept = count.item<int64_t>();  // the output's size
  return {keep.slice(0, 0, kept), keep_scores.slice(0, 0, kept).to(scores.scalar_type())};
}

// ---- Matrix NMS: one thread per box for each of its two reductions ---------------------------

template <typename T, typename S>
__global__ void matrix_compensate_kernel(const S* __restrict__ boxes, const int64_t* __restrict__ group, int64_t n,
                                         T* __restrict__ comp) {
  FASTOPS_GRID_STRIDE_LOOP(i, n) {
    const NmsBox<T> bi = load_nms_box<T>(boxes + 4 * i);
    T best = 0;
    for (int64_t k = 0; k < i; ++k) {
      if (group != nullptr && group[k] != group[i]) continue;
      const T v = nms_iou_or_zero(load_nms_box<T>(boxes + 4 * k), bi);
      best = v > best ? v : best;
    }
    comp[i] = best;
  }
}

template <typename T, typename S>
__global__ void matrix_decay_kernel(const S* __restrict__ boxes, const int64_t* __restrict__ group, int64_t n,
                                    const T* __restrict__ comp, MatrixKernel kernel, T sigma, T* __restrict__ decay) {
  FASTOPS_GRID_STRIDE_LOOP(j, n) {
    const NmsBox<T> bj = load_nms_box<T>(boxes + 4 * j);
    T min_key = INFINITY;
    for (int64_t i = 0; i < j; ++i) {
      if (group != nullptr && group[i] != group[j]) continue;
      const T v = matrix_key(nms_iou_or_zero(load_nms_box<T>(boxes + 4 * i), bj), comp[i], kernel);
      min_key = v < min_key ? v : min_key;
    }
    decay[j] = matrix_decay(min_key, kernel, sigma);
  }
}

std::tuple<at::Tensor, at::Tensor> matrix_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                   const std::optional<at::Tensor>& idxs, std::string_view kernel,
                                                   double sigma, double score_threshold) {
  const MatrixKernel k = check_matrix_args(boxes, scores, idxs, sigma, score_threshold, kernel);
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) return {at::empty({0}, boxes.options().dtype(at::kLong)), at::empty({0}, scores.options())};
  const at::Tensor order = score_order(scores);
  const at::Tensor sorted = boxes.index_select(0, order).contiguous();
  const at::Tensor group = idxs.has_value() ? idxs->to(at::kLong).index_select(0, order) : at::Tensor();
  at::Tensor comp = at::empty({n}, boxes.options().dtype(acc_dtype(boxes)));
  at::Tensor decay = at::empty_like(comp);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_float_dtype(sorted.scalar_type(), "matrix_nms", [&](auto s_tag, auto t_tag) {
    using S = decltype(s_tag);
    using T = decltype(t_tag);
    const int64_t* g = group.defined() ? group.const_data_ptr<int64_t>() : nullptr;
    matrix_compensate_kernel<T, S>
        <<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(sorted.const_data_ptr<S>(), g, n, comp.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    matrix_decay_kernel<T, S>
        <<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(sorted.const_data_ptr<S>(), g, n, comp.const_data_ptr<T>(), k,
                                                         static_cast<T>(sigma), decay.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return matrix_nms_select(order, scores, decay, score_threshold);
}

// ---- multiclass post-processing: ATen top-k, then the greedy kernels per image ---------------

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold, int64_t topk,
    int64_t max_detections, bool class_agnostic) {
  const bool per_class = check_multiclass_args(boxes, scores, score_threshold, iou_threshold, topk, max_detections);
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t batch = scores.size(0), n = scores.size(1), classes = scores.size(2), d = max_detections;
  auto [out_boxes, out_scores, out_labels, out_num] = multiclass_outputs(boxes, scores, d);
  if (batch == 0 || n == 0 || classes == 0) return {out_boxes, out_scores, out_labels, out_num};
  // Candidates: the topk scores above the threshold. The comparison runs in float32 (float64 for
  // float64), the threshold rounded to it, as on the CPU.
  const at::Tensor flat = scores.reshape({batch, n * classes}).to(acc_dtype(scores));
  const at::Tensor masked =
      at::where(flat.gt(score_threshold), flat, at::full_like(flat, -std::numeric_limits<double>::infinity()));
  const int64_t k = std::min(topk, n * classes);
  auto [top_scores, top_idx] = at::topk(masked, k, /*dim=*/1, /*largest=*/true, /*sorted=*/true);
  const at::Tensor valid = top_scores.gt(score_threshold);
  const at::Tensor labels = top_idx.remainder(classes);
  const at::Tensor rows = per_class ? top_idx : top_idx.div(classes, "floor");
  const at::Tensor cand_boxes = boxes.reshape({batch, per_class ? n * classes : n, 4})
                                    .gather(1, rows.unsqueeze(-1).expand({batch, k, 4}))
                                    .contiguous();
  auto [keep, num] = greedy_device(cand_boxes, class_agnostic ? at::Tensor() : labels.contiguous(), valid.contiguous(),
                                   batch, k, iou_threshold, d);
  const at::Tensor filled = at::arange(d, keep.options()).unsqueeze(0).lt(num.unsqueeze(1));  // [B, D]
  out_boxes =
      at::where(filled.unsqueeze(-1), cand_boxes.gather(1, keep.unsqueeze(-1).expand({batch, d, 4})), out_boxes);
  out_scores = at::where(filled, top_scores.gather(1, keep).to(scores.scalar_type()), out_scores);
  out_labels = at::where(filled, labels.gather(1, keep), out_labels);
  return {out_boxes, out_scores, out_labels, num};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CUDA, m) {
  m.impl("nms", &nms_cuda);
  m.impl("soft_nms", &soft_nms_cuda);
  m.impl("matrix_nms", &matrix_nms_cuda);
  m.impl("multiclass_nms", &multiclass_nms_cuda);
}

}  // namespace fastops::nms
