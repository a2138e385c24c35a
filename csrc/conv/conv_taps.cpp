// The per-tap convolution (see conv.h for the algorithm), written once at the Tensor level: the
// GEMMs go to ATen's mm family (MKL/oneDNN BLAS on the CPU, cuBLAS on the GPU), window packing and
// accumulation to ATen's strided copies and adds (multi-threaded on the CPU, one kernel each on the
// GPU). conv_cpu.cpp and conv_cuda.cu register these functions for their device.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "common/cpu_alloc.h"
#include "conv/conv.h"

namespace fastops::conv {
namespace {

struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The outputs o in [0, out) whose input index o * stride + offset lies in [0, in).
Range valid_outputs(int64_t offset, int64_t stride, int64_t in, int64_t out) {
  int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t hi = in - 1 - offset < 0 ? 0 : (in - 1 - offset) / stride + 1;
  lo = std::min(lo, out);
  hi = std::max(std::min(hi, out), lo);
  return {lo, hi};
}

// One kernel row kh of a column group: its valid output rows, and where they read in the
// group's packed window (rows of input-row phase `phase`, row index = output row + shift; the
// group's window number `window`, one per distinct phase).
struct RowTap {
  int64_t kh, phase, shift;
  Range rows;
  int64_t window = 0;
};

// All taps of kernel column kw with a non-empty output rectangle: its output columns, the input
// column of the first one, and the row taps ordered by phase then kh (a fixed order: the sums
// are deterministic).
struct ColumnGroup {
  int64_t kw = 0, in_col0 = 0, windows = 0;
  Range cols;
  std::vector<RowTap> taps;
};

ColumnGroup column_group(const Geometry& g, int64_t kw, bool skip_centre) {
  ColumnGroup cg;
  cg.kw = kw;
  const int64_t dx = kw * g.dilation_w - g.pad_left;
  cg.cols = valid_outputs(dx, g.stride_w, g.in_w, g.out_w);
  if (cg.cols.size() == 0) return cg;
  cg.in_col0 = cg.cols.begin * g.stride_w + dx;
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    if (skip_centre && kh == g.kernel_h / 2 && kw == g.kernel_w / 2) continue;
    const int64_t dy = kh * g.dilation_h - g.pad_top;
    const int64_t shift = floor_div(dy, g.stride_h);
    const Range rows = valid_outputs(dy, g.stride_h, g.in_h, g.out_h);
    if (rows.size() > 0) cg.taps.push_back({kh, dy - shift * g.stride_h, shift, rows});
  }
  // by phase, then kh; the work depends on the taps, never on the stride itself
  std::stable_sort(cg.taps.begin(), cg.taps.end(), [](const RowTap& a, const RowTap& b) { return a.phase < b.phase; });
  for (size_t t = 0; t < cg.taps.size(); ++t) {
    if (t > 0 && cg.taps[t].phase != cg.taps[t - 1].phase) ++cg.windows;
    cg.taps[t].window = cg.windows;
  }
  if (!cg.taps.empty()) ++cg.windows;
  return cg;
}

// Rows of input-row phase `phase` (input rows phase, phase + s, ...) of a map of `in_h` rows.
int64_t phase_rows(int64_t in_h, int64_t phase, int64_t stride) {
  return in_h > phase ? (in_h - phase + stride - 1) / stride : 0;
}

// The strided view x[:, :, phase::s_h, in_col0::s_w][..., :cols] of a [N, C, H, W] map.
at::Tensor window_view(const at::Tensor& x, const Geometry& g, const ColumnGroup& cg, int64_t phase) {
  const int64_t cols = cg.cols.size();
  return x.slice(2, phase, std::max(x.size(2), phase), g.stride_h)
      .slice(3, cg.in_col0, cg.in_col0 + (cols - 1) * g.stride_w + 1, g.stride_w);
}

// A [N, C, R, cols] tensor whose samples are GEMM operands [C, R * cols]: the (R, cols) pixels
// of a channel are one run at a fixed step (NCHW: step 1; channels_last: channels are adjacent,
// the step is the channel count), so the matrix has a unit stride on one side.
bool plane_is_flat(const at::Tensor& t) {
  return (t.size(2) <= 1 || t.stride(2) == t.size(3) * t.stride(3)) && (t.stride(3) == 1 || t.stride(1) == 1);
}

// The memory format a packed copy of a view of `t` keeps: channels_last when its channels are
// adjacent (a view of a channels_last map), else NCHW.
at::MemoryFormat layout_of(const at::Tensor& t) {
  return t.stride(1) == 1 && t.stride(3) != 1 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

at::Tensor flat_window(const at::Tensor& x, const Geometry& g, const ColumnGroup& cg, int64_t phase) {
  at::Tensor v = window_view(x, g, cg, phase);
  return plane_is_flat(v) ? v : cpu::cached_contiguous(v, layout_of(v));
}

// [C, R, cols] sample of a [N, C, R, cols] tensor as the GEMM matrix [C, R * cols] (strides
// (R * cols, 1) in NCHW, (1, C) in channels_last: BLAS takes either as it is), restricted to
// rows [r0, r0 + n) and channels [c0, c0 + c).
at::Tensor gemm_rows(const at::Tensor& t, int64_t sample, int64_t c0, int64_t c, int64_t r0, int64_t n) {
  const int64_t cols = t.size(3);
  return t.select(0, sample).narrow(0, c0, c).view({c, t.size(2) * cols}).narrow(1, r0 * cols, n * cols);
}

// The column groups of a convolution that have at least one tap, and how many taps that is.
std::vector<ColumnGroup> plan_taps(const Geometry& g, bool skip_centre, int64_t& taps) {
  std::vector<ColumnGroup> groups;
  taps = 0;
  for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
    ColumnGroup cg = column_group(g, kw, skip_centre);
    if (cg.taps.empty()) continue;
    taps += static_cast<int64_t>(cg.taps.size());
    groups.push_back(std::move(cg));
  }
  return groups;
}

// Above this many taps, the weight is reordered once to [KH, KW, C_out, C_in / groups]; below it
// each tap is gathered alone (a tap's gather reads nearly every cache line of the weight, so with
// one or two taps that is cheaper than reordering all of it).
constexpr int64_t kReorderAboveTaps = 2;

// [C_out, C_in / groups, KH, KW] -> [KH, KW, C_out, C_in / groups], and back.
at::Tensor to_tap_major(const at::Tensor& weight) {
  if (!weight.is_cpu()) return weight.permute({2, 3, 0, 1}).contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty({w.size(2), w.size(3), w.size(0), w.size(1)}, w.options());
  if (out.numel() > 0) {
    tap_reorder_cpu.get()(w.const_data_ptr(), out.mutable_data_ptr(), w.size(0) * w.size(1), w.size(2) * w.size(3),
                          static_cast<int64_t>(w.element_size()), true);
  }
  return out;
}

at::Tensor from_tap_major(const at::Tensor& taps) {
  if (!taps.is_cpu()) return taps.permute({2, 3, 0, 1}).contiguous();
  const at::Tensor t = taps.contiguous();
  at::Tensor out = at::empty({t.size(2), t.size(3), t.size(0), t.size(1)}, t.options());
  if (out.numel() > 0) {
    tap_reorder_cpu.get()(t.const_data_ptr(), out.mutable_data_ptr(), t.size(2) * t.size(3), t.size(0) * t.size(1),
                          static_cast<int64_t>(t.element_size()), false);
  }
  return out;
}

// The taps of a [C_out, C_in / groups, KH, KW] weight as contiguous [C_out, C_in / groups]
// matrices, made before the parallel region (the reordering copy is itself parallel).
std::vector<at::Tensor> tap_weights(const at::Tensor& weight, const std::vector<ColumnGroup>& plan, int64_t taps) {
  const int64_t kh_n = weight.size(2), kw_n = weight.size(3);
  std::vector<at::Tensor> w(static_cast<size_t>(kh_n * kw_n));
  const at::Tensor reordered = taps > kReorderAboveTaps ? to_tap_major(weight) : at::Tensor();
  for (const ColumnGroup& cg : plan) {
    for (const RowTap& tap : cg.taps) {
      w[tap.kh * kw_n + cg.kw] = reordered.defined() ? reordered.select(0, tap.kh).select(0, cg.kw)
                                                     : weight.select(3, cg.kw).select(2, tap.kh).contiguous();
    }
  }
  return w;
}

// Each column group's input windows, one per row phase its taps read (RowTap::window).
std::vector<std::vector<at::Tensor>> pack_windows(const at::Tensor& x, const Geometry& g,
                                                  const std::vector<ColumnGroup>& plan) {
  std::vector<std::vector<at::Tensor>> windows(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    windows[i].resize(static_cast<size_t>(plan[i].windows));
    for (const RowTap& tap : plan[i].taps) {
      at::Tensor& w = windows[i][static_cast<size_t>(tap.window)];
      if (!w.defined()) w = flat_window(x, g, plan[i], tap.phase);
    }
  }
  return windows;
}

// grad_out's columns of each column group, contiguous.
std::vector<at::Tensor> pack_grad_columns(const at::Tensor& grad_out, const Geometry& g,
                                          const std::vector<ColumnGroup>& plan) {
  std::vector<at::Tensor> cols;
  for (const ColumnGroup& cg : plan) {
    cols.push_back(cg.cols.size() == g.out_w ? grad_out
                                             : cpu::cached_contiguous(grad_out.narrow(3, cg.cols.begin, cg.cols.size()),
                                                                      layout_of(grad_out)));
  }
  return cols;
}

// Splits a GEMM's M dimension (channels) into blocks, per group, and runs fn(group, m0, m) for
// each block, blocks in parallel: each thread runs its own GEMMs (BLAS single-threaded inside a
// parallel region) over every tap, so a call has one parallel region, not one per GEMM, copy and
// add. Each output element is still summed by one thread in the fixed tap order.
// Blocks have at least kMinBlockChannels rows (smaller GEMMs lose more than a thread gains).
constexpr int64_t kMinBlockChannels = 32;

template <typename Fn>
void for_channel_blocks(bool on_cpu, int64_t groups, int64_t m_per_group, const Fn& fn) {
  if (!on_cpu) {
    // On the GPU one host thread launches everything on the caller's stream (streams and the
    // current device are per thread); each GEMM is parallel on the device.
    for (int64_t group = 0; group < groups; ++group) fn(group, 0, m_per_group);
    return;
  }
  const int64_t threads = at::get_num_threads();
  const int64_t per_group = std::max<int64_t>(1, std::min<int64_t>(m_per_group / kMinBlockChannels, threads / groups));
  at::parallel_for(0, groups * per_group, 1, [&](int64_t begin, int64_t end) {
    // Worker threads do not inherit the caller's dispatch state: stay below autograd.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t group = b / per_group, part = b % per_group;
      const int64_t m0 = part * m_per_group / per_group, m1 = (part + 1) * m_per_group / per_group;
      if (m1 > m0) fn(group, m0, m1 - m0);
    }
  });
}

