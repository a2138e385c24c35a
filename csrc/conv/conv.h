// 2-D convolution (atrous, grouped, strided) and its adjoint, the transposed convolution, by
// per-tap decomposition: direct kernels for float32 convolutions on AVX-512 CPUs, GEMMs
// otherwise; the fused ASPP branches. Declarations shared by the schema
// file (conv.cpp), the Tensor-level implementation (conv_taps.cpp) and the backend registrations
// (conv_cpu.cpp, conv_cuda.cu).
//
//   fastops::conv2d(input, weight, bias?, stride[2], padding[4], dilation[2], groups) -> out
//   fastops::conv2d_input_grad(grad_out, weight, input_size[4], stride, padding, dilation, groups)
//   fastops::conv2d_weight_grad(grad_out, input, weight_size[4], stride, padding, dilation, groups)
//   fastops::conv_transpose2d(input, weight, bias?, stride, padding[2], output_padding[2], groups,
//                             dilation) -> out          (= conv2d_input_grad plus bias)
//   fastops::aspp_conv(input, weights[], rates[]) -> out            (+ aspp_conv_backward)
//
// padding[4] is (top, left, bottom, right): "same" padding of an even kernel is asymmetric.
//
// The algorithm. A k_h x k_w convolution is the sum over its taps (kh, kw) of a 1x1 convolution
// of the input shifted by (kh * d_h - pad_top, kw * d_w - pad_left). Each tap only touches the
// output rectangle whose input pixel lies inside the map (rows x columns: a product of two
// ranges), so a tap outside the map costs nothing: at rate 36 on a 33x33 map only the centre tap
// of a 3x3 kernel is left. Taps sharing a kernel column kw (and, for a vertical stride s > 1, the
// same input-row phase) share one column range, so their input window is packed once, as a
// [C_in, rows, cols] matrix whose row ranges are contiguous column ranges of the GEMM operand;
// each tap then is one GEMM (BLAS through ATen on the CPU, cuBLAS on the GPU) accumulating into
// a contiguous row range of that column group's output. Where the group spans the full width and
// stride is 1 the input itself is the operand and the output the accumulator (no copies). A
// channels_last map is the same matrices transposed ([rows * cols, C]: see runs_channels_last). The
// backward passes are the same loops with the GEMM's operands transposed. On the CPU the GEMMs'
// M dimension (channels) is split into one block per thread (one parallel region per call). Every
// output element is accumulated by one thread in a fixed tap order: results are deterministic
// for a given thread count.
//
// The direct kernels (DirectConv below, and docs/ARCHITECTURE.md) do the same per-tap sums with
// their own register tiles instead of GEMM calls: no operand packing per call, no window copies
// or narrow buffers, every tap accumulated in registers before the output is touched. conv_taps.cpp
// (direct_plan) takes them where they apply.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace torch {
class Library;
}

#include "common/cpu_dispatch.h"

