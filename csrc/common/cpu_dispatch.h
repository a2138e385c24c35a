// Run-time choice among the copies of a raw CPU kernel compiled for different instruction sets.
//
// A *_cpu_kernel.cpp source is compiled three times (cmake/FastopsCpuKernels.cmake) with
// FASTOPS_CPU_ISA = 0 (x86-64 baseline), 1 (AVX2 + FMA), 2 (AVX-512). Each copy registers its
// functions in a KernelTable under its level; the op calls table.get(), the best copy the running
// CPU supports. All copies are built with -ffp-contract=off, so they round identically: the level
// changes speed, never results (tests/test_cpu_dispatch.py checks this). A kernel only some
// levels have (the convolution's direct kernels: AVX-512) is looked up with table.find(), and
// its op takes another path where that gives null.
#pragma once

#include <c10/util/Exception.h>

#include <string_view>

namespace fastops::cpu {

enum IsaLevel : int { kIsaDefault = 0, kIsaAVX2 = 1, kIsaAVX512 = 2, kNumIsaLevels = 3 };

// The best level this CPU supports, capped by the environment variable FASTOPS_CPU_ISA
// (default|avx2|avx512) and by set_isa_cap().
IsaLevel active_isa();
IsaLevel detected_isa();
const char* isa_name(IsaLevel level);
// "default" | "avx2" | "avx512" -> level; anything else raises ValueError.
IsaLevel parse_isa(std::string_view name);
// Caps the level used from now on (tests compare the copies); returns the level now active.
IsaLevel set_isa_cap(IsaLevel cap);

template <typename Fn>
struct KernelTable {
  Fn* impl[kNumIsaLevels] = {};

  // The best copy at or below the active level, or nullptr (a kernel that only some levels have).
  Fn* find() const {
    for (int level = active_isa(); level >= 0; --level) {
      if (impl[level] != nullptr) return impl[level];
    }
    return nullptr;
  }

  Fn* get() const {
    Fn* fn = find();
    TORCH_CHECK(fn != nullptr, "fastops: no CPU kernel was registered for this op (a build problem)");
    return fn;
  }
};

}  // namespace fastops::cpu

// In a *_cpu_kernel.cpp source: registers this copy's `fn` in `table` (a KernelTable defined with
// constinit elsewhere, so it is zero-initialized before any copy registers).
#define FASTOPS_REGISTER_CPU_KERNEL(table, fn)                           \
  static const bool FASTOPS_CONCAT(fastops_registered_, __LINE__) = [] { \
    (table).impl[FASTOPS_CPU_ISA] = (fn);                                \
    return true;                                                         \
  }()