// A 1x1 convolution (stride 1, no padding, one group) between two CPU maps in channels_last
// memory: one GEMM over every pixel of the batch, [N * H * W, C_in] x [C_in, C_out], with BLAS's
// own threads (larger GEMMs than one per sample and channel block).
bool whole_batch_gemm(const Geometry& g, const at::Tensor& a, const at::Tensor& b, bool skip_centre) {
  return !skip_centre && g.groups == 1 && g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
         g.pad_top == 0 && g.pad_left == 0 && g.out_h == g.in_h && g.out_w == g.in_w && a.is_cpu() &&
         a.is_contiguous(at::MemoryFormat::ChannelsLast) && b.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// ---- The direct kernel (conv_cpu_kernel.cpp) -------------------------------------------------

bool flat_samples(const at::Tensor& t) {
  return t.stride(3) == 1 && t.stride(2) == t.size(3) && t.stride(1) == t.size(2) * t.size(3);
}

// The taps of the convolution with a non-empty rectangle of output pixels (not the centre one
// when skipped), in (kh, kw) order: the output pixels (u, v) whose input pixel (s_h u + dy, s_w v
// + dx) lies in the map. transposed: the same taps for its input gradient, which reads grad_out
// at (u, v) and writes the input's pixel (s_h u + dy, s_w v + dx).
std::vector<DirectTap> direct_taps(const Geometry& g, bool skip_centre, bool transposed) {
  std::vector<DirectTap> taps;
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      if (skip_centre && kh == g.kernel_h / 2 && kw == g.kernel_w / 2) continue;
      const int64_t dy = kh * g.dilation_h - g.pad_top, dx = kw * g.dilation_w - g.pad_left;
      const Range rows = valid_outputs(dy, g.stride_h, g.in_h, g.out_h);
      const Range cols = valid_outputs(dx, g.stride_w, g.in_w, g.out_w);
      if (rows.size() == 0 || cols.size() == 0) continue;
      const int64_t offset = kh * g.kernel_w + kw;
      taps.push_back(transposed ? DirectTap{0, 0, dy, dx, rows.begin, rows.end, cols.begin, cols.end, offset}
                                : DirectTap{dy, dx, 0, 0, rows.begin, rows.end, cols.begin, cols.end, offset});
    }
  }
  return taps;
}

