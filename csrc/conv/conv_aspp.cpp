// The fused ASPP branches of DeepLab v3 (aspp_conv and its backward): the 1x1 branch and every
// atrous branch's centre tap are one GEMM (per sample in NCHW, over every pixel of the batch in
// channels_last; they read the input as it is), then each branch's off-centre taps run through
// the per-tap convolution (conv_taps.cpp), over their valid rectangles only.
#include <ATen/ATen.h>

#include <initializer_list>
#include <vector>

#include "common/cpu_alloc.h"
#include "conv/conv.h"

namespace fastops::conv {

namespace {

Geometry aspp_branch_geometry(const at::Tensor& x, int64_t out_channels, int64_t rate) {
  Geometry g;
  g.batch = x.size(0);
  g.in_channels = x.size(1);
  g.in_h = g.out_h = x.size(2);
  g.in_w = g.out_w = x.size(3);
  g.out_channels = out_channels;
  g.kernel_h = g.kernel_w = 3;
  g.pad_top = g.pad_left = g.dilation_h = g.dilation_w = rate;
  return g;
}

// The 1x1 weight and every branch's centre tap, stacked: [(1 + rates) * C_out, C_in].
at::Tensor centre_weights(at::TensorList weights) {
  std::vector<at::Tensor> rows;
  rows.reserve(weights.size());
  rows.push_back(weights[0].flatten(1));
  for (size_t i = 1; i < weights.size(); ++i) rows.push_back(weights[i].select(3, 1).select(2, 1));
  return at::cat(rows, 0);
}

// Whether every pass of the op that the direct kernels could take runs on channels_last maps as
// they are (conv.h: runs_channels_last) for these branches.
bool aspp_runs_channels_last(const at::Tensor& map, const at::Tensor& input, int64_t c_out, at::IntArrayRef rates,
                             std::initializer_list<DirectPass> passes) {
  for (const int64_t rate : rates) {
    for (const DirectPass pass : passes) {
      if (!runs_channels_last(map, aspp_branch_geometry(input, c_out, rate), pass)) return false;
    }
  }
  return is_channels_last(map) && map.is_cpu();
}

}  // namespace

at::Tensor aspp_conv_forward(const at::Tensor& input, at::TensorList weights, at::IntArrayRef rates) {
  const char* op = "aspp_conv";
  check_aspp(op, input, weights, rates);
  const int64_t n = input.size(0), c_out = weights[0].size(0), h = input.size(2), w = input.size(3);
  const int64_t branches = static_cast<int64_t>(weights.size());
  const bool channels_last = is_channels_last(input);
  const bool native = aspp_runs_channels_last(input, input, c_out, rates, {DirectPass::Forward});
  at::Tensor out = cpu::cached_output({n, branches * c_out, h, w}, input.options().memory_format(format_for(native)));
  if (out.numel() == 0) return in_layout(out, channels_last);
  if (input.size(1) == 0) return in_layout(out.zero_(), channels_last);
  const at::Tensor x = native ? input : contiguous_map(input);
  // The 1x1 branch and every centre tap read the input as it is: one GEMM.
  const at::Tensor centre = centre_weights(weights);
  if (native) {
    at::Tensor out_rows = pixel_rows(out);
    at::mm_out(out_rows, pixel_rows(x), centre.t());
  } else {
    for (int64_t s = 0; s < n; ++s) {
      at::Tensor out_s = out.select(0, s).view({branches * c_out, h * w});
      at::mm_out(out_s, centre, x.select(0, s).view({x.size(1), h * w}));
    }
  }
  for (size_t i = 0; i < rates.size(); ++i) {
    accumulate_forward(x, weights[i + 1], aspp_branch_geometry(x, c_out, rates[i]),
                       out.narrow(1, static_cast<int64_t>(i + 1) * c_out, c_out), /*skip_centre=*/true);
  }
  return in_layout(out, channels_last);
}

std::tuple<at::Tensor, std::vector<at::Tensor>> aspp_conv_backward(const at::Tensor& grad_out, const at::Tensor& input,
                                                                   at::TensorList weights, at::IntArrayRef rates,
                                                                   bool input_grad) {
  const char* op = "aspp_conv_backward";
  check_aspp(op, input, weights, rates);
  const int64_t n = input.size(0), c_in = input.size(1), c_out = weights[0].size(0), h = input.size(2),
                w = input.size(3);
  const int64_t branches = static_cast<int64_t>(weights.size());
  TORCH_CHECK_VALUE(grad_out.sizes() == at::IntArrayRef({n, branches * c_out, h, w}), op,
                    ": grad_out must have shape [", n, ", ", branches * c_out, ", ", h, ", ", w, "], got ",
                    grad_out.sizes());
  // Both maps in channels_last run as they are; a mix is made NCHW. The input's gradient takes the
  // input's layout.
  const bool native =
      is_channels_last(input) &&
      aspp_runs_channels_last(grad_out, input, c_out, rates, {DirectPass::InputGrad, DirectPass::WeightGrad});
  const at::Tensor gout = native ? grad_out : contiguous_map(grad_out);
  const at::Tensor x = native ? input : contiguous_map(input);
  at::Tensor grad_in =
      input_grad ? cpu::cached_zeros(input.sizes(), input.options().memory_format(format_for(native))) : at::Tensor();
  const c10::ScalarType acc_type = weight_grad_type(input.scalar_type());
  const at::Tensor gout_acc = gout.to(acc_type), x_acc = x.to(acc_type);
  at::Tensor grad_centre = at::zeros({branches * c_out, c_in}, input.options().dtype(acc_type));
  std::vector<at::Tensor> grad_weights;
  if (gout.numel() > 0 && c_in > 0) {
    // The 1x1 weight and the centre taps: one GEMM each way (per sample in NCHW).
    const at::Tensor centre = centre_weights(weights);
    if (native) {
      grad_centre.addmm_(pixel_rows(gout_acc).t(), pixel_rows(x_acc), 0, 1);
      if (input_grad) pixel_rows(grad_in).addmm_(pixel_rows(gout), centre);
    }
    for (int64_t s = 0; !native && s < n; ++s) {
      const at::Tensor g2 = gout_acc.select(0, s).view({branches * c_out, h * w});
      grad_centre.addmm_(g2, x_acc.select(0, s).view({c_in, h * w}).t(), s == 0 ? 0 : 1);
      if (input_grad) {
        grad_in.select(0, s).view({c_in, h * w}).addmm_(centre.t(), gout.select(0, s).view({branches * c_out, h * w}));
      }
    }
  }
  grad_weights.push_back(grad_centre.narrow(0, 0, c_out).view({c_out, c_in, 1, 1}).to(input.scalar_type()));
  for (int64_t r = 0; r + 1 < branches; ++r) {
    const Geometry g = aspp_branch_geometry(x, c_out, rates[r]);
    at::Tensor grad_w = weight_grad(flat_map(gout_acc.narrow(1, (r + 1) * c_out, c_out)), x_acc, g, true);
    grad_w.select(3, 1).select(2, 1).copy_(grad_centre.narrow(0, (r + 1) * c_out, c_out));
    grad_weights.push_back(grad_w.to(input.scalar_type()));
    if (input_grad && gout.numel() > 0 && c_in > 0) {
      accumulate_input_grad(flat_map(gout.narrow(1, (r + 1) * c_out, c_out)), weights[r + 1], g, grad_in, true);
    }
  }
  if (!input_grad) return {at::empty({0}, input.options()), grad_weights};
  return {in_layout(grad_in, is_channels_last(input)), grad_weights};
}

}  // namespace fastops::conv
