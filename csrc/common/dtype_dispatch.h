// Compile-time dispatch over the floating dtypes the kernels accept.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

namespace fastops {

// Calls fn(S{}, T{}) with S the stored type and T the type arithmetic runs in: double for double,
// float for float, float16 and bfloat16.
template <typename Fn>
void with_float_dtype(c10::ScalarType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case c10::ScalarType::Double: return fn(double{}, double{});
    case c10::ScalarType::Float: return fn(float{}, float{});
    case c10::ScalarType::Half: return fn(c10::Half{}, float{});
    case c10::ScalarType::BFloat16: return fn(c10::BFloat16{}, float{});
    default: TORCH_CHECK_TYPE(false, op, ": unsupported dtype ", dtype);
  }
}

}  // namespace fastops