// Whether the direct kernel runs a pass (the rules are documented at direct_passes in conv.h):
// the geometry and dtype allow it, the samples of `in` and `out` are flat [C, H, W] runs, and at
// least two taps see the map. For the weight gradient, `out` is grad_out.
bool direct_pass_applies(const Geometry& g, DirectPass pass, c10::ScalarType dtype, c10::DeviceType device) {
  const bool weight_grad = pass == DirectPass::WeightGrad;
  // channels of the map read (forward: the input; input gradient: grad_out) and of the map written
  const int64_t read_channels = pass == DirectPass::InputGrad ? g.out_channels : g.in_channels;
  const int64_t written_channels = pass == DirectPass::InputGrad ? g.in_channels : g.out_channels;
  const bool channels_tile =
      weight_grad ? g.in_channels % 32 == 0 : written_channels % 32 == 0 && read_channels % 16 == 0;
  if (device != c10::DeviceType::CPU || dtype != at::kFloat || g.stride_w > 2 || g.groups != 1 || !channels_tile ||
      (weight_grad ? direct_weight_grad_cpu.find() == nullptr : direct_conv_cpu.find() == nullptr)) {
    return false;
  }
  // one tap is a single plain GEMM with no weight reorder or window copy: BLAS wins there
  return direct_taps(g, false, false).size() >= 2;
}