namespace fastops::conv {

// Sizes of one convolution, in the orientation of conv2d: `input` is the map convolved, `output`
// the result (for a transposed convolution: input = its output, output = its input).
struct Geometry {
  int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0, dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

// ---- checks and geometry (conv.cpp) ----
// Checks input [N, C_in, H, W] and weight [C_out, C_in / groups, KH, KW] as F.conv2d does and
// returns the geometry (output size from the padding; an empty output size is an error).
Geometry conv_geometry(const char* op, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                       at::IntArrayRef padding4, at::IntArrayRef dilation, int64_t groups);
// The same from explicit sizes (the backward ops: input_size or weight_size given).
Geometry conv_geometry_of_sizes(const char* op, at::IntArrayRef input_size, at::IntArrayRef weight_size,
                                at::IntArrayRef stride, at::IntArrayRef padding4, at::IntArrayRef dilation,
                                int64_t groups);
// Checks input [N, C_in, H, W] and weight [C_in, C_out / groups, KH, KW] as F.conv_transpose2d and
// returns the geometry of the conv2d whose input gradient it is (input = the transposed output).
Geometry transpose_geometry(const char* op, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                            at::IntArrayRef dilation);
void check_bias(const char* op, const std::optional<at::Tensor>& bias, int64_t channels, const at::Tensor& like);
void check_aspp(const char* op, const at::Tensor& input, at::TensorList weights, at::IntArrayRef rates);

// ---- the per-tap implementation, for any device (conv_taps.cpp; the ASPP op: conv_aspp.cpp) ----
at::Tensor conv2d_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding4, at::IntArrayRef dilation, int64_t groups);
at::Tensor conv2d_input_grad(const at::Tensor& grad_out, const at::Tensor& weight, c10::SymIntArrayRef input_size,
                             at::IntArrayRef stride, at::IntArrayRef padding4, at::IntArrayRef dilation,
                             int64_t groups);
at::Tensor conv2d_weight_grad(const at::Tensor& grad_out, const at::Tensor& input, c10::SymIntArrayRef weight_size,
                              at::IntArrayRef stride, at::IntArrayRef padding4, at::IntArrayRef dilation,
                              int64_t groups);
at::Tensor conv_transpose2d_forward(const at::Tensor& input, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                                    at::IntArrayRef dilation);
at::Tensor aspp_conv_forward(const at::Tensor& input, at::TensorList weights, at::IntArrayRef rates);
std::tuple<at::Tensor, std::vector<at::Tensor>> aspp_conv_backward(const at::Tensor& grad_out, const at::Tensor& input,
                                                                   at::TensorList weights, at::IntArrayRef rates,
                                                                   bool input_grad);

// The passes of a convolution (geometry g, in conv2d's orientation) that the direct kernels run,
// as a bit set of 1 << DirectPass; the others take the per-tap GEMMs. A pass runs direct for
// float32 on a CPU whose instruction set has the direct copy (AVX-512), a horizontal stride of 1
// or 2, one group, the channel counts the kernel tiles (forward: output channels a multiple of 32,
// input channels of 16; input gradient: the reverse; weight gradient: input channels a multiple
// of 32), and at least two taps that see the map (one tap is a single plain GEMM, where BLAS
// wins). A call also needs each sample of its input and output to be one flat [C, H, W] run. The
// Python modules ask this (op conv_direct_passes) to choose between our kernels and torch's.
enum class DirectPass : int { Forward = 0, InputGrad = 1, WeightGrad = 2 };
int64_t direct_passes(const Geometry& g, c10::ScalarType dtype, c10::DeviceType device);

// ---- per-tap building blocks (conv_taps.cpp), shared with the fused ASPP op (conv_aspp.cpp) ----
// out[N, C_out, Ho, Wo] += conv(x, weight) over the taps (all, or all but the centre one).
void accumulate_forward(const at::Tensor& x, const at::Tensor& weight, const Geometry& g, const at::Tensor& out,
                        bool skip_centre);
// grad_in[N, C_in, H, W] += the adjoint of accumulate_forward applied to grad_out.
void accumulate_input_grad(const at::Tensor& grad_out, const at::Tensor& weight, const Geometry& g,
                           const at::Tensor& grad_in, bool skip_centre);
// The weight gradient [C_out, C_in / groups, KH, KW], tap by tap (taps without an output rectangle,
// and the centre one when skipped, are zero). Each tap's first GEMM overwrites its buffer (beta 0),
// so no buffer is cleared first: with many taps, the buffer is one reordered [KH, KW, C_out,
// C_in / groups] tensor, permuted back at the end; with few, one per tap, copied into a zeroed
// gradient.
at::Tensor weight_grad(const at::Tensor& grad_out, const at::Tensor& x, const Geometry& g, bool skip_centre);
// A map whose samples are GEMM operands [C, H * W], in NCHW or channels_last (a channel slice of
// a contiguous map in either layout is one), else contiguous_map(t).
at::Tensor flat_map(const at::Tensor& t);
// The layouts. A map in channels_last memory (4-D, channels_last-contiguous, not also
// NCHW-contiguous: sizes of 1 make some tensors both) gives results in channels_last: the ops'
// outputs, and the input gradients, take the layout of the map they are computed from (torch's
// convolution does the same), whichever way they are computed.
bool is_channels_last(const at::Tensor& t);
// Whether a pass reading `map` (input or grad_out) runs on it as it is, in channels_last: a CPU
// map in that layout whose pass does not take the direct kernels (they read [C, H, W] samples).
// The GEMMs then read and write [H * W, C] matrices (BLAS takes the transposed operands as they
// are); other maps are made NCHW (contiguous_map) and their results turned back (in_layout).
bool runs_channels_last(const at::Tensor& map, const Geometry& g, DirectPass pass);
// t in channels_last memory when `channels_last` (a transpose in tiles on the CPU), else t.
at::Tensor in_layout(const at::Tensor& t, bool channels_last);
at::MemoryFormat format_for(bool channels_last);
// A channels_last map [N, C, H, W] as the matrix [N * H * W, C] it is in memory.
at::Tensor pixel_rows(const at::Tensor& t);
// A contiguous [N, C, H, W] map: t itself when it is one, else a copy in cached memory; a
// channels_last CPU map is transposed sample by sample in L1-sized tiles (ATen's strided copy of
// that layout runs at a twentieth of a plain copy's speed here).
at::Tensor contiguous_map(const at::Tensor& t);
// Half-precision weight gradients sum over the batch and the whole map: they accumulate in float32.
c10::ScalarType weight_grad_type(c10::ScalarType t);

// Registers the implementation above for a backend's dispatch key (conv_cpu.cpp, conv_cuda.cu).
void register_impls(torch::Library& m);

// ---- raw CPU loop (conv_cpu_kernel.cpp, compiled once per instruction set) ----
// Reorders a weight between its layout [rows, taps] (rows = C_out * C_in / groups, each row's
// KH * KW taps contiguous) and the tap-major [taps, rows] the GEMMs read (to_tap_major), or back;
// contiguous_map runs it on a channels_last sample (rows = H * W, taps = C).
// A pure copy of elem_size-byte elements (2, 4 or 8: any float dtype).
using TapReorderFn = void(const void* src, void* dst, int64_t rows, int64_t taps, int64_t elem_size, bool to_tap_major);
extern cpu::KernelTable<TapReorderFn> tap_reorder_cpu;

// The direct float32 convolution of a batch (AVX-512 copy only: see conv_cpu_kernel.cpp),
// accumulated in place (or written, with overwrite: out may then be uninitialized). Each tap t
// runs over a rectangle of tile indices (u, v) in [row0, row1) x [col0, col1) and adds
//   out[m, out_step_y * u + out_dy, out_step_x * v + out_dx] +=
//       sum over k of w(m, k, t) * in[k, in_step_y * u + dy, in_step_x * v + dx]
// (forward: (u, v) is the output pixel, in_step the stride, out_step 1 and out_d 0; input
// gradient: (u, v) is the grad_out pixel read in place, in_step 1 and d 0, and the input pixel
// written is out_step * (u, v) + out_d, out_step the stride); the rectangle holds the pixels whose
// input and output lie in their maps. in_step_x is 1 or 2. w(m, k, t) = weight[m *
// weight_m_stride + k * weight_k_stride + weight_offset_t]: the conv weight as it is for a
// forward, transposed for an input gradient. One of the two strides must be the weight's tap
// count (its rows of taps are contiguous). Requires out_channels % 32 == 0 and channels % 16 ==
// 0. `blocked_in` is scratch of batch * channels * in_h * in_w floats, 64-byte aligned.
// Multi-threaded over blocks of 32 output channels (and parts of their rows, with fewer blocks
// than threads); every output element is summed by one thread in a fixed order (deterministic).
struct DirectTap {
  int64_t dy, dx, out_dy, out_dx, row0, row1, col0, col1, weight_offset;
};
struct DirectConv {
  int64_t batch;
  const float* in;  // sample n at in + n * in_sample_stride
  int64_t in_sample_stride, channels, in_h, in_w;
  float* out;  // sample n at out + n * out_sample_stride
  int64_t out_sample_stride, out_channels, out_h, out_w;
  int64_t in_step_y, in_step_x, out_step_y, out_step_x;
  const float* weight;
  int64_t weight_m_stride, weight_k_stride, weight_taps;
  const DirectTap* taps;
  int64_t n_taps;
  float* blocked_in;
  bool overwrite;
};
using DirectConvFn = void(const DirectConv& conv);
extern cpu::KernelTable<DirectConvFn> direct_conv_cpu;

// Its weight gradient, over a batch: grad_weight[m, k, t] = sum over samples and the tap's
// rectangle of output pixels (u, v) of grad_out[m, u, v] * in[k, in_step_y * u + dy_t, in_step_x *
// v + dx_t] (the forward's taps), written whole ([out_channels, channels, weight_taps]
// contiguous; taps not listed get zeros). Requires channels % 32 == 0.
// Scratch: tiled_grad (batch * out_h * out_w * 16 * ceil(out_channels / kDirectWeightGradRows)
// floats), 64-byte aligned.
// Multi-threaded over blocks of 32 input channels (and groups of row tiles, with fewer blocks
// than threads); deterministic.
constexpr int64_t kDirectWeightGradRows = 14;  // output channels per register tile, at most
struct DirectWeightGrad {
  const float* in;
  int64_t batch, channels, in_h, in_w;
  const float* grad_out;
  int64_t out_channels, out_h, out_w;
  int64_t in_step_y, in_step_x;
  float* grad_weight;
  int64_t weight_taps;
  const DirectTap* taps;
  int64_t n_taps;
  float* tiled_grad;
};
using DirectWeightGradFn = void(const DirectWeightGrad& conv);
extern cpu::KernelTable<DirectWeightGradFn> direct_weight_grad_cpu;

}  // namespace fastops::conv
