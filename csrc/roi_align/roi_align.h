// RoIAlign, RoIPool and multi-level (FPN) RoIAlign: declarations shared by the schema and checks
// (roi_align.cpp), the Tensor-level flow (roi_align_ops.cpp), the CPU backend (roi_align_cpu.cpp)
// and its raw loops (roi_align_cpu_kernel.cpp, roi_pool_cpu_kernel.cpp), and the CUDA backend
// (roi_align_cuda.cu).
//
//   fastops::roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
//                      aligned) -> Tensor[K, C, PH, PW]                             (+ _backward)
//   fastops::multi_scale_roi_align(features[], rois, spatial_scales[], pooled_height,
//       pooled_width, sampling_ratio, aligned, canonical_scale, canonical_level) -> Tensor (+ _backward)
//   fastops::roi_pool(input, rois, spatial_scale, pooled_height, pooled_width) -> (out, argmax)
//
// Feature maps are [N, C, H, W], contiguous in NCHW or in channels_last (NHWC) memory; the output
// and the gradient follow the input's layout. rois are [K, 5] (batch index, x1, y1, x2, y2) in the
// input's dtype.
#pragma once

#include <cstdint>
#include <tuple>
#include <vector>

#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

#include "common/cpu_dispatch.h"
#include "roi_align/roi_align_math.h"

namespace at {
class Tensor;
}

namespace fastops::roi_align {

constexpr int kMaxLevels = 8;

// FPN level assignment defaults (torchvision's LevelMapper): a box of sqrt(area) = kCanonicalScale
// pixels maps to level kCanonicalLevel. The single-level ops pass them to the shared flow, which
// maps nothing with one level.
constexpr double kCanonicalScale = 224.0;
constexpr int64_t kCanonicalLevel = 4;

// The features' shared shape and layout, as checked.
struct Checked {
  int64_t batch = 0, channels = 0;
  bool channels_last = false;
};

// ---- input checks (roi_align.cpp), raising ValueError / TypeError / RuntimeError naming `op` ----
// Every feature level [N, C, H, W] (one dtype, device, N and C) and rois [K, 5] in their dtype.
Checked check_features(const char* op, c10::ArrayRef<at::Tensor> features, const at::Tensor& rois);
void check_pooling(const char* op, int64_t pooled_h, int64_t pooled_w, c10::ArrayRef<double> spatial_scales);
// The upstream gradient [K, C, PH, PW] in the boxes' dtype and device.
void check_grad(const char* op, const at::Tensor& grad, const at::Tensor& rois, int64_t channels, int64_t pooled_h,
                int64_t pooled_w);
// float64 accumulates in float64, every other dtype in float32.
c10::ScalarType accumulation_dtype(c10::ScalarType dtype);

// One feature-map level as the kernels read (and, backward, write) it.
struct Level {
  const void* input = nullptr;  // [N, C, H, W] forward, in Plan::dtype
  void* grad = nullptr;         // [N, C, H, W] backward, in the accumulation type
  int64_t height = 0, width = 0;
  double spatial_scale = 1.0;
};

// Everything a raw kernel needs, by value (CUDA kernels take it as a parameter).
struct Plan {
  c10::ScalarType dtype = c10::ScalarType::Float;
  int64_t batch = 0, channels = 0;
  bool channels_last = false;
  int num_levels = 0;
  Level levels[kMaxLevels];
  const void* rois = nullptr;  // [K, 5], dtype
  int64_t num_rois = 0;
  const int32_t* roi_level = nullptr;  // [K]: the RoI's level, or -1 (invalid box: zeros, no gradient)
  int64_t pooled_h = 1, pooled_w = 1, sampling_ratio = -1;
  bool aligned = false;
  // RoI indices grouped by (level, image), in index order within a group: group
  // g = level * batch + image is order[group_begin[g]], ..., order[group_begin[g + 1] - 1].
  // CPU: host arrays (every kernel); CUDA: device arrays (the backward kernels).
  const int64_t* order = nullptr;
  const int64_t* group_begin = nullptr;
};

// Strides of the upstream gradient [K, C, PH, PW], in elements.
struct GradStrides {
  int64_t k, c, h, w;
};

// ---- kernel signatures (each backend's; the CPU's raw loops are roi_align_cpu_kernel.cpp, compiled
// once per instruction set) ----

// out: [K, C, PH, PW] in the plan's layout and dtype.
using AlignForwardFn = void(const Plan&, void* out);
// grad: the upstream gradient (dtype) with `strides`; writes every level's Level::grad (zeroed
// here first), accumulating in a fixed order (deterministic, no atomics).
using AlignBackwardFn = void(const Plan&, const void* grad, GradStrides strides);
// out: [K, C, PH, PW] (dtype), argmax: the same shape, int32 index h * W + w in the plane, or -1.
using PoolForwardFn = void(const Plan&, void* out, int32_t* argmax);
using PoolBackwardFn = void(const Plan&, const void* grad, GradStrides strides, const int32_t* argmax);

// ---- backends: the ops' Tensor-level flow (checks, layouts, allocation, the gradient's dtype) is
// shared (roi_align_ops.cpp); a backend (roi_align_cpu.cpp, roi_align_cuda.cu) assigns the RoIs' levels
// and runs its kernels ----

struct Backend {
  // Sets p.roi_level, and p.order / p.group_begin (the (level, image) groups); the arrays they point
  // into are appended to keep. k_min: the first level's k (LevelMapper), used when p.num_levels > 1.
  void (*assign_levels)(Plan& p, const at::Tensor& rois, double canonical_scale, int64_t canonical_level, int64_t k_min,
                        std::vector<at::Tensor>& keep);
  AlignForwardFn* align_forward;
  AlignBackwardFn* align_backward;
  PoolForwardFn* pool_forward;
  PoolBackwardFn* pool_backward;
};

at::Tensor align_forward_op(const Backend& b, const char* op, c10::ArrayRef<at::Tensor> features,
                            const at::Tensor& rois, c10::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio, bool aligned, double canonical_scale, int64_t canonical_level);
std::vector<at::Tensor> align_backward_op(const Backend& b, const char* op, const at::Tensor& grad,
                                          const at::Tensor& rois, c10::ArrayRef<double> scales, int64_t pooled_h,
                                          int64_t pooled_w, int64_t batch, int64_t channels, c10::IntArrayRef heights,
                                          c10::IntArrayRef widths, int64_t sampling_ratio, bool aligned,
                                          double canonical_scale, int64_t canonical_level, bool channels_last);
std::tuple<at::Tensor, at::Tensor> pool_forward_op(const Backend& b, const at::Tensor& input, const at::Tensor& rois,
                                                   double spatial_scale, int64_t pooled_h, int64_t pooled_w);
at::Tensor pool_backward_op(const Backend& b, const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                            double spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels,
                            int64_t height, int64_t width, bool channels_last);

// The CPU backend's raw loops, one copy per instruction set.
namespace cpu_kernels {
extern cpu::KernelTable<AlignForwardFn> align_forward;
extern cpu::KernelTable<AlignBackwardFn> align_backward;
extern cpu::KernelTable<PoolForwardFn> pool_forward;
extern cpu::KernelTable<PoolBackwardFn> pool_backward;
}  // namespace cpu_kernels

}  // namespace fastops::roi_align