std::optional<std::vector<DirectTap>> direct_plan(const at::Tensor& in, const at::Tensor& out, const Geometry& g,
                                                  bool skip_centre, bool transposed, bool weight_grad) {
  const DirectPass pass = weight_grad  ? DirectPass::WeightGrad
                          : transposed ? DirectPass::InputGrad
                                       : DirectPass::Forward;
  if (!flat_samples(in) || !flat_samples(out) ||
      !direct_pass_applies(g, pass, out.scalar_type(), out.device().type())) {
    return std::nullopt;
  }
  std::vector<DirectTap> taps = direct_taps(g, skip_centre, transposed);
  if (taps.size() < 2) return std::nullopt;
  return taps;
}

// out += the direct convolution of `in` (out = it, with overwrite: out may be uninitialized).
void run_direct(const at::Tensor& in, const at::Tensor& weight, const at::Tensor& out, const Geometry& g,
                const std::vector<DirectTap>& taps, bool transposed, bool overwrite = false) {
  const at::Tensor w = weight.contiguous();
  const int64_t n_taps = g.kernel_h * g.kernel_w;
  DirectConv a{};
  a.channels = in.size(1);
  a.in_h = in.size(2);
  a.in_w = in.size(3);
  a.out_channels = out.size(1);
  a.out_h = out.size(2);
  a.out_w = out.size(3);
  // Forward: tile pixels are output pixels, the input read at stride steps; input gradient: tile
  // pixels are grad_out's, the input's map written at stride steps.
  a.in_step_y = transposed ? 1 : g.stride_h;
  a.in_step_x = transposed ? 1 : g.stride_w;
  a.out_step_y = transposed ? g.stride_h : 1;
  a.out_step_x = transposed ? g.stride_w : 1;
  a.weight = w.const_data_ptr<float>();
  // Forward: w(m = c_out, k = c_in, t); input gradient: w(m = c_in, k = c_out, t).
  a.weight_m_stride = transposed ? n_taps : g.in_channels * n_taps;
  a.weight_k_stride = transposed ? g.in_channels * n_taps : n_taps;
  a.weight_taps = n_taps;
  a.taps = taps.data();
  a.n_taps = static_cast<int64_t>(taps.size());
  const at::Tensor blocked = cpu::cached_output({g.batch * a.channels * a.in_h * a.in_w}, in.options());
  a.blocked_in = blocked.mutable_data_ptr<float>();
  a.overwrite = overwrite;
  a.batch = g.batch;
  a.in = in.const_data_ptr<float>();
  a.in_sample_stride = in.stride(0);
  a.out = out.mutable_data_ptr<float>();
  a.out_sample_stride = out.stride(0);
  direct_conv_cpu.find()(a);
}

// The weight gradient [C_out, C_in, KH, KW] by the direct kernel.
at::Tensor run_direct_weight_grad(const at::Tensor& grad_out, const at::Tensor& x, const Geometry& g,
                                  const std::vector<DirectTap>& taps) {
  // The kernel steps from sample to sample by whole [C, H, W] runs.
  const at::Tensor gout = g.batch == 1 ? grad_out : contiguous_map(grad_out);
  const at::Tensor in = g.batch == 1 ? x : contiguous_map(x);
  at::Tensor grad_weight = cpu::cached_output({g.out_channels, g.in_channels, g.kernel_h, g.kernel_w}, x.options());
  const int64_t row_tiles = (g.out_channels + kDirectWeightGradRows - 1) / kDirectWeightGradRows;
  const at::Tensor tiled = cpu::cached_output({g.batch * row_tiles * g.out_h * g.out_w * 16}, x.options());
  DirectWeightGrad a{};
  a.in = in.const_data_ptr<float>();
  a.batch = g.batch;
  a.channels = g.in_channels;
  a.in_h = g.in_h;
  a.in_w = g.in_w;
  a.grad_out = gout.const_data_ptr<float>();
  a.out_channels = g.out_channels;
  a.out_h = g.out_h;
  a.out_w = g.out_w;
  a.in_step_y = g.stride_h;
  a.in_step_x = g.stride_w;
  a.grad_weight = grad_weight.mutable_data_ptr<float>();
  a.weight_taps = g.kernel_h * g.kernel_w;
  a.taps = taps.data();
  a.n_taps = static_cast<int64_t>(taps.size());
  a.tiled_grad = tiled.mutable_data_ptr<float>();
  direct_weight_grad_cpu.find()(a);
  return grad_weight;
}

