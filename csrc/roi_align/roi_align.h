// RoIAlign, RoIPool and multi-level (FPN) RoIAlign: declarations shared by the schema file
// (roi_align.cpp), the CPU op (roi_align_cpu.cpp), its raw loops (roi_align_cpu_kernel.cpp) and
// the CUDA op (roi_align_cuda.cu).
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

// ---- Tensor-level preparation shared by the backends (roi_align.cpp) ----

// Checks one feature map against the others and the rois; returns whether it is channels_last.
struct Checked {
  int64_t batch = 0, channels = 0;
  bool channels_last = false;
};
Checked check_features(const char* op, c10::ArrayRef<at::Tensor> features, const at::Tensor& rois);
// Reads the level of every RoI on the CPU: -1 for a box with a non-finite coordinate; raises
// ValueError for a batch index that is not an integer in [0, batch). levels <= 1: no mapping.
std::vector<int32_t> cpu_roi_levels(const at::Tensor& rois, int64_t batch, int num_levels, double canonical_scale,
                                    int64_t canonical_level, int64_t k_min);
// The (level, image) grouping of Plan::order / group_begin for the CPU kernels.
void group_rois(const std::vector<int32_t>& roi_level, const at::Tensor& rois, int64_t batch, int num_levels,
                std::vector<int64_t>& order, std::vector<int64_t>& group_begin);
// k_min and k_max of torchvision's LevelMapper from the levels' scales (scales[0] = 2^-k_min);
// checks there is one level per integer k in between.
void level_range(c10::ArrayRef<double> spatial_scales, int64_t& k_min, int64_t& k_max);
// Memory format helpers: a [K, C, PH, PW] (or [N, C, H, W]) tensor in NCHW or NHWC memory.
at::Tensor empty_nchw_or_nhwc(c10::IntArrayRef sizes, const at::Tensor& like, c10::ScalarType dtype, bool channels_last,
                              bool zero);
c10::ScalarType acc_dtype(c10::ScalarType dtype);
// pooled sizes >= 1, spatial scales finite and > 0.
void check_pooling(const char* op, int64_t pooled_h, int64_t pooled_w, c10::ArrayRef<double> spatial_scales);
// The upstream gradient of a backward op: [K, C, PH, PW] in the boxes' dtype and on their device.
void check_grad(const char* op, const at::Tensor& grad, const at::Tensor& rois, int64_t channels, int64_t pooled_h,
                int64_t pooled_w);
// The plan's shapes and levels (input pointers are filled by the forward ops, gradients by the
// backward ones).
Plan base_plan(c10::ScalarType dtype, const at::Tensor& rois, int64_t batch, int64_t channels, bool channels_last,
               c10::ArrayRef<double> spatial_scales, c10::IntArrayRef heights, c10::IntArrayRef widths,
               int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned);

// ---- raw CPU kernels (roi_align_cpu_kernel.cpp, compiled once per instruction set) ----

// out: [K, C, PH, PW] in the plan's layout and dtype.
using AlignForwardFn = void(const Plan&, void* out);
// grad: the upstream gradient (dtype) with `strides`; writes every level's Level::grad (zeroed
// here first), accumulating in a fixed order (deterministic, no atomics).
using AlignBackwardFn = void(const Plan&, const void* grad, GradStrides strides);
// out: [K, C, PH, PW] (dtype), argmax: the same shape, int32 index h * W + w in the plane, or -1.
using PoolForwardFn = void(const Plan&, void* out, int32_t* argmax);
using PoolBackwardFn = void(const Plan&, const void* grad, GradStrides strides, const int32_t* argmax);

namespace cpu_kernels {
extern cpu::KernelTable<AlignForwardFn> align_forward;
extern cpu::KernelTable<AlignBackwardFn> align_backward;
extern cpu::KernelTable<PoolForwardFn> pool_forward;
extern cpu::KernelTable<PoolBackwardFn> pool_backward;
}  // namespace cpu_kernels

}  // namespace fastops::roi_align
