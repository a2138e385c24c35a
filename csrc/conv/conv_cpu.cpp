// CPU registration of the convolution ops: the Tensor-level per-tap implementation of
// conv_taps.cpp, whose GEMMs run in ATen's BLAS (multi-threaded) and whose window copies and
// accumulations run in ATen's multi-threaded strided loops.
#include <torch/library.h>

#include "conv/conv.h"

namespace fastops::conv {

constinit cpu::KernelTable<TapReorderFn> tap_reorder_cpu{};

TORCH_LIBRARY_IMPL(fastops, CPU, m) {
  m.impl("conv2d", &conv2d_forward);
  m.impl("conv2d_input_grad", &conv2d_input_grad);
  m.impl("conv2d_weight_grad", &conv2d_weight_grad);
  m.impl("conv_transpose2d", &conv_transpose2d_forward);
  m.impl("aspp_conv", &aspp_conv_forward);
  m.impl("aspp_conv_backward", &aspp_conv_backward);
}

}  // namespace fastops::conv