// A zeroed output (or one holding the bias) in `opts`'s memory format.
at::Tensor output_with_bias(const Geometry& g, const std::optional<at::Tensor>& bias, const at::TensorOptions& opts,
                            int64_t channels, int64_t h, int64_t w) {
  if (!bias.has_value()) return cpu::cached_zeros({g.batch, channels, h, w}, opts);
  at::Tensor out = cpu::cached_output({g.batch, channels, h, w}, opts);
  out.copy_(bias->view({1, channels, 1, 1}));
  return out;
}

}  // namespace

void accumulate_forward(const at::Tensor& x, const at::Tensor& weight, const Geometry& g, const at::Tensor& out,
                        bool skip_centre) {
  if (const auto taps = direct_plan(x, out, g, skip_centre, false, false)) {
    return run_direct(x, weight, out, g, *taps, false);
  }
  if (whole_batch_gemm(g, x, out, skip_centre)) {
    pixel_rows(out).addmm_(pixel_rows(x), weight.reshape({g.out_channels, g.in_channels}).t());
    return;
  }
  const int64_t c_out_g = g.out_channels / g.groups, c_in_g = g.in_channels / g.groups;
  int64_t n_taps = 0;
  const std::vector<ColumnGroup> plan = plan_taps(g, skip_centre, n_taps);
  if (n_taps == 0) return;
  const std::vector<at::Tensor> w = tap_weights(weight, plan, n_taps);
  const auto windows = pack_windows(x, g, plan);
  for_channel_blocks(out.is_cpu(), g.groups, c_out_g, [&](int64_t group, int64_t m0, int64_t m) {
    const int64_t c0 = group * c_out_g + m0, k0 = group * c_in_g;
    const at::Tensor out_block = out.narrow(1, c0, m);
    for (size_t i = 0; i < plan.size(); ++i) {
      const ColumnGroup& cg = plan[i];
      const int64_t cols = cg.cols.size();
      // Full-width groups accumulate straight into the output; others into a narrow buffer
      // added to their columns at the end.
      const bool direct = cols == g.out_w;
      const at::Tensor acc =
          direct ? out_block
                 : cpu::cached_zeros({g.batch, m, g.out_h, cols}, out.options().memory_format(layout_of(out)));
      for (const RowTap& tap : cg.taps) {
        const at::Tensor wt = w[tap.kh * g.kernel_w + cg.kw].narrow(0, c0, m);
        const at::Tensor& window = windows[i][static_cast<size_t>(tap.window)];
        for (int64_t n = 0; n < g.batch; ++n) {
          gemm_rows(acc, n, 0, m, tap.rows.begin, tap.rows.size())
              .addmm_(wt, gemm_rows(window, n, k0, c_in_g, tap.rows.begin + tap.shift, tap.rows.size()));
        }
      }
      if (!direct) out_block.narrow(3, cg.cols.begin, cols).add_(acc);
    }
  });
}

