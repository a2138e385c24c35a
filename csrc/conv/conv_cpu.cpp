// CPU registration of the convolution ops: the Tensor-level per-tap implementation of
// conv_taps.cpp, whose GEMMs run in ATen's BLAS (multi-threaded) and whose window copies and
// accumulations run in ATen's multi-threaded strided loops.
#include <torch/library.h>

#include "conv/conv.h"

namespace fastops::conv {

constinit cpu::KernelTable<TapReorderFn> tap_reorder_cpu{};
constinit cpu::KernelTable<DirectConvFn> direct_conv_cpu{};
constinit cpu::KernelTable<DirectWeightGradFn> direct_weight_grad_cpu{};

TORCH_LIBRARY_IMPL(fastops, CPU, m) { register_impls(m); }

}  // namespace fastops::conv
