// CUDA registration of the convolution ops: the same Tensor-level per-tap implementation as the
// CPU (conv_taps.cpp). On the GPU its GEMMs are cuBLAS calls (at::addmm_ on strided views) and
// its window packing, weight reordering and accumulation ATen's copy and add kernels, all launched
// by the calling thread on its current stream (no CPU worker threads, unlike the CPU path); no
// kernel of our own, so nothing here needs a GPU record beyond the tests.
#include <torch/library.h>

#include "conv/conv.h"

namespace fastops::conv {

TORCH_LIBRARY_IMPL(fastops, CUDA, m) {
  m.impl("conv2d", &conv2d_forward);
  m.impl("conv2d_input_grad", &conv2d_input_grad);
  m.impl("conv2d_weight_grad", &conv2d_weight_grad);
  m.impl("conv_transpose2d", &conv_transpose2d_forward);
  m.impl("aspp_conv", &aspp_conv_forward);
  m.impl("aspp_conv_backward", &aspp_conv_backward);
}

}  // namespace fastops::conv