void accumulate_input_grad(const at::Tensor& grad_out, const at::Tensor& weight, const Geometry& g,
                           const at::Tensor& grad_in, bool skip_centre) {
  if (const auto taps = direct_plan(grad_out, grad_in, g, skip_centre, true, false)) {
    return run_direct(grad_out, weight, grad_in, g, *taps, true);
  }
  if (whole_batch_gemm(g, grad_out, grad_in, skip_centre)) {
    pixel_rows(grad_in).addmm_(pixel_rows(grad_out), weight.reshape({g.out_channels, g.in_channels}));
    return;
  }
  const int64_t c_out_g = g.out_channels / g.groups, c_in_g = g.in_channels / g.groups;
  int64_t n_taps = 0;
  const std::vector<ColumnGroup> plan = plan_taps(g, skip_centre, n_taps);
  if (n_taps == 0) return;
  const std::vector<at::Tensor> w = tap_weights(weight, plan, n_taps);
  const std::vector<at::Tensor> gouts = pack_grad_columns(grad_out, g, plan);
  for_channel_blocks(grad_in.is_cpu(), g.groups, c_in_g, [&](int64_t group, int64_t m0, int64_t m) {
    const int64_t c0 = group * c_in_g + m0, k0 = group * c_out_g;
    for (size_t i = 0; i < plan.size(); ++i) {
      const ColumnGroup& cg = plan[i];
      size_t t = 0;
      while (t < cg.taps.size()) {
        const int64_t phase = cg.taps[t].phase;
        // The phase's window of grad_in, accumulated in place when it is flat, else in a buffer.
        const at::Tensor target = window_view(grad_in, g, cg, phase).narrow(1, c0, m);
        const bool direct = plane_is_flat(target);
        const at::Tensor acc =
            direct ? target
                   : cpu::cached_zeros({g.batch, m, phase_rows(g.in_h, phase, g.stride_h), cg.cols.size()},
                                       grad_in.options().memory_format(layout_of(grad_in)));
        for (; t < cg.taps.size() && cg.taps[t].phase == phase; ++t) {
          const RowTap& tap = cg.taps[t];
          const at::Tensor wt = w[tap.kh * g.kernel_w + cg.kw].narrow(0, k0, c_out_g).narrow(1, m0, m).t();
          for (int64_t n = 0; n < g.batch; ++n) {
            gemm_rows(acc, n, 0, m, tap.rows.begin + tap.shift, tap.rows.size())
                .addmm_(wt, gemm_rows(gouts[i], n, k0, c_out_g, tap.rows.begin, tap.rows.size()));
          }
        }
        if (!direct) target.add_(acc);
      }
    }
  });
}

at::Tensor weight_grad(const at::Tensor& grad_out, const at::Tensor& x, const Geometry& g, bool skip_centre) {
  if (const auto taps = direct_plan(x, grad_out, g, skip_centre, false, true)) {
    return run_direct_weight_grad(grad_out, x, g, *taps);
  }
  if (whole_batch_gemm(g, x, grad_out, skip_centre) && g.batch > 0) {
    return at::mm(pixel_rows(grad_out).t(), pixel_rows(x)).view({g.out_channels, g.in_channels, 1, 1});
  }
  const int64_t c_out_g = g.out_channels / g.groups, c_in_g = g.in_channels / g.groups;
  const auto opts = x.options();
  int64_t n_taps = 0;
  const std::vector<ColumnGroup> plan = plan_taps(g, skip_centre, n_taps);
  if (n_taps == 0 || g.batch == 0) return at::zeros({g.out_channels, c_in_g, g.kernel_h, g.kernel_w}, opts);
  const bool reordered = n_taps > kReorderAboveTaps;
  const at::Tensor taps = reordered ? at::empty({g.kernel_h, g.kernel_w, g.out_channels, c_in_g}, opts) : at::Tensor();
  std::vector<at::Tensor> buffers(static_cast<size_t>(g.kernel_h * g.kernel_w));
  for (const ColumnGroup& cg : plan) {
    for (const RowTap& tap : cg.taps) {
      buffers[tap.kh * g.kernel_w + cg.kw] =
          reordered ? taps.select(0, tap.kh).select(0, cg.kw) : at::empty({g.out_channels, c_in_g}, opts);
    }
  }
  const auto windows = pack_windows(x, g, plan);
  const std::vector<at::Tensor> gouts = pack_grad_columns(grad_out, g, plan);
  for_channel_blocks(x.is_cpu(), g.groups, c_out_g, [&](int64_t group, int64_t m0, int64_t m) {
    const int64_t c0 = group * c_out_g + m0, k0 = group * c_in_g;
    for (size_t i = 0; i < plan.size(); ++i) {
      const ColumnGroup& cg = plan[i];
      for (const RowTap& tap : cg.taps) {
        const at::Tensor gw = buffers[tap.kh * g.kernel_w + cg.kw].narrow(0, c0, m);
        const at::Tensor& window = windows[i][static_cast<size_t>(tap.window)];
        for (int64_t n = 0; n < g.batch; ++n) {
          gw.addmm_(gemm_rows(gouts[i], n, c0, m, tap.rows.begin, tap.rows.size()),
                    gemm_rows(window, n, k0, c_in_g, tap.rows.begin + tap.shift, tap.rows.size()).t(), n == 0 ? 0 : 1);
        }
      }
    }
  });
  if (!reordered) {
    at::Tensor grad_weight = at::zeros({g.out_channels, c_in_g, g.kernel_h, g.kernel_w}, opts);
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        const at::Tensor& b = buffers[kh * g.kernel_w + kw];
        if (b.defined()) grad_weight.select(3, kw).select(2, kh).copy_(b);
      }
    }
    return grad_weight;
  }
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      if (!buffers[kh * g.kernel_w + kw].defined()) taps.select(0, kh).select(0, kw).zero_();
    }
  }
  return from_tap_major(taps);
}

