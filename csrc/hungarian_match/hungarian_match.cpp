// Schema and input checks of the linear assignment op. Kernels: hungarian_match_cpu.cpp (CPU, and
// CUDA inputs solved on the host). Python API and fake kernel: fastops/ops/hungarian_match.py.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "hungarian_match/hungarian_match.h"

namespace fastops::hungarian_match {

void check_costs(at::TensorList costs) {
  const char* op = "hungarian_match";
  for (size_t b = 0; b < costs.size(); ++b) {
    const at::Tensor& c = costs[b];
    TORCH_CHECK_TYPE(at::isFloatingType(c.scalar_type()), op, ": costs[", b,
                     "] must be float16, bfloat16, float32 or float64, got ", c.scalar_type());
    TORCH_CHECK_VALUE(c.dim() == 2, op, ": costs[", b, "] must be a matrix [R, C], got shape ", c.sizes());
    TORCH_CHECK(c.device() == costs[0].device(), op, ": costs[", b, "] must be on ", costs[0].device(),
                " as costs[0], got ", c.device());
  }
}

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  // One minimum-cost assignment per matrix (any strides): costs[b] [R_b, C_b] -> rows[b], cols[b]
  // int64 [min(R_b, C_b)], rows increasing.
  m.def("hungarian_match(Tensor[] costs, bool maximize) -> (Tensor[] rows, Tensor[] cols)",
        {at::Tag::pt2_compliant_tag});
}

}  // namespace fastops::hungarian_match
