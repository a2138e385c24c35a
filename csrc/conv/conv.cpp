// Schema and input checks of the convolution ops (see conv.h). Messages follow torch's own
// (F.conv2d, F.conv_transpose2d), raised as ValueError / TypeError; the Python API
// (fastops/ops/conv.py) raises them as an error that is both a ValueError and torch's
// RuntimeError.
#include <torch/library.h>

#include "conv/conv.h"

namespace fastops::conv {
namespace {

bool is_float(c10::ScalarType t) { return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16; }

void check_hyper(const char* op, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                 int64_t groups, size_t padding_len) {
  TORCH_CHECK_VALUE(stride.size() == 2, op, ": stride must have 2 values, got ", stride);
  TORCH_CHECK_VALUE(dilation.size() == 2, op, ": dilation must have 2 values, got ", dilation);
  TORCH_CHECK_VALUE(padding.size() == padding_len, op, ": padding must have ", padding_len, " values, got ", padding);
  for (int64_t s : stride) TORCH_CHECK_VALUE(s > 0, op, ": non-positive stride is not supported, got stride=", stride);
  for (int64_t d : dilation) TORCH_CHECK_VALUE(d > 0, op, ": dilation should be greater than zero, but got ", dilation);
  for (int64_t p : padding) TORCH_CHECK_VALUE(p >= 0, op, ": negative padding is not supported, got ", padding);
  TORCH_CHECK_VALUE(groups > 0, op, ": non-positive groups is not supported, got groups=", groups);
}

void check_tensors(const char* op, const at::Tensor& input, const at::Tensor& weight) {
  TORCH_CHECK_VALUE(input.dim() == 4, op, ": expected 4D (batched) input, but got input of size: ", input.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 4, op, ": expected 4D weight, but got weight of size: ", weight.sizes());
  TORCH_CHECK_TYPE(is_float(input.scalar_type()), op, ": input must be float16, bfloat16, float32 or float64, got ",
                   input.scalar_type());
  TORCH_CHECK_TYPE(weight.scalar_type() == input.scalar_type(), op, ": weight must have the input's dtype ",
                   input.scalar_type(), ", got ", weight.scalar_type());
  TORCH_CHECK(weight.device() == input.device(), op, ": weight must be on ", input.device(), ", got ", weight.device());
}

int64_t out_size(int64_t in, int64_t pad_total, int64_t kernel, int64_t stride, int64_t dilation) {
  const int64_t span = in + pad_total - dilation * (kernel - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

}  // namespace

Geometry conv_geometry_of_sizes(const char* op, at::IntArrayRef input_size, at::IntArrayRef weight_size,
                                at::IntArrayRef stride, at::IntArrayRef padding4, at::IntArrayRef dilation,
                                int64_t groups) {
  check_hyper(op, stride, padding4, dilation, groups, 4);
  TORCH_CHECK_VALUE(input_size.size() == 4, op, ": expected a 4D input size, got ", input_size);
  TORCH_CHECK_VALUE(weight_size.size() == 4, op, ": expected a 4D weight size, got ", weight_size);
  TORCH_CHECK_VALUE(weight_size[0] % groups == 0, op, ": Given groups=", groups,
                    ", expected weight to be divisible by ", groups, " at dimension 0, but got weight of size ",
                    weight_size, " instead");
  TORCH_CHECK_VALUE(input_size[1] == weight_size[1] * groups, op, ": Given groups=", groups, ", weight of size ",
                    weight_size, ", expected input", input_size, " to have ", weight_size[1] * groups,
                    " channels, but got ", input_size[1], " channels instead");
  Geometry g;
  g.batch = input_size[0];
  g.in_channels = input_size[1];
  g.in_h = input_size[2];
  g.in_w = input_size[3];
  g.out_channels = weight_size[0];
  g.kernel_h = weight_size[2];
  g.kernel_w = weight_size[3];
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_top = padding4[0];
  g.pad_left = padding4[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.groups = groups;
  const int64_t padded_h = g.in_h + padding4[0] + padding4[2], padded_w = g.in_w + padding4[1] + padding4[3];
  TORCH_CHECK_VALUE(padded_h >= g.dilation_h * (g.kernel_h - 1) + 1 && padded_w >= g.dilation_w * (g.kernel_w - 1) + 1,
                    op, ": Calculated padded input size per channel: (", padded_h, " x ", padded_w, "). Kernel size: (",
                    g.dilation_h * (g.kernel_h - 1) + 1, " x ", g.dilation_w * (g.kernel_w - 1) + 1,
                    "). Kernel size can't be greater than actual input size");
  g.out_h = out_size(g.in_h, padding4[0] + padding4[2], g.kernel_h, g.stride_h, g.dilation_h);
  g.out_w = out_size(g.in_w, padding4[1] + padding4[3], g.kernel_w, g.stride_w, g.dilation_w);
  return g;
}

Geometry conv_geometry(const char* op, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                       at::IntArrayRef padding4, at::IntArrayRef dilation, int64_t groups) {
  check_tensors(op, input, weight);
  return conv_geometry_of_sizes(op, input.sizes(), weight.sizes(), stride, padding4, dilation, groups);
}

Geometry transpose_geometry(const char* op, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                            at::IntArrayRef dilation) {
  check_tensors(op, input, weight);
  check_hyper(op, stride, padding, dilation, groups, 2);
  TORCH_CHECK_VALUE(output_padding.size() == 2, op, ": output_padding must have 2 values, got ", output_padding);
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK_VALUE(output_padding[i] >= 0 && (output_padding[i] < stride[i] || output_padding[i] < dilation[i]), op,
                      ": output padding must be smaller than either stride or dilation, but got output_padding=",
                      output_padding, " stride=", stride, " dilation=", dilation);
  }
  TORCH_CHECK_VALUE(weight.size(0) % groups == 0, op, ": Given groups=", groups,
                    ", expected weight to be divisible by ", groups, " at dimension 0, but got weight of size ",
                    weight.sizes(), " instead");
  TORCH_CHECK_VALUE(input.size(1) == weight.size(0), op, ": Given transposed=1, weight of size ", weight.sizes(),
                    ", expected input", input.sizes(), " to have ", weight.size(0), " channels, but got ",
                    input.size(1), " channels instead");
  int64_t out_hw[2];
  for (int i = 0; i < 2; ++i) {
    const int64_t in = input.size(2 + i), k = weight.size(2 + i);
    out_hw[i] = (in - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k - 1) + output_padding[i] + 1;
  }
  TORCH_CHECK_VALUE(out_hw[0] > 0 && out_hw[1] > 0, op, ": Given input size per channel: (", input.size(2), " x ",
                    input.size(3), "). Calculated output size per channel: (", out_hw[0], " x ", out_hw[1],
                    "). Output size is too small");
  Geometry g;
  g.batch = input.size(0);
  g.in_channels = weight.size(1) * groups;
  g.in_h = out_hw[0];
  g.in_w = out_hw[1];
  g.out_channels = weight.size(0);
  g.out_h = input.size(2);
  g.out_w = input.size(3);
  g.kernel_h = weight.size(2);
  g.kernel_w = weight.size(3);
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_top = padding[0];
  g.pad_left = padding[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.groups = groups;
  return g;
}

void check_bias(const char* op, const std::optional<at::Tensor>& bias, int64_t channels, const at::Tensor& like) {
  if (!bias.has_value()) return;
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == channels, op, ": expected bias to be 1-dimensional with ",
                    channels, " elements, but got bias of size ", bias->sizes(), " instead");
  TORCH_CHECK_TYPE(bias->scalar_type() == like.scalar_type(), op, ": bias must have the input's dtype ",
                   like.scalar_type(), ", got ", bias->scalar_type());
  TORCH_CHECK(bias->device() == like.device(), op, ": bias must be on ", like.device(), ", got ", bias->device());
}

void check_aspp(const char* op, const at::Tensor& input, at::TensorList weights, at::IntArrayRef rates) {
  TORCH_CHECK_VALUE(weights.size() == rates.size() + 1, op,
                    ": weights must hold the 1x1 weight then one 3x3 weight per rate: expected ", rates.size() + 1,
                    " weights, got ", weights.size());
  for (int64_t r : rates) TORCH_CHECK_VALUE(r > 0, op, ": rates must be positive, got ", rates);
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor& w = weights[i];
    check_tensors(op, input, w);
    const int64_t k = i == 0 ? 1 : 3;
    TORCH_CHECK_VALUE(w.size(0) == weights[0].size(0) && w.size(1) == input.size(1) && w.size(2) == k && w.size(3) == k,
                      op, ": weights[", i, "] must have shape [", weights[0].size(0), ", ", input.size(1), ", ", k,
                      ", ", k, "], got ", w.sizes());
  }
}

namespace {

int64_t conv_direct_passes(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                           at::IntArrayRef padding4, at::IntArrayRef dilation, int64_t groups, at::ScalarType dtype,
                           at::Device device) {
  const Geometry g =
      conv_geometry_of_sizes("conv_direct_passes", input_size, weight_size, stride, padding4, dilation, groups);
  return direct_passes(g, dtype, device.type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  m.def(
      "conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[4] padding, int[2] dilation, "
      "int groups) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "conv2d_input_grad(Tensor grad_out, Tensor weight, SymInt[4] input_size, int[2] stride, int[4] padding, "
      "int[2] dilation, int groups) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "conv2d_weight_grad(Tensor grad_out, Tensor input, SymInt[4] weight_size, int[2] stride, int[4] padding, "
      "int[2] dilation, int groups) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
      "int[2] output_padding, int groups, int[2] dilation) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def("aspp_conv(Tensor input, Tensor[] weights, int[] rates) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def(
      "aspp_conv_backward(Tensor grad_out, Tensor input, Tensor[] weights, int[] rates, bool input_grad) "
      "-> (Tensor, Tensor[])",
      {at::Tag::pt2_compliant_tag});
  // A query on sizes, not a computation (no tensors: one kernel for every backend): the bit set of
  // direct_passes (conv.h) for a conv2d of these sizes.
  m.def(
      "conv_direct_passes(int[4] input_size, int[4] weight_size, int[2] stride, int[4] padding, int[2] dilation, "
      "int groups, ScalarType dtype, Device device) -> int",
      &conv_direct_passes);
}

}  // namespace fastops::conv