at::Tensor flat_map(const at::Tensor& t) { return plane_is_flat(t) ? t : contiguous_map(t); }

bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

bool runs_channels_last(const at::Tensor& map, const Geometry& g, DirectPass pass) {
  return is_channels_last(map) && map.is_cpu() &&
         !direct_pass_applies(g, pass, map.scalar_type(), c10::DeviceType::CPU);
}

namespace {

// A CPU map, dense in one layout, copied into the other (`format`) sample by sample in L1-sized
// tiles: [H * W, C] -> [C, H * W] for NCHW, the reverse for channels_last (ATen's strided copy
// between the two runs at a twentieth of a plain copy's speed here).
at::Tensor transposed_map(const at::Tensor& t, at::MemoryFormat format) {
  at::Tensor out = cpu::cached_output(t.sizes(), t.options().memory_format(format));
  const int64_t pixels = t.size(2) * t.size(3), sample = t.size(1) * pixels;
  const auto elem = static_cast<int64_t>(t.element_size());
  const char* src = static_cast<const char*>(t.const_data_ptr());
  char* dst = static_cast<char*>(out.mutable_data_ptr());
  const bool to_nchw = format == at::MemoryFormat::Contiguous;
  for (int64_t n = 0; n < t.size(0); ++n) {
    tap_reorder_cpu.get()(src + n * sample * elem, dst + n * sample * elem, pixels, t.size(1), elem, to_nchw);
  }
  return out;
}

// t in channels_last memory: t itself when it is, else a copy.
at::Tensor channels_last_map(const at::Tensor& t) {
  if (t.numel() > 0 && t.is_contiguous(at::MemoryFormat::ChannelsLast)) return t;
  if (t.numel() == 0 || !t.is_cpu() || !t.is_contiguous()) {
    return cpu::cached_output(t.sizes(), t.options().memory_format(at::MemoryFormat::ChannelsLast)).copy_(t);
  }
  return transposed_map(t, at::MemoryFormat::ChannelsLast);
}

}  // namespace

at::Tensor in_layout(const at::Tensor& t, bool channels_last) { return channels_last ? channels_last_map(t) : t; }

at::Tensor pixel_rows(const at::Tensor& t) { return t.permute({0, 2, 3, 1}).view({-1, t.size(1)}); }

at::MemoryFormat format_for(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

at::Tensor contiguous_map(const at::Tensor& t) {
  if (t.is_contiguous()) return t;
  if (!t.is_cpu() || t.dim() != 4 || !t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return cpu::cached_contiguous(t);
  }
  return transposed_map(t, at::MemoryFormat::Contiguous);
}

c10::ScalarType weight_grad_type(c10::ScalarType t) { return t == at::kHalf || t == at::kBFloat16 ? at::kFloat : t; }

at::Tensor conv2d_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding4, at::IntArrayRef dilation, int64_t groups) {
  const char* op = "conv2d";
  const Geometry g = conv_geometry(op, input, weight, stride, padding4, dilation, groups);
  check_bias(op, bias, g.out_channels, input);
  const bool native = runs_channels_last(input, g, DirectPass::Forward);
  at::Tensor out =
      output_with_bias(g, bias, input.options().memory_format(format_for(native)), g.out_channels, g.out_h, g.out_w);
  if (out.numel() > 0 && g.in_channels > 0) {
    accumulate_forward(native ? input : contiguous_map(input), weight, g, out, false);
  }
  return in_layout(out, is_channels_last(input));
}

at::Tensor conv2d_input_grad(const at::Tensor& grad_out, const at::Tensor& weight, c10::SymIntArrayRef input_size_sym,
                             at::IntArrayRef stride, at::IntArrayRef padding4, at::IntArrayRef dilation,
                             int64_t groups) {
  const char* op = "conv2d_input_grad";
  const at::IntArrayRef input_size = C10_AS_INTARRAYREF_SLOW(input_size_sym);
  Geometry g = conv_geometry_of_sizes(op, input_size, weight.sizes(), stride, padding4, dilation, groups);
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == g.batch && grad_out.size(1) == g.out_channels &&
                        grad_out.size(2) <= g.out_h && grad_out.size(3) <= g.out_w,
                    op, ": grad_out must have shape [", g.batch, ", ", g.out_channels, ", ", g.out_h, ", ", g.out_w,
                    "], got ", grad_out.sizes());
  TORCH_CHECK_TYPE(grad_out.scalar_type() == weight.scalar_type(), op, ": grad_out must have the weight's dtype");
  TORCH_CHECK(grad_out.device() == weight.device(), op, ": grad_out must be on ", weight.device(), ", got ",
              grad_out.device());
  // A transposed convolution's output_padding can leave fewer output rows than the padding allows.
  g.out_h = grad_out.size(2);
  g.out_w = grad_out.size(3);
  const bool channels_last = is_channels_last(grad_out);
  const bool native = runs_channels_last(grad_out, g, DirectPass::InputGrad);
  const at::Tensor gout = native ? grad_out : contiguous_map(grad_out);
  // The direct kernel writes every element: no zeroing first (9 MB for the ASPP branch).
  at::Tensor grad_in = cpu::cached_output(input_size, grad_out.options().memory_format(format_for(native)));
  const auto taps =
      grad_in.numel() > 0 && gout.numel() > 0 ? direct_plan(gout, grad_in, g, false, true, false) : std::nullopt;
  if (taps) {
    run_direct(gout, weight, grad_in, g, *taps, true, /*overwrite=*/true);
    return in_layout(grad_in, channels_last);
  }
  grad_in.zero_();
  if (grad_in.numel() > 0 && gout.numel() > 0) accumulate_input_grad(gout, weight, g, grad_in, false);
  return in_layout(grad_in, channels_last);
}

