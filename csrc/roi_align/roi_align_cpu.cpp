// CPU backend of the RoIAlign / RoIPool ops: the RoIs' levels and (level, image) groups are
// computed on the host (batch indices checked there: ValueError before any read), then the raw
// loops of roi_align_cpu_kernel.cpp and roi_pool_cpu_kernel.cpp run. The Tensor-level flow is
// shared (roi_align_ops.cpp).
#include <cmath>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/dtype_dispatch.h"
#include "roi_align/roi_align.h"
#include "roi_align/roi_align_register.h"

namespace fastops::roi_align {

namespace cpu_kernels {
constinit cpu::KernelTable<AlignForwardFn> align_forward{};
constinit cpu::KernelTable<AlignBackwardFn> align_backward{};
constinit cpu::KernelTable<PoolForwardFn> pool_forward{};
constinit cpu::KernelTable<PoolBackwardFn> pool_backward{};
}  // namespace cpu_kernels

namespace {

// Each RoI's level: -1 for a box with a non-finite coordinate; ValueError for a batch index that is
// not an integer in [0, batch). num_levels <= 1: no mapping.
std::vector<int32_t> roi_levels(const at::Tensor& rois, int64_t batch, int num_levels, double canonical_scale,
                                int64_t canonical_level, int64_t k_min) {
  const int64_t k_n = rois.size(0);
  std::vector<int32_t> levels(k_n, 0);
  const at::Tensor r = rois.contiguous();
  with_float_dtype(r.scalar_type(), "roi_align", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    const S* data = r.const_data_ptr<S>();
    for (int64_t k = 0; k < k_n; ++k) {
      const T b = static_cast<T>(data[k * 5]);
      TORCH_CHECK_VALUE(valid_batch_index(b, batch), "roi_align: boxes[", k,
                        ", 0] (the batch index) must be an integer in [0, ", batch, "), got ", static_cast<double>(b));
      const T x1 = static_cast<T>(data[k * 5 + 1]), y1 = static_cast<T>(data[k * 5 + 2]);
      const T x2 = static_cast<T>(data[k * 5 + 3]), y2 = static_cast<T>(data[k * 5 + 4]);
      if (!is_finite_box(x1, y1, x2, y2)) {
        levels[k] = -1;
      } else if (num_levels > 1) {
        levels[k] = static_cast<int32_t>(fpn_level<T>(x1, y1, x2, y2, static_cast<T>(canonical_scale), canonical_level,
                                                      k_min, k_min + num_levels - 1));
      }
    }
  });
  return levels;
}

// The (level, image) grouping of Plan::order / group_begin: a counting sort, index order within a
// group.
void group_rois(const std::vector<int32_t>& roi_level, const at::Tensor& rois, int64_t batch, int num_levels,
                std::vector<int64_t>& order, std::vector<int64_t>& group_begin) {
  const int64_t k_n = rois.size(0);
  const at::Tensor r = rois.contiguous();
  std::vector<int64_t> group(k_n, -1);
  group_begin.assign(num_levels * batch + 1, 0);
  with_float_dtype(r.scalar_type(), "roi_align", [&](auto s, auto) {
    using S = decltype(s);
    const S* data = r.const_data_ptr<S>();
    for (int64_t k = 0; k < k_n; ++k) {
      if (roi_level[k] < 0) continue;
      group[k] = roi_level[k] * batch + static_cast<int64_t>(static_cast<double>(data[k * 5]));
      ++group_begin[group[k] + 1];
    }
  });
  for (size_t g = 1; g < group_begin.size(); ++g) group_begin[g] += group_begin[g - 1];
  order.assign(group_begin.back(), 0);
  std::vector<int64_t> next(group_begin.begin(), group_begin.end() - 1);
  for (int64_t k = 0; k < k_n; ++k) {  // counting sort: index order within a group
    if (group[k] >= 0) order[next[group[k]]++] = k;
  }
}

template <typename V>
at::Tensor host_tensor(const std::vector<V>& values, c10::ScalarType dtype) {
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(dtype));
  std::copy(values.begin(), values.end(), t.mutable_data_ptr<V>());
  return t;
}

void assign_levels(Plan& p, const at::Tensor& rois, double canonical_scale, int64_t canonical_level, int64_t k_min,
                   std::vector<at::Tensor>& keep) {
  const std::vector<int32_t> levels = roi_levels(rois, p.batch, p.num_levels, canonical_scale, canonical_level, k_min);
  std::vector<int64_t> order, group_begin;
  group_rois(levels, rois, p.batch, p.num_levels, order, group_begin);
  keep.push_back(host_tensor(levels, at::kInt));
  p.roi_level = keep.back().const_data_ptr<int32_t>();
  keep.push_back(host_tensor(order, at::kLong));
  p.order = keep.back().const_data_ptr<int64_t>();
  keep.push_back(host_tensor(group_begin, at::kLong));
  p.group_begin = keep.back().const_data_ptr<int64_t>();
}

void align_forward(const Plan& p, void* out) { cpu_kernels::align_forward.get()(p, out); }
void align_backward(const Plan& p, const void* grad, GradStrides gs) { cpu_kernels::align_backward.get()(p, grad, gs); }
void pool_forward(const Plan& p, void* out, int32_t* argmax) { cpu_kernels::pool_forward.get()(p, out, argmax); }
void pool_backward(const Plan& p, const void* grad, GradStrides gs, const int32_t* argmax) {
  cpu_kernels::pool_backward.get()(p, grad, gs, argmax);
}

constexpr Backend kCpuBackend{&assign_levels, &align_forward, &align_backward, &pool_forward, &pool_backward};

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) { BackendOps<kCpuBackend>::register_all(m); }

}  // namespace fastops::roi_align
