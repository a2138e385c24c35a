// CPU backend of the RoIAlign / RoIPool ops: the RoIs' levels and (level, image) groups are
// computed on the host (batch indices checked there: ValueError before any read), then the raw
// loops of roi_align_cpu_kernel.cpp run. The Tensor-level flow is shared (roi_align.cpp).
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

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

template <typename V>
at::Tensor host_tensor(const std::vector<V>& values, c10::ScalarType dtype) {
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(dtype));
  std::copy(values.begin(), values.end(), t.mutable_data_ptr<V>());
  return t;
}

void assign_levels(Plan& p, const at::Tensor& rois, double canonical_scale, int64_t canonical_level, int64_t k_min,
                   std::vector<at::Tensor>& keep) {
  const std::vector<int32_t> levels =
      cpu_roi_levels(rois, p.batch, p.num_levels, canonical_scale, canonical_level, k_min);
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