at::Tensor conv2d_weight_grad(const at::Tensor& grad_out, const at::Tensor& input, c10::SymIntArrayRef weight_size_sym,
                              at::IntArrayRef stride, at::IntArrayRef padding4, at::IntArrayRef dilation,
                              int64_t groups) {
  const char* op = "conv2d_weight_grad";
  const at::IntArrayRef weight_size = C10_AS_INTARRAYREF_SLOW(weight_size_sym);
  Geometry g = conv_geometry_of_sizes(op, input.sizes(), weight_size, stride, padding4, dilation, groups);
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == g.batch && grad_out.size(1) == g.out_channels &&
                        grad_out.size(2) <= g.out_h && grad_out.size(3) <= g.out_w,
                    op, ": grad_out must have shape [", g.batch, ", ", g.out_channels, ", ", g.out_h, ", ", g.out_w,
                    "], got ", grad_out.sizes());
  TORCH_CHECK_TYPE(grad_out.scalar_type() == input.scalar_type(), op, ": grad_out must have the input's dtype");
  TORCH_CHECK(grad_out.device() == input.device(), op, ": grad_out must be on ", input.device(), ", got ",
              grad_out.device());
  g.out_h = grad_out.size(2);
  g.out_w = grad_out.size(3);
  const c10::ScalarType acc_type = weight_grad_type(input.scalar_type());
  if (grad_out.numel() == 0 || input.numel() == 0) return at::zeros(weight_size, input.options());
  // Both maps in channels_last run as they are; a mix is made NCHW.
  const bool native = is_channels_last(grad_out) && runs_channels_last(input, g, DirectPass::WeightGrad);
  const at::Tensor gout = native ? grad_out : contiguous_map(grad_out);
  const at::Tensor x = native ? input : contiguous_map(input);
  return weight_grad(gout.to(acc_type), x.to(acc_type), g, false).to(input.scalar_type());
}

at::Tensor conv_transpose2d_forward(const at::Tensor& input, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                                    at::IntArrayRef dilation) {
  const char* op = "conv_transpose2d";
  const Geometry g = transpose_geometry(op, input, weight, stride, padding, output_padding, groups, dilation);
  check_bias(op, bias, g.in_channels, input);
  const bool native = runs_channels_last(input, g, DirectPass::InputGrad);
  at::Tensor out =
      output_with_bias(g, bias, input.options().memory_format(format_for(native)), g.in_channels, g.in_h, g.in_w);
  if (out.numel() > 0 && g.out_channels > 0) {
    accumulate_input_grad(native ? input : contiguous_map(input), weight, g, out, false);
  }
  return in_layout(out, is_channels_last(input));
}

void register_impls(torch::Library& m) {
  m.impl("conv2d", &conv2d_forward);
  m.impl("conv2d_input_grad", &conv2d_input_grad);
  m.impl("conv2d_weight_grad", &conv2d_weight_grad);
  m.impl("conv_transpose2d", &conv_transpose2d_forward);
  m.impl("aspp_conv", &aspp_conv_forward);
  m.impl("aspp_conv_backward", &aspp_conv_backward);
}

int64_t direct_passes(const Geometry& g, c10::ScalarType dtype, c10::DeviceType device) {
  int64_t passes = 0;
  for (DirectPass pass : {DirectPass::Forward, DirectPass::InputGrad, DirectPass::WeightGrad}) {
    if (direct_pass_applies(g, pass, dtype, device)) passes |= int64_t{1} << static_cast<int>(pass);
  }
  return passes;
}

}  // namespace fastops::conv
