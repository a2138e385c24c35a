// CUDA registration of the convolution ops: the same Tensor-level per-tap implementation as the
// CPU (conv_taps.cpp). On the GPU its GEMMs are cuBLAS calls (at::addmm_ on strided views) and
// its window packing, weight reordering and accumulation ATen's copy and add kernels, all launched
// by the calling thread on its current stream (no CPU worker threads, unlike the CPU path); no
// kernel of our own, so nothing here needs a GPU record beyond the tests.
#include <torch/library.h>

#include "conv/conv.h"

namespace fastops::conv {

TORCH_LIBRARY_IMPL(fastops, CUDA, m) { register_impls(m); }

}  // namespace fastops::conv
