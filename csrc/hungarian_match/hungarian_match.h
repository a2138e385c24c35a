// Declarations shared by the linear assignment op's files.
#pragma once

#include <ATen/core/Tensor.h>

namespace fastops::hungarian_match {

// Checks every cost matrix's dtype and shape and that all are on one device (errors name the
// matrix's position in the list).
void check_costs(at::TensorList costs);

}  // namespace fastops::hungarian_match
